//! Prometheus metrics, registered into a registry the caller owns (never the global default).
//!
//! Label values come from small fixed sets (registry host, operation, status class, reason):
//! per-Deployment detail goes to Events and logs, never into labels. The `registry` label is the
//! one a tenant can choose (any host in an image reference), so every metric carrying it goes
//! through [`ByRegistry`]: configured registries plus the first [`MAX_SEEN_REGISTRIES`] other
//! hosts get their own value, later ones share [`OTHER_REGISTRY`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Distinct unconfigured registry hosts that get a label value of their own.
pub const MAX_SEEN_REGISTRIES: usize = 50;
/// The `registry` label value of every host past that.
pub const OTHER_REGISTRY: &str = "other";

/// Turns registry hosts into bounded `registry` label values; shared by every metric that has one.
#[derive(Clone, Default)]
pub struct RegistryLabels {
    state: Arc<Mutex<LabelState>>,
}

#[derive(Default)]
struct LabelState {
    configured: HashSet<String>,
    seen: HashSet<String>,
}

impl RegistryLabels {
    /// Hosts from the configuration: always their own label value, never counted in the 50.
    pub fn configure<I, S>(&self, hosts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for host in hosts {
            let host = host.as_ref().trim().to_ascii_lowercase();
            state.seen.remove(&host);
            state.configured.insert(host);
        }
    }

    /// The label value for `host`: itself (lowercase) if configured or among the first
    /// [`MAX_SEEN_REGISTRIES`] other hosts seen, else [`OTHER_REGISTRY`].
    pub fn label(&self, host: &str) -> String {
        let host = host.trim().to_ascii_lowercase();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.configured.contains(&host) || state.seen.contains(&host) {
            return host;
        }
        if state.seen.len() < MAX_SEEN_REGISTRIES {
            state.seen.insert(host.clone());
            return host;
        }
        OTHER_REGISTRY.to_string()
    }
}

/// A metric vector whose first label is `registry`, bounded by [`RegistryLabels`]. It offers
/// only `with_label_values`, so no caller can put a raw host into the label.
#[derive(Clone)]
pub struct ByRegistry<V> {
    vec: V,
    labels: RegistryLabels,
}

impl<T: MetricVecBuilder> ByRegistry<MetricVec<T>> {
    fn new(vec: MetricVec<T>, labels: &RegistryLabels) -> Self {
        ByRegistry {
            vec,
            labels: labels.clone(),
        }
    }

    /// Like prometheus' `with_label_values`, the first value being the registry host.
    pub fn with_label_values<V: AsRef<str>>(&self, values: &[V]) -> T::M {
        let mut owned: Vec<String> = values.iter().map(|v| v.as_ref().to_string()).collect();
        if let Some(host) = owned.first_mut() {
            *host = self.labels.label(host);
        }
        self.vec.with_label_values(&owned)
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub registry_requests: ByRegistry<IntCounterVec>,
    pub registry_request_duration: ByRegistry<HistogramVec>,
    pub registry_rate_limited: ByRegistry<IntCounterVec>,
    pub registry_backoff_seconds: ByRegistry<GaugeVec>,
    pub registry_last_success: ByRegistry<GaugeVec>,
    pub poll_cycles: IntCounter,
    pub poll_cycle_duration: Histogram,
    pub repositories_watched: IntGauge,
    pub workloads_watched: IntGauge,
    updates: IntCounterVec,
    pub patch_conflicts: IntCounter,
    pub leader: IntGauge,
    pub build_info: GaugeVec,
    pub alias_writes: ByRegistry<IntCounterVec>,
    pub webhooks: IntCounterVec,
    canaries: IntCounterVec,
    pub canaries_in_progress: IntGauge,
    rollbacks: IntCounterVec,
    gate_results: IntCounterVec,
    /// Updates waiting for a freeze to end, a window to open or a rollout slot.
    pub updates_waiting: IntGaugeVec,
    pub rollout_duration: Histogram,
    pub panics: IntCounterVec,
    pub registry_labels: RegistryLabels,
    notifications: IntCounterVec,
    slack_interactions: IntCounterVec,
}

/// Operations on a registry, the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryOp {
    Tags,
    ManifestHead,
    ManifestGet,
    ManifestPut,
    /// An image config blob (release gates: platform and `created`).
    BlobGet,
    /// The OCI 1.1 Referrers API (signatures of a digest).
    Referrers,
    Token,
}

