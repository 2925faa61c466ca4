//! One poll round: discover → list due repositories → decide → apply → record.
//!
//! A repository is listed once per round however many workloads use it. A workload is planned
//! when one of its repositories was listed this round, or when the workload itself changed (then
//! with the last complete listing, so a person's `app:1` takes effect without waiting a poll).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::events::{EventType, Recorder};
use kube::Client;

use crate::aliases::{Confirmed, Sync};
use crate::apply::{
    deployment_reference, now, patch_deployment, publish, write_guarded, ApplyError,
};
use crate::canary_query::PrometheusClient;
use crate::discover;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::model::history::{Entry, How};
use crate::model::image::Repository;
use crate::model::policy::Policy;
use crate::model::workload::keys;
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::aliases::Levels;
use crate::plan::patch;
use crate::plan::rollout;
use crate::plan::update::{self, Digest, Inputs, Outcome, WorkloadPlan};
use crate::pull_secrets::PullSecrets;
use crate::registry::fanout::Fanout;
use crate::registry::{Credentials, RegistryError};
use crate::rollouts::{Rollouts, Step};
use crate::schedule::Schedule;

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
    /// Versions already reported as waiting for a `<name>-canary` that is not tagwatch's.
    pub taken_names: crate::rollouts::TakenNames,
}

/// How often canaries and rollouts in progress are looked at.
pub const ROLLOUT_CHECK: Duration = Duration::from_secs(1);

/// What a round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub listed: usize,
    pub listing_failures: usize,
    pub planned: usize,
    pub applied: usize,
    pub conflicts: usize,
}

/// A Deployment's resourceVersion and what it parsed to (None: not opted in).
type Parsed = (Option<String>, Option<Arc<Workload>>);

pub struct Poller {
    ctx: Arc<Context>,
    /// Why the last listing of a repository failed (cleared by a success).
    failures: HashMap<Repository, String>,
    schedule: Schedule,
    listings: HashMap<Repository, Arc<Vec<String>>>,
    digests: HashMap<(Repository, String), String>,
    /// The resourceVersion each workload was last planned at.
    planned: HashMap<WorkloadId, String>,
    /// Each Deployment's last parse, by (namespace, name), with the resourceVersion it was read at.
    discovered: HashMap<(String, String), Parsed>,
    /// Alias tags confirmed in the registry, so a steady repository costs no alias request.
    confirmed: Confirmed,
    /// A canary or rollout was in progress at the end of the last round: look again soon.
    rollouts_pending: bool,
    /// Completed rollouts already counted in the duration histogram.
    timed: HashSet<(WorkloadId, String)>,
    /// Rollouts started before this process are not timed: their completion was missed.
    since: k8s_openapi::jiff::Timestamp,
    /// Problems already reported per workload, so each is reported once, not every round.
    reported: HashMap<WorkloadId, BTreeSet<(&'static str, String)>>,
}

impl Poller {
    pub fn new(ctx: Arc<Context>) -> Poller {
        Poller {
            ctx,
            failures: HashMap::new(),
            schedule: Schedule::default(),
            listings: HashMap::new(),
            digests: HashMap::new(),
            planned: HashMap::new(),
            discovered: HashMap::new(),
            confirmed: Confirmed::default(),
            rollouts_pending: false,
            timed: HashSet::new(),
            since: k8s_openapi::jiff::Timestamp::now(),
            reported: HashMap::new(),
        }
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        let polls = self.schedule.next_wakeup();
        if self.rollouts_pending {
            let check = Instant::now() + ROLLOUT_CHECK;
            return Some(polls.map_or(check, |p| p.min(check)));
        }
        polls
    }

    /// A webhook named this repository: list it in the next round. False if nobody uses it.
    pub fn trigger(&mut self, repo: &Repository) -> bool {
        self.schedule.trigger(repo, Instant::now())
    }

    /// A round: lists the repositories that are due, plans what changed or was listed.
    pub async fn round(&mut self, deployments: &[Arc<Deployment>]) -> RoundReport {
        self.run_round(deployments, false).await
    }

    /// A round that lists every repository now, whatever its schedule ("poll now").
    pub async fn round_all(&mut self, deployments: &[Arc<Deployment>]) -> RoundReport {
        self.run_round(deployments, true).await
    }

