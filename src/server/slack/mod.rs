//! `POST /slack/interactions`: a click on an Approve or Deny button of an `approval.required`
//! Slack message.
//!
//! In order: a free slot (503), the signature headers and the timestamp's freshness (401) and the
//! declared size (413) before the body is read; the body within its time (408) and size (413);
//! the signature over the exact bytes (401) before they are parsed; the payload (400); then the
//! allow-list and the decision, answered `200` with `{"response_type": "ephemeral", "text": …}`
//! in time for Slack's 3 s. Slack ignores that body for Block Kit buttons, so the same answer is
//! also posted to the click's `response_url`, where the clicker alone sees it.
//!
//! Every replica serves this route (a Service spreads the clicks): the writes are the CLI's
//! guarded patches ([`crate::act::approvals`]), which are safe from any replica and against
//! Slack's own retries, so no click waits for or is refused by leadership.

mod groups;
pub mod payload;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::runtime::events::{Recorder, Reporter};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::act::approvals::{self, Approved, DecisionError};
use crate::metrics::{Metrics, SlackResult};
use crate::notify::sources::InteractionConfig;
pub use groups::{BotToken, GroupError, Groups};
use payload::{Decision, Interaction};

/// Slack's interaction payloads carry the whole message: tens of kB at most.
pub const MAX_BODY: usize = 256 * 1024;
/// Clicks served at once; more are answered 503 (Slack retries).
pub const MAX_IN_FLIGHT: usize = 16;
/// Slack gives up after 3 s: the decision must be made (or given up on) before.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(2500);
/// A body must have arrived this long after its headers were checked.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Posting the answer to `response_url` (after the click was answered), at most this many at
/// once: a flood of clicks cannot pile up outgoing requests.
const RESPONSES_IN_FLIGHT: usize = 32;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the route needs: the signing secret, the allow-list, and a client to write with.
#[derive(Clone)]
pub struct SlackInteractions {
    signing_secret: Arc<[u8]>,
    allowed_users: Arc<BTreeSet<String>>,
    allowed_groups: Arc<Vec<String>>,
    groups: Option<Groups>,
    client: kube::Client,
    recorder: Recorder,
    metrics: Metrics,
    http: reqwest::Client,
    api_url: reqwest::Url,
    in_flight: Arc<Semaphore>,
    responding: Arc<Semaphore>,
    /// [`ANSWER_WITHIN`]; another in tests.
    pub answer_within: Duration,
}

impl std::fmt::Debug for SlackInteractions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackInteractions")
            .field("allowed_users", &self.allowed_users)
            .field("allowed_groups", &self.allowed_groups)
            .finish_non_exhaustive()
    }
}

impl SlackInteractions {
    /// The route for `config`, writing with `client` (Events reported as `reporter`).
    pub fn new(
        config: InteractionConfig,
        client: kube::Client,
        reporter: Reporter,
        metrics: Metrics,
    ) -> Result<SlackInteractions, String> {
        let http = crate::notify::deliver::client()?;
        let groups = match (&config.bot_token, config.allowed_groups.is_empty()) {
            (Some(token), false) => Some(Groups::new(
                http.clone(),
                &config.api_url,
                BotToken(Arc::from(String::from_utf8_lossy(&token.0).as_ref())),
            )),
            // Validation asks for a token with groups: without one no group admits anybody.
            _ => None,
        };
        metrics.know_slack_interactions();
        Ok(SlackInteractions {
            signing_secret: Arc::from(config.signing_secret.0.as_slice()),
            allowed_users: Arc::new(config.allowed_users),
            allowed_groups: Arc::new(config.allowed_groups),
            groups,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            http,
            api_url: config.api_url,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            responding: Arc::new(Semaphore::new(RESPONSES_IN_FLIGHT)),
            answer_within: ANSWER_WITHIN,
        })
    }
}

impl SlackInteractions {
    pub(super) fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }
}

