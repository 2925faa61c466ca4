//! A Slack interaction request, after its signature was verified (pure): the form-encoded
//! `payload=` field, its JSON, and the button tagwatch put in the message.
//!
//! Only `block_actions` from tagwatch's own buttons are understood; anything else is a
//! [`PayloadError`] naming what was wrong, never a panic.

use serde::Deserialize;

use crate::model::workload::WorkloadId;
use crate::notify::slack::{ButtonValue, ACTION_APPROVE, ACTION_DENY};

/// What a person asked for with a button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// One click, as tagwatch acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The Slack user ID (`U…`/`W…`): what the allow-list names.
    pub user: String,
    /// The user's workspace (`T…`; `E…` for an Enterprise Grid org), when Slack says.
    pub team: Option<String>,
    /// The user's handle, for notes and logs only: people can rename themselves.
    pub username: Option<String>,
    pub decision: Decision,
    pub workload: WorkloadId,
    /// The proposal label the button was made for.
    pub version: String,
    /// Where Slack takes a message for the clicker (valid 30 minutes). A credential of sorts:
    /// anyone holding it may post into the conversation, so it is never logged.
    pub response_url: Option<String>,
}

impl Interaction {
    /// The identity an approval is recorded under: `slack:<team>/<user>` (`slack:<user>` when
    /// Slack names no team). IDs, not names: a rename must not make one person count twice.
    pub fn identity(&self) -> String {
        match &self.team {
            Some(team) => format!("slack:{team}/{}", self.user),
            None => format!("slack:{}", self.user),
        }
    }

