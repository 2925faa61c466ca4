//! The one runner of actions, and the one way to write.
//!
//! The control loop decides ([`crate::plan::actions::Action`]); the runner performs, each action
//! in its own task with a timeout. Every write — a patch, a canary created or deleted, an alias
//! tag pushed, an Event published — goes through a [`Writer`], which checks leadership
//! immediately before the request is sent: leadership is checked here and nowhere else, and a
//! command that has no `Writer` (`tagwatch plan`) cannot write by construction.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::DynamicObject;
use kube::runtime::events::{EventType, Recorder};
use kube::Client;
use tokio::sync::mpsc;

use super::tasks::{self, Applied, Checked, Fingerprint, Finished, WriteOutcome, TASK_TIMEOUT};
use super::write::{self, ApplyError};
use super::Context;
use crate::act::rollouts::Step;
use crate::leader::Leadership;
use crate::metrics::{CanaryResult, Metrics, Task, UpdateResult, Why};
use crate::model::workload::{Workload, WorkloadId};
use crate::notify::{self, Notice, Notifier, Regarding};
use crate::plan::actions::Action;
use crate::plan::patch::{ImageChange, State};

/// What a write needs besides its payload: the client, Events, and whether this replica leads.
pub struct Writer {
    client: Client,
    recorder: Recorder,
    leadership: Leadership,
    metrics: Metrics,
    /// Told of every Event published (those worth telling go to its sinks).
    notifier: Option<Notifier>,
}

impl Writer {
    pub fn new(
        client: Client,
        recorder: Recorder,
        leadership: Leadership,
        metrics: Metrics,
    ) -> Writer {
        Writer {
            client,
            recorder,
            leadership,
            metrics,
            notifier: None,
        }
    }

    /// Offers every Event this writer publishes to `notifier`.
    pub fn with_notifier(mut self, notifier: Notifier) -> Writer {
        self.notifier = Some(notifier);
        self
    }

    /// This turn's workloads, for the notifier to pick each Event's sinks by the workload's
    /// `tagwatch.dev/notify`.
    pub fn route_notifications(&self, workloads: &[Arc<Workload>]) {
        if let Some(notifier) = &self.notifier {
            notifier.route(workloads);
        }
    }

    /// Whether a write may be sent now: checked immediately before each one, since a lease can
    /// lapse while a task reads digests, pods or Prometheus. A refusal is counted as `what`
    /// (`updates`, `canaries`, `aliases`, `events`).
    pub fn may_write(&self, what: Fenced) -> bool {
        let leader = self.leadership.is_leader();
        if !leader {
            match what {
                Fenced::Update => self.metrics.update(UpdateResult::Skipped, &Why::NotLeader),
                Fenced::Canary => self.metrics.canary(CanaryResult::Skipped, &Why::NotLeader),
                Fenced::Alias | Fenced::Event | Fenced::State => {}
            }
        }
        leader
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A JSON Patch to a workload, sent only while this replica leads.
    pub async fn patch(
        &self,
        workload: &WorkloadId,
        patch: json_patch::Patch,
        what: Fenced,
    ) -> Result<DynamicObject, ApplyError> {
        if !self.may_write(what) {
            return Err(ApplyError::NotLeader {
                workload: workload.clone(),
            });
        }
        write::patch_workload(&self.client, workload, patch).await
    }

    /// `changes` and `state` in one JSON Patch guarded by the resourceVersion decided on.
    pub async fn write_guarded(
        &self,
        workload: &Workload,
        changes: &[ImageChange],
        state: &State,
        what: Fenced,
    ) -> Result<DynamicObject, ApplyError> {
        if !self.may_write(what) {
            return Err(ApplyError::NotLeader {
                workload: workload.id.clone(),
            });
        }
        write::write_guarded(&self.client, workload, changes, state).await
    }

    /// tagwatch's state ConfigMap in its own namespace: merged, or created when missing.
    pub async fn save_state(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> Result<(), kube::Error> {
        if !self.may_write(Fenced::State) {
            return Ok(());
        }
        super::gates::save(&self.client, namespace, key, value).await
    }

    /// An Event on a workload; a follower publishes none. A failure is logged, never fatal.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_about(reference, type_, reason, action, note, None)
            .await;
    }

    /// As [`Writer::publish`], the notice naming the proposal `label` (`ApprovalRequired`: what
    /// a Slack button approves).
    pub async fn publish_about(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        proposal: Option<String>,
    ) {
        if self.may_write(Fenced::Event) {
            // Offered before the Event is sent: queuing never waits, and a notice should not
            // depend on the Events API answering.
            if let Some(notifier) = &self.notifier {
                let type_text = match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                };
                if let Some(notice) = Notice::of_event(
                    reason,
                    type_text,
                    Regarding::of(reference),
                    note.clone(),
                    k8s_openapi::jiff::Timestamp::now(),
                    notify::new_id(),
                ) {
                    notifier.offer(Notice { proposal, ..notice });
                }
            }
            write::publish(&self.recorder, reference, type_, reason, action, note).await;
        }
    }
}

