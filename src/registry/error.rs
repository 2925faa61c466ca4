//! What can go wrong talking to a registry, as values that keep their context.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: registry refused credentials (HTTP {status})")]
    Unauthorized { url: String, status: u16 },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: rate limited (HTTP 429), retry after {retry_after:?}")]
    RateLimited {
        url: String,
        retry_after: Option<Duration>,
    },
    #[error("{url}: server error (HTTP {status})")]
    Server { url: String, status: u16 },
    #[error("{url}: unexpected HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed answer: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url}: token endpoint: {reason}")]
    Token { url: String, reason: String },
    #[error("{url}: request failed: {reason}")]
    Transport { url: String, reason: String },
    /// The whole listing (every page, token requests included) ran past its deadline.
    #[error(
        "{repository}: tag listing not finished within {} (registries[].listTimeout)",
        humantime::format_duration(*.timeout)
    )]
    ListTimeout {
        repository: String,
        timeout: Duration,
    },
    /// The repository holds more tags than tagwatch keeps in memory for one listing.
    #[error("{repository}: more than {max_tags} tags (registries[].maxTags)")]
    TooManyTags { repository: String, max_tags: usize },
    /// The registry host is not in `allowedRegistries`: no request was sent.
    #[error("{registry}: registry not in allowedRegistries; no request sent")]
    NotAllowed { registry: String },
    /// A request would have gone somewhere it must not (another host through `Link` or a
    /// redirect, a token realm over plain HTTP, a link-local address): it was not sent.
    #[error("{url}: refused to send the request: {reason}")]
    UnsafeTarget { url: String, reason: String },
    /// tagwatch's own listing task failed (it panicked or was cut short): counted and retried.
    #[error("{repository}: listing task failed: {message}")]
    Internal { repository: String, message: String },
}

impl RegistryError {
    /// A small fixed set, for metric labels and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Unauthorized { .. } => "unauthorized",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::RateLimited { .. } => "rate_limited",
            RegistryError::Server { .. } => "server_error",
            RegistryError::Status { .. } => "unexpected_status",
            RegistryError::Malformed { .. } => "malformed",
            RegistryError::Token { .. } => "token",
            RegistryError::Transport { .. } => "transport",
            RegistryError::ListTimeout { .. } => "list_timeout",
            RegistryError::TooManyTags { .. } => "too_many_tags",
            RegistryError::NotAllowed { .. } => "not_allowed",
            RegistryError::UnsafeTarget { .. } => "unsafe_target",
            RegistryError::Internal { .. } => "internal",
        }
    }

    /// The wait the registry asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn transport(url: &str, err: &reqwest::Error) -> RegistryError {
        // A name that resolved only to link-local addresses comes back from our resolver inside
        // reqwest's error chain: it is a refusal, not a network failure.
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            if let Some(refused) = inner.downcast_ref::<super::egress::LinkLocalRefused>() {
                return RegistryError::UnsafeTarget {
                    url: url.to_string(),
                    reason: refused.to_string(),
                };
            }
            source = inner.source();
        }
        // reqwest's Display includes the URL we built; it never holds credentials because they
        // travel in headers only.
        let mut reason = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            reason.push_str(": ");
            reason.push_str(&inner.to_string());
            source = inner.source();
        }
        RegistryError::Transport {
            url: url.to_string(),
            reason,
        }
    }
}

/// What is wrong with a JSON document, without quoting it: serde's messages repeat the offending
/// value (`invalid type: string "..."`), which may be a credential or megabytes of garbage.
pub fn json_problem(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Io => "cannot be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "has a value of the wrong type or shape",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limit_errors_name_the_repository_and_the_setting() {
        let err = RegistryError::TooManyTags {
            repository: "r.io/app".into(),
            max_tags: 10,
        };
        assert_eq!(err.kind(), "too_many_tags");
        assert!(err.to_string().contains("r.io/app"), "{err}");
        assert!(err.to_string().contains("maxTags"), "{err}");
        let err = RegistryError::ListTimeout {
            repository: "r.io/app".into(),
            timeout: Duration::from_secs(60),
        };
        assert_eq!(err.kind(), "list_timeout");
        assert!(err.to_string().contains("r.io/app"), "{err}");
        assert!(err.to_string().contains("listTimeout"), "{err}");
        assert!(err.to_string().contains("1m"), "{err}");
    }

    #[test]
    fn json_problems_never_quote_the_input() {
        let err = serde_json::from_str::<Vec<u32>>(r#"["SECRET-VALUE"]"#).unwrap_err();
        assert!(
            err.to_string().contains("SECRET-VALUE"),
            "serde quotes: {err}"
        );
        let problem = json_problem(&err);
        assert!(!problem.contains("SECRET-VALUE"), "{problem}");
        assert!(problem.contains("wrong type"), "{problem}");
    }
}
