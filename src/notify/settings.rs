//! `notifications.sinks[]` as written in the config file, and its validation at load.
//!
//! Pure: the file says *where* a URL or a signing secret lives (a file, or a key of a Secret in
//! tagwatch's namespace), never the value itself, so the ConfigMap holding the file carries no
//! credential. Reading them is [`super::sources`]' job, at start.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::Event;

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationSection {
    #[serde(default)]
    pub sinks: Vec<SinkEntry>,
    /// The Slack app behind the `slack` sinks, for what goes beyond posting (the buttons).
    #[serde(default)]
    pub slack: SlackSection,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackSection {
    /// Approve / Deny buttons answered at `POST /slack/interactions`; absent: no buttons, and
    /// the route answers 404.
    pub interactions: Option<InteractionSettings>,
}

/// One Slack app's interactivity: every `interactive` sink posts through that app's webhooks,
/// so one signing secret verifies every click.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InteractionSettings {
    /// The app's signing secret (Basic Information → App Credentials): whoever holds it can
    /// forge clicks, so it is kept like a sink URL.
    pub signing_secret: ValueSource,
    /// Slack user IDs (`U…`, `W…`) whose clicks count; with `allowedGroups` empty too, anyone
    /// who can click in the channel.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Slack user group IDs (`S…`) whose members' clicks count; needs `botToken`.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// A bot token (`xoxb-…`, scope `usergroups:read`) to ask Slack who is in a group.
    pub bot_token: Option<ValueSource>,
    /// Slack's Web API base (default `https://slack.com/api`): another for GovSlack or an
    /// egress proxy. A click's `response_url` is answered only on Slack's hosts or this one.
    pub api_url: Option<String>,
}

/// Slack's Web API, where `usergroups.users.list` is asked.
pub const DEFAULT_SLACK_API: &str = "https://slack.com/api";

/// More IDs than this is a pasted export, not an allow-list.
const MAX_ALLOWED: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkEntry {
    /// What workloads name in `tagwatch.dev/notify`, and the `sink` metric label.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Where the URL is kept: it is a credential (a Slack or Teams webhook URL lets anyone post).
    pub url: ValueSource,
    /// HMAC-SHA256 key signing each body (`webhook` and `cloudevents` only).
    pub secret: Option<ValueSource>,
    /// Event names (`update.applied`, ...) this sink receives; absent: every event.
    pub events: Option<Vec<String>>,
    /// Namespaces whose workloads this sink hears about; absent: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Used by workloads without `tagwatch.dev/notify`.
    #[serde(default)]
    pub default: bool,
    /// `slack` sinks only: `approval.required` messages carry Approve / Deny buttons (needs
    /// `notifications.slack.interactions`, and the webhook must belong to that app).
    #[serde(default)]
    pub interactive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Slack,
    Teams,
    Webhook,
    #[serde(rename = "cloudevents")]
    CloudEvents,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Slack => "slack",
            SinkKind::Teams => "teams",
            SinkKind::Webhook => "webhook",
            SinkKind::CloudEvents => "cloudevents",
        }
    }

    /// Slack and Teams verify nothing a sender signs: their URL is the only secret.
    pub fn signs(self) -> bool {
        matches!(self, SinkKind::Webhook | SinkKind::CloudEvents)
    }
}

/// `{file: PATH}` or `{secret: NAME, key: KEY}` (a Secret in tagwatch's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "SourceFields")]
pub enum ValueSource {
    File(PathBuf),
    Secret { name: String, key: String },
}

/// The written form; YAML has no natural "one of" map, so the combination is checked here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    file: Option<PathBuf>,
    secret: Option<String>,
    key: Option<String>,
}

impl TryFrom<SourceFields> for ValueSource {
    type Error = String;

    fn try_from(fields: SourceFields) -> Result<Self, String> {
        match (fields.file, fields.secret, fields.key) {
            (Some(file), None, None) if !file.as_os_str().is_empty() => Ok(ValueSource::File(file)),
            (None, Some(name), Some(key)) if !name.trim().is_empty() && !key.trim().is_empty() => {
                Ok(ValueSource::Secret {
                    name: name.trim().to_string(),
                    key: key.trim().to_string(),
                })
            }
            _ => Err("give either `{file: PATH}` or `{secret: NAME, key: KEY}`".into()),
        }
    }
}

/// The longest sink name: it is a metric label value and an annotation item.
const MAX_NAME: usize = 63;

