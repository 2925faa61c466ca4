//! Prometheus metrics, registered into a registry the caller owns (never the global default).
//!
//! Label values come from small fixed sets (registry host, operation, status class, reason):
//! per-Deployment detail goes to Events and logs, never into labels.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry_requests: IntCounterVec,
    pub registry_request_duration: HistogramVec,
    pub registry_rate_limited: IntCounterVec,
    pub registry_backoff_seconds: GaugeVec,
    pub registry_last_success: GaugeVec,
    pub poll_cycles: IntCounter,
    pub poll_cycle_duration: Histogram,
    pub repositories_watched: IntGauge,
    pub workloads_watched: IntGauge,
    pub updates: IntCounterVec,
    pub patch_conflicts: IntCounter,
    pub leader: IntGauge,
    pub build_info: GaugeVec,
    pub alias_writes: IntCounterVec,
    pub webhooks: IntCounterVec,
    pub canaries: IntCounterVec,
    pub canaries_in_progress: IntGauge,
    pub rollbacks: IntCounterVec,
    pub rollout_duration: Histogram,
}

/// Operations on a registry, the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryOp {
    Tags,
    ManifestHead,
    ManifestGet,
    ManifestPut,
    Token,
}

impl RegistryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOp::Tags => "tags",
            RegistryOp::ManifestHead => "manifest_head",
            RegistryOp::ManifestGet => "manifest_get",
            RegistryOp::ManifestPut => "manifest_put",
            RegistryOp::Token => "token",
        }
    }
}