    async fn run_round(&mut self, deployments: &[Arc<Deployment>], all: bool) -> RoundReport {
        let started = Instant::now();
        let mut report = RoundReport::default();
        let workloads = self.discover(deployments);
        self.report_problems(&workloads).await;
        self.ctx
            .metrics
            .workloads_watched
            .set(workloads.len() as i64);

        let wanted = self.intervals(&workloads);
        self.listings.retain(|repo, _| wanted.contains_key(repo));
        self.schedule.sync(&wanted, Instant::now(), rand::random());
        self.ctx
            .metrics
            .repositories_watched
            .set(wanted.len() as i64);

        let due = if all {
            let mut repos: Vec<Repository> = wanted.keys().cloned().collect();
            repos.sort();
            repos
        } else {
            self.schedule.due(Instant::now())
        };
        let listed = self.list(&due, &workloads, &mut report).await;
        if !listed.is_empty() {
            self.read_policy_digests(&listed, &workloads).await;
            self.maintain_aliases(&listed).await;
        }

        let inputs = Inputs {
            tags: self.listings.clone(),
            digests: self.digests.clone(),
        };
        let busy = self.check_rollouts(&workloads, deployments).await;
        for workload in &workloads {
            if busy.contains(&workload.id) {
                continue;
            }
            let changed = workload.resource_version.as_ref() != self.planned.get(&workload.id);
            let uses_listed = workload
                .containers
                .iter()
                .any(|c| listed.contains(&c.image.repository));
            if !(changed || uses_listed) {
                continue;
            }
            report.planned += 1;
            let plan = update::plan(workload, &inputs);
            self.record_skips(workload, &plan).await;
            // Only a canary needs the Deployment itself (its pod template): no scan otherwise.
            let primary = workload
                .rollout
                .canary
                .as_ref()
                .and_then(|_| find(deployments, &workload.id));
            let done = self.apply(workload, primary, &plan, &mut report).await;
            if done {
                if let Some(rv) = &workload.resource_version {
                    self.planned.insert(workload.id.clone(), rv.clone());
                }
            } else {
                // Re-plan next round from the fresh object the reflector will bring.
                self.planned.remove(&workload.id);
            }
        }
        let present: BTreeSet<&WorkloadId> = workloads.iter().map(|w| &w.id).collect();
        self.planned.retain(|id, _| present.contains(id));
        self.reported.retain(|id, _| present.contains(id));

        if !due.is_empty() {
            self.ctx.metrics.poll_cycles.inc();
            self.ctx
                .metrics
                .poll_cycle_duration
                .observe(started.elapsed().as_secs_f64());
        }
        report
    }

    /// Read-only pass for `tagwatch plan`: lists every repository now and plans every workload.
    /// Writes nothing to the cluster (no patch, no Event).
    pub async fn dry_run(
        &mut self,
        deployments: &[Arc<Deployment>],
    ) -> Vec<(Workload, WorkloadPlan)> {
        let workloads = self.discover(deployments);
        let wanted = self.intervals(&workloads);
        self.schedule.sync(&wanted, Instant::now(), 0.0);
        let mut all: Vec<Repository> = wanted.keys().cloned().collect();
        all.sort();
        let mut report = RoundReport::default();
        let listed = self.list(&all, &workloads, &mut report).await;
        self.read_policy_digests(&listed, &workloads).await;
        let inputs = Inputs {
            tags: self.listings.clone(),
            digests: self.digests.clone(),
        };
        workloads
            .into_iter()
            .map(|w| {
                let plan = update::plan(&w, &inputs);
                (Arc::unwrap_or_clone(w), plan)
            })
            .collect()
    }

    /// The opted-in workloads. A Deployment is parsed again only when its resourceVersion moved:
    /// an idle round over a thousand Deployments then costs a lookup each, not a parse.
    fn discover(&mut self, deployments: &[Arc<Deployment>]) -> Vec<Arc<Workload>> {
        let mut seen = HashMap::with_capacity(self.discovered.len());
        let mut workloads = Vec::new();
        for deployment in deployments {
            let meta = &deployment.metadata;
            let key = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            let version = meta.resource_version.clone();
            let workload = match self.discovered.remove(&key) {
                Some((cached, workload)) if version.is_some() && cached == version => workload,
                _ => discover::workload(deployment).map(Arc::new),
            };
            if let Some(w) = &workload {
                workloads.push(w.clone());
            }
            seen.insert(key, (version, workload));
        }
        // Deployments that are gone drop out with what was not carried over.
        self.discovered = seen;
        workloads
    }