impl RegistryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOp::Tags => "tags",
            RegistryOp::ManifestHead => "manifest_head",
            RegistryOp::ManifestGet => "manifest_get",
            RegistryOp::ManifestPut => "manifest_put",
            RegistryOp::BlobGet => "blob_get",
            RegistryOp::Referrers => "referrers",
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

/// The `result` label of `tagwatch_updates_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    Applied,
    Failed,
    Skipped,
}

impl UpdateResult {
    pub const ALL: [UpdateResult; 3] = [
        UpdateResult::Applied,
        UpdateResult::Failed,
        UpdateResult::Skipped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpdateResult::Applied => "applied",
            UpdateResult::Failed => "failed",
            UpdateResult::Skipped => "skipped",
        }
    }
}

/// The `result` label of `tagwatch_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    Sent,
    /// Given up after the last try, or an answer that trying again would not change.
    Failed,
    /// The sink's queue was full.
    Dropped,
}

impl NotificationResult {
    pub const ALL: [NotificationResult; 3] = [
        NotificationResult::Sent,
        NotificationResult::Failed,
        NotificationResult::Dropped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NotificationResult::Sent => "sent",
            NotificationResult::Failed => "failed",
            NotificationResult::Dropped => "dropped",
        }
    }
}

/// The `result` label of `tagwatch_slack_interactions_total`: how a click on a Slack button
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackResult {
    /// An approval recorded.
    Approved,
    /// A version denied (rejected).
    Denied,
    /// Nothing to decide any more (superseded, expired, decided), or this person had approved
    /// already: answered so, nothing written.
    Stale,
    /// The clicker is not on the allow-list: answered so, nothing written.
    Refused,
    /// Missing or wrong signature, or a timestamp over 5 minutes off: 401.
    Unauthorized,
    /// Signed, but not a payload tagwatch understands (or a body over the limit).
    BadRequest,
    /// Too many clicks being served at once: 503.
    Busy,
    /// The API server or Slack failed or was too slow: answered so, maybe nothing written.
    Error,
}

impl SlackResult {
    pub const ALL: [SlackResult; 8] = [
        SlackResult::Approved,
        SlackResult::Denied,
        SlackResult::Stale,
        SlackResult::Refused,
        SlackResult::Unauthorized,
        SlackResult::BadRequest,
        SlackResult::Busy,
        SlackResult::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SlackResult::Approved => "approved",
            SlackResult::Denied => "denied",
            SlackResult::Stale => "stale",
            SlackResult::Refused => "refused",
            SlackResult::Unauthorized => "unauthorized",
            SlackResult::BadRequest => "bad_request",
            SlackResult::Busy => "busy",
            SlackResult::Error => "error",
        }
    }
}

/// The `result` label of `tagwatch_canaries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryResult {
    Started,
    Promoted,
    Failed,
    /// The canary could not be created (its name is taken).
    NotStarted,
    Removed,
    /// A create or delete not sent because the lease lapsed.
    Skipped,
}

impl CanaryResult {
    pub const ALL: [CanaryResult; 6] = [
        CanaryResult::Started,
        CanaryResult::Promoted,
        CanaryResult::Failed,
        CanaryResult::NotStarted,
        CanaryResult::Removed,
        CanaryResult::Skipped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CanaryResult::Started => "started",
            CanaryResult::Promoted => "promoted",
            CanaryResult::Failed => "failed",
            CanaryResult::NotStarted => "not_started",
            CanaryResult::Removed => "removed",
            CanaryResult::Skipped => "skipped",
        }
    }
}

