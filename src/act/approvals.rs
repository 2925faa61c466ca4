//! The writes of the approval flow: the loop records a proposal (or its expiry) and says so in
//! an Event; a person's decision ([`approve`], [`deny`]) is recorded by `tagwatch approve` and
//! `tagwatch deny` under the identity the API server reports, and by the Slack buttons
//! (`POST /slack/interactions`) under the Slack user's.
//!
//! A decision is not fenced by leadership: like the CLI, any replica serving a Slack click may
//! record it, because every write is a JSON Patch guarded by what was read (the approvals list
//! or the resourceVersion). Two replicas (or Slack's retry) handling one click cannot record it
//! twice: the second read sees the first's approval (one person counts once) or no proposal.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::events::{EventType, Recorder};
use kube::Client;

use crate::act::runner::{Fenced, Writer};
use crate::act::write::{patch_workload, publish, reference, write_guarded, ApplyError};
use crate::discover::object::{api_resource, Object};
use crate::model::annotations as keys;
use crate::model::kind::Kind;
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::approvals::{self, proposal_patch, Approvals, Proposal};
use crate::plan::patch::State;

pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
pub const APPROVAL_GRANTED: &str = "ApprovalGranted";
pub const APPROVAL_EXPIRED: &str = "ApprovalExpired";
pub const APPROVAL_DENIED: &str = "ApprovalDenied";

/// Another person deciding at the same moment fails our `test`: read again and add to theirs.
/// Bounded: a workload rewritten this often is better decided on again by the person.
const ATTEMPTS: usize = 5;

/// Records `proposal` on `workload` as read, then publishes `reason`. Only the leader writes
/// (the writer's fence). A conflict means the workload changed since: the change brings a new
/// decision, so nothing is retried here, and no Event claims a proposal that was not recorded.
pub async fn record_proposal(
    writer: &Writer,
    workload: &Workload,
    proposal: &Proposal,
    reason: &'static str,
    note: String,
) {
    let patch = proposal_patch(proposal, workload.resource_version.as_deref());
    // kube's Recorder folds Events with the same reason and action on one object into a series
    // that keeps the first note: each proposal is its own Event, or a superseding version's
    // command would be lost.
    let action = format!("Propose-{}", proposal.since.as_nanosecond());
    match writer.patch(&workload.id, patch, Fenced::State).await {
        Ok(_) => {
            writer
                .publish_about(
                    &reference(&workload.id, workload.uid.as_deref()),
                    EventType::Normal,
                    reason,
                    &action,
                    note,
                    Some(proposal.label()),
                )
                .await;
        }
        Err(ApplyError::NotLeader { .. }) => {}
        Err(error) => {
            tracing::info!(workload = %workload.id, %error, kind = error.kind(), "proposal not recorded; decided again on the next change");
        }
    }
}

/// Who the API server says the caller is (`SelfSubjectReview`): the identity an approval is
/// recorded under, never one the person types.
pub async fn whoami(client: &Client) -> Result<String, kube::Error> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

/// Why a decision was not recorded. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("workload {id} not found{}", if id.kind == Kind::Rollout { " (or Argo Rollouts is not installed)" } else { "" })]
    NotFound { id: WorkloadId },
    #[error("{id} is not watched by tagwatch")]
    NotWatched { id: WorkloadId },
    #[error("{id} asks for no approvals ({} is not set)", keys::APPROVALS)]
    NoApprovals { id: WorkloadId },
    /// Nothing to decide: no proposal, another version proposed, expired, or already released.
    /// A Slack button or a command typed from an old message ends here.
    #[error("{id}: {why}")]
    Stale { id: WorkloadId, why: String },
    #[error("{id} kept changing while recording the decision; try again")]
    KeptChanging { id: WorkloadId },
    #[error("reading workload {id}: {source}")]
    Read { id: WorkloadId, source: kube::Error },
    #[error("reading workload {id}: not a readable {}: {source}", id.kind.name())]
    Unreadable {
        id: WorkloadId,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] ApplyError),
}

impl DecisionError {
    /// Whether the person's view was out of date (say so plainly) rather than something failing.
    pub fn is_stale(&self) -> bool {
        matches!(self, DecisionError::Stale { .. })
    }
}

