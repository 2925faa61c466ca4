//! A Slack incoming-webhook message with Block Kit blocks (pure).
//!
//! `text` is the fallback Slack shows in notifications and on clients without blocks. An
//! `approval.required` message to an interactive sink also carries Approve / Deny buttons,
//! answered at `POST /slack/interactions` ([`crate::server::slack`]).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Event, Notice};

/// Slack's limits: header text 150 characters, section text 3000, a button's value 2000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const VALUE_MAX: usize = 2000;

/// The buttons' `action_id`s: what a click asks for.
pub const ACTION_APPROVE: &str = "tagwatch_approve";
pub const ACTION_DENY: &str = "tagwatch_deny";

/// What a button names, as its `value` (JSON): the workload and the exact proposal shown, so a
/// click on an old message never approves a version that superseded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonValue {
    /// `namespace/Kind/name`, as [`crate::model::workload::WorkloadId::parse`] reads it.
    pub workload: String,
    /// The proposal's label (`1.4.0`, or `app=1.4.0,side=2.0.0`).
    pub version: String,
}

impl ButtonValue {
    /// The `value` text; `None` when it would pass Slack's limit (the message then carries the
    /// command alone: a button Slack refuses would lose the whole message).
    pub fn encode(&self) -> Option<String> {
        let text = serde_json::to_string(self).ok()?;
        (text.chars().count() <= VALUE_MAX).then_some(text)
    }
}

/// The message; with `buttons`, an `approval.required` notice that names its proposal gets an
/// `actions` block with Approve and Deny.
pub fn body(notice: &Notice, buttons: bool) -> Value {
    let mut body = message(notice);
    if let Some(actions) = buttons.then(|| actions(notice)).flatten() {
        if let Some(blocks) = body["blocks"].as_array_mut() {
            // Before the context line: the buttons sit under the note they decide.
            let at = blocks.len().saturating_sub(1);
            blocks.insert(at, actions);
        }
    }
    body
}

/// The Approve / Deny block of an `approval.required` notice, if it names a proposal.
fn actions(notice: &Notice) -> Option<Value> {
    if notice.event != Event::ApprovalRequired {
        return None;
    }
    let value = ButtonValue {
        workload: notice.regarding.to_string(),
        version: notice.proposal.clone()?,
    }
    .encode()?;
    let shown = cut(&escape(notice.proposal.as_deref().unwrap_or_default()), 200);
    Some(json!({
        "type": "actions",
        "block_id": "tagwatch_approval",
        "elements": [
            {
                "type": "button",
                "action_id": ACTION_APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": value,
            },
            {
                "type": "button",
                "action_id": ACTION_DENY,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Deny", "emoji": true},
                "value": value,
                // A denial rejects the version for good: worth a second look.
                "confirm": {
                    "title": {"type": "plain_text", "text": "Deny this update?"},
                    "text": {"type": "mrkdwn", "text": format!("`{shown}` will never be applied to `{}`.", escape(&notice.regarding.to_string()))},
                    "confirm": {"type": "plain_text", "text": "Deny"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
        ]
    }))
}

fn message(notice: &Notice) -> Value {
    let workload = notice.regarding.to_string();
    let mark = if notice.type_ == "Warning" {
        "⚠️ "
    } else {
        ""
    };
    let headline = format!("{mark}{}: {workload}", notice.event.title());
    json!({
        "text": escape(&format!("{headline}: {}", notice.message)),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": cut(&headline, HEADER_MAX), "emoji": true}
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": cut(&escape(&notice.message), SECTION_MAX)}
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": format!("*Workload*\n`{}`", escape(&workload))},
                    {"type": "mrkdwn", "text": format!("*Event*\n`{}`", notice.event.name())},
                    {"type": "mrkdwn", "text": format!("*Namespace*\n{}", escape(&notice.regarding.namespace))},
                    {"type": "mrkdwn", "text": format!("*Reason*\n{} ({})", escape(&notice.reason), escape(&notice.type_))},
                ]
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("tagwatch · {}", notice.time)}]
            }
        ]
    })
}

/// Slack reads `<...>` as links and mentions (`<!channel>`): a tag or an Event note is data from
/// registries and users, so the three control characters are escaped as Slack asks.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters (Slack refuses the whole message otherwise).
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::notice;
    use crate::notify::Event;

    #[test]
    fn blocks_carry_workload_event_and_note() {
        let body = body(&notice(Event::UpdateApplied, "shop"), true);
        assert_eq!(
            body["text"],
            "Image updated: shop/Deployment/web: web: r.io/app:1.0.0 → r.io/app:1.1.0"
        );
        let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[0]["text"]["text"],
            "Image updated: shop/Deployment/web"
        );
        assert_eq!(
            blocks[1]["text"]["text"],
            "web: r.io/app:1.0.0 → r.io/app:1.1.0"
        );
        assert_eq!(
            blocks[2]["fields"][0]["text"],
            "*Workload*\n`shop/Deployment/web`"
        );
        assert_eq!(blocks[2]["fields"][1]["text"], "*Event*\n`update.applied`");
        assert_eq!(
            blocks[3]["elements"][0]["text"],
            "tagwatch · 2025-03-04T05:06:07Z"
        );
    }

    #[test]
    fn notes_cannot_mention_or_link_and_fit_slack_limits() {
        let mut n = notice(Event::CanaryFailed, "shop");
        n.type_ = "Warning".into();
        n.message = format!("<!channel> & <https://x|y> {}", "x".repeat(4000));
        let body = body(&n, false);
        let text = body["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.starts_with("&lt;!channel&gt; &amp; &lt;https://x|y&gt;"),
            "{text}"
        );
        assert_eq!(text.chars().count(), SECTION_MAX);
        assert!(body["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|h| h.starts_with("⚠️ Canary failed")));
    }

    #[test]
    fn approval_buttons_only_where_asked_and_named() {
        let mut n = notice(Event::ApprovalRequired, "shop");
        n.proposal = Some("1.1.0".into());
        let with = body(&n, true);
        let blocks = with["blocks"].as_array().cloned().unwrap_or_default();
        assert_eq!(blocks.len(), 5);
        let actions = &blocks[3];
        assert_eq!(actions["type"], "actions");
        assert_eq!(blocks[4]["type"], "context");
        let ids: Vec<&str> = actions["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["action_id"].as_str())
            .collect();
        assert_eq!(ids, [ACTION_APPROVE, ACTION_DENY]);
        for button in actions["elements"].as_array().into_iter().flatten() {
            let value: ButtonValue =
                serde_json::from_str(button["value"].as_str().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                value,
                ButtonValue {
                    workload: "shop/Deployment/web".into(),
                    version: "1.1.0".into()
                }
            );
        }
        // Not interactive, another event, or no proposal named: no buttons.
        assert_eq!(body(&n, false)["blocks"].as_array().map(Vec::len), Some(4));
        let mut other = n.clone();
        other.event = Event::ApprovalExpired;
        assert_eq!(
            body(&other, true)["blocks"].as_array().map(Vec::len),
            Some(4)
        );
        n.proposal = None;
        assert_eq!(body(&n, true)["blocks"].as_array().map(Vec::len), Some(4));
        // A value past Slack's limit: the message goes without buttons rather than refused.
        n.proposal = Some("x".repeat(VALUE_MAX));
        assert_eq!(body(&n, true)["blocks"].as_array().map(Vec::len), Some(4));
    }
}