    /// Why the last listing of `repo` failed, if it did.
    pub fn listing_failure(&self, repo: &Repository) -> Option<&str> {
        self.failures.get(repo).map(String::as_str)
    }

    /// Moves the alias tags of freshly (and completely) listed maintained repositories.
    async fn maintain_aliases(&mut self, listed: &BTreeSet<Repository>) {
        for (repo, levels) in &self.ctx.aliases {
            if !listed.contains(repo) {
                continue;
            }
            if !self.ctx.leadership.is_leader() {
                return;
            }
            let Some(tags) = self.listings.get(repo).cloned() else {
                continue;
            };
            let credentials = self.ctx.secrets.own(&repo.registry);
            let sync = Sync {
                client: self.ctx.fanout.client(),
                metrics: &self.ctx.metrics,
                credentials: &credentials,
                dry_run: false,
            };
            sync.run(repo, &tags, *levels, &mut self.confirmed).await;
        }
    }

    /// The poll interval per repository: the shortest any of its users asks for. Repositories
    /// with maintained aliases are polled at the default interval even without users.
    fn intervals(&self, workloads: &[Arc<Workload>]) -> HashMap<Repository, Duration> {
        let mut wanted: HashMap<Repository, Duration> = HashMap::new();
        for (repo, _) in &self.ctx.aliases {
            wanted.insert(repo.clone(), self.ctx.default_interval);
        }
        for workload in workloads {
            let interval = workload.interval.unwrap_or(self.ctx.default_interval);
            for container in &workload.containers {
                wanted
                    .entry(container.image.repository.clone())
                    .and_modify(|i| *i = (*i).min(interval))
                    .or_insert(interval);
            }
        }
        wanted
    }

    /// Lists the due repositories; returns the ones whose listing is complete.
    async fn list(
        &mut self,
        due: &[Repository],
        workloads: &[Arc<Workload>],
        report: &mut RoundReport,
    ) -> BTreeSet<Repository> {
        let mut jobs = Vec::new();
        for repo in due {
            let credentials = self.credentials_for(repo, workloads).await;
            jobs.push((repo.clone(), credentials));
        }
        let mut listed = BTreeSet::new();
        for (repo, result) in self.ctx.fanout.list_tags(jobs).await {
            let now = Instant::now();
            match result {
                Ok(tags) => {
                    report.listed += 1;
                    self.schedule.succeeded(&repo, now, rand::random());
                    self.listings.insert(repo.clone(), Arc::new(tags));
                    self.failures.remove(&repo);
                    self.ctx
                        .metrics
                        .registry_last_success
                        .with_label_values(&[&repo.registry])
                        .set(unix_now());
                    listed.insert(repo);
                }
                Err(error) => {
                    report.listing_failures += 1;
                    self.failures.insert(repo.clone(), error.to_string());
                    let delay =
                        self.schedule
                            .failed(&repo, error.retry_after(), now, rand::random());
                    tracing::warn!(
                        repository = %repo,
                        error = %error,
                        retry_in_seconds = delay.as_secs_f64(),
                        "tag listing failed; no decision for this repository this round"
                    );
                    self.ctx
                        .metrics
                        .updates
                        .with_label_values(&["skipped", error.kind()])
                        .inc();
                    if matches!(error, RegistryError::Unauthorized { .. }) {
                        for w in users(&repo, workloads) {
                            self.ctx.secrets.forget_namespace(&w.id.namespace);
                        }
                    }
                }
            }
        }
        self.update_backoff_gauges();
        listed
    }

    fn update_backoff_gauges(&self) {
        let now = Instant::now();
        let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
        for repo in self.schedule.repositories() {
            let backoff = self
                .schedule
                .backoff(repo, now)
                .map_or(0.0, |d| d.as_secs_f64());
            let entry = worst.entry(repo.registry.as_str()).or_insert(0.0);
            *entry = entry.max(backoff);
        }
        for (registry, seconds) in worst {
            self.ctx
                .metrics
                .registry_backoff_seconds
                .with_label_values(&[registry])
                .set(seconds);
        }
    }

