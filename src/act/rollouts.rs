//! The I/O around canaries and rollout watching: create and remove canary Deployments, read
//! their pods and the optional query, write the primary's state, promote, reject, roll back.
//!
//! Every write to the primary is a JSON Patch guarded by the resourceVersion the decision was
//! made on, so a decision (start, promote, fail, roll back) lands at most once even with two
//! writers; the loser sees a conflict and re-reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::Api;

use crate::discover::Object;

use crate::act::prometheus::PrometheusClient;
use crate::act::runner::{Fenced, Writer};
use crate::act::write::{now, reference, ApplyError};
use crate::act::Context;
use crate::discover;
use crate::metrics::{CanaryResult, Label, UpdateResult, Why};
use crate::model::annotations as keys;
use crate::model::canary::CanarySpec;
use crate::model::history::{Entry, How};
use crate::model::image::tag_of;
use crate::model::kind::CanaryMode;
use crate::model::query::render;
use crate::model::rollout_state::{CanaryState, Phase, RolloutState};
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::canary::{
    canary_deployment, canary_name, canary_selector, is_ours, judge, orphaned, orphans, runs,
    Check, PodView, Removal, Verdict, TRACK_CANARY,
};
use crate::plan::patch::{self, ImageChange, State};
use crate::plan::rollout::{self, progress, progress_of, Progress};

/// Jobs asked for per request while looking for the one that judges a CronJob's rollout.
const JOBS_PAGE: u32 = 100;

/// At most this many Jobs are read per look (whole pages): a namespace with more is judged on
/// these, and the CronJob's own status.
const JOBS_LISTED: usize = 500;

/// What a check did, for the round's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Still running; nothing to plan for this workload meanwhile.
    Waiting,
    /// Finished (promoted, failed, rolled back, or no longer ours): planned afresh.
    Done,
    /// The watched rollout completed (the annotation stays: completing costs no write).
    Completed { started: String },
}

/// Why the canary Deployment could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// `<name>-canary` is someone else's Deployment: never adopted, never deleted.
    #[error("{name} exists and is not tagwatch's canary (uid {uid})")]
    NameTaken { name: String, uid: String },
    /// tagwatch's canary from an earlier canary, running other images: removed, created afresh
    /// at the next check.
    #[error("{name} ran other images than the ones under test; removed, to be created afresh")]
    Stale { name: String },
    #[error("cannot build the canary: {0}")]
    Build(String),
    /// The lease lapsed: the create or delete was not sent.
    #[error("not the leader any more: canary {0} left to the leader")]
    NotLeader(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// The versions already reported as waiting for a `<name>-canary` that is not tagwatch's, per
/// workload, so the Warning is published once per version, not at every poll.
#[derive(Debug, Default)]
pub struct TakenNames(Mutex<HashMap<WorkloadId, String>>);

impl TakenNames {
    /// True the first time `version` is reported for `workload`.
    fn first_report(&self, workload: &WorkloadId, version: &str) -> bool {
        let mut reported = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if reported.get(workload).is_some_and(|v| v == version) {
            return false;
        }
        reported.insert(workload.clone(), version.to_string());
        true
    }

    fn forget(&self, workload: &WorkloadId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(workload);
    }

    fn retain(&self, present: &[Arc<Workload>]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| present.iter().any(|w| &w.id == id));
    }
}

pub struct Rollouts<'a> {
    pub ctx: &'a Context,
    /// Every write goes through it: the runner's one fence on leadership.
    pub writer: &'a Writer,
}