/// Serves one request (the caller catches panics).
pub async fn serve(slack: SlackInteractions, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let count = |result: SlackResult| slack.metrics.slack_interaction(result);
    // Held until the answer is built.
    let Ok(_slot) = slack.in_flight.clone().try_acquire_owned() else {
        count(SlackResult::Busy);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many interactions at once; retry\n",
        )
            .into_response();
    };
    let now = jiff::Timestamp::now().as_second();
    let signed = match verify::check_headers(&headers, now) {
        Ok(signed) => signed,
        Err(e) => return unauthorized(&slack, e),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        count(SlackResult::BadRequest);
        return super::closing(StatusCode::PAYLOAD_TOO_LARGE, "body over 256 KiB\n");
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, super::read_body(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(super::BodyError::TooLarge)) => {
            count(SlackResult::BadRequest);
            return super::closing(StatusCode::PAYLOAD_TOO_LARGE, "body over 256 KiB\n");
        }
        Ok(Err(super::BodyError::Broken)) => {
            count(SlackResult::BadRequest);
            return super::closing(StatusCode::BAD_REQUEST, "the body could not be read\n");
        }
        Err(_elapsed) => {
            count(SlackResult::BadRequest);
            return super::closing(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
        }
    };
    if let Err(e) = verify::verify(&signed, &bytes, &slack.signing_secret) {
        return unauthorized(&slack, e);
    }
    let interaction = match payload::parse(&bytes) {
        Ok(interaction) => interaction,
        Err(e) => {
            count(SlackResult::BadRequest);
            tracing::warn!(error = %e, "slack interaction not understood");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let left = slack.answer_within.saturating_sub(started.elapsed());
    let (result, text) = match tokio::time::timeout(left, decide(&slack, &interaction)).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => (
            SlackResult::Error,
            format!(
                "tagwatch could not finish in time; your decision on `{}` may or may not be \
                 recorded: check `tagwatch pending`, or click again.",
                interaction.workload
            ),
        ),
    };
    count(result);
    tracing::info!(workload = %interaction.workload, user = %interaction.identity(),
        version = %interaction.version, result = result.label(), "slack interaction");
    // Versions and errors quote what the button carried: no mention or link may come of it.
    let answer = json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": crate::notify::slack::escape(&text),
    });
    respond_later(&slack, interaction.response_url.as_deref(), &answer);
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// The allow-list, then the decision; the result and the text for the clicker.
async fn decide(slack: &SlackInteractions, click: &Interaction) -> (SlackResult, String) {
    match allowed(slack, &click.user).await {
        Ok(true) => {}
        Ok(false) => {
            return (
                SlackResult::Refused,
                format!(
                    "You are not on tagwatch's list of approvers (Slack user {}); nothing was \
                     recorded.",
                    click.user
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check slack user group membership");
            return (
                SlackResult::Error,
                format!("tagwatch could not check your user groups ({e}); nothing was recorded. Try again."),
            );
        }
    }
    let id = &click.workload;
    let version = Some(click.version.as_str());
    match click.decision {
        Decision::Approve => {
            match approvals::approve(&slack.client, id, &click.identity(), version).await {
                Ok(Approved::Recorded {
                    label,
                    count,
                    needed,
                }) => {
                    let next = if usize::from(needed) <= count {
                        "it goes ahead"
                    } else {
                        "waiting for more approvals"
                    };
                    (
                        SlackResult::Approved,
                        format!("Approved `{label}` for `{id}` ({count} of {needed}): {next}."),
                    )
                }
                Ok(Approved::Already { label }) => (
                    SlackResult::Stale,
                    format!("You already approved `{label}` for `{id}`; nothing changed."),
                ),
                Err(e) => failed(e),
            }
        }
        Decision::Deny => {
            match approvals::deny(&slack.client, &slack.recorder, id, &click.shown(), version).await
            {
                Ok(label) => (
                    SlackResult::Denied,
                    format!("Denied `{label}` for `{id}`: it will not be applied."),
                ),
                Err(e) => failed(e),
            }
        }
    }
}

/// A decision not recorded: stale (say what changed) or failed.
fn failed(error: DecisionError) -> (SlackResult, String) {
    let stale = error.is_stale()
        || matches!(
            error,
            DecisionError::NotFound { .. }
                | DecisionError::NotWatched { .. }
                | DecisionError::NoApprovals { .. }
        );
    if stale {
        (
            SlackResult::Stale,
            format!("This button is out of date: {error}. Nothing was changed."),
        )
    } else {
        tracing::warn!(%error, "slack decision not recorded");
        (
            SlackResult::Error,
            format!("tagwatch could not record your decision: {error}. Try again."),
        )
    }
}

/// Whether `user` may decide: anyone without an allow-list, else a listed user or a member of a
/// listed group.
async fn allowed(slack: &SlackInteractions, user: &str) -> Result<bool, GroupError> {
    if slack.allowed_users.is_empty() && slack.allowed_groups.is_empty() {
        return Ok(true);
    }
    if slack.allowed_users.contains(user) {
        return Ok(true);
    }
    match &slack.groups {
        Some(groups) => groups.admits(&slack.allowed_groups, user).await,
        None => Ok(false),
    }
}

fn unauthorized(slack: &SlackInteractions, error: verify::SignatureError) -> Response {
    slack.metrics.slack_interaction(SlackResult::Unauthorized);
    tracing::warn!(%error, "slack interaction refused");
    super::closing(StatusCode::UNAUTHORIZED, "unauthorized\n")
}

/// Posts `answer` to the click's `response_url` in the background, when it is on Slack's hosts
/// (or the configured API's): the URL comes from a signed payload, but tagwatch still sends
/// nothing anywhere else.
fn respond_later(slack: &SlackInteractions, url: Option<&str>, answer: &serde_json::Value) {
    let Some(url) = url.and_then(|u| reqwest::Url::parse(u).ok()) else {
        return;
    };
    if !answerable(&url, &slack.api_url) {
        tracing::warn!(
            "slack interaction's response_url is not on a Slack host; not answered there"
        );
        return;
    }
    let Ok(permit) = slack.responding.clone().try_acquire_owned() else {
        tracing::debug!("too many slack answers in flight; this one only in the HTTP answer");
        return;
    };
    let (http, answer) = (slack.http.clone(), answer.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let sent = http
            .post(url)
            .json(&answer)
            .timeout(RESPONSE_TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            // Never the URL: anyone holding it may post into the conversation.
            Ok(r) => tracing::info!(
                status = r.status().as_u16(),
                "slack response_url refused the answer"
            ),
            Err(e) => {
                tracing::info!(error = %crate::error::chain(&e.without_url()), "slack response_url not reached")
            }
        }
    });
}

/// `https` on `slack.com` or `slack-gov.com` (or a subdomain), or the configured API's origin.
fn answerable(url: &reqwest::Url, api: &reqwest::Url) -> bool {
    let slack_host = url.host_str().is_some_and(|h| {
        ["slack.com", "slack-gov.com"]
            .iter()
            .any(|d| h == *d || h.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
    });
    (url.scheme() == "https" && slack_host) || url.origin() == api.origin()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_go_only_to_slack_or_the_configured_api() {
        let api = reqwest::Url::parse("https://slack.com/api").unwrap();
        let proxy = reqwest::Url::parse("http://127.0.0.1:8080/api").unwrap();
        let cases = [
            ("https://hooks.slack.com/actions/T1/2/x", &api, true),
            ("https://hooks.slack-gov.com/actions/T1/2/x", &api, true),
            ("https://slack.com/x", &api, true),
            ("http://hooks.slack.com/actions/T1/2/x", &api, false),
            ("https://evilslack.com/x", &api, false),
            ("https://hooks.slack.com.evil.io/x", &api, false),
            ("http://169.254.169.254/latest", &api, false),
            ("http://127.0.0.1:8080/respond", &proxy, true),
            ("http://127.0.0.1:8081/respond", &proxy, false),
        ];
        for (url, api, want) in cases {
            let url = reqwest::Url::parse(url).unwrap();
            assert_eq!(answerable(&url, api), want, "{url}");
        }
    }
}
