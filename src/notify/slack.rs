//! A Slack incoming-webhook message with Block Kit blocks (pure).
//!
//! `text` is the fallback Slack shows in notifications and on clients without blocks.

use serde_json::{json, Value};

use super::Notice;

/// Slack's limits: header text 150 characters, section text 3000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

pub fn body(notice: &Notice) -> Value {
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
fn escape(text: &str) -> String {
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
        let body = body(&notice(Event::UpdateApplied, "shop"));
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
        let body = body(&n);
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
}