impl Rollouts<'_> {
    /// Starts a canary for `changes` instead of patching the primary: the state is written first
    /// (guarded), then the canary created, so a crash in between resumes by creating it. False:
    /// not started because a canary of ours that nothing records was there and went first (a new
    /// canary is never an old one adopted); decided again.
    pub async fn start_canary(
        &self,
        workload: &Workload,
        primary: &Deployment,
        spec: &CanarySpec,
        changes: &[ImageChange],
    ) -> Result<bool, ApplyError> {
        let images: BTreeMap<String, String> = changes
            .iter()
            .map(|c| (c.container.clone(), c.to.clone()))
            .collect();
        // The name first: someone else's `<name>-canary` is never adopted, and the update waits
        // (the primary is not patched instead: that would skip the judgement asked for).
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &workload.id.namespace);
        let name = canary_name(&workload.id.name);
        match api.get_opt(&name).await {
            Ok(Some(existing)) if !owned(&existing, workload) => {
                let uid = existing.metadata.uid.unwrap_or_default();
                self.name_taken(workload, &uid, &images).await;
                return Ok(true);
            }
            Ok(Some(leftover)) => {
                // Ours, but no state records it (a person removed the state, or the sweep has
                // not come by yet): removed as the sweep would, so the judgement starts afresh.
                if let Some(removal) = orphaned(&leftover, Some(primary), Some(workload)) {
                    self.remove_orphan(&leftover, &removal).await?;
                    return Ok(false);
                }
            }
            Ok(None) => {}
            Err(e) => return Err(ApplyError::from_kube(&workload.id, e)),
        }
        let state = CanaryState {
            phase: Phase::Running,
            images,
            from: changes
                .iter()
                .map(|c| (c.container.clone(), c.from.clone()))
                .collect(),
            started: now(),
            ready_since: None,
            failed_checks: 0,
            partition: None,
        };
        self.write_state(workload, Some(&state), None).await?;
        self.ctx.taken_names.forget(&workload.id);
        self.ctx
            .metrics
            .canary(CanaryResult::Started, &Why::NewVersion);
        tracing::info!(workload = %workload.id, images = ?state.images, "canary started");
        self.event(
            workload,
            EventType::Normal,
            "CanaryStarted",
            format!(
                "canary {} runs {}",
                canary_name(&workload.id.name),
                describe(&state.images)
            ),
        )
        .await;
        if let Err(e) = self.ensure_canary(primary, spec, &state).await {
            tracing::warn!(workload = %workload.id, error = %e, "cannot create the canary yet; retrying");
        }
        Ok(true)
    }

    /// One look at a workload with a canary or a rollout in progress.
    pub async fn check(
        &self,
        workload: &Workload,
        object: &Object,
        prometheus: Option<&PrometheusClient>,
    ) -> Step {
        let rollout = &workload.rollout;
        if let Some(state) = &rollout.canary_state {
            // A StatefulSet's canary is its own rolling-update partition.
            if object.as_stateful_set().is_some() {
                return self
                    .check_partition_canary(workload, object, state, prometheus)
                    .await;
            }
            // Only a Deployment runs a separate canary; other kinds' canaries are their own.
            let Some(primary) = object.as_deployment() else {
                return Step::Waiting;
            };
            return match state.phase {
                Phase::Running => match &rollout.canary {
                    Some(spec) => {
                        self.judge_canary(workload, primary, spec, state, prometheus)
                            .await
                    }
                    // The canary annotation was removed mid-way: stop the canary, keep the primary.
                    None => {
                        self.fail_canary(workload, state, "canary turned off", "turned_off")
                            .await
                    }
                },
                Phase::Promoting => self.watch_promotion(workload, primary, state).await,
            };
        }
        if let Some(watching) = &rollout.watching {
            return self.watch_rollout(workload, object, watching).await;
        }
        Step::Done
    }

    async fn judge_canary(
        &self,
        workload: &Workload,
        primary: &Deployment,
        spec: &CanarySpec,
        state: &CanaryState,
        prometheus: Option<&PrometheusClient>,
    ) -> Step {
        let canary = match self.ensure_canary(primary, spec, state).await {
            Ok(canary) => canary,
            // Taken since the canary started: it waits, reported once, until the name is free.
            Err(CanaryError::NameTaken { uid, .. }) => {
                self.name_taken(workload, &uid, &state.images).await;
                return Step::Waiting;
            }
            Err(e @ CanaryError::Stale { .. }) => {
                tracing::info!(workload = %workload.id, error = %e, "stale canary removed");
                return Step::Waiting;
            }
            Err(e) => {
                tracing::warn!(workload = %workload.id, error = %e, "cannot read or create the canary");
                return Step::Waiting;
            }
        };
        let pods = match self.pods(&workload.id.namespace, &canary).await {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!(workload = %workload.id, error = %e, "cannot list the canary's pods");
                return Step::Waiting;
            }
        };
        let all_ready = !pods.is_empty() && pods.iter().all(|p| p.ready);
        let check = match (&spec.query, all_ready) {
            (Some((query, _)), true) => Some(
                self.query(prometheus, query, &workload.id.namespace, &workload.id.name)
                    .await,
            ),
            _ => None,
        };
        match judge(spec, state, Timestamp::now(), &pods, check.as_ref()) {
            Verdict::Wait {
                state: next,
                changed,
            } => {
                if changed {
                    if let Err(e) = self.write_state(workload, Some(&next), None).await {
                        tracing::info!(workload = %workload.id, error = %e, "canary state not written; re-reading");
                    }
                }
                Step::Waiting
            }
            Verdict::Pass => self.promote(workload, state).await,
            Verdict::Fail(failure) => {
                self.fail_canary(workload, state, &failure.message, failure.kind)
                    .await
            }
        }
    }

    pub(super) async fn query(
        &self,
        prometheus: Option<&PrometheusClient>,
        query: &str,
        namespace: &str,
        deployment: &str,
    ) -> Check {
        let Some(client) = prometheus else {
            return Check::Error("no Prometheus URL configured (--prometheus-url)".into());
        };
        let promql = render(query, namespace, deployment, TRACK_CANARY);
        match client.query(&promql).await {
            Ok(Some(v)) => Check::Value(v),
            Ok(None) => Check::NoData,
            Err(e) => Check::Error(e.to_string()),
        }
    }

    /// The primary takes the canary's images with the usual guarded patch; the canary stays until
    /// that rollout completes.
    async fn promote(&self, workload: &Workload, state: &CanaryState) -> Step {
        let changes = changes(workload, &state.from, &state.images);
        let mut promoting = state.clone();
        promoting.phase = Phase::Promoting;
        let mut next = self.state_after(workload, &changes, How::CanaryPass, None);
        next.extra
            .insert(keys::CANARY_STATE.into(), Some(promoting.encode()));
        next.extra.insert(
            keys::ROLLOUT.into(),
            Some(rollout::watch(&changes, now(), workload.generation).encode()),
        );
        match self.write_guarded(workload, &changes, &next).await {
            Ok(_) => {
                tracing::info!(workload = %workload.id, images = ?state.images, "canary passed; primary updated");
                for change in &changes {
                    self.ctx.metrics.update(UpdateResult::Applied, &Why::Canary);
                    tracing::info!(workload = %workload.id, container = %change.container,
                        from = %change.from, to = %change.to, reason = "canary", "image updated");
                }
                self.event(
                    workload,
                    EventType::Normal,
                    "CanaryPassed",
                    format!("promoting {}", describe(&state.images)),
                )
                .await;
                Step::Waiting
            }
            Err(e) => {
                tracing::info!(workload = %workload.id, error = %e, "promotion not written; re-reading");
                Step::Waiting
            }
        }
    }

    async fn watch_promotion(
        &self,
        workload: &Workload,
        primary: &Deployment,
        state: &CanaryState,
    ) -> Step {
        match progress(primary) {
            Progress::InProgress => Step::Waiting,
            Progress::Stuck(message) | Progress::Failed(message) => {
                let watching = workload.rollout.watched_or(state);
                self.stuck(workload, &watching, &message, &Why::ProgressDeadline)
                    .await
            }
            Progress::Complete => {
                if let Err(e) = self.delete_canary(workload).await {
                    tracing::warn!(workload = %workload.id, error = %e, "cannot remove the canary yet");
                    return Step::Waiting;
                }
                let started = workload
                    .rollout
                    .watching
                    .as_ref()
                    .map(|w| w.started.as_str());
                let note = format!("{} rolled out; canary removed", describe(&state.images));
                self.promoted(workload, started, note).await
            }
        }
    }

    /// The promotion's rollout completed: the canary and rollout state cleared (the one write),
    /// then counted, timed and told.
    pub(super) async fn promoted(
        &self,
        workload: &Workload,
        started: Option<&str>,
        note: String,
    ) -> Step {
        let extra = BTreeMap::from([
            (keys::CANARY_STATE.to_string(), None),
            (keys::ROLLOUT.to_string(), None),
        ]);
        if self.write_extra(workload, extra).await.is_err() {
            return Step::Waiting;
        }
        if let Some(started) = started {
            observe_duration(&self.ctx.metrics, started);
        }
        self.ctx
            .metrics
            .canary(CanaryResult::Promoted, &Why::Passed);
        tracing::info!(workload = %workload.id, kind = workload.id.kind.name(), "canary promoted");
        self.event(workload, EventType::Normal, "CanaryPromoted", note)
            .await;
        Step::Done
    }

    /// The canary goes; the primary is left as it was; the version is rejected for good.
    async fn fail_canary(
        &self,
        workload: &Workload,
        state: &CanaryState,
        why: &str,
        kind: &'static str,
    ) -> Step {
        if let Err(e) = self.delete_canary(workload).await {
            tracing::warn!(workload = %workload.id, error = %e, "cannot remove the canary yet");
            return Step::Waiting;
        }
        let mut next = State::of(workload);
        let now = now();
        let tried = state.images.iter().map(|(container, image)| {
            let from = state.from.get(container).map_or("", String::as_str);
            Entry::new(&now, container, from, image, How::CanaryFail).because(Some(why.into()))
        });
        next.record(&workload.rollout.history, tried);
        reject(&mut next, &state.images);
        next.extra.insert(keys::CANARY_STATE.into(), None);
        match self.write_guarded(workload, &[], &next).await {
            Ok(_) => {
                self.ctx.metrics.canary(CanaryResult::Failed, &Label(kind));
                tracing::warn!(workload = %workload.id, images = ?state.images, reason = why, "canary failed; version rejected");
                self.event(
                    workload,
                    EventType::Warning,
                    "CanaryFailed",
                    format!("{} rejected: {why}", describe(&state.images)),
                )
                .await;
                Step::Done
            }
            Err(e) => {
                tracing::info!(workload = %workload.id, error = %e, "canary failure not written; re-reading");
                Step::Waiting
            }
        }
    }

    async fn watch_rollout(
        &self,
        workload: &Workload,
        object: &Object,
        watching: &RolloutState,
    ) -> Step {
        // A later spec change (the generation moved on) is not tagwatch's rollout any more; the
        // Progressing condition only turns False during a rollout, so a finished one stays quiet.
        if watching.generation.is_some() && watching.generation != workload.generation {
            return Step::Done;
        }
        if let Object::CronJob(cron_job) = object {
            return self.watch_cron_job(workload, cron_job, watching).await;
        }
        match progress_of(
            object,
            &watching.started,
            workload.rollout.progress_deadline,
            Timestamp::now(),
        ) {
            Progress::InProgress => Step::Waiting,
            Progress::Stuck(message) => {
                self.stuck(workload, watching, &message, &Why::ProgressDeadline)
                    .await
            }
            Progress::Failed(message) => {
                self.stuck(workload, watching, &message, &Why::RolloutFailed)
                    .await
            }
            Progress::Complete => Step::Completed {
                started: watching.started.clone(),
            },
        }
    }

    /// A CronJob's rollout is its next Job ([`rollout::cron_job`]). Its Jobs are listed only
    /// once its status shows a run since the write; a tagwatch that may not list Jobs says so
    /// and counts the rollout complete (the watch is optional: the image is written either way).
    async fn watch_cron_job(
        &self,
        workload: &Workload,
        cron_job: &CronJob,
        watching: &RolloutState,
    ) -> Step {
        let completed = Step::Completed {
            started: watching.started.clone(),
        };
        let jobs = if rollout::cron_job_ran(cron_job, &watching.started) {
            match self.jobs(&workload.id.namespace, cron_job).await {
                Ok(jobs) => jobs,
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    tracing::warn!(workload = %workload.id, error = %status.message,
                        "cannot list Jobs (grant tagwatch `list` on batch jobs): the rollout of this \
                         CronJob counts as complete without waiting for its next Job");
                    return completed;
                }
                Err(e) => {
                    tracing::warn!(workload = %workload.id, error = %e, "cannot list the CronJob's Jobs; retrying");
                    return Step::Waiting;
                }
            }
        } else {
            Vec::new()
        };
        let judged = rollout::cron_job(
            cron_job,
            &jobs,
            &watching.to,
            &watching.started,
            workload.rollout.progress_deadline,
            Timestamp::now(),
        );
        match judged {
            Progress::InProgress => Step::Waiting,
            Progress::Stuck(message) => {
                self.stuck(workload, watching, &message, &Why::ProgressDeadline)
                    .await
            }
            Progress::Failed(message) => {
                self.stuck(workload, watching, &message, &Why::RolloutFailed)
                    .await
            }
            Progress::Complete => completed,
        }
    }

    /// The Jobs that may be the CronJob's: those carrying its job template's labels (a Job
    /// copies them), a page at a time up to [`JOBS_LISTED`].
    async fn jobs(&self, namespace: &str, cron_job: &CronJob) -> Result<Vec<Job>, kube::Error> {
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), namespace);
        let labels = cron_job
            .spec
            .as_ref()
            .and_then(|s| s.job_template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut params = ListParams::default().limit(JOBS_PAGE);
        if !labels.is_empty() {
            params = params.labels(&labels);
        }
        let mut jobs = Vec::new();
        loop {
            let page = api.list(&params).await?;
            jobs.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) if jobs.len() < JOBS_LISTED => params = params.continue_token(&token),
                _ => return Ok(jobs),
            }
        }
    }

    /// Past the progress deadline, or failed by its kind's verdict: back to the images before,
    /// the new version rejected (or, with `tagwatch.dev/rollback: off`, only reported).
    /// `message` is the whole reason, as [`Progress::Stuck`] or [`Progress::Failed`] gives it;
    /// `cause` labels the rollback's metric.
    pub(super) async fn stuck(
        &self,
        workload: &Workload,
        watching: &RolloutState,
        message: &str,
        cause: &Why,
    ) -> Step {
        let canary = workload.rollout.canary_state.is_some();
        // Only a Deployment's canary is an object of its own to remove.
        if canary && workload.id.kind.canary_mode() == CanaryMode::Separate {
            if let Err(e) = self.delete_canary(workload).await {
                tracing::warn!(workload = %workload.id, error = %e, "cannot remove the canary yet");
                return Step::Waiting;
            }
        }
        let why = message.to_string();
        if !workload.rollout.rollback {
            let mut extra = BTreeMap::from([(keys::ROLLOUT.to_string(), None)]);
            if canary {
                extra.insert(keys::CANARY_STATE.to_string(), None);
            }
            if self.write_extra(workload, extra).await.is_err() {
                return Step::Waiting;
            }
            self.event(
                workload,
                EventType::Warning,
                "RolloutStuck",
                format!("{why}; not rolled back (tagwatch.dev/rollback: off)"),
            )
            .await;
            return Step::Done;
        }
        let changes = changes(workload, &watching.to, &watching.from);
        let mut next = self.state_after(workload, &changes, How::Rollback, Some(&why));
        reject(&mut next, &watching.to);
        next.extra.insert(keys::ROLLOUT.into(), None);
        next.extra.insert(keys::CANARY_STATE.into(), None);
        match self.write_guarded(workload, &changes, &next).await {
            Ok(_) => {
                self.ctx.metrics.rollback(cause);
                if canary {
                    self.ctx
                        .metrics
                        .canary(CanaryResult::Failed, &Why::PrimaryRollout);
                }
                tracing::warn!(workload = %workload.id, from = ?watching.to, to = ?watching.from, "rolled back");
                self.event(
                    workload,
                    EventType::Warning,
                    "RolledBack",
                    format!(
                        "{} rolled back to {}: {why}",
                        describe(&watching.to),
                        describe(&watching.from)
                    ),
                )
                .await;
                Step::Done
            }
            Err(e) => {
                tracing::info!(workload = %workload.id, error = %e, "rollback not written; re-reading");
                Step::Waiting
            }
        }
    }

    /// tagwatch's state after writing `changes`: applied images, history, rejected tags kept.
    fn state_after(
        &self,
        workload: &Workload,
        changes: &[ImageChange],
        how: How,
        reason: Option<&str>,
    ) -> State {
        let mut state = State::of(workload);
        for change in changes {
            state
                .applied
                .insert(change.container.clone(), change.to.clone());
        }
        let now = now();
        let entries = changes
            .iter()
            .map(|c| c.entry(&now, how).because(reason.map(str::to_string)));
        state.record(&workload.rollout.history, entries);
        state
    }

    pub(super) async fn write_state(
        &self,
        workload: &Workload,
        canary: Option<&CanaryState>,
        rollout: Option<&RolloutState>,
    ) -> Result<(), ApplyError> {
        let mut extra = BTreeMap::new();
        extra.insert(
            keys::CANARY_STATE.to_string(),
            canary.map(CanaryState::encode),
        );
        if let Some(rollout) = rollout {
            extra.insert(keys::ROLLOUT.to_string(), Some(rollout.encode()));
        }
        self.write_extra(workload, extra).await
    }

    pub(super) async fn write_extra(
        &self,
        workload: &Workload,
        extra: BTreeMap<String, Option<String>>,
    ) -> Result<(), ApplyError> {
        let mut state = State::of(workload);
        state.extra = extra;
        self.write_guarded(workload, &[], &state).await.map(|_| ())
    }

    /// The canary Deployment, created from the primary if missing (first start, or after a crash
    /// between writing the state and creating it). An existing one is resumed only if it is
    /// tagwatch's canary of this primary and runs the images under test.
    async fn ensure_canary(
        &self,
        primary: &Deployment,
        spec: &CanarySpec,
        state: &CanaryState,
    ) -> Result<Deployment, CanaryError> {
        let namespace = primary.metadata.namespace.clone().unwrap_or_default();
        let primary_name = primary.metadata.name.as_deref().unwrap_or_default();
        let primary_uid = primary.metadata.uid.as_deref().unwrap_or_default();
        let name = canary_name(primary_name);
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let resume = |existing: Deployment| {
            if is_ours(&existing, primary_name, primary_uid) {
                Ok(existing)
            } else {
                Err(CanaryError::NameTaken {
                    name: name.clone(),
                    uid: existing.metadata.uid.unwrap_or_default(),
                })
            }
        };
        if let Some(existing) = api.get_opt(&name).await? {
            let existing = resume(existing)?;
            if runs(&existing, &state.images) {
                return Ok(existing);
            }
            let leader = self.still_leader();
            if let (Some(uid), true) = (existing.metadata.uid.as_deref(), leader) {
                delete_exact(&api, &name, uid).await?;
            }
            return Err(CanaryError::Stale { name });
        }
        // The cache keeps only what tagwatch reads of the primary (see discover::trim): the
        // canary is a copy of the whole pod template, read afresh, and of this very primary.
        let whole = api.get(primary_name).await?;
        if whole.metadata.uid.as_deref() != Some(primary_uid) {
            return Err(CanaryError::Build(format!(
                "{namespace}/{primary_name} was replaced since it was read"
            )));
        }
        let canary =
            canary_deployment(&whole, &state.images, spec.replicas).map_err(CanaryError::Build)?;
        // Checked at the last moment: the lease can lapse during a slow check.
        if !self.still_leader() {
            return Err(CanaryError::NotLeader(format!("{namespace}/{name}")));
        }
        let created = match api.create(&PostParams::default(), &canary).await {
            Ok(created) => created,
            // Another writer created it a moment ago: resumed only if it is ours.
            Err(kube::Error::Api(s)) if s.code == 409 => resume(api.get(&name).await?)?,
            Err(e) => return Err(e.into()),
        };
        tracing::info!(namespace, canary = name, "canary deployment created");
        Ok(created)
    }

    /// Deletes tagwatch's canary of `workload`, if there is one: a Deployment of that name that
    /// is not tagwatch's is left alone, and the delete is guarded by the canary's uid.
    async fn delete_canary(&self, workload: &Workload) -> Result<(), kube::Error> {
        let api = self.canary_api(workload);
        let name = canary_name(&workload.id.name);
        let Some(existing) = api.get_opt(&name).await? else {
            return Ok(());
        };
        if !owned(&existing, workload) {
            tracing::info!(workload = %workload.id, canary = name,
                "a Deployment named like the canary is not tagwatch's; left alone");
            return Ok(());
        }
        let Some(uid) = existing.metadata.uid.as_deref() else {
            return Ok(());
        };
        if !self.still_leader() {
            // Reported as "not removed yet": the caller waits and the leader removes it.
            return Err(kube::Error::Api(Box::new(
                kube::core::Status::failure(
                    "not the leader any more: canary removal left to the leader",
                    "NotLeader",
                )
                .with_code(503),
            )));
        }
        delete_exact(&api, &name, uid).await.map(|_| ())
    }

    /// A write to the primary guarded by the resourceVersion it was decided on, sent only while
    /// this replica still leads.
    async fn write_guarded(
        &self,
        workload: &Workload,
        changes: &[ImageChange],
        state: &State,
    ) -> Result<DynamicObject, ApplyError> {
        self.writer
            .write_guarded(workload, changes, state, Fenced::Canary)
            .await
    }

    /// Whether this replica still leads, asked of the writer immediately before a canary is
    /// created or deleted (a lapsed lease is counted there).
    fn still_leader(&self) -> bool {
        self.writer.may_write(Fenced::Canary)
    }

    fn canary_api(&self, workload: &Workload) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &workload.id.namespace)
    }

    /// `<name>-canary` is someone else's: a Warning Event, a log line and the metric, once per
    /// version (`images`); the canary waits for the name.
    async fn name_taken(
        &self,
        workload: &Workload,
        holder_uid: &str,
        images: &BTreeMap<String, String>,
    ) {
        let version = describe(images);
        let name = canary_name(&workload.id.name);
        if !self.ctx.taken_names.first_report(&workload.id, &version) {
            tracing::debug!(workload = %workload.id, canary = name, "canary name still taken");
            return;
        }
        let uid = holder_uid;
        self.ctx
            .metrics
            .canary(CanaryResult::NotStarted, &Why::NameTaken);
        tracing::warn!(workload = %workload.id, canary = name, holder_uid = uid, images = ?images,
            "canary name taken by a Deployment that is not tagwatch's; the update waits");
        self.event(
            workload,
            EventType::Warning,
            "CanaryNameTaken",
            format!(
                "{name} exists and is not tagwatch's canary of {} (uid {uid}): {version} waits \
                 for its canary; rename or delete that Deployment",
                workload.id.name
            ),
        )
        .await;
    }

    /// Removes tagwatch's canaries that nothing records any more: the primary is gone or was
    /// replaced, no longer opts in, has unreadable annotations, or lost its canary state. Runs with
    /// the rollout checks, on the leader. Returns whether one is left for the next round.
    pub async fn remove_orphans(
        &self,
        workloads: &[Arc<Workload>],
        deployments: &[Arc<Deployment>],
    ) -> bool {
        self.ctx.taken_names.retain(workloads);
        let mut left = false;
        for removal in orphans(deployments, workloads) {
            let canary = deployments.iter().find(|d| {
                d.metadata.namespace.as_deref() == Some(removal.namespace.as_str())
                    && d.metadata.uid.as_deref() == Some(removal.canary_uid.as_str())
            });
            let Some(canary) = canary else {
                continue;
            };
            if let Err(e) = self.remove_orphan(canary, &removal).await {
                tracing::warn!(namespace = removal.namespace, canary = removal.canary, error = %e,
                    "cannot remove the canary yet; retrying");
                left = true;
            }
        }
        left
    }

    /// One orphan, decided again on the primary as it is now (the snapshot may be behind, or
    /// filtered by a label selector): its stale canary state goes first, then the canary, so a
    /// failure half way is found and finished in the next round.
    async fn remove_orphan(&self, canary: &Deployment, seen: &Removal) -> Result<(), ApplyError> {
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &seen.namespace);
        let id = WorkloadId::deployment(&seen.namespace, &seen.primary.name);
        let failed = |e| ApplyError::from_kube(&id, e);
        let primary = api.get_opt(&seen.primary.name).await.map_err(failed)?;
        let workload = primary.as_ref().and_then(discover::workload);
        let Some(removal) = orphaned(canary, primary.as_ref(), workload.as_ref()) else {
            return Ok(());
        };
        let primary_version = primary
            .as_ref()
            .and_then(|p| p.metadata.resource_version.as_deref());
        if let (true, Some(version)) = (removal.clear_state, primary_version) {
            let patch = patch::remove_annotation(keys::CANARY_STATE, version);
            match self.writer.patch(&id, patch, Fenced::Canary).await {
                Err(ApplyError::NotLeader { .. }) => return Ok(()),
                other => {
                    other?;
                }
            }
        }
        if !self.still_leader() {
            return Ok(());
        }
        let deleted = delete_exact(&api, &removal.canary, &removal.canary_uid)
            .await
            .map_err(failed)?;
        if !deleted {
            tracing::debug!(workload = %id, canary = removal.canary, "canary already gone");
            return Ok(());
        }
        let why = removal.why;
        self.ctx.metrics.canary(CanaryResult::Removed, &why);
        tracing::info!(workload = %id, canary = removal.canary, reason = why.kind(),
            state_cleared = removal.clear_state, "canary removed: {why}");
        if let Some(primary) = &primary {
            let cleared = if removal.clear_state {
                "; its canary state cleared"
            } else {
                ""
            };
            let reference = reference(&id, primary.metadata.uid.as_deref());
            self.writer
                .publish(
                    &reference,
                    EventType::Normal,
                    "CanaryRemoved",
                    "Rollout",
                    format!("canary {} removed: {why}{cleared}", removal.canary),
                )
                .await;
        }
        Ok(())
    }

    async fn pods(
        &self,
        namespace: &str,
        canary: &Deployment,
    ) -> Result<Vec<PodView>, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);
        let selector = canary_selector(canary);
        let pods = api.list(&ListParams::default().labels(&selector)).await?;
        Ok(pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(pod_view)
            .collect())
    }

    pub(super) async fn event(
        &self,
        workload: &Workload,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = reference(&workload.id, workload.uid.as_deref());
        self.writer
            .publish(&reference, type_, reason, "Rollout", note)
            .await;
    }
}

