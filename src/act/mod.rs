//! Everything that writes (through [`runner::Writer`], the one fence on leadership), and the reads a decision about a rollout needs: the guarded writes of
//! planned changes, Events, canary objects, rollout checks, Prometheus queries, and the tasks the
//! control loop runs them in.

pub mod approvals;
pub mod gates;
pub mod holds;
pub mod partition;
pub mod prometheus;
pub mod rollouts;
pub mod runner;
pub mod tasks;
pub mod verify;
pub mod write;

use kube::Client;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::model::image::Repository;
use crate::plan::alias_tags::Levels;
use crate::registry::egress::AllowList;
use crate::registry::fanout::Fanout;
use crate::registry::pull_secrets::PullSecrets;
use prometheus::PrometheusClient;

/// What the loop and its tasks read with, built once in `commands::run` (writes go through a
/// [`runner::Writer`] instead).
pub struct Context {
    pub client: Client,
    pub fanout: Fanout,
    pub secrets: PullSecrets,
    pub metrics: Metrics,
    pub default_interval: Duration,
    /// Repositories whose alias tags are kept on the newest release.
    pub aliases: Vec<(Repository, Levels)>,
    /// Where canary queries are evaluated.
    pub prometheus: Option<PrometheusClient>,
    /// `allowedRegistries`: images on other hosts are skipped (None: every host).
    pub allowed_registries: Option<AllowList>,
    /// Versions already reported as waiting for a `<name>-canary` that is not tagwatch's.
    pub taken_names: crate::act::rollouts::TakenNames,
    /// Alias tags confirmed in the registry, so a steady repository costs no alias request.
    pub confirmed: std::sync::Arc<tokio::sync::Mutex<crate::registry::alias_tags::Confirmed>>,
    /// Signature verification policies (`verification.policies`).
    pub verification: std::sync::Arc<crate::act::verify::Verification>,
    /// Freezes and rollout limits (`freezes`, `maxConcurrentRollouts`).
    pub holds: crate::control::holds::HoldSettings,
}

impl Context {
    pub fn allows(&self, registry: &str) -> bool {
        self.allowed_registries
            .as_ref()
            .is_none_or(|list| list.allows(registry))
    }
}