impl NotificationSection {
    /// The first problem, as (field below `notifications.`, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let field = |name: &str| format!("sinks[{i}].{name}");
            if !valid_name(&sink.name) {
                return Err((
                    field("name"),
                    format!(
                        "`{}` is not a sink name: 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`",
                        sink.name
                    ),
                ));
            }
            if !names.insert(sink.name.as_str()) {
                return Err((field("name"), format!("`{}` is listed twice", sink.name)));
            }
            if sink.secret.is_some() && !sink.kind.signs() {
                return Err((
                    field("secret"),
                    format!(
                        "a {} sink sends no signature (its URL is its secret); only webhook and \
                         cloudevents sinks are signed",
                        sink.kind.as_str()
                    ),
                ));
            }
            if let Some(events) = &sink.events {
                if events.is_empty() {
                    return Err((
                        field("events"),
                        "is empty, which would send nothing: omit it to send every event".into(),
                    ));
                }
                for (j, name) in events.iter().enumerate() {
                    if Event::from_name(name).is_none() {
                        let known: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
                        return Err((
                            format!("sinks[{i}].events[{j}]"),
                            format!("`{name}` is not an event (one of {})", known.join(", ")),
                        ));
                    }
                }
            }
            if sink.interactive && sink.kind != SinkKind::Slack {
                return Err((
                    field("interactive"),
                    format!(
                        "only slack sinks have buttons; this is a {} sink",
                        sink.kind.as_str()
                    ),
                ));
            }
            if sink.interactive && self.slack.interactions.is_none() {
                return Err((
                    field("interactive"),
                    "needs notifications.slack.interactions (the signing secret that verifies a \
                     click)"
                        .into(),
                ));
            }
            if let Some(namespaces) = &sink.namespaces {
                if namespaces.is_empty() {
                    return Err((
                        field("namespaces"),
                        "is empty, which would send nothing: omit it for every namespace".into(),
                    ));
                }
                if let Some(j) = namespaces.iter().position(|n| n.trim().is_empty()) {
                    return Err((format!("sinks[{i}].namespaces[{j}]"), "is empty".into()));
                }
            }
        }
        if let Some(interactions) = &self.slack.interactions {
            interactions.validate()?;
        }
        Ok(())
    }
}

impl InteractionSettings {
    fn validate(&self) -> Result<(), (String, String)> {
        let field = |name: &str| format!("slack.interactions.{name}");
        for (name, ids, prefixes) in [
            ("allowedUsers", &self.allowed_users, &['U', 'W'][..]),
            ("allowedGroups", &self.allowed_groups, &['S'][..]),
        ] {
            if ids.len() > MAX_ALLOWED {
                return Err((field(name), format!("more than {MAX_ALLOWED} IDs")));
            }
            for (j, id) in ids.iter().enumerate() {
                if !valid_slack_id(id, prefixes) {
                    let first: Vec<String> = prefixes.iter().map(|p| format!("`{p}`")).collect();
                    return Err((
                        format!("slack.interactions.{name}[{j}]"),
                        format!(
                            "`{id}` is not a Slack ID ({} and capital letters or digits; a \
                             name or handle is not an ID)",
                            first.join(" or ")
                        ),
                    ));
                }
            }
        }
        if !self.allowed_groups.is_empty() && self.bot_token.is_none() {
            return Err((
                field("botToken"),
                "allowedGroups needs a bot token (scope usergroups:read) to ask Slack who is in \
                 a group"
                    .into(),
            ));
        }
        if let Some(url) = &self.api_url {
            let parsed = reqwest::Url::parse(url.trim()).ok();
            let usable = parsed.is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !usable {
                return Err((
                    field("apiUrl"),
                    format!("`{url}` is not an http(s) URL (e.g. {DEFAULT_SLACK_API})"),
                ));
            }
        }
        Ok(())
    }
}