/// Whether `candidate` is tagwatch's canary of `workload` (marker and owner reference to its uid).
fn owned(candidate: &Deployment, workload: &Workload) -> bool {
    workload
        .uid
        .as_deref()
        .is_some_and(|uid| is_ours(candidate, &workload.id.name, uid))
}

/// Deletes exactly the object with `uid`: if the name holds another object by now, the API
/// server refuses (409) and that object, not tagwatch's, stays. False when nothing was deleted.
async fn delete_exact(api: &Api<Deployment>, name: &str, uid: &str) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) fn pod_view(pod: &Pod) -> PodView {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
    PodView {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready,
        restarts,
    }
}

/// Image changes from `from` to `to` for the containers whose image is still `from`.
pub(super) fn changes(
    workload: &Workload,
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
) -> Vec<ImageChange> {
    workload
        .containers
        .iter()
        .filter_map(|c| {
            let target = to.get(&c.name)?;
            let before = from.get(&c.name)?;
            (c.image_text == *before && before != target).then(|| ImageChange {
                container: c.name.clone(),
                image_path: c.image_path.clone(),
                from: before.clone(),
                to: target.clone(),
                from_tag: tag_of(before).unwrap_or_default(),
                to_tag: tag_of(target).unwrap_or_default(),
            })
        })
        .collect()
}

/// Adds the tags of `images` to the containers' rejected sets.
pub(super) fn reject(state: &mut State, images: &BTreeMap<String, String>) {
    for (container, image) in images {
        if let Some(tag) = tag_of(image) {
            state.reject(container, tag);
        }
    }
}

pub(super) fn describe(images: &BTreeMap<String, String>) -> String {
    images
        .iter()
        .map(|(c, i)| format!("{c}={i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// From tagwatch's patch to the rollout's completion, into the duration histogram.
pub fn observe_duration(metrics: &crate::metrics::Metrics, started: &str) {
    let seconds = started
        .parse::<Timestamp>()
        .ok()
        .map(|t| Timestamp::now().duration_since(t).as_secs_f64())
        .filter(|s| *s >= 0.0);
    if let Some(seconds) = seconds {
        metrics.rollout_duration.observe(seconds);
    }
}