    /// One login per repository: the first user whose pull secrets hold one for the registry.
    async fn credentials_for(&self, repo: &Repository, workloads: &[Arc<Workload>]) -> Credentials {
        for workload in users(repo, workloads) {
            let credentials = self.ctx.secrets.credentials(workload, &repo.registry).await;
            if !credentials.is_anonymous() {
                return credentials;
            }
        }
        Credentials::Anonymous
    }

    /// HEAD the current tag of every `digest`-policy container in a freshly listed repository.
    async fn read_policy_digests(
        &mut self,
        listed: &BTreeSet<Repository>,
        workloads: &[Arc<Workload>],
    ) {
        let mut wanted = BTreeSet::new();
        for workload in workloads {
            for c in &workload.containers {
                if c.policy == Policy::Digest && listed.contains(&c.image.repository) {
                    if let Some(tag) = &c.image.tag {
                        wanted.insert((c.image.repository.clone(), tag.clone()));
                    }
                }
            }
        }
        let mut jobs = Vec::new();
        for (repo, tag) in wanted {
            let credentials = self.credentials_for(&repo, workloads).await;
            jobs.push((repo, tag, credentials));
        }
        for (key, result) in self.ctx.fanout.digests(jobs).await {
            match result {
                Ok(Some(digest)) => {
                    self.digests.insert(key, digest);
                }
                Ok(None) => {
                    self.digests.remove(&key);
                }
                Err(error) => {
                    tracing::warn!(repository = %key.0, tag = %key.1, error = %error, "cannot read digest");
                    self.digests.remove(&key);
                }
            }
        }
    }

    /// Reads pinned digests, writes the guarded patch, records the outcome. False when the
    /// workload must be planned again (conflict or failure).
    async fn apply(
        &self,
        workload: &Workload,
        primary: Option<&Deployment>,
        plan: &WorkloadPlan,
        report: &mut RoundReport,
    ) -> bool {
        let pending: Vec<_> = plan.pending().collect();
        if pending.is_empty() {
            return if plan.manual.is_empty() {
                true
            } else {
                self.acknowledge(workload, plan).await
            };
        }
        let mut digests = BTreeMap::new();
        let mut complete = true;
        for p in pending.iter().filter(|p| p.digest == Digest::ToRead) {
            let credentials = self
                .ctx
                .secrets
                .credentials(workload, &p.repository.registry)
                .await;
            match self
                .ctx
                .fanout
                .client()
                .manifest_digest(&p.repository, &p.to_tag, &credentials)
                .await
            {
                Ok(Some(digest)) => {
                    digests.insert(p.container.clone(), digest);
                }
                Ok(None) | Err(_) => {
                    complete = false;
                    tracing::warn!(workload = %workload.id, container = %p.container, tag = %p.to_tag,
                        "cannot read the digest to pin; update postponed");
                    self.ctx
                        .metrics
                        .updates
                        .with_label_values(&["failed", "digest_unavailable"])
                        .inc();
                }
            }
        }
        let (changes, state) = update::finish(plan, &digests);
        if changes.is_empty() {
            return complete;
        }
        // Checked at the last moment: leadership can lapse during a round's listings.
        if !self.ctx.leadership.is_leader() {
            tracing::info!(workload = %workload.id, "not the leader any more: update left to the leader");
            self.ctx
                .metrics
                .updates
                .with_label_values(&["skipped", "not_leader"])
                .inc();
            return false;
        }
        if let (Some(spec), Some(primary)) = (&workload.rollout.canary, primary) {
            // A new version proves itself in a canary first; the primary is not touched yet.
            let rollouts = Rollouts { ctx: &self.ctx };
            return match rollouts
                .start_canary(workload, primary, spec, &changes)
                .await
            {
                Ok(()) => true,
                Err(error) => {
                    tracing::info!(workload = %workload.id, error = %error, "canary not started; will re-plan");
                    false
                }
            };
        }
        let mut state = state;
        record_update(workload, plan, &changes, &mut state);
        let patch = patch::build(&changes, &state, Some(&workload.annotations));
        let reference = deployment_reference(&workload.id, workload.uid.as_deref());
        match patch_deployment(&self.ctx.client, &workload.id, patch).await {
            Ok(_) => {
                report.applied += 1;
                for (change, p) in changes.iter().zip(pending.iter()) {
                    tracing::info!(
                        workload = %workload.id,
                        container = %change.container,
                        from = %change.from,
                        to = %change.to,
                        reason = p.reason,
                        "image updated"
                    );
                    self.ctx
                        .metrics
                        .updates
                        .with_label_values(&["applied", p.reason])
                        .inc();
                }
                publish(
                    &self.ctx.recorder,
                    &reference,
                    EventType::Normal,
                    "ImageUpdated",
                    "Update",
                    patch::change_cause(&changes),
                )
                .await;
                complete
            }
            Err(error) => {
                if let ApplyError::Conflict { .. } = error {
                    report.conflicts += 1;
                    self.ctx.metrics.patch_conflicts.inc();
                    tracing::info!(workload = %workload.id, error = %error, "workload changed underneath; will re-plan");
                } else {
                    tracing::warn!(workload = %workload.id, error = %error, "update failed");
                }
                self.ctx
                    .metrics
                    .updates
                    .with_label_values(&["failed", error.kind()])
                    .inc();
                false
            }
        }
    }