/// The `task` label of `tagwatch_panics_total`: the kinds of task whose panics are caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// A repository's tag listing.
    Listing,
    /// A workload's write (digests, patch, Event).
    Write,
    /// A rollout or canary check.
    Check,
    /// An alias tag pass.
    Aliases,
    /// A step of the control loop.
    Loop,
    /// A webhook request.
    Webhook,
    /// A Slack button click (`POST /slack/interactions`).
    Slack,
}

impl Task {
    pub const ALL: [Task; 7] = [
        Task::Listing,
        Task::Write,
        Task::Check,
        Task::Aliases,
        Task::Loop,
        Task::Webhook,
        Task::Slack,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Task::Listing => "listing",
            Task::Write => "write",
            Task::Check => "check",
            Task::Aliases => "aliases",
            Task::Loop => "loop",
            Task::Webhook => "webhook",
            Task::Slack => "slack",
        }
    }
}

pub use crate::plan::gates::GateResult;

/// A `reason` label value. Every implementation gives values from a small fixed set (an error's
/// or a skip's kind, or a [`Why`]), never per-workload detail.
pub trait Reason {
    fn label(&self) -> &'static str;
}

/// tagwatch's own reasons: the ones that are not an error's, a skip's or a canary removal's
/// kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Applied: a newer version under the workload's policy.
    Policy,
    /// Applied: the newest version inside the alias the image follows.
    Alias,
    /// Applied: the tag's digest moved (the `digest` policy).
    Digest,
    /// Applied: a canary passed and the primary was updated.
    Canary,
    /// Skipped: a tagwatch annotation does not parse.
    InvalidAnnotation,
    /// Skipped: the registry is not in `allowedRegistries`.
    NotAllowed,
    /// Skipped: the lease lapsed before the write; nothing sent.
    NotLeader,
    /// Failed: the digest to pin could not be read.
    DigestUnavailable,
    /// Failed: the API server refused the write.
    Refused,
    /// Failed: the workload changed underneath.
    Conflict,
    /// Canary started for a new version.
    NewVersion,
    /// Canary promoted: it passed.
    Passed,
    /// Canary failed: its pods were not Ready in time.
    NotReady,
    /// Canary failed: a pod stopped being Ready during the bake.
    Unready,
    /// Canary failed: a pod restarted.
    Restarts,
    /// Canary failed: its Prometheus query.
    Query,
    /// Canary failed: canaries were turned off for the workload.
    TurnedOff,
    /// Canary failed: the primary's own rollout passed its progress deadline.
    PrimaryRollout,
    /// Canary not started: `<name>-canary` is someone else's.
    NameTaken,
    /// Rolled back: the rollout passed its progress deadline.
    ProgressDeadline,
    /// Rolled back: the kind's own verdict was failure (a `Degraded` Rollout, a failed Job).
    RolloutFailed,
}

impl Why {
    pub const ALL: [Why; 21] = [
        Why::Policy,
        Why::Alias,
        Why::Digest,
        Why::Canary,
        Why::InvalidAnnotation,
        Why::NotAllowed,
        Why::NotLeader,
        Why::DigestUnavailable,
        Why::Refused,
        Why::Conflict,
        Why::NewVersion,
        Why::Passed,
        Why::NotReady,
        Why::Unready,
        Why::Restarts,
        Why::Query,
        Why::TurnedOff,
        Why::PrimaryRollout,
        Why::NameTaken,
        Why::ProgressDeadline,
        Why::RolloutFailed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Why::Policy => "policy",
            Why::Alias => "alias",
            Why::Digest => "digest",
            Why::Canary => "canary",
            Why::InvalidAnnotation => "invalid_annotation",
            Why::NotAllowed => "not_allowed",
            Why::NotLeader => "not_leader",
            Why::DigestUnavailable => "digest_unavailable",
            Why::Refused => "refused",
            Why::Conflict => "conflict",
            Why::NewVersion => "new_version",
            Why::Passed => "passed",
            Why::NotReady => "not_ready",
            Why::Unready => "unready",
            Why::Restarts => "restarts",
            Why::Query => "query",
            Why::TurnedOff => "turned_off",
            Why::PrimaryRollout => "primary_rollout",
            Why::NameTaken => "name_taken",
            Why::ProgressDeadline => "progress_deadline",
            Why::RolloutFailed => "rollout_failed",
        }
    }

    /// The reason with this label: a bridge for code that still carries labels as strings
    /// (`Pending::reason`, `canary::Failure::kind`).
    pub fn from_label(label: &str) -> Option<Why> {
        Why::ALL.into_iter().find(|w| w.label() == label)
    }
}