/// What a fenced write was, for the metric that counts a lapsed lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    Update,
    Canary,
    Alias,
    Event,
    State,
}

/// Performs actions, each in its own task, reporting back on the loop's channel.
#[derive(Clone)]
pub struct Runner {
    ctx: Arc<Context>,
    writer: Arc<Writer>,
    tx: mpsc::Sender<Finished>,
}

impl Runner {
    pub fn new(ctx: Arc<Context>, writer: Arc<Writer>, tx: mpsc::Sender<Finished>) -> Runner {
        Runner { ctx, writer, tx }
    }

    pub fn writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    pub fn run(&self, action: Action) {
        let (ctx, writer) = (self.ctx.clone(), self.writer.clone());
        match action {
            Action::Update(job) | Action::RecordManual(job) => {
                let failed = (
                    job.workload.id.clone(),
                    job.workload.resource_version.clone(),
                );
                tasks::spawn(
                    &self.tx,
                    &self.ctx.metrics,
                    Task::Write,
                    Some(TASK_TIMEOUT),
                    tasks::apply(ctx, writer, job),
                    move |why| {
                        Finished::Applied(Applied {
                            id: failed.0.clone(),
                            decided_at: failed.1.clone(),
                            outcome: WriteOutcome::Retry(why.to_string()),
                            conflicts: 0,
                            fingerprint: Fingerprint::default(),
                        })
                    },
                );
            }
            Action::CheckRollout { workload, object } => {
                let failed = (
                    workload.id.clone(),
                    workload
                        .rollout
                        .watching
                        .as_ref()
                        .map(|w| w.started.clone()),
                );
                tasks::spawn(
                    &self.tx,
                    &self.ctx.metrics,
                    Task::Check,
                    Some(TASK_TIMEOUT),
                    tasks::check(ctx, writer, workload, object),
                    move |_| {
                        Finished::Checked(Checked {
                            id: failed.0.clone(),
                            started: failed.1.clone(),
                            step: Step::Waiting,
                        })
                    },
                );
            }
            Action::SweepCanaries {
                workloads,
                deployments,
            } => tasks::spawn(
                &self.tx,
                &self.ctx.metrics,
                Task::Check,
                Some(TASK_TIMEOUT),
                tasks::sweep(ctx, writer, workloads, deployments),
                |_| Finished::Swept(true),
            ),
            Action::MoveAliases { repo, levels, tags } => {
                let failed = repo.clone();
                let confirmed = self.ctx.confirmed.clone();
                tasks::spawn(
                    &self.tx,
                    &self.ctx.metrics,
                    Task::Aliases,
                    Some(TASK_TIMEOUT),
                    tasks::sync_aliases(ctx, writer, repo, levels, tags, confirmed),
                    move |_| Finished::Aliased(failed),
                );
            }
            Action::Publish {
                regarding,
                reason,
                note,
            } => {
                let type_ = if reason == crate::act::gates::GATE_BLOCKED
                    || reason == crate::control::HOLD_REASON
                    || reason == crate::act::approvals::APPROVAL_GRANTED
                {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                // kube's Recorder folds Events with the same type, reason, action and object
                // into one series and keeps the first note: the action carries a digest of the
                // note, so a second held-back version is its own Event while a repeat of the
                // same note still only counts up.
                let action = format!("Skip-{:016x}", note_digest(&note));
                tokio::spawn(async move {
                    writer
                        .publish(&regarding, type_, reason, &action, note)
                        .await;
                });
            }
            Action::RecordProposal {
                workload,
                proposal,
                reason,
                note,
            } => {
                tokio::spawn(async move {
                    crate::act::approvals::record_proposal(
                        &writer, &workload, &proposal, reason, note,
                    )
                    .await;
                });
            }
            Action::SaveFirstSeen { namespace, data } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = writer
                        .save_state(&namespace, crate::act::gates::FIRST_SEEN_KEY, &data)
                        .await;
                    if let Err(error) = &result {
                        tracing::warn!(%namespace, %error, "cannot save first-seen times; trying again later");
                    }
                    let _ = tx.send(Finished::Saved(result.is_ok())).await;
                });
            }
        }
    }
}

/// A digest of an Event note, the same in every replica of one build (`DefaultHasher::new` has
/// fixed keys).
fn note_digest(note: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    note.hash(&mut hasher);
    hasher.finish()
}
