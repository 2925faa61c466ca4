//! The HTTP surface: `/metrics`, `/healthz` (alive), `/readyz` (first discovery done and
//! leadership known), `POST /webhooks/{source}` (registry push hints) and
//! `POST /slack/interactions` (Approve / Deny buttons).

pub mod slack;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::leader::Leadership;
use crate::metrics::Metrics;
use webhooks::{HeaderCheck, Hint, Source, MAX_BODY};

#[derive(Clone)]
pub struct HttpState {
    pub registry: prometheus::Registry,
    pub ready: Arc<AtomicBool>,
    /// None: `/healthz` only says the process serves HTTP.
    pub liveness: Option<Liveness>,
    /// None: no webhook endpoints (commands other than `run`).
    pub webhooks: Option<Webhooks>,
    /// None: `notifications.slack.interactions` is not configured; the route answers 404.
    pub slack: Option<slack::SlackInteractions>,
}

/// The control loop's heartbeat: `/healthz` fails once the loop has not completed a turn for
/// `limit`, so a wedged replica is restarted rather than left holding the lease.
#[derive(Clone)]
pub struct Liveness {
    last_turn: Arc<std::sync::Mutex<std::time::Instant>>,
    pub limit: Duration,
}

impl Liveness {
    pub fn new(limit: Duration) -> Liveness {
        Liveness {
            last_turn: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            limit,
        }
    }

    /// The loop completed a turn.
    pub fn beat(&self) {
        *self
            .last_turn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
    }

    /// How long since the last turn, when that is past the limit.
    pub fn stalled(&self) -> Option<Duration> {
        let silent = self
            .last_turn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed();
        (silent > self.limit).then_some(silent)
    }
}

/// At most this many webhook requests are served at once; more are answered 503 with
/// `Retry-After` at once, never queued.
pub const MAX_WEBHOOKS_IN_FLIGHT: usize = 64;

/// A webhook body must have arrived this long after its headers were checked; a slower sender is
/// answered 408 and its connection closed, so it cannot hold one of the slots for long.
pub const WEBHOOK_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// `Retry-After` when all webhook slots are taken.
const BUSY_RETRY_AFTER: &str = "1";
/// `Retry-After` when the hint queue is full: the poller is behind, give it a moment.
const QUEUE_FULL_RETRY_AFTER: &str = "2";

/// What the webhook endpoints need: the secret senders must present, where hints go, and
/// whether this replica is the one that polls.
#[derive(Clone)]
pub struct Webhooks {
    /// None: no secret configured, so every webhook is refused (authentication is never off).
    pub secret: Option<Arc<str>>,
    pub hints: mpsc::Sender<Vec<Hint>>,
    pub leadership: Leadership,
    pub metrics: Metrics,
    /// One permit per webhook request being served ([`MAX_WEBHOOKS_IN_FLIGHT`]).
    pub in_flight: Arc<Semaphore>,
    /// [`WEBHOOK_BODY_TIMEOUT`]; shorter in tests.
    pub body_timeout: Duration,
}

impl Webhooks {
    /// The endpoints with the default limits ([`MAX_WEBHOOKS_IN_FLIGHT`], [`WEBHOOK_BODY_TIMEOUT`]).
    pub fn new(
        secret: Option<Arc<str>>,
        hints: mpsc::Sender<Vec<Hint>>,
        leadership: Leadership,
        metrics: Metrics,
    ) -> Webhooks {
        Webhooks {
            secret,
            hints,
            leadership,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_WEBHOOKS_IN_FLIGHT)),
            body_timeout: WEBHOOK_BODY_TIMEOUT,
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/webhooks/{source}", post(webhook))
        .route("/slack/interactions", post(slack_interaction))
        .with_state(state)
}

