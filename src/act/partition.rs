//! The I/O of a StatefulSet's canary on its own rolling-update partition (the pure part is
//! [`crate::plan::partition`]): each step is one patch of the set guarded by the
//! resourceVersion it was decided on, the update revision's pods are read to judge it, and the
//! Events and metrics are those of a Deployment's canary.
//!
//! All state lives on the set (`tagwatch.dev/canary-state`, with the partition before), so a
//! restart or a new leader resumes the canary where it was and ends it exactly once.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::Api;

use super::prometheus::PrometheusClient;
use super::rollouts::{changes, describe, pod_view, reject, Rollouts, Step};
use super::runner::Fenced;
use super::write::{now, ApplyError};
use crate::discover::Object;
use crate::metrics::{CanaryResult, Label, UpdateResult, Why};
use crate::model::annotations as keys;
use crate::model::canary::CanarySpec;
use crate::model::history::{Entry, How};
use crate::model::rollout_state::{CanaryState, PartitionState, Phase, RolloutState};
use crate::model::workload::Workload;
use crate::plan::canary::{judge, PodView, Verdict};
use crate::plan::partition::{self, Move, Partition, REVISION_LABEL};
use crate::plan::patch::{ImageChange, State};
use crate::plan::rollout::{progress_of, Progress};

