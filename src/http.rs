//! The HTTP surface: `/metrics`, `/healthz` (alive), `/readyz` (first discovery done and
//! leadership known) and `POST /webhooks/{source}` (registry push hints).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::webhooks::{self, Hint, Source, MAX_BODY};

#[derive(Clone)]
pub struct HttpState {
    pub registry: prometheus::Registry,
    pub ready: Arc<AtomicBool>,
    /// None: no webhook endpoints (commands other than `run`).
    pub webhooks: Option<Webhooks>,
}

/// What the webhook endpoints need: the secret senders must present, where hints go, and
/// whether this replica is the one that polls.
#[derive(Clone)]
pub struct Webhooks {
    /// None: no secret configured, so every webhook is refused (authentication is never off).
    pub secret: Option<Arc<str>>,
    pub hints: mpsc::Sender<Vec<Hint>>,
    pub leadership: Leadership,
    pub metrics: Metrics,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/webhooks/{source}", post(webhook))
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

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Size (413), then authentication (401), then payload (400): an unauthenticated sender learns
/// nothing about what tagwatch would accept, and nothing is read from a registry for it.
async fn webhook(
    State(state): State<HttpState>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        count("too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n").into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        count("too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n").into_response();
    };
    let authorized = match &hooks.secret {
        Some(secret) => {
            webhooks::authenticate(source, &headers, query.as_deref(), &bytes, secret).is_ok()
        }
        None => false,
    };
    if !authorized {
        count("unauthorized");
        tracing::warn!(%source, "webhook refused: missing or wrong secret or signature");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
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
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "not the leader; retry\n",
        )
            .into_response();
    }
    let repositories = hints.len();
    tracing::info!(%source, repositories, "webhook accepted");
    // A full queue already holds re-listings to come; the hint is not needed twice.
    let _ = hooks.hints.try_send(hints);
    count("accepted");
    (StatusCode::ACCEPTED, "re-listing\n").into_response()
}
