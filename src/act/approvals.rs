//! The writes of the approval flow: the loop records a proposal (or its expiry) and says so in
//! an Event; `tagwatch approve` and `tagwatch deny` record a person's decision under the
//! identity the API server reports for them.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::Client;

use crate::act::runner::{Fenced, Writer};
use crate::act::write::{reference, ApplyError};
use crate::model::workload::Workload;
use crate::plan::approvals::{proposal_patch, Proposal};

pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
pub const APPROVAL_GRANTED: &str = "ApprovalGranted";
pub const APPROVAL_EXPIRED: &str = "ApprovalExpired";

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
                .publish(
                    &reference(&workload.id, workload.uid.as_deref()),
                    EventType::Normal,
                    reason,
                    &action,
                    note,
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