/// A recorded (or already present) approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Written: `count` of `needed` distinct people have approved `label` now.
    Recorded {
        label: String,
        count: usize,
        needed: u8,
    },
    /// This person had approved `label` already; nothing written (one person counts once).
    Already { label: String },
}

/// The workload and its approval state, read afresh.
async fn read(client: &Client, id: &WorkloadId) -> Result<(Workload, Approvals), DecisionError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &api_resource(id.kind));
    // Any 404: a missing object answers a `NotFound` Status, an unserved kind (no Argo Rollouts)
    // a bare "404 page not found".
    let object = match api.get(&id.name).await {
        Ok(object) => object,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(DecisionError::NotFound { id: id.clone() })
        }
        Err(source) => {
            return Err(DecisionError::Read {
                id: id.clone(),
                source,
            })
        }
    };
    let object =
        Object::from_dynamic(id.kind, object).map_err(|source| DecisionError::Unreadable {
            id: id.clone(),
            source,
        })?;
    let workload = crate::discover::workload(&object)
        .ok_or_else(|| DecisionError::NotWatched { id: id.clone() })?;
    let approvals = workload
        .approvals
        .clone()
        .ok_or_else(|| DecisionError::NoApprovals { id: id.clone() })?;
    Ok((workload, *approvals))
}

/// Records `user`'s approval of the proposal on `id` (checked against `version` when named) in
/// `tagwatch.dev/approvals-given`, retrying on a conflicting write by someone else.
pub async fn approve(
    client: &Client,
    id: &WorkloadId,
    user: &str,
    version: Option<&str>,
) -> Result<Approved, DecisionError> {
    for _ in 0..ATTEMPTS {
        let (workload, approvals) = read(client, id).await?;
        let given = approvals::approve(&approvals, version, user, jiff::Timestamp::now()).map_err(
            |why| DecisionError::Stale {
                id: id.clone(),
                why,
            },
        )?;
        let label = approvals::open_proposal(&approvals, None)
            .map(|p| p.label())
            .unwrap_or_default();
        let Some(given) = given else {
            return Ok(Approved::Already { label });
        };
        let patch = approvals::given_patch(
            workload.annotations.get(keys::APPROVALS_GIVEN),
            &given,
            workload.resource_version.as_deref(),
        );
        match patch_workload(client, id, patch).await {
            Ok(_) => {
                let count = given.iter().filter(|g| g.version == label).count();
                return Ok(Approved::Recorded {
                    label,
                    count,
                    needed: approvals.needed,
                });
            }
            Err(ApplyError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DecisionError::KeptChanging { id: id.clone() })
}

/// Denies the proposal on `id` (checked against `version` when named) for `user`: the same
/// guarded write as a rollback's rejection (the version joins `tagwatch.dev/rejected` and is
/// never applied; a newer one proposes afresh), then an `ApprovalDenied` Event naming `user`.
/// Returns the label denied.
pub async fn deny(
    client: &Client,
    recorder: &Recorder,
    id: &WorkloadId,
    user: &str,
    version: Option<&str>,
) -> Result<String, DecisionError> {
    for _ in 0..ATTEMPTS {
        let (workload, approvals) = read(client, id).await?;
        let proposal = approvals::undecided(&approvals, version)
            .map_err(|why| DecisionError::Stale {
                id: id.clone(),
                why,
            })?
            .clone();
        let mut state = State::of(&workload);
        for (container, version) in &proposal.versions {
            state.reject(container, version.clone());
        }
        state.extra.insert(keys::PROPOSAL.into(), None);
        match write_guarded(client, &workload, &[], &state).await {
            Ok(_) => {
                let label = proposal.label();
                publish(
                    recorder,
                    &reference(id, workload.uid.as_deref()),
                    EventType::Normal,
                    APPROVAL_DENIED,
                    "Deny",
                    format!("{label} denied by {user}; rejected ({})", keys::REJECTED),
                )
                .await;
                return Ok(label);
            }
            Err(ApplyError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DecisionError::KeptChanging { id: id.clone() })
}
