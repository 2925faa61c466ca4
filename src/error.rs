//! The crate's one error type: every module's error, wrapped, with a metric label per variant.
//!
//! Each I/O module keeps its own thiserror enum with its context in fields; [`Error`] gathers them
//! so a caller that handles several (a task, a command) has one type, and a metric or an Event
//! reason has one small fixed label set: [`Error::LABELS`]. `anyhow` stays in `main`/`app` and
//! tests.

use crate::act::prometheus::QueryError;
use crate::act::rollouts::CanaryError;
use crate::act::write::{self, ApplyError};
use crate::config::ConfigError;
use crate::registry::credentials::CredentialsError;
use crate::registry::RegistryError;
use crate::server::webhooks::{AuthError, PayloadError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to a container registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Writing a workload (the guarded patch).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A canary's Prometheus query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Creating, checking or removing a canary.
    #[error(transparent)]
    Canary(#[from] CanaryError),
    /// The configuration file or a setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A pull secret or docker config that does not parse.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A webhook body tagwatch cannot read.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A webhook without a valid credential.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Any other request to the Kubernetes API (the Lease, Events, reads).
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// Registering metrics.
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Every value [`Error::metric_label`] gives, sorted. The wrapped errors' own `kind()` sets
    /// share values where they mean the same (`transport`, `malformed`, `not_leader`, ...).
    pub const LABELS: &'static [&'static str] = &[
        "build",
        "config",
        "conflict",
        "credentials",
        "internal",
        "invalid_field",
        "list_timeout",
        "malformed",
        "metrics",
        "missing_field",
        "name_taken",
        "not_a_number",
        "not_allowed",
        "not_found",
        "not_leader",
        "query_error",
        "rate_limited",
        "refused",
        "server_error",
        "stale_canary",
        "token",
        "too_many_series",
        "too_many_tags",
        "transport",
        "unauthorized",
        "unexpected_status",
        "unsafe_target",
        "unsupported_result",
    ];

    /// A label from [`Error::LABELS`], for metrics and Event reasons: the wrapped error's own
    /// `kind()` where it has one, else a fixed value per variant. A Kubernetes API error is
    /// labelled the way a write's is ([`ApplyError::from_kube`]): `conflict` (changed underneath),
    /// `refused` (any other API answer) or `transport` (no answer).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Registry(e) => e.kind(),
            Error::Apply(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Canary(e) => match e {
                CanaryError::NameTaken { .. } => "name_taken",
                CanaryError::Stale { .. } => "stale_canary",
                CanaryError::Build(_) => "build",
                CanaryError::NotLeader(_) => "not_leader",
                CanaryError::Api(e) => kube_label(e),
            },
            Error::Config(_) => "config",
            Error::Credentials(_) => "credentials",
            Error::Payload(e) => e.kind(),
            Error::Auth(_) => "unauthorized",
            Error::Kube(e) => kube_label(e),
            Error::Metrics(_) => "metrics",
        }
    }
}

fn kube_label(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) if write::is_conflict(status) => "conflict",
        kube::Error::Api(_) => "refused",
        _ => "transport",
    }
}

