//! Reads what `notifications.sinks[]` points at (URL and signing key, from a file or a Secret in
//! tagwatch's namespace) and starts the sinks. Read once at start: a changed URL takes a restart,
//! like registry credentials.
//!
//! Errors name the sink and the field, never the value read.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::deliver::{self, DeliveryOptions, SigningKey, SinkConfig, SinkUrl};
use super::settings::{NotificationSection, SinkEntry, ValueSource, DEFAULT_SLACK_API};
use super::{Event, Notifier, Rule};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
#[error("notifications.sinks[{index}].{field} (sink `{sink}`): {problem}")]
pub struct SourceError {
    pub index: usize,
    pub sink: String,
    pub field: &'static str,
    pub problem: String,
}

/// `notifications.slack.interactions` with its secrets read: what `POST /slack/interactions`
/// needs. `Debug` shows neither secret.
#[derive(Debug, Clone)]
pub struct InteractionConfig {
    pub signing_secret: SigningKey,
    pub bot_token: Option<SigningKey>,
    pub allowed_users: BTreeSet<String>,
    pub allowed_groups: Vec<String>,
    pub api_url: reqwest::Url,
}

#[derive(Debug, thiserror::Error)]
#[error("notifications.slack.interactions.{field}: {problem}")]
pub struct InteractionSourceError {
    pub field: &'static str,
    pub problem: String,
}

/// The Slack interactions settings with the signing secret (and bot token) read; `None` when
/// not configured. Read once at start, like the sinks' URLs.
pub async fn interactions(
    section: &NotificationSection,
    client: &Client,
    namespace: &str,
) -> Result<Option<InteractionConfig>, InteractionSourceError> {
    let Some(settings) = &section.slack.interactions else {
        return Ok(None);
    };
    let fail = |field: &'static str| move |problem| InteractionSourceError { field, problem };
    let signing_secret = read(&settings.signing_secret, client, namespace)
        .await
        .map_err(fail("signingSecret"))?;
    let bot_token = match &settings.bot_token {
        Some(source) => Some(SigningKey(
            read(source, client, namespace)
                .await
                .map_err(fail("botToken"))?
                .into_bytes(),
        )),
        None => None,
    };
    let api = settings.api_url.as_deref().unwrap_or(DEFAULT_SLACK_API);
    let api_url = reqwest::Url::parse(api.trim()).map_err(|e| InteractionSourceError {
        field: "apiUrl",
        problem: e.to_string(),
    })?;
    Ok(Some(InteractionConfig {
        signing_secret: SigningKey(signing_secret.into_bytes()),
        bot_token,
        allowed_users: settings.allowed_users.iter().cloned().collect(),
        allowed_groups: settings.allowed_groups.clone(),
        api_url,
    }))
}

/// The notifier for the configured sinks, their delivery tasks started; `None` without sinks.
/// `namespace` is tagwatch's own, where `{secret: NAME, key: KEY}` is read.
pub async fn start(
    section: &NotificationSection,
    client: &Client,
    namespace: &str,
    metrics: Metrics,
    options: &DeliveryOptions,
) -> Result<Option<Notifier>, SourceError> {
    if section.sinks.is_empty() {
        return Ok(None);
    }
    let mut configs = Vec::new();
    for (index, entry) in section.sinks.iter().enumerate() {
        configs.push(resolve(index, entry, client, namespace).await?);
    }
    let http = deliver::client().map_err(|problem| SourceError {
        index: 0,
        sink: section.sinks[0].name.clone(),
        field: "url",
        problem: format!("cannot build the HTTP client: {problem}"),
    })?;
    let sinks = configs
        .into_iter()
        .map(|config| deliver::start(config, options, http.clone(), metrics.clone()))
        .collect();
    Ok(Some(Notifier::new(sinks, metrics)))
}

/// One entry with its URL and key read.
pub async fn resolve(
    index: usize,
    entry: &SinkEntry,
    client: &Client,
    namespace: &str,
) -> Result<SinkConfig, SourceError> {
    let fail = |field: &'static str, problem: String| SourceError {
        index,
        sink: entry.name.clone(),
        field,
        problem,
    };
    let text = read(&entry.url, client, namespace)
        .await
        .map_err(|p| fail("url", p))?;
    let url = SinkUrl::parse(&text).map_err(|p| fail("url", p))?;
    let secret = match &entry.secret {
        None => None,
        Some(source) => {
            let key = read(source, client, namespace)
                .await
                .map_err(|p| fail("secret", p))?;
            Some(SigningKey(key.into_bytes()))
        }
    };
    Ok(SinkConfig {
        name: entry.name.clone(),
        kind: entry.kind,
        url,
        secret,
        rule: rule(entry),
        interactive: entry.interactive,
    })
}

/// The entry's filters (validated at load: unknown event names cannot remain).
pub fn rule(entry: &SinkEntry) -> Rule {
    Rule {
        events: entry
            .events
            .as_ref()
            .map(|names| names.iter().filter_map(|n| Event::from_name(n)).collect()),
        namespaces: entry.namespaces.as_ref().map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_string())
                .collect::<BTreeSet<_>>()
        }),
        default: entry.default,
    }
}

/// The value, trimmed (files and Secrets often end in a newline); never in an error.
async fn read(source: &ValueSource, client: &Client, namespace: &str) -> Result<String, String> {
    let text = match source {
        ValueSource::File(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
            })?,
        ValueSource::Secret { name, key } => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api
                .get(name)
                .await
                .map_err(|e| format!("cannot read Secret {namespace}/{name}: {e}"))?;
            let bytes = secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|b| b.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|data| data.get(key))
                        .map(|s| s.clone().into_bytes())
                })
                .ok_or_else(|| format!("Secret {namespace}/{name} has no key `{key}`"))?;
            String::from_utf8(bytes)
                .map_err(|_| format!("Secret {namespace}/{name} key `{key}` is not UTF-8"))?
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(match source {
            ValueSource::File(path) => format!("{} is empty", path.display()),
            ValueSource::Secret { name, key } => {
                format!("Secret {namespace}/{name} key `{key}` is empty")
            }
        });
    }
    Ok(text.to_string())
}