    /// A person changed an image and nothing follows from it: record it (history, the version
    /// rolled back from as rejected, the image as the new baseline) in one guarded write, once.
    async fn acknowledge(&self, workload: &Workload, plan: &WorkloadPlan) -> bool {
        if !self.ctx.leadership.is_leader() {
            return false;
        }
        let mut state = plan.state.clone();
        let now = now();
        let seen = manual_entries(plan, &now)
            .zip(&plan.manual)
            .map(|(e, m)| e.because(m.rejected.as_ref().map(|t| format!("{t} rejected"))));
        state.record(&workload.rollout.history, seen);
        // Whatever tagwatch was watching is not its rollout any more.
        state.extra.insert(keys::ROLLOUT.into(), None);
        match write_guarded(&self.ctx.client, workload, &[], &state).await {
            Ok(_) => {
                for m in &plan.manual {
                    tracing::info!(workload = %workload.id, container = %m.container, from = %m.applied,
                        to = %m.current, rejected = m.rejected.as_deref().unwrap_or(""), "manual change recorded");
                }
                true
            }
            Err(error) => {
                tracing::info!(workload = %workload.id, error = %error, "manual change not recorded yet; re-reading");
                false
            }
        }
    }

    /// Looks at every canary and watched rollout (the leader only); returns the workloads still
    /// busy, which are not planned this round: a newer version waits for the canary.
    async fn check_rollouts(
        &mut self,
        workloads: &[Arc<Workload>],
        deployments: &[Arc<Deployment>],
    ) -> BTreeSet<WorkloadId> {
        let mut busy = BTreeSet::new();
        let mut canaries = 0;
        for workload in workloads {
            let rollout = &workload.rollout;
            if rollout.canary_state.is_none() && rollout.watching.is_none() {
                continue;
            }
            let primary = find(deployments, &workload.id);
            let step = match primary {
                Some(primary) if self.ctx.leadership.is_leader() => {
                    Rollouts { ctx: &self.ctx }
                        .check(workload, primary, self.ctx.prometheus.as_ref())
                        .await
                }
                _ => Step::Waiting,
            };
            // A canary blocks new versions until it is over; a plain rollout being watched
            // does too, so a rollback never races a newer update.
            match step {
                Step::Waiting => {
                    if rollout.canary_state.is_some() {
                        canaries += 1;
                    }
                    busy.insert(workload.id.clone());
                }
                Step::Done => {
                    self.planned.remove(&workload.id);
                }
                Step::Completed { started } => {
                    let ours = started
                        .parse::<k8s_openapi::jiff::Timestamp>()
                        .is_ok_and(|t| t >= self.since);
                    if ours && self.timed.insert((workload.id.clone(), started.clone())) {
                        Rollouts { ctx: &self.ctx }.observe_duration(&started);
                    }
                }
            }
        }
        // Only rollouts still recorded on a workload need remembering.
        let recorded: HashSet<(&WorkloadId, &str)> = workloads
            .iter()
            .filter_map(|w| Some((&w.id, w.rollout.watching.as_ref()?.started.as_str())))
            .collect();
        self.timed
            .retain(|(id, started)| recorded.contains(&(id, started.as_str())));
        self.ctx.metrics.canaries_in_progress.set(canaries);
        self.rollouts_pending = !busy.is_empty();
        // tagwatch's canaries that nothing records any more (src/rollouts.rs); retried soon if one is left.
        let rollouts = Rollouts { ctx: &self.ctx };
        self.rollouts_pending |= rollouts.remove_orphans(workloads, deployments).await;
        busy
    }

