//! Everything that writes, and the reads a decision about a rollout needs: the guarded writes of
//! planned changes, Events, canary objects, rollout checks, Prometheus queries, and the tasks the
//! control loop runs them in.

pub mod prometheus;
pub mod rollouts;
pub mod tasks;
pub mod write;

use kube::runtime::events::Recorder;
use kube::Client;
use std::time::Duration;

use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::model::image::Repository;
use crate::plan::alias_tags::Levels;
use crate::registry::egress::AllowList;
use crate::registry::fanout::Fanout;
use crate::registry::pull_secrets::PullSecrets;
use prometheus::PrometheusClient;

/// The handles every write and read needs, built once in `app`/`commands::run`.
pub struct Context {
    pub client: Client,
    pub fanout: Fanout,
    pub secrets: PullSecrets,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub default_interval: Duration,
    /// Writes happen only while this says leader.
    pub leadership: Leadership,
    /// Repositories whose alias tags are kept on the newest release.
    pub aliases: Vec<(Repository, Levels)>,
    /// Where canary queries are evaluated.
    pub prometheus: Option<PrometheusClient>,
    /// `allowedRegistries`: images on other hosts are skipped (None: every host).
    pub allowed_registries: Option<AllowList>,
    /// Versions already reported as waiting for a `<name>-canary` that is not tagwatch's.
    pub taken_names: crate::act::rollouts::TakenNames,
}

impl Context {
    pub fn allows(&self, registry: &str) -> bool {
        self.allowed_registries
            .as_ref()
            .is_none_or(|list| list.allows(registry))
    }
}