    /// The identity with the handle, for Event notes people read.
    pub fn shown(&self) -> String {
        match &self.username {
            Some(name) => format!("{} (@{name})", self.identity()),
            None => self.identity(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body has no `payload` form field")]
    NoPayload,
    #[error("`payload` is not JSON of a Slack interaction: {0}")]
    Json(String),
    #[error("a `{0}` interaction is not one tagwatch answers (only block_actions)")]
    NotBlockActions(String),
    #[error("no tagwatch button in the interaction")]
    NoAction,
    #[error("the button's value is not one tagwatch made: {0}")]
    BadValue(String),
    #[error("the interaction names no usable Slack user")]
    NoUser,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    type_: String,
    user: Option<RawUser>,
    team: Option<RawTeam>,
    #[serde(default)]
    actions: Vec<RawAction>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: String,
    team_id: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct RawTeam {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawAction {
    action_id: String,
    value: Option<String>,
}

/// The interaction in a verified request body (`application/x-www-form-urlencoded`).
pub fn parse(body: &[u8]) -> Result<Interaction, PayloadError> {
    let payload = form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or(PayloadError::NoPayload)?;
    let raw: Raw = serde_json::from_str(&payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    if raw.type_ != "block_actions" {
        return Err(PayloadError::NotBlockActions(shorten(&raw.type_)));
    }
    let (decision, value) = raw
        .actions
        .iter()
        .find_map(|a| {
            let decision = match a.action_id.as_str() {
                ACTION_APPROVE => Decision::Approve,
                ACTION_DENY => Decision::Deny,
                _ => return None,
            };
            Some((decision, a.value.clone()))
        })
        .ok_or(PayloadError::NoAction)?;
    let value: ButtonValue = serde_json::from_str(value.as_deref().unwrap_or_default())
        .map_err(|e| PayloadError::BadValue(e.to_string()))?;
    let workload = WorkloadId::parse(&value.workload).map_err(PayloadError::BadValue)?;
    if value.version.trim().is_empty() {
        return Err(PayloadError::BadValue("no version".into()));
    }
    let user = raw.user.ok_or(PayloadError::NoUser)?;
    if !slack_id(&user.id) {
        return Err(PayloadError::NoUser);
    }
    // The user's own workspace first: in a shared channel `team` is where the click happened.
    let team = user
        .team_id
        .filter(|t| slack_id(t))
        .or_else(|| raw.team.and_then(|t| t.id).filter(|t| slack_id(t)));
    Ok(Interaction {
        user: user.id,
        team,
        username: user.username.map(|n| shorten(&n)),
        decision,
        workload,
        version: value.version,
        response_url: raw.response_url,
    })
}

/// Slack's IDs are capital letters and digits; anything else is not recorded as an identity.
fn slack_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Sender-chosen text in errors and notes: bounded.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::kind::Kind;

    fn form(payload: &serde_json::Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn click(action: &str, value: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U012AB3CD", "username": "alice", "team_id": "T0001"},
            "team": {"id": "T0001", "domain": "acme"},
            "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
            "actions": [{"action_id": action, "block_id": "tagwatch_approval", "value": value,
                         "type": "button", "action_ts": "1.2"}],
        })
    }

    const VALUE: &str = r#"{"workload":"shop/StatefulSet/db","version":"1.1.0"}"#;

    #[test]
    fn a_click_becomes_an_interaction() {
        let got = parse(&form(&click(ACTION_DENY, VALUE))).unwrap();
        assert_eq!(got.decision, Decision::Deny);
        assert_eq!(
            got.workload,
            WorkloadId::new(Kind::StatefulSet, "shop", "db")
        );
        assert_eq!(got.version, "1.1.0");
        assert_eq!(got.identity(), "slack:T0001/U012AB3CD");
        assert_eq!(got.shown(), "slack:T0001/U012AB3CD (@alice)");
        let approve = parse(&form(&click(ACTION_APPROVE, VALUE))).unwrap();
        assert_eq!(approve.decision, Decision::Approve);
        // The team from the payload when the user carries none; none at all is still a user.
        let mut p = click(ACTION_APPROVE, VALUE);
        p["user"] = serde_json::json!({"id": "W0ENT"});
        assert_eq!(parse(&form(&p)).unwrap().identity(), "slack:T0001/W0ENT");
        p["team"] = serde_json::Value::Null;
        assert_eq!(parse(&form(&p)).unwrap().identity(), "slack:W0ENT");
    }

    #[test]
    fn garbage_gives_a_clear_error_not_a_panic() {
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut p = click(ACTION_APPROVE, VALUE);
            f(&mut p);
            form(&p)
        };
        type Case = (&'static str, Vec<u8>, fn(&PayloadError) -> bool);
        let cases: Vec<Case> = vec![
            ("empty body", Vec::new(), |e| *e == PayloadError::NoPayload),
            ("other field", b"token=x&payloads=1".to_vec(), |e| {
                *e == PayloadError::NoPayload
            }),
            ("binary", vec![0xff, 0xfe, 0x00, b'='], |e| {
                *e == PayloadError::NoPayload
            }),
            ("not JSON", b"payload=%7Bnope".to_vec(), |e| {
                matches!(e, PayloadError::Json(_))
            }),
            ("JSON, wrong shape", b"payload=%5B1%2C2%5D".to_vec(), |e| {
                matches!(e, PayloadError::Json(_))
            }),
            ("no type", b"payload=%7B%7D".to_vec(), |e| {
                matches!(e, PayloadError::Json(_))
            }),
            (
                "a view submission",
                with(&|p| p["type"] = "view_submission".into()),
                |e| *e == PayloadError::NotBlockActions("view_submission".into()),
            ),
            (
                "no actions",
                with(&|p| p["actions"] = serde_json::json!([])),
                |e| *e == PayloadError::NoAction,
            ),
            (
                "someone else's button",
                with(&|p| p["actions"][0]["action_id"] = "other".into()),
                |e| *e == PayloadError::NoAction,
            ),
            (
                "no value",
                with(&|p| p["actions"][0]["value"] = serde_json::Value::Null),
                |e| matches!(e, PayloadError::BadValue(_)),
            ),
            (
                "value not ours",
                with(&|p| p["actions"][0]["value"] = "approve".into()),
                |e| matches!(e, PayloadError::BadValue(_)),
            ),
            (
                "value with a bad workload",
                with(&|p| p["actions"][0]["value"] = r#"{"workload":"web","version":"1"}"#.into()),
                |e| matches!(e, PayloadError::BadValue(_)),
            ),
            (
                "value with an unknown kind",
                with(&|p| {
                    p["actions"][0]["value"] = r#"{"workload":"a/Pod/b","version":"1"}"#.into()
                }),
                |e| matches!(e, PayloadError::BadValue(_)),
            ),
            (
                "value without a version",
                with(&|p| p["actions"][0]["value"] = r#"{"workload":"a/b","version":" "}"#.into()),
                |e| matches!(e, PayloadError::BadValue(_)),
            ),
            (
                "no user",
                with(&|p| p["user"] = serde_json::Value::Null),
                |e| *e == PayloadError::NoUser,
            ),
            (
                "user ID not Slack's",
                with(&|p| p["user"]["id"] = "alice; drop".into()),
                |e| *e == PayloadError::NoUser,
            ),
        ];
        for (name, body, want) in cases {
            match parse(&body) {
                Err(e) => {
                    assert!(want(&e), "{name}: {e:?}");
                    assert!(!e.to_string().is_empty());
                }
                Ok(i) => panic!("{name}: parsed as {i:?}"),
            }
        }
        // A team ID that is not Slack's is dropped, not recorded.
        let odd = with(&|p| p["user"]["team_id"] = "t/../x".into());
        assert_eq!(parse(&odd).unwrap().identity(), "slack:T0001/U012AB3CD");
    }
}
