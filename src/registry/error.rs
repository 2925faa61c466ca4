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