/// An error and its sources, `outer: inner: innermost` (a source already quoted by its outer
/// error is not repeated): reqwest's own text hides the cause that tells a person what to fix.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::model::workload::WorkloadId;
    use crate::server::webhooks::Source;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("no", "Test").with_code(code),
        ))
    }

    fn transport() -> kube::Error {
        kube::Error::LinesCodecMaxLineLengthExceeded
    }

    /// One of every variant of every wrapped error, with the label it must get.
    fn samples() -> Vec<(Error, &'static str)> {
        let url = || "https://r.io/v2/app/tags/list".to_string();
        let text = || "x".to_string();
        let id = || WorkloadId::deployment("ns", "web");
        vec![
            (
                RegistryError::Unauthorized {
                    url: url(),
                    status: 401,
                }
                .into(),
                "unauthorized",
            ),
            (RegistryError::NotFound { url: url() }.into(), "not_found"),
            (
                RegistryError::RateLimited {
                    url: url(),
                    retry_after: None,
                }
                .into(),
                "rate_limited",
            ),
            (
                RegistryError::Server {
                    url: url(),
                    status: 503,
                }
                .into(),
                "server_error",
            ),
            (
                RegistryError::Status {
                    url: url(),
                    status: 418,
                }
                .into(),
                "unexpected_status",
            ),
            (
                RegistryError::Malformed {
                    url: url(),
                    reason: text(),
                }
                .into(),
                "malformed",
            ),
            (
                RegistryError::Token {
                    url: url(),
                    reason: text(),
                }
                .into(),
                "token",
            ),
            (
                RegistryError::Transport {
                    url: url(),
                    reason: text(),
                }
                .into(),
                "transport",
            ),
            (
                RegistryError::ListTimeout {
                    repository: text(),
                    timeout: Duration::from_secs(1),
                }
                .into(),
                "list_timeout",
            ),
            (
                RegistryError::TooManyTags {
                    repository: text(),
                    max_tags: 1,
                }
                .into(),
                "too_many_tags",
            ),
            (
                RegistryError::NotAllowed { registry: text() }.into(),
                "not_allowed",
            ),
            (
                RegistryError::UnsafeTarget {
                    url: url(),
                    reason: text(),
                }
                .into(),
                "unsafe_target",
            ),
            (
                RegistryError::Internal {
                    repository: text(),
                    message: text(),
                }
                .into(),
                "internal",
            ),
            (
                ApplyError::Conflict {
                    workload: id(),
                    code: 409,
                }
                .into(),
                "conflict",
            ),
            (
                ApplyError::Refused {
                    workload: id(),
                    code: 403,
                    reason: text(),
                    message: text(),
                }
                .into(),
                "refused",
            ),
            (
                ApplyError::NotLeader { workload: id() }.into(),
                "not_leader",
            ),
            (
                ApplyError::Transport {
                    workload: id(),
                    source: transport(),
                }
                .into(),
                "transport",
            ),
            (QueryError::InvalidUrl { reason: text() }.into(), "config"),
            (QueryError::Client { reason: text() }.into(), "config"),
            (
                QueryError::Transport {
                    url: url(),
                    reason: text(),
                }
                .into(),
                "transport",
            ),
            (
                QueryError::Status {
                    url: url(),
                    status: 500,
                    body: text(),
                }
                .into(),
                "unexpected_status",
            ),
            (
                QueryError::Prometheus {
                    error_type: text(),
                    error: text(),
                }
                .into(),
                "query_error",
            ),
            (QueryError::Malformed { reason: text() }.into(), "malformed"),
            (
                QueryError::TooManySeries { count: 2 }.into(),
                "too_many_series",
            ),
            (
                QueryError::UnsupportedResult {
                    result_type: "matrix",
                }
                .into(),
                "unsupported_result",
            ),
            (
                QueryError::NotANumber { value: text() }.into(),
                "not_a_number",
            ),
            (
                CanaryError::NameTaken {
                    name: text(),
                    uid: text(),
                }
                .into(),
                "name_taken",
            ),
            (CanaryError::Stale { name: text() }.into(), "stale_canary"),
            (CanaryError::Build(text()).into(), "build"),
            (CanaryError::NotLeader(text()).into(), "not_leader"),
            (CanaryError::Api(status(409)).into(), "conflict"),
            (CanaryError::Api(status(403)).into(), "refused"),
            (CanaryError::Api(transport()).into(), "transport"),
            (
                ConfigError {
                    file: None,
                    field: text(),
                    problem: text(),
                }
                .into(),
                "config",
            ),
            (
                CredentialsError::Json {
                    path: text(),
                    problem: text(),
                }
                .into(),
                "credentials",
            ),
            (
                CredentialsError::Entry {
                    registry: text(),
                    reason: text(),
                }
                .into(),
                "credentials",
            ),
            (
                PayloadError::Malformed {
                    sender: Source::Generic,
                    reason: text(),
                }
                .into(),
                "malformed",
            ),
            (
                PayloadError::Missing {
                    sender: Source::Generic,
                    field: "tag",
                }
                .into(),
                "missing_field",
            ),
            (
                PayloadError::Invalid {
                    sender: Source::Generic,
                    field: "tag",
                    reason: text(),
                }
                .into(),
                "invalid_field",
            ),
            (AuthError::Missing.into(), "unauthorized"),
            (AuthError::Mismatch.into(), "unauthorized"),
            (status(409).into(), "conflict"),
            (status(422).into(), "conflict"),
            (status(404).into(), "refused"),
            (transport().into(), "transport"),
            (prometheus::Error::Msg(text()).into(), "metrics"),
        ]
    }

    #[test]
    fn every_variant_has_its_label() {
        for (error, expected) in samples() {
            assert_eq!(error.metric_label(), expected, "{error:?}");
        }
    }

    #[test]
    fn labels_come_from_the_documented_set_and_use_all_of_it() {
        let documented: BTreeSet<&str> = Error::LABELS.iter().copied().collect();
        assert_eq!(documented.len(), Error::LABELS.len(), "no duplicates");
        assert!(Error::LABELS.windows(2).all(|w| w[0] < w[1]), "sorted");
        let given: BTreeSet<&str> = samples().iter().map(|(e, _)| e.metric_label()).collect();
        assert_eq!(given, documented);
        for label in Error::LABELS {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}: a metric label value is snake_case"
            );
        }
    }

    #[test]
    fn the_question_mark_converts() {
        fn read() -> Result<()> {
            Err(RegistryError::NotFound { url: "u".into() })?;
            Ok(())
        }
        let error = read().unwrap_err();
        assert_eq!(error.metric_label(), "not_found");
        assert_eq!(error.to_string(), "u: not found (HTTP 404)", "transparent");
    }
}