impl Rollouts<'_> {
    /// Starts the canary of `changes` on the set's partition: the images, the partition that
    /// leaves the canary replicas (the highest ordinals) to them, and the canary state with the
    /// partition before, in one guarded patch. `state` is the plan's (applied images, alias
    /// intents), written with it.
    pub async fn start_partition_canary(
        &self,
        workload: &Workload,
        set: &StatefulSet,
        at: Partition,
        spec: &CanarySpec,
        changes: &[ImageChange],
        state: State,
    ) -> Result<(), ApplyError> {
        let replicas = partition::replicas(set);
        let to = partition::canary_partition(replicas, spec.replicas);
        let canary = CanaryState {
            phase: Phase::Running,
            images: changes
                .iter()
                .map(|c| (c.container.clone(), c.to.clone()))
                .collect(),
            from: changes
                .iter()
                .map(|c| (c.container.clone(), c.from.clone()))
                .collect(),
            started: now(),
            ready_since: None,
            failed_checks: 0,
            partition: Some(PartitionState {
                original: at.value(),
            }),
        };
        let mut next = state;
        next.extra
            .insert(keys::CANARY_STATE.into(), Some(canary.encode()));
        // The canary is the rollout now; a fresh one is recorded when it passes.
        next.extra.insert(keys::ROLLOUT.into(), None);
        let patch = partition::patch(
            changes,
            &next,
            &workload.annotations.to_map(),
            workload.resource_version.as_deref(),
            Some(Move { at, to: Some(to) }),
        );
        self.writer
            .patch(&workload.id, patch, Fenced::Canary)
            .await?;
        self.ctx
            .metrics
            .canary(CanaryResult::Started, &Why::NewVersion);
        let pods = partition::canary_pods(replicas, Some(to));
        tracing::info!(workload = %workload.id, images = ?canary.images, partition = to,
            original = ?at.value(), "partition canary started");
        self.event(
            workload,
            EventType::Normal,
            "CanaryStarted",
            format!(
                "partition {to}: {pods} of {replicas} pods (ordinals {to} and up) run {}",
                describe(&canary.images)
            ),
        )
        .await;
        Ok(())
    }

    /// One look at a StatefulSet's canary: judge it, promote it, or end it.
    pub(super) async fn check_partition_canary(
        &self,
        workload: &Workload,
        object: &Object,
        state: &CanaryState,
        prometheus: Option<&PrometheusClient>,
    ) -> Step {
        let Some(set) = object.as_stateful_set() else {
            return Step::Waiting;
        };
        match state.phase {
            Phase::Running => match &workload.rollout.canary {
                Some(spec) => {
                    self.judge_partition(workload, set, spec, state, prometheus)
                        .await
                }
                // The canary annotation was removed mid-way: the canary fails, as a Deployment's.
                None => {
                    self.fail_partition(workload, set, state, "canary turned off", "turned_off")
                        .await
                }
            },
            Phase::Promoting => {
                self.watch_partition_promotion(workload, object, state)
                    .await
            }
        }
    }

    async fn judge_partition(
        &self,
        workload: &Workload,
        set: &StatefulSet,
        spec: &CanarySpec,
        state: &CanaryState,
        prometheus: Option<&PrometheusClient>,
    ) -> Step {
        let pods = match self.revision_pods(workload, set).await {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!(workload = %workload.id, error = %e, "cannot list the canary's pods");
                return Step::Waiting;
            }
        };
        let spec = partition::judged(spec, set);
        let all_ready = pods.len() >= usize::try_from(spec.replicas).unwrap_or(0)
            && pods.iter().all(|p| p.ready);
        let check = match (&spec.query, all_ready) {
            (Some((query, _)), true) => Some(
                self.query(prometheus, query, &workload.id.namespace, &workload.id.name)
                    .await,
            ),
            _ => None,
        };
        match judge(&spec, state, Timestamp::now(), &pods, check.as_ref()) {
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
            Verdict::Pass => self.promote_partition(workload, set, state).await,
            Verdict::Fail(failure) => {
                self.fail_partition(workload, set, state, &failure.message, failure.kind)
                    .await
            }
        }
    }

    /// The set's pods of its update revision (none until the controller has seen the write).
    async fn revision_pods(
        &self,
        workload: &Workload,
        set: &StatefulSet,
    ) -> Result<Vec<PodView>, kube::Error> {
        let Some(revision) = partition::update_revision(set) else {
            return Ok(Vec::new());
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &workload.id.namespace);
        let listed = api
            .list(&ListParams::default().labels(&format!("{REVISION_LABEL}={revision}")))
            .await?;
        Ok(partition::revision_pods(set, &listed.items)
            .into_iter()
            .map(pod_view)
            .collect())
    }

    /// Passed: the partition goes back to what it was, so the controller rolls the version out
    /// to every pod; the rollout is then watched as any StatefulSet's.
    async fn promote_partition(
        &self,
        workload: &Workload,
        set: &StatefulSet,
        state: &CanaryState,
    ) -> Step {
        let original = state.partition.unwrap_or_default().original;
        let moved = partition::rolling(set)
            .ok()
            .map(|at| Move { at, to: original });
        let mut promoting = state.clone();
        promoting.phase = Phase::Promoting;
        let now = now();
        let mut next = State::of(workload);
        next.record(
            &workload.rollout.history,
            entries(state, &now, How::CanaryPass, None),
        );
        next.extra
            .insert(keys::CANARY_STATE.into(), Some(promoting.encode()));
        let spec_moves = moved.is_some_and(Move::changes);
        let watching = RolloutState {
            from: state.from.clone(),
            to: state.images.clone(),
            started: now,
            generation: workload.generation.map(|g| g + i64::from(spec_moves)),
        };
        next.extra
            .insert(keys::ROLLOUT.into(), Some(watching.encode()));
        let patch = partition::patch(
            &[],
            &next,
            &workload.annotations.to_map(),
            workload.resource_version.as_deref(),
            moved,
        );
        match self.writer.patch(&workload.id, patch, Fenced::Canary).await {
            Ok(_) => {
                tracing::info!(workload = %workload.id, images = ?state.images, partition = ?original,
                    "canary passed; partition restored");
                for (container, to) in &state.images {
                    self.ctx.metrics.update(UpdateResult::Applied, &Why::Canary);
                    tracing::info!(workload = %workload.id, container = %container,
                        from = %state.from.get(container).map_or("", String::as_str), to = %to,
                        reason = "canary", "image updated");
                }
                self.event(
                    workload,
                    EventType::Normal,
                    "CanaryPassed",
                    format!(
                        "promoting {}: partition back to {}",
                        describe(&state.images),
                        shown(original)
                    ),
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

    /// The rollout after the pass, judged as any StatefulSet's (every pod on the new revision
    /// and Ready, within `tagwatch.dev/progress-deadline`, else rolled back).
    async fn watch_partition_promotion(
        &self,
        workload: &Workload,
        object: &Object,
        state: &CanaryState,
    ) -> Step {
        let watching = workload.rollout.watched_or(state);
        match progress_of(
            object,
            &watching.started,
            workload.rollout.progress_deadline,
            Timestamp::now(),
        ) {
            Progress::InProgress => Step::Waiting,
            Progress::Stuck(message) => {
                self.stuck(workload, &watching, &message, &Why::ProgressDeadline)
                    .await
            }
            Progress::Failed(message) => {
                self.stuck(workload, &watching, &message, &Why::RolloutFailed)
                    .await
            }
            Progress::Complete => {
                let note = format!("{} rolled out to every pod", describe(&state.images));
                self.promoted(workload, Some(&watching.started), note).await
            }
        }
    }

    /// Failed: the images and the partition before, the canary state cleared and the version
    /// rejected for good, in one guarded patch.
    async fn fail_partition(
        &self,
        workload: &Workload,
        set: &StatefulSet,
        state: &CanaryState,
        why: &str,
        kind: &'static str,
    ) -> Step {
        // Only containers still at the version under test: a person's change meanwhile wins.
        let restore = changes(workload, &state.images, &state.from);
        let original = state.partition.unwrap_or_default().original;
        // A set turned OnDelete meanwhile takes no partition (the API server would refuse one).
        let moved = partition::rolling(set)
            .ok()
            .map(|at| Move { at, to: original });
        let mut next = State::of(workload);
        for change in &restore {
            next.applied
                .insert(change.container.clone(), change.to.clone());
        }
        let now = now();
        next.record(
            &workload.rollout.history,
            entries(state, &now, How::CanaryFail, Some(why)),
        );
        reject(&mut next, &state.images);
        next.extra.insert(keys::CANARY_STATE.into(), None);
        next.extra.insert(keys::ROLLOUT.into(), None);
        let patch = partition::patch(
            &restore,
            &next,
            &workload.annotations.to_map(),
            workload.resource_version.as_deref(),
            moved,
        );
        match self.writer.patch(&workload.id, patch, Fenced::Canary).await {
            Ok(_) => {
                self.ctx.metrics.canary(CanaryResult::Failed, &Label(kind));
                tracing::warn!(workload = %workload.id, images = ?state.images, reason = why,
                    "partition canary failed; images and partition restored, version rejected");
                self.event(
                    workload,
                    EventType::Warning,
                    "CanaryFailed",
                    format!(
                        "{} rejected: {why}; back to {}, partition {}",
                        describe(&state.images),
                        describe(&state.from),
                        shown(original)
                    ),
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
}

/// The canary's version as history entries, one per container.
fn entries<'a>(
    state: &'a CanaryState,
    now: &'a str,
    how: How,
    why: Option<&'a str>,
) -> impl Iterator<Item = Entry> + 'a {
    state.images.iter().map(move |(container, image)| {
        let from = state.from.get(container).map_or("", String::as_str);
        Entry::new(now, container, from, image, how).because(why.map(str::to_string))
    })
}

/// A partition as people read it: `2`, or `unset`.
fn shown(partition: Option<i32>) -> String {
    partition.map_or_else(|| "unset".to_string(), |p| p.to_string())
}