/// Binds first so a taken port fails start-up instead of a background task.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok((bound, task))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.registry),
    )
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.liveness.as_ref().and_then(Liveness::stalled) {
        Some(silent) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("control loop stalled: no turn for {}s\n", silent.as_secs()),
        )
            .into_response(),
        None => "ok".into_response(),
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// In order: a free slot (503), the credential in headers and query (401) and the declared size
/// (413) before any of the body is read, then the body within its time (408) and size (413), a
/// body signature (401), the payload (400), leadership (503) and room in the hint queue (503).
/// An unauthenticated sender learns nothing about what tagwatch would accept, costs no body read
/// unless it presents a well-formed signature, and nothing is read from a registry for it.
async fn webhook(
    State(state): State<HttpState>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.webhooks.as_ref().map(|h| h.metrics.clone());
    let handled = AssertUnwindSafe(serve_webhook(state, source, query, headers, body))
        .catch_unwind()
        .await;
    match handled {
        Ok(response) => response,
        Err(panic) => {
            if let Some(metrics) = metrics {
                metrics.panic(crate::metrics::Task::Webhook);
            }
            tracing::error!(panic = %crate::act::tasks::panic_message(panic.as_ref()),
                "webhook handler panicked: counted, answered 500");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

async fn serve_webhook(
    state: HttpState,
    source: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (Some(hooks), Some(source)) = (&state.webhooks, Source::from_path_segment(&source)) else {
        return (StatusCode::NOT_FOUND, "no such webhook\n").into_response();
    };
    let count = |result: &str| {
        hooks
            .metrics
            .webhooks
            .with_label_values(&[source.as_str(), result])
            .inc();
    };
    // Held until the answer is built; dropped (freed) with this function's frame.
    let Ok(_slot) = hooks.in_flight.clone().try_acquire_owned() else {
        count("busy");
        return retry_later(
            BUSY_RETRY_AFTER,
            "too many webhook requests at once; retry\n",
        );
    };
    let checked = match &hooks.secret {
        Some(secret) => webhooks::check_headers(source, &headers, query.as_deref(), secret),
        None => Err(webhooks::AuthError::Mismatch),
    };
    let Ok(checked) = checked else {
        return unauthorized(source, &count);
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        count("too_large");
        return closing(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n");
    }
    let bytes = match tokio::time::timeout(hooks.body_timeout, read_body(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => {
            count("too_large");
            return closing(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n");
        }
        Ok(Err(BodyError::Broken)) => {
            count("bad_request");
            return closing(StatusCode::BAD_REQUEST, "the body could not be read\n");
        }
        Err(_elapsed) => {
            count("timeout");
            tracing::warn!(%source, "webhook body too slow; refused");
            return closing(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
        }
    };
    if checked == HeaderCheck::NeedsBody {
        let signed = match &hooks.secret {
            Some(secret) => webhooks::verify_signature(source, &headers, &bytes, secret),
            None => Err(webhooks::AuthError::Mismatch),
        };
        if signed.is_err() {
            return unauthorized(source, &count);
        }
    }
    let hints = match webhooks::parse(source, &bytes, None) {
        Ok(hints) => hints,
        Err(e) => {
            count("bad_request");
            tracing::warn!(%source, error = %e, "webhook payload refused");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    if hints.is_empty() {
        count("ignored");
        return (StatusCode::ACCEPTED, "nothing to do\n").into_response();
    }
    // Only the leader polls: a follower asks the sender to retry, and a Service in front of
    // both replicas will likely route the retry to the leader.
    if !hooks.leadership.is_leader() {
        count("not_leader");
        return retry_later("1", "not the leader; retry\n");
    }
    let repositories = hints.len();
    match hooks.hints.try_send(hints) {
        Ok(()) => {
            tracing::info!(%source, repositories, "webhook accepted");
            count("accepted");
            (StatusCode::ACCEPTED, "re-listing\n").into_response()
        }
        // The poller is behind: the sender retries later rather than being told all is well
        // while the hint is dropped.
        Err(mpsc::error::TrySendError::Full(_)) => {
            count("queue_full");
            tracing::warn!(%source, repositories, "webhook hint queue full; sender asked to retry");
            retry_later(QUEUE_FULL_RETRY_AFTER, "busy re-listing; retry\n")
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            count("shutting_down");
            retry_later(QUEUE_FULL_RETRY_AFTER, "shutting down; retry\n")
        }
    }
}

async fn slack_interaction(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(interactions) = state.slack else {
        return (
            StatusCode::NOT_FOUND,
            "slack interactions are not configured\n",
        )
            .into_response();
    };
    let metrics = interactions.metrics();
    match AssertUnwindSafe(slack::serve(interactions, headers, body))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            metrics.panic(crate::metrics::Task::Slack);
            metrics.slack_interaction(crate::metrics::SlackResult::Error);
            tracing::error!(panic = %crate::act::tasks::panic_message(panic.as_ref()),
                "slack interaction handler panicked: counted, answered 500");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

fn unauthorized(source: Source, count: &impl Fn(&str)) -> Response {
    count("unauthorized");
    tracing::warn!(%source, "webhook refused: missing or wrong secret or signature");
    closing(StatusCode::UNAUTHORIZED, "unauthorized\n")
}

/// 503 with `Retry-After: <seconds>`.
fn retry_later(seconds: &'static str, message: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, seconds)],
        message,
    )
        .into_response()
}

/// An answer given before the body was read to its end: the connection cannot carry another
/// request, so say it closes.
fn closing(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONNECTION, "close")], message).into_response()
}

enum BodyError {
    TooLarge,
    /// The sender went away or sent a malformed body.
    Broken,
}

/// The body, refused as soon as it passes `limit` bytes (whatever Content-Length said).
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