    /// Bad annotations: a Warning Event naming the annotation, once per distinct problem.
    async fn report_problems(&mut self, workloads: &[Arc<Workload>]) {
        for workload in workloads {
            let messages = workload.problems.iter().map(|p| p.to_string()).collect();
            let fresh = self
                .report_once(workload, messages, "InvalidAnnotation")
                .await;
            if fresh > 0 {
                self.ctx
                    .metrics
                    .updates
                    .with_label_values(&["skipped", "invalid_annotation"])
                    .inc_by(fresh as u64);
            }
        }
    }

    async fn record_skips(&mut self, workload: &Workload, plan: &WorkloadPlan) {
        let mut messages = BTreeSet::new();
        for (container, outcome) in &plan.outcomes {
            if let Outcome::Skip(reason) = outcome {
                self.ctx
                    .metrics
                    .updates
                    .with_label_values(&["skipped", reason.kind()])
                    .inc();
                messages.insert(format!("container {container}: {reason}"));
            }
        }
        self.report_once(workload, messages, "UpdateSkipped").await;
    }

    /// Logs and publishes a Warning Event for each message not reported before for this
    /// workload; returns how many were new.
    async fn report_once(
        &mut self,
        workload: &Workload,
        messages: BTreeSet<String>,
        reason: &'static str,
    ) -> usize {
        let reported = self.reported.entry(workload.id.clone()).or_default();
        let fresh: Vec<String> = messages
            .into_iter()
            .filter(|m| reported.insert((reason, m.clone())))
            .collect();
        let reference = deployment_reference(&workload.id, workload.uid.as_deref());
        for message in &fresh {
            tracing::warn!(workload = %workload.id, problem = %message, "workload skipped");
            publish(
                &self.ctx.recorder,
                &reference,
                EventType::Warning,
                reason,
                "Skip",
                message.clone(),
            )
            .await;
        }
        fresh.len()
    }
}

fn users<'a>(
    repo: &'a Repository,
    workloads: &'a [Arc<Workload>],
) -> impl Iterator<Item = &'a Workload> {
    workloads
        .iter()
        .filter(move |w| w.containers.iter().any(|c| &c.image.repository == repo))
        .map(|w| &**w)
}

fn find<'a>(deployments: &'a [Arc<Deployment>], id: &WorkloadId) -> Option<&'a Deployment> {
    deployments
        .iter()
        .find(|d| {
            d.metadata.name.as_deref() == Some(id.name.as_str())
                && d.metadata.namespace.as_deref() == Some(id.namespace.as_str())
        })
        .map(|d| &**d)
}

/// History entries (a person's change seen, then this update) and the rollout to watch, written
/// in the same patch as the images.
fn record_update(
    workload: &Workload,
    plan: &WorkloadPlan,
    changes: &[patch::ImageChange],
    state: &mut patch::State,
) {
    let now = now();
    let updates = changes.iter().map(|c| c.entry(&now, How::Update));
    state.record(
        &workload.rollout.history,
        manual_entries(plan, &now).chain(updates),
    );
    let rollout = rollout::watch(changes, now, workload.generation);
    state
        .extra
        .insert(keys::ROLLOUT.into(), Some(rollout.encode()));
}

/// A person's changes seen by the plan, as history entries.
fn manual_entries<'a>(plan: &'a WorkloadPlan, now: &'a str) -> impl Iterator<Item = Entry> + 'a {
    plan.manual
        .iter()
        .map(move |m| Entry::new(now, &m.container, &m.applied, &m.current, How::Manual))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