/// `U0123ABC`: one of `prefixes`, then capital letters and digits (Slack's IDs), at most 32.
fn valid_slack_id(id: &str, prefixes: &[char]) -> bool {
    id.len() >= 2
        && id.len() <= 32
        && id.starts_with(prefixes)
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<NotificationSection, String> {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_parses() {
        let section = parse(
            r#"
sinks:
  - name: ops
    type: slack
    url: {secret: notify, key: slack}
    default: true
  - name: audit
    type: cloudevents
    url: {file: /etc/tagwatch/audit-url}
    secret: {secret: notify, key: hmac}
    events: [update.applied, rollback]
    namespaces: [shop]
"#,
        )
        .unwrap();
        section.validate().unwrap();
        assert_eq!(section.sinks[0].kind, SinkKind::Slack);
        assert!(section.sinks[0].default);
        assert_eq!(
            section.sinks[0].url,
            ValueSource::Secret {
                name: "notify".into(),
                key: "slack".into()
            }
        );
        assert_eq!(section.slack.interactions, None);
        assert_eq!(section.sinks[1].kind, SinkKind::CloudEvents);
        assert!(!section.sinks[1].default);
        assert_eq!(
            section.sinks[1].url,
            ValueSource::File("/etc/tagwatch/audit-url".into())
        );
    }

    #[test]
    fn interactions_parse() {
        let section = parse(
            r#"
slack:
  interactions:
    signingSecret: {secret: slack, key: signing-secret}
    allowedUsers: [U012AB3CD, W0ENTERPRISE]
    allowedGroups: [S0614TZR7]
    botToken: {secret: slack, key: bot-token}
    apiUrl: http://127.0.0.1:9999/api
sinks:
  - {name: ops, type: slack, url: {file: /u}, interactive: true}
  - {name: quiet, type: slack, url: {file: /v}}
"#,
        )
        .unwrap();
        section.validate().unwrap();
        let interactions = section.slack.interactions.unwrap();
        assert_eq!(interactions.allowed_users, ["U012AB3CD", "W0ENTERPRISE"]);
        assert_eq!(interactions.allowed_groups, ["S0614TZR7"]);
        assert!(section.sinks[0].interactive);
        assert!(!section.sinks[1].interactive);
    }

    #[test]
    fn bad_sections_name_the_field() {
        let sink = |extra: &str| {
            format!("sinks:\n  - name: a\n    type: webhook\n    url: {{file: /u}}\n{extra}")
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "sinks:\n  - {name: a, type: webhook, url: {file: /u}}\n  - {name: a, type: slack, url: {file: /v}}\n".into(),
                "sinks[1].name",
                "twice",
            ),
            (
                "sinks:\n  - {name: 'a,b', type: webhook, url: {file: /u}}\n".into(),
                "sinks[0].name",
                "not a sink name",
            ),
            (
                "sinks:\n  - {name: a, type: slack, url: {file: /u}, secret: {file: /s}}\n".into(),
                "sinks[0].secret",
                "only webhook and cloudevents",
            ),
            (sink("    events: []\n"), "sinks[0].events", "omit it"),
            (sink("    events: [update.aplied]\n"), "sinks[0].events[0]", "not an event"),
            (sink("    namespaces: []\n"), "sinks[0].namespaces", "omit it"),
            (sink("    namespaces: [a, ' ']\n"), "sinks[0].namespaces[1]", "is empty"),
            (sink("    interactive: true\n"), "sinks[0].interactive", "only slack sinks"),
            (
                "sinks:\n  - {name: a, type: slack, url: {file: /u}, interactive: true}\n".into(),
                "sinks[0].interactive",
                "needs notifications.slack.interactions",
            ),
            (
                "slack:\n  interactions: {signingSecret: {file: /s}, allowedUsers: [alice]}\n"
                    .into(),
                "slack.interactions.allowedUsers[0]",
                "not a Slack ID",
            ),
            (
                "slack:\n  interactions: {signingSecret: {file: /s}, allowedGroups: [U1]}\n"
                    .into(),
                "slack.interactions.allowedGroups[0]",
                "not a Slack ID",
            ),
            (
                "slack:\n  interactions: {signingSecret: {file: /s}, allowedGroups: [S1]}\n"
                    .into(),
                "slack.interactions.botToken",
                "usergroups:read",
            ),
            (
                "slack:\n  interactions: {signingSecret: {file: /s}, apiUrl: 'slack.com/api'}\n"
                    .into(),
                "slack.interactions.apiUrl",
                "not an http(s) URL",
            ),
        ];
        for (text, field, problem) in cases {
            let section = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let (f, p) = section.validate().unwrap_err();
            assert_eq!(f, field, "{text}");
            assert!(p.contains(problem), "{text}: {p}");
        }
        for text in [
            "sinks:\n  - {name: a, type: email, url: {file: /u}}\n",
            "sinks:\n  - {name: a, type: slack, url: {file: /u, secret: s, key: k}}\n",
            "sinks:\n  - {name: a, type: slack, url: {secret: s}}\n",
            "sinks:\n  - {name: a, type: slack, url: 'https://hooks.slack.com/x'}\n",
            "sinks:\n  - {name: a, type: slack, url: {file: /u}, colour: red}\n",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
