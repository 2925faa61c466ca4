//! What the real registry served, read back from its own output.
//!
//! The JSON application log (stderr) only reports requests that reached a handler with a 2xx/3xx or a
//! handler error: requests refused by auth (401) never appear there. The access log (stdout, Apache
//! combined format) has one line per request, so counting uses it; the JSON log is kept for diagnostics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The harness's own plain-HTTP requests (readiness harness, log sync markers, `manifest_digest`,
/// `delete_manifest`) carry this user agent and are not reported, so a test counts only its clients.
pub const HARNESS_USER_AGENT: &str = "tagwatch-testbed-harness";
/// The user agent of the handle's oci-client (pushes, `tag`, `list_tags`): those requests are reported.
pub const OCI_USER_AGENT: &str = "tagwatch-testbed-oci-client";
/// Keeps the diagnostic tail small: only shown when the registry fails.
const KEPT_APP_LINES: usize = 200;

/// One request the registry served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub user_agent: String,
}

#[derive(Default)]
struct Lines {
    requests: Vec<SeenRequest>,
    harness: Vec<SeenRequest>,
    app: VecDeque<String>,
}

/// Shared between the reader tasks and the `Registry` handle.
#[derive(Clone, Default)]
pub struct RequestLog {
    lines: Arc<Mutex<Lines>>,
}

impl RequestLog {
    /// Reads the access log until the process closes it.
    pub fn follow_access_log(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let lines = self.lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let Some(seen) = parse_access_line(&line) else {
                    continue;
                };
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                if seen.user_agent == HARNESS_USER_AGENT {
                    lines.harness.push(seen);
                } else {
                    lines.requests.push(seen);
                }
            }
        });
    }

    /// Keeps the tail of the JSON application log.
    pub fn follow_app_log(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let lines = self.lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                if lines.app.len() == KEPT_APP_LINES {
                    lines.app.pop_front();
                }
                lines.app.push_back(line);
            }
        });
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }

    /// The requests logged after the first `from`: followers read on without copying the whole log.
    pub fn requests_since(&self, from: usize) -> Vec<SeenRequest> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.requests.get(from..).unwrap_or_default().to_vec()
    }

    /// Whether a harness request with this exact query has been logged.
    pub fn saw_harness_request(&self, query: &str) -> bool {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .harness
            .iter()
            .any(|p| p.query.as_deref() == Some(query))
    }

    /// The last application log lines, for error messages.
    pub fn app_tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let skip = lines.app.len().saturating_sub(n);
        lines
            .app
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Parses `127.0.0.1 - user [date] "GET /v2/x?y HTTP/1.1" 200 2 "referer" "agent"`.
pub fn parse_access_line(line: &str) -> Option<SeenRequest> {
    let (_, rest) = line.split_once('"')?;
    let (request_line, rest) = rest.split_once('"')?;
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let uri = parts.next()?;
    let status = rest.split_whitespace().next()?.parse().ok()?;
    let user_agent = rest
        .trim_end()
        .strip_suffix('"')
        .and_then(|r| r.rsplit_once('"'))
        .map(|(_, agent)| agent.to_string())
        .unwrap_or_default();
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (uri.to_string(), None),
    };
    Some(SeenRequest {
        method,
        path,
        query,
        status,
        user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_combined_log_line() {
        let line = r#"127.0.0.1 - alice [21/Nov/2026:23:55:39 +0000] "GET /v2/app/tags/list?n=2 HTTP/1.1" 404 111 "" "oci-client/0.18.0""#;
        let seen = parse_access_line(line);
        assert_eq!(
            seen,
            Some(SeenRequest {
                method: "GET".into(),
                path: "/v2/app/tags/list".into(),
                query: Some("n=2".into()),
                status: 404,
                user_agent: "oci-client/0.18.0".into(),
            })
        );
    }

    #[test]
    fn ignores_lines_that_are_not_access_lines() {
        assert_eq!(parse_access_line("listening on 127.0.0.1:5000"), None);
    }
}