/// The `status` label: an HTTP status class, `429` on its own (it drives backoff), or `error`
/// when no answer came.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(429) => "429",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) | None => "error",
    }
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let registry_requests = IntCounterVec::new(
            Opts::new(
                "tagwatch_registry_requests_total",
                "Requests sent to container registries",
            ),
            &["registry", "operation", "status"],
        )?;
        let registry_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tagwatch_registry_request_duration_seconds",
                "Duration of registry requests",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["registry", "operation"],
        )?;
        let registry_rate_limited = IntCounterVec::new(
            Opts::new(
                "tagwatch_registry_rate_limited_total",
                "Registry answers with HTTP 429",
            ),
            &["registry"],
        )?;
        let registry_backoff_seconds = GaugeVec::new(
            Opts::new(
                "tagwatch_registry_backoff_seconds",
                "Longest current backoff of any repository on the registry",
            ),
            &["registry"],
        )?;
        let registry_last_success = GaugeVec::new(
            Opts::new(
                "tagwatch_registry_last_success_timestamp_seconds",
                "Unix time of the last complete tag listing from the registry",
            ),
            &["registry"],
        )?;
        let poll_cycles = IntCounter::new("tagwatch_poll_cycles_total", "Poll cycles run")?;
        let poll_cycle_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tagwatch_poll_cycle_duration_seconds",
                "Duration of a poll cycle, from listing to the last patch",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let repositories_watched = IntGauge::new(
            "tagwatch_repositories_watched",
            "Repositories used by opted-in workloads",
        )?;
        let workloads_watched = IntGauge::new("tagwatch_workloads_watched", "Opted-in workloads")?;
        let updates = IntCounterVec::new(
            Opts::new(
                "tagwatch_updates_total",
                "Update decisions by result (applied, failed, skipped) and reason",
            ),
            &["result", "reason"],
        )?;
        let patch_conflicts = IntCounter::new(
            "tagwatch_patch_conflicts_total",
            "Guarded patches refused because the workload changed underneath (HTTP 422/409)",
        )?;
        let leader = IntGauge::new(
            "tagwatch_leader",
            "1 while this replica holds the leader lease",
        )?;
        let build_info = GaugeVec::new(
            Opts::new("tagwatch_build_info", "Build information; always 1"),
            &["version", "git_commit"],
        )?;
        let alias_writes = IntCounterVec::new(
            Opts::new(
                "tagwatch_alias_writes_total",
                "Alias tags checked in registries, by result (moved, unchanged, failed)",
            ),
            &["registry", "result"],
        )?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "tagwatch_webhooks_total",
                "Webhook requests by source and result (accepted, ignored, unauthorized, too_large, bad_request)",
            ),
            &["source", "result"],
        )?;
        let canaries = IntCounterVec::new(
            Opts::new(
                "tagwatch_canaries_total",
                "Canaries by result (started, promoted, failed) and reason",
            ),
            &["result", "reason"],
        )?;
        let canaries_in_progress = IntGauge::new(
            "tagwatch_canaries_in_progress",
            "Canaries running or promoting",
        )?;
        let rollbacks = IntCounterVec::new(
            Opts::new(
                "tagwatch_rollbacks_total",
                "Images rolled back, by reason (progress_deadline, manual)",
            ),
            &["reason"],
        )?;
        let rollout_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tagwatch_rollout_duration_seconds",
                "From tagwatch's patch to the rollout's completion",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
        )?;
        registry.register(Box::new(canaries.clone()))?;
        registry.register(Box::new(canaries_in_progress.clone()))?;
        registry.register(Box::new(rollbacks.clone()))?;
        registry.register(Box::new(rollout_duration.clone()))?;
        registry.register(Box::new(alias_writes.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(registry_requests.clone()))?;
        registry.register(Box::new(registry_request_duration.clone()))?;
        registry.register(Box::new(registry_rate_limited.clone()))?;
        registry.register(Box::new(registry_backoff_seconds.clone()))?;
        registry.register(Box::new(registry_last_success.clone()))?;
        registry.register(Box::new(poll_cycles.clone()))?;
        registry.register(Box::new(poll_cycle_duration.clone()))?;
        registry.register(Box::new(repositories_watched.clone()))?;
        registry.register(Box::new(workloads_watched.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        registry.register(Box::new(patch_conflicts.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("TAGWATCH_GIT_COMMIT")])
            .set(1.0);
        Ok(Metrics {
            registry_requests,
            registry_request_duration,
            registry_rate_limited,
            registry_backoff_seconds,
            registry_last_success,
            poll_cycles,
            poll_cycle_duration,
            repositories_watched,
            workloads_watched,
            updates,
            patch_conflicts,
            leader,
            build_info,
            alias_writes,
            webhooks,
            canaries,
            canaries_in_progress,
            rollbacks,
            rollout_duration,
        })
    }

    /// Metrics in a registry of their own: for commands and tests that do not serve `/metrics`.
    pub fn unregistered() -> prometheus::Result<Metrics> {
        Metrics::new(&Registry::new())
    }

    pub fn observe_registry_request(
        &self,
        registry: &str,
        op: RegistryOp,
        status: Option<u16>,
        seconds: f64,
    ) {
        self.registry_requests
            .with_label_values(&[registry, op.as_str(), status_class(status)])
            .inc();
        self.registry_request_duration
            .with_label_values(&[registry, op.as_str()])
            .observe(seconds);
        if status == Some(429) {
            self.registry_rate_limited
                .with_label_values(&[registry])
                .inc();
        }
    }
}

/// The text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for the text format except on invalid metric families,
    // which `register` already refused.
    if TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(buffer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registry_requests_are_counted_by_class() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        metrics.observe_registry_request("r:1", RegistryOp::Tags, Some(200), 0.01);
        metrics.observe_registry_request("r:1", RegistryOp::Tags, Some(429), 0.01);
        metrics.observe_registry_request("r:1", RegistryOp::Token, None, 0.01);
        let text = render(&registry);
        assert!(text.contains(
            r#"tagwatch_registry_requests_total{operation="tags",registry="r:1",status="2xx"} 1"#
        ));
        assert!(text.contains(r#"tagwatch_registry_rate_limited_total{registry="r:1"} 1"#));
        assert!(text.contains(
            r#"tagwatch_registry_requests_total{operation="token",registry="r:1",status="error"} 1"#
        ));
        assert!(text.contains("tagwatch_build_info{"));
    }
}
