//! What the control loop decided to do: pure data, handed to the runner (`act::runner`) to
//! perform, or printed by `tagwatch plan` (which has no runner, and so never writes).

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;

use super::alias_tags::Levels;
use super::update::{Inputs, Outcome, WorkloadPlan};
use crate::discover::Object;
use crate::model::image::Repository;
use crate::model::rollout_state::RolloutState;
use crate::model::workload::Workload;

/// A write decided on a workload exactly as read: the plan, the listings it was made from (to
/// decide again on a fresh read after a conflict), and the object itself (a canary copies its
/// pod template).
#[derive(Debug, Clone)]
pub struct UpdateJob {
    pub workload: Arc<Workload>,
    pub primary: Option<Object>,
    pub inputs: Inputs,
    pub plan: WorkloadPlan,
    /// The plain rollout still in progress that this update replaces, if any.
    pub superseding: Option<RolloutState>,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Patch images (pins read first), or start the canary the workload asks for instead; a
    /// person's change seen on the way is recorded in the same write.
    Update(UpdateJob),
    /// Record a person's change (history, new baseline, the version rolled back from rejected)
    /// in one guarded write; no image is written.
    RecordManual(UpdateJob),
    /// Look at a canary or a watched rollout: promote, abort, roll back, or wait.
    CheckRollout {
        workload: Arc<Workload>,
        object: Object,
    },
    /// Remove tagwatch's canaries that nothing records any more.
    SweepCanaries {
        workloads: Vec<Arc<Workload>>,
        deployments: Vec<Arc<Deployment>>,
    },
    /// Keep a maintained repository's alias tags on its newest releases.
    MoveAliases {
        repo: Repository,
        levels: Levels,
        tags: Arc<Vec<String>>,
    },
    /// A Warning Event about a workload (a problem, a skip, a refusal), once; `GateBlocked` is
    /// a Normal Event (a gate doing its job is not a fault).
    Publish {
        regarding: ObjectReference,
        reason: &'static str,
        note: String,
    },
    /// Record a proposal (or its expiry) on the workload with a guarded patch, then publish the
    /// Normal Event `reason` with `note` (which carries the command that approves).
    RecordProposal {
        workload: Arc<Workload>,
        proposal: super::approvals::Proposal,
        reason: &'static str,
        note: String,
    },
    /// Store when each tag was first seen (`tagwatch.dev/min-age`) in tagwatch's ConfigMap.
    SaveFirstSeen { namespace: String, data: String },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Update(job) => {
                let verb = if job.workload.rollout.canary.is_some() {
                    "start canary"
                } else {
                    "update"
                };
                write!(f, "{verb} {}:", job.workload.id)?;
                for pending in job.plan.pending() {
                    write!(
                        f,
                        " {} {} → {}{}",
                        pending.container,
                        pending.from_tag,
                        pending.to_tag,
                        match pending.digest {
                            super::update::Digest::ToRead => " (pinned by digest)",
                            _ => "",
                        }
                    )?;
                }
                Ok(())
            }
            Action::RecordManual(job) => {
                write!(f, "record manual change {}:", job.workload.id)?;
                for manual in &job.plan.manual {
                    write!(
                        f,
                        " {} {} → {}",
                        manual.container, manual.applied, manual.current
                    )?;
                }
                Ok(())
            }
            Action::CheckRollout { workload, .. } => {
                let what = if workload.rollout.canary_state.is_some() {
                    "canary"
                } else {
                    "rollout"
                };
                write!(f, "check {what} {}", workload.id)
            }
            Action::SweepCanaries { .. } => f.write_str("remove left-behind canaries"),
            Action::RecordProposal {
                workload,
                reason,
                note,
                ..
            } => write!(f, "record {reason} on {}: {note}", workload.id),
            Action::SaveFirstSeen { namespace, .. } => {
                write!(
                    f,
                    "save first-seen times in {namespace}/{}",
                    crate::act::gates::STATE_CONFIGMAP
                )
            }
            Action::MoveAliases { repo, .. } => write!(f, "move alias tags of {repo}"),
            Action::Publish {
                regarding,
                reason,
                note,
            } => write!(
                f,
                "event {reason} on {}/{}: {note}",
                regarding.namespace.as_deref().unwrap_or_default(),
                regarding.name.as_deref().unwrap_or_default()
            ),
        }
    }
}

impl Action {
    /// Whether the action is about the workload printed as `workload` (`ns/name`, `ns/kind/name`).
    pub fn concerns(&self, workload: &str) -> bool {
        match self {
            Action::Update(job) | Action::RecordManual(job) => {
                job.workload.id.to_string() == workload
            }
            Action::CheckRollout { workload: w, .. }
            | Action::RecordProposal { workload: w, .. } => w.id.to_string() == workload,
            Action::Publish { regarding, .. } => {
                let name = format!(
                    "{}/{}",
                    regarding.namespace.as_deref().unwrap_or_default(),
                    regarding.name.as_deref().unwrap_or_default()
                );
                let kind = regarding.kind.as_deref().unwrap_or("Deployment");
                match crate::model::kind::Kind::parse(kind) {
                    Some(crate::model::kind::Kind::Deployment) | None => name == workload,
                    Some(kind) => {
                        let mut parts = name.splitn(2, '/');
                        let (ns, n) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                        format!("{ns}/{kind}/{n}") == workload
                    }
                }
            }
            Action::SweepCanaries { .. }
            | Action::MoveAliases { .. }
            | Action::SaveFirstSeen { .. } => false,
        }
    }
}

/// What to do for one workload's plan: a write when it has updates or a person's change to
/// record, nothing else.
pub fn for_plan(
    workload: &Arc<Workload>,
    primary: Option<Object>,
    inputs: Inputs,
    plan: WorkloadPlan,
    superseding: Option<RolloutState>,
) -> Option<Action> {
    let updates = plan
        .outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Update(_)));
    let job = || UpdateJob {
        workload: workload.clone(),
        primary: primary.clone(),
        inputs: inputs.clone(),
        plan: plan.clone(),
        superseding: superseding.clone(),
    };
    if updates {
        Some(Action::Update(job()))
    } else if !plan.manual.is_empty() {
        Some(Action::RecordManual(job()))
    } else {
        None
    }
}