/// A reason already in its label form, from code that carries it as a string (a canary's
/// failure kind): one of the documented label values.
#[derive(Debug, Clone, Copy)]
pub struct Label(pub &'static str);

impl Reason for Label {
    fn label(&self) -> &'static str {
        self.0
    }
}

impl Reason for Why {
    fn label(&self) -> &'static str {
        Why::label(*self)
    }
}

impl Reason for crate::registry::RegistryError {
    fn label(&self) -> &'static str {
        self.kind()
    }
}

impl Reason for crate::act::write::ApplyError {
    fn label(&self) -> &'static str {
        self.kind()
    }
}

impl Reason for crate::act::prometheus::QueryError {
    fn label(&self) -> &'static str {
        self.kind()
    }
}

impl Reason for crate::plan::skip::SkipReason {
    fn label(&self) -> &'static str {
        self.kind()
    }
}

impl Reason for crate::plan::canary::Orphaned {
    fn label(&self) -> &'static str {
        self.kind()
    }
}

impl Reason for crate::plan::canary::Failure {
    fn label(&self) -> &'static str {
        self.kind
    }
}

impl Reason for crate::plan::update::Pending {
    fn label(&self) -> &'static str {
        self.reason
    }
}

impl Reason for crate::error::Error {
    fn label(&self) -> &'static str {
        self.metric_label()
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
                "Alias tags checked in registries, by result (moved, unchanged, failed, not_leader)",
            ),
            &["registry", "result"],
        )?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "tagwatch_webhooks_total",
                "Webhook requests by source and result (accepted, ignored, unauthorized, too_large, bad_request, busy, timeout, queue_full, shutting_down, not_leader)",
            ),
            &["source", "result"],
        )?;
        let canaries = IntCounterVec::new(
            Opts::new(
                "tagwatch_canaries_total",
                "Canaries by result (started, promoted, failed, not_started, removed, skipped) and reason",
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
        let gate_results = IntCounterVec::new(
            Opts::new(
                "tagwatch_gate_results_total",
                "Release gate judgements, once per workload, version and gate (gate: platforms, \
                 signature, min-age; result: passed, blocked, waiting, error)",
            ),
            &["gate", "result"],
        )?;
        let updates_waiting = IntGaugeVec::new(
            Opts::new(
                "tagwatch_updates_waiting",
                "Workloads whose update waits, by reason (freeze, window, limit, approval)",
            ),
            &["reason"],
        )?;
        for reason in ["freeze", "window", "limit"] {
            updates_waiting.with_label_values(&[reason]).set(0);
        }
        let rollout_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tagwatch_rollout_duration_seconds",
                "From tagwatch's patch to the rollout's completion",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
        )?;
        let panics = IntCounterVec::new(
            Opts::new(
                "tagwatch_panics_total",
                "Panics caught and survived, by task (listing, write, check, aliases, loop, webhook)",
            ),
            &["task"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "tagwatch_notifications_total",
                "Notifications by sink (configured name) and result (sent, failed, dropped)",
            ),
            &["sink", "result"],
        )?;
        let slack_interactions = IntCounterVec::new(
            Opts::new(
                "tagwatch_slack_interactions_total",
                "Slack button clicks (POST /slack/interactions) by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(slack_interactions.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(panics.clone()))?;
        registry.register(Box::new(canaries.clone()))?;
        registry.register(Box::new(canaries_in_progress.clone()))?;
        registry.register(Box::new(rollbacks.clone()))?;
        registry.register(Box::new(gate_results.clone()))?;
        registry.register(Box::new(updates_waiting.clone()))?;
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
        let labels = RegistryLabels::default();
        Ok(Metrics {
            registry_requests: ByRegistry::new(registry_requests, &labels),
            registry_request_duration: ByRegistry::new(registry_request_duration, &labels),
            registry_rate_limited: ByRegistry::new(registry_rate_limited, &labels),
            registry_backoff_seconds: ByRegistry::new(registry_backoff_seconds, &labels),
            registry_last_success: ByRegistry::new(registry_last_success, &labels),
            poll_cycles,
            poll_cycle_duration,
            repositories_watched,
            workloads_watched,
            updates,
            patch_conflicts,
            leader,
            build_info,
            alias_writes: ByRegistry::new(alias_writes, &labels),
            webhooks,
            canaries,
            canaries_in_progress,
            rollbacks,
            gate_results,
            updates_waiting,
            rollout_duration,
            panics,
            registry_labels: labels,
            notifications,
            slack_interactions,
        })
    }

    /// The configured registries: they keep their own `registry` label value whatever tenants
    /// write, and do not count against the [`MAX_SEEN_REGISTRIES`] others.
    pub fn know_registries<I, S>(&self, hosts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.registry_labels.configure(hosts);
    }

    /// Counts one update decision in `tagwatch_updates_total{result, reason}`.
    pub fn update(&self, result: UpdateResult, reason: &(impl Reason + ?Sized)) {
        self.update_by(result, reason, 1);
    }

    /// Counts `count` update decisions alike (one per workload reported at once).
    pub fn update_by(&self, result: UpdateResult, reason: &(impl Reason + ?Sized), count: u64) {
        self.updates
            .with_label_values(&[result.label(), reason.label()])
            .inc_by(count);
    }

    /// Counts one canary event in `tagwatch_canaries_total{result, reason}`.
    pub fn canary(&self, result: CanaryResult, reason: &(impl Reason + ?Sized)) {
        self.canaries
            .with_label_values(&[result.label(), reason.label()])
            .inc();
    }

    /// Counts one caught panic in `tagwatch_panics_total{task}`.
    pub fn panic(&self, task: Task) {
        self.panics.with_label_values(&[task.label()]).inc();
    }

    /// Counts one automatic rollback in `tagwatch_rollbacks_total{reason}`.
    pub fn rollback(&self, reason: &(impl Reason + ?Sized)) {
        self.rollbacks.with_label_values(&[reason.label()]).inc();
    }

    /// Counts one release gate judgement in `tagwatch_gate_results_total{gate, result}`.
    pub fn gate(&self, gate: crate::plan::gates::Gate, result: GateResult) {
        self.gate_results
            .with_label_values(&[gate.label(), result.label()])
            .inc();
    }

    /// Counts one notice in `tagwatch_notifications_total{sink, result}`.
    pub fn notification(&self, sink: &str, result: NotificationResult) {
        self.notifications
            .with_label_values(&[sink, result.label()])
            .inc();
    }

    /// A configured sink: its counters read 0 from the start rather than appearing on the first
    /// failure (sink names come from the operator's config, a small fixed set).
    pub fn know_sink(&self, sink: &str) {
        for result in NotificationResult::ALL {
            self.notifications
                .with_label_values(&[sink, result.label()]);
        }
    }

    /// Counts one click in `tagwatch_slack_interactions_total{result}`.
    pub fn slack_interaction(&self, result: SlackResult) {
        self.slack_interactions
            .with_label_values(&[result.label()])
            .inc();
    }

    /// Slack interactions are served: every result reads 0 from the start.
    pub fn know_slack_interactions(&self) {
        for result in SlackResult::ALL {
            self.slack_interactions.with_label_values(&[result.label()]);
        }
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

    /// The README's metrics table, row by row: the label values it documents.
    const README: &str = include_str!("../README.md");

    fn readme_row(metric: &str) -> &'static str {
        let start = format!("| `{metric}` |");
        README
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("README's metrics table has no row for {metric}"))
    }

    fn counted(registry: &Registry, sample: &str) -> bool {
        render(registry).lines().any(|l| l == sample)
    }

    #[test]
    fn typed_updates_give_the_documented_labels() {
        use crate::act::write::ApplyError;
        use crate::model::workload::WorkloadId;
        use crate::plan::skip::SkipReason;
        use crate::registry::RegistryError;
        let id = || WorkloadId::deployment("ns", "web");
        let refused = ApplyError::Refused {
            workload: id(),
            code: 403,
            reason: "Forbidden".into(),
            message: "no".into(),
        };
        let conflict = || ApplyError::Conflict {
            workload: id(),
            code: 409,
        };
        let conflicted = conflict();
        let unauthorized = RegistryError::Unauthorized {
            url: "https://r.io/v2/".into(),
            status: 401,
        };
        let error = crate::error::Error::from(conflict());
        #[rustfmt::skip]
        let rows: Vec<(UpdateResult, &dyn Reason, &str, &str)> = vec![
            // The README's examples.
            (UpdateResult::Applied, &Why::Policy, "applied", "policy"),
            (UpdateResult::Skipped, &Why::InvalidAnnotation, "skipped", "invalid_annotation"),
            (UpdateResult::Skipped, &Why::NotAllowed, "skipped", "not_allowed"),
            (UpdateResult::Skipped, &unauthorized, "skipped", "unauthorized"),
            (UpdateResult::Skipped, &Why::NotLeader, "skipped", "not_leader"),
            (UpdateResult::Failed, &Why::DigestUnavailable, "failed", "digest_unavailable"),
            (UpdateResult::Failed, &conflicted, "failed", "conflict"),
            (UpdateResult::Failed, &refused, "failed", "refused"),
            // The other reasons counted today, unchanged.
            (UpdateResult::Applied, &Why::Alias, "applied", "alias"),
            (UpdateResult::Applied, &Why::Digest, "applied", "digest"),
            (UpdateResult::Applied, &Why::Canary, "applied", "canary"),
            (UpdateResult::Skipped, &SkipReason::PolicyOff, "skipped", "policy-off"),
            (UpdateResult::Skipped, &SkipReason::MissingTag, "skipped", "missing-tag"),
            (UpdateResult::Failed, &error, "failed", "conflict"),
        ];
        for (result, reason, result_label, reason_label) in rows {
            let registry = Registry::new();
            let metrics = Metrics::new(&registry).unwrap();
            metrics.update(result, reason);
            let sample = format!(
                r#"tagwatch_updates_total{{reason="{reason_label}",result="{result_label}"}} 1"#
            );
            assert!(counted(&registry, &sample), "{sample}");
        }
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        metrics.update_by(UpdateResult::Skipped, &Why::InvalidAnnotation, 3);
        assert!(counted(
            &registry,
            r#"tagwatch_updates_total{reason="invalid_annotation",result="skipped"} 3"#
        ));
        let row = readme_row("tagwatch_updates_total");
        for result in UpdateResult::ALL {
            assert!(row.contains(&format!("`{}`", result.label())), "{row}");
        }
        for example in [
            "`applied`/`policy`",
            "`skipped`/`invalid_annotation`",
            "`skipped`/`not_allowed`",
            "`skipped`/`unauthorized`",
            "`skipped`/`not_leader`",
            "`failed`/`digest_unavailable`",
            "`failed`/`conflict`",
            "`failed`/`refused`",
        ] {
            assert!(row.contains(example), "README lost {example}: {row}");
        }
    }

    #[test]
    fn typed_canaries_give_the_documented_labels() {
        use crate::plan::canary::{Failure, Orphaned};
        let failure = Failure {
            kind: "query",
            message: "query returned 3".into(),
        };
        #[rustfmt::skip]
        let rows: Vec<(CanaryResult, &dyn Reason, &str, &str)> = vec![
            (CanaryResult::Started, &Why::NewVersion, "started", "new_version"),
            (CanaryResult::Promoted, &Why::Passed, "promoted", "passed"),
            (CanaryResult::Failed, &Why::NotReady, "failed", "not_ready"),
            (CanaryResult::Failed, &Why::Unready, "failed", "unready"),
            (CanaryResult::Failed, &Why::Restarts, "failed", "restarts"),
            (CanaryResult::Failed, &Why::Query, "failed", "query"),
            (CanaryResult::Failed, &failure, "failed", "query"),
            (CanaryResult::Failed, &Why::TurnedOff, "failed", "turned_off"),
            (CanaryResult::Failed, &Why::PrimaryRollout, "failed", "primary_rollout"),
            (CanaryResult::NotStarted, &Why::NameTaken, "not_started", "name_taken"),
            (CanaryResult::Removed, &Orphaned::OptedOut, "removed", "opted_out"),
            (CanaryResult::Removed, &Orphaned::StateRemoved, "removed", "state_removed"),
            (CanaryResult::Removed, &Orphaned::InvalidAnnotation, "removed", "invalid_annotation"),
            (CanaryResult::Removed, &Orphaned::PrimaryDeleted, "removed", "primary_deleted"),
            (CanaryResult::Removed, &Orphaned::PrimaryReplaced, "removed", "primary_replaced"),
            (CanaryResult::Skipped, &Why::NotLeader, "skipped", "not_leader"),
        ];
        let row = readme_row("tagwatch_canaries_total");
        for (result, reason, result_label, reason_label) in rows {
            let registry = Registry::new();
            let metrics = Metrics::new(&registry).unwrap();
            metrics.canary(result, reason);
            let sample = format!(
                r#"tagwatch_canaries_total{{reason="{reason_label}",result="{result_label}"}} 1"#
            );
            assert!(counted(&registry, &sample), "{sample}");
            assert!(row.contains(&format!("`{reason_label}`")), "{row}");
        }
        for result in CanaryResult::ALL {
            assert!(row.contains(&format!("`{}`", result.label())), "{row}");
        }
    }

    #[test]
    fn typed_panics_and_rollbacks_give_the_documented_labels() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let row = readme_row("tagwatch_panics_total");
        for task in Task::ALL {
            metrics.panic(task);
            let sample = format!(r#"tagwatch_panics_total{{task="{}"}} 1"#, task.label());
            assert!(counted(&registry, &sample), "{sample}");
            assert!(row.contains(&format!("`{}`", task.label())), "{row}");
        }
        metrics.rollback(&Why::ProgressDeadline);
        assert!(counted(
            &registry,
            r#"tagwatch_rollbacks_total{reason="progress_deadline"} 1"#
        ));
        assert!(readme_row("tagwatch_rollbacks_total").contains("`progress_deadline`"));
    }

    #[test]
    fn notification_results_give_the_documented_labels() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let row = readme_row("tagwatch_notifications_total");
        metrics.know_sink("ops");
        for result in NotificationResult::ALL {
            let sample = |n| {
                format!(
                    r#"tagwatch_notifications_total{{result="{}",sink="ops"}} {n}"#,
                    result.label()
                )
            };
            assert!(counted(&registry, &sample(0)), "{}", sample(0));
            metrics.notification("ops", result);
            assert!(counted(&registry, &sample(1)), "{}", sample(1));
            assert!(row.contains(&format!("`{}`", result.label())), "{row}");
        }
    }

    #[test]
    fn slack_results_give_the_documented_labels() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let row = readme_row("tagwatch_slack_interactions_total");
        metrics.know_slack_interactions();
        for result in SlackResult::ALL {
            let sample = |n| {
                format!(
                    r#"tagwatch_slack_interactions_total{{result="{}"}} {n}"#,
                    result.label()
                )
            };
            assert!(counted(&registry, &sample(0)), "{}", sample(0));
            metrics.slack_interaction(result);
            assert!(counted(&registry, &sample(1)), "{}", sample(1));
            assert!(row.contains(&format!("`{}`", result.label())), "{row}");
        }
    }

    #[test]
    fn typed_labels_are_fixed_snake_case_sets() {
        let mut all: Vec<&str> = Why::ALL.iter().map(|w| w.label()).collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a Why label used twice");
        for why in Why::ALL {
            assert_eq!(Why::from_label(why.label()), Some(why));
        }
        assert_eq!(Why::from_label("policy-off"), None);
        let labels = Why::ALL
            .iter()
            .map(|w| w.label())
            .chain(UpdateResult::ALL.iter().map(|r| r.label()))
            .chain(CanaryResult::ALL.iter().map(|r| r.label()))
            .chain(Task::ALL.iter().map(|t| t.label()));
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }

    fn registry_values(text: &str, metric: &str) -> HashSet<String> {
        text.lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.split("registry=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn registry_labels_are_bounded() {
        let labels = RegistryLabels::default();
        labels.configure(["Configured.io:5000"]);
        for i in 0..MAX_SEEN_REGISTRIES {
            assert_eq!(labels.label(&format!("h{i}.io")), format!("h{i}.io"));
        }
        assert_eq!(labels.label("late.io"), OTHER_REGISTRY);
        assert_eq!(
            labels.label("H7.io"),
            "h7.io",
            "seen hosts keep their value, any case"
        );
        assert_eq!(labels.label("configured.io:5000"), "configured.io:5000");
        labels.configure(["late.io"]);
        assert_eq!(
            labels.label("late.io"),
            "late.io",
            "configured later still counts"
        );
    }

    #[test]
    fn every_registry_metric_shares_the_bound() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        metrics.know_registries(["mine.io"]);
        for i in 0..200 {
            let host = format!("tenant{i}.evil.io");
            metrics.observe_registry_request(&host, RegistryOp::Tags, Some(429), 0.01);
            metrics
                .registry_backoff_seconds
                .with_label_values(&[&host])
                .set(1.0);
            metrics
                .registry_last_success
                .with_label_values(&[&host])
                .set(1.0);
            metrics
                .alias_writes
                .with_label_values(&[host.as_str(), "moved"])
                .inc();
        }
        metrics.observe_registry_request("mine.io", RegistryOp::Tags, Some(200), 0.01);
        let text = render(&registry);
        for metric in [
            "tagwatch_registry_requests_total",
            "tagwatch_registry_request_duration_seconds_count",
            "tagwatch_registry_rate_limited_total",
            "tagwatch_registry_backoff_seconds",
            "tagwatch_registry_last_success_timestamp_seconds",
            "tagwatch_alias_writes_total",
        ] {
            let values = registry_values(&text, metric);
            assert!(
                values.len() <= MAX_SEEN_REGISTRIES + 2,
                "{metric}: {}",
                values.len()
            );
            assert!(values.contains(OTHER_REGISTRY), "{metric}");
            assert!(values.contains("tenant0.evil.io"), "{metric}");
            assert!(!values.contains("tenant199.evil.io"), "{metric}");
        }
        assert!(text.contains(
            r#"tagwatch_registry_requests_total{operation="tags",registry="mine.io",status="2xx"} 1"#
        ));
        assert!(text.contains(&format!(
            r#"tagwatch_registry_rate_limited_total{{registry="other"}} {}"#,
            200 - MAX_SEEN_REGISTRIES
        )));
    }
}
