//! Watch streams: one JSON event per line, replayed from a resourceVersion, then live, with
//! bookmarks, a timeout, and 410 Expired for versions the server no longer remembers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::resources::{Resource, Target};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::{Change, ChangeKind, Signal};
use super::Shared;

/// Real servers bookmark about once a minute; tests want to see it sooner.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// Without `timeoutSeconds` the real server picks 30–60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    resource: &'static Resource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, resource: &Resource, object: &Value) -> bool {
        resource.same(self.resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"] == ns)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark_line(resource: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({
        "kind": resource.kind,
        "apiVersion": resource.api_version(),
        "metadata": metadata
    });
    event_line("BOOKMARK", &object)
}

/// What a watch with `filter` sends for `change`, if anything. Like the real server's cacher,
/// an object that stops matching a selector is sent as DELETED (its previous content at the
/// change's resourceVersion), and one that starts matching as ADDED.
fn change_line(filter: &Filter, change: &Change) -> Option<Bytes> {
    let now = filter.matches(change.resource, &change.object);
    let before = change
        .previous
        .as_ref()
        .is_some_and(|p| filter.matches(change.resource, p));
    match (change.kind, before, now) {
        (ChangeKind::Modified, true, false) => {
            let mut gone = change.previous.clone().unwrap_or_default();
            gone["metadata"]["resourceVersion"] = json!(change.rv.to_string());
            Some(event_line("DELETED", &gone))
        }
        (ChangeKind::Modified, false, true) => Some(event_line("ADDED", &change.object)),
        (_, _, true) => Some(event_line(change.kind.as_str(), &change.object)),
        (_, _, false) => None,
    }
}

/// Opens a watch; the returned body streams until timeout, expiry, shutdown or client hang-up.
pub(crate) fn start(
    shared: &Arc<Shared>,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Body, ApiError> {
    let filter = Filter {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map_or("", String::as_str),
            target.resource,
        )?,
    };
    let flag = |name: &str| matches!(query.get(name).map(String::as_str), Some("true" | "1"));
    let bookmarks = flag("allowWatchBookmarks");
    let send_initial = flag("sendInitialEvents");
    let timeout = match query.get("timeoutSeconds") {
        None => DEFAULT_TIMEOUT,
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request("timeoutSeconds must be a number"))?,
        ),
    };
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(&format!("invalid resource version: {rv}")))?,
        ),
    };

    let mut opening = Vec::new();
    let (signals, last_seen) = {
        let cluster = super::lock(&shared.cluster);
        let store = &cluster.store;
        match from.filter(|_| !send_initial) {
            // "Start at any" and streaming lists begin with the current state as ADDED events.
            None => {
                let mut current: Vec<&Value> = store
                    .list(filter.resource, filter.namespace.as_deref())
                    .filter(|o| filter.matches(filter.resource, o))
                    .collect();
                current.sort_by_key(|o| {
                    let meta = &o["metadata"];
                    (meta["namespace"].to_string(), meta["name"].to_string())
                });
                opening.extend(current.into_iter().map(|o| event_line("ADDED", o)));
                if send_initial && bookmarks {
                    opening.push(bookmark_line(
                        filter.resource,
                        store.resource_version(),
                        true,
                    ));
                }
            }
            Some(rv) => match store.changes_after(rv) {
                Ok(changes) => {
                    opening.extend(changes.iter().filter_map(|c| change_line(&filter, c)));
                }
                Err(oldest) => {
                    // The real server answers 200 and a single ERROR event, then closes.
                    let line = event_line("ERROR", &status::expired(rv, oldest));
                    return Ok(Body::from(line));
                }
            },
        }
        (store.subscribe(), store.resource_version())
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(stream_events(StreamState {
        filter,
        opening,
        signals,
        last_seen,
        bookmarks,
        timeout,
        tx,
    }));
    Ok(Body::from_stream(ReceiverStream::new(rx)))
}

struct StreamState {
    filter: Filter,
    opening: Vec<Bytes>,
    signals: broadcast::Receiver<Signal>,
    /// The newest resourceVersion this watch has accounted for: what bookmarks may promise.
    last_seen: u64,
    bookmarks: bool,
    timeout: Duration,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

async fn stream_events(mut state: StreamState) {
    let resource = state.filter.resource;
    for line in std::mem::take(&mut state.opening) {
        if state.tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(state.timeout);
    tokio::pin!(deadline);
    let start = tokio::time::Instant::now() + BOOKMARK_EVERY;
    let mut ticker = tokio::time::interval_at(start, BOOKMARK_EVERY);
    loop {
        let line = tokio::select! {
            signal = state.signals.recv() => match signal {
                Ok(Signal::Change(change)) => {
                    state.last_seen = change.rv;
                    match change_line(&state.filter, &change) {
                        Some(line) => line,
                        None => continue,
                    }
                }
                Ok(Signal::Expire(oldest)) => {
                    let line = event_line("ERROR", &status::expired(state.last_seen, oldest));
                    let _ = state.tx.send(Ok(line)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let line = event_line("ERROR", &status::expired(state.last_seen, state.last_seen + 1));
                    let _ = state.tx.send(Ok(line)).await;
                    return;
                }
                Ok(Signal::Shutdown) | Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if state.bookmarks => bookmark_line(resource, state.last_seen, false),
            _ = &mut deadline => {
                if state.bookmarks {
                    let _ = state.tx.send(Ok(bookmark_line(resource, state.last_seen, false))).await;
                }
                return;
            }
        };
        if state.tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
}
