//! Writes a planned update: the guarded JSON Patch, then the `ImageUpdated` Event.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DynamicObject, Patch, PatchParams};

use crate::discover::object::api_resource;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};

use crate::model::workload::{Workload, WorkloadId};
use crate::plan::patch::{self, ImageChange, State};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The workload changed underneath (a failed `test` op answers 422 without causes, a stale
    /// version 409): nothing was written; decide again on a fresh read.
    #[error("{workload} changed since it was read (HTTP {code}); nothing written")]
    Conflict { workload: WorkloadId, code: u16 },
    /// Not allowed as written (validation, admission policy, RBAC): trying again changes nothing.
    #[error("{workload}: API server refused the patch (HTTP {code} {reason}): {message}")]
    Refused {
        workload: WorkloadId,
        code: u16,
        reason: String,
        message: String,
    },
    /// The lease lapsed: nothing was sent.
    #[error("{workload}: not the leader any more; write left to the leader")]
    NotLeader { workload: WorkloadId },
    #[error("{workload}: {source}")]
    Transport {
        workload: WorkloadId,
        source: kube::Error,
    },
}

impl ApplyError {
    /// A failed request on `workload`: a 422 or 409 is a conflict (changed underneath), another
    /// API answer a refusal, anything else transport.
    pub fn from_kube(workload: &WorkloadId, error: kube::Error) -> ApplyError {
        match error {
            kube::Error::Api(status) if is_conflict(&status) => ApplyError::Conflict {
                workload: workload.clone(),
                code: status.code,
            },
            kube::Error::Api(status) => ApplyError::Refused {
                workload: workload.clone(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            source => ApplyError::Transport {
                workload: workload.clone(),
                source,
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ApplyError::Conflict { .. } => "conflict",
            ApplyError::Refused { .. } => "refused",
            ApplyError::NotLeader { .. } => "not_leader",
            ApplyError::Transport { .. } => "transport",
        }
    }
}

/// A JSON Patch to a workload of any kind (through the dynamic API: one path for every kind).
pub async fn patch_workload(
    client: &Client,
    workload: &WorkloadId,
    patch: json_patch::Patch,
) -> Result<DynamicObject, ApplyError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &workload.namespace,
        &api_resource(workload.kind),
    );
    let params = PatchParams {
        field_manager: Some("tagwatch".into()),
        ..PatchParams::default()
    };
    api.patch(&workload.name, &params, &Patch::Json::<()>(patch))
        .await
        .map_err(|e| ApplyError::from_kube(workload, e))
}

/// Whether a refused write means "the object changed since it was read" (try again on a fresh
/// read) rather than "this write is not allowed" (report it; trying again changes nothing).
/// A stale resourceVersion answers 409; a failed `test` op answers 422 `Invalid` with no causes
/// (04, 29); validation and admission denials answer 422 `Invalid` *with* causes (08, 15).
pub fn is_conflict(status: &kube::core::Status) -> bool {
    match status.code {
        409 => true,
        422 => status.details.as_ref().is_none_or(|d| d.causes.is_empty()),
        _ => false,
    }
}

/// A write decided on `workload` as read: `changes` and `state` in one JSON Patch that also tests
/// the resourceVersion, so it lands at most once.
pub async fn write_guarded(
    client: &Client,
    workload: &Workload,
    changes: &[ImageChange],
    state: &State,
) -> Result<DynamicObject, ApplyError> {
    let patch = patch::build_guarded(
        changes,
        state,
        Some(&workload.annotations.to_map()),
        workload.resource_version.as_deref(),
    );
    patch_workload(client, &workload.id, patch).await
}

/// Now, as written in history entries and state annotations (the pure core takes time as an
/// argument; the clock is read here, at the edge that writes).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// What an Event about `workload` regards.
pub fn reference(workload: &WorkloadId, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some(workload.kind.api_version().into()),
        kind: Some(workload.kind.name().into()),
        namespace: Some(workload.namespace.clone()),
        name: Some(workload.name.clone()),
        uid: uid.map(str::to_string),
        ..ObjectReference::default()
    }
}

/// Publishes an Event on the workload; a failure is logged, never fatal: Events are a report,
/// not state.
pub async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(
            namespace = reference.namespace.as_deref().unwrap_or(""),
            name = reference.name.as_deref().unwrap_or(""),
            reason,
            error = %e,
            "cannot publish event"
        );
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16, causes: &[&str]) -> Status {
        let causes: Vec<serde_json::Value> = causes
            .iter()
            .map(|m| serde_json::json!({"message": m}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "x", "reason": "Invalid", "code": code,
            "details": if causes.is_empty() { serde_json::json!({}) } else { serde_json::json!({"causes": causes}) }
        }))
        .unwrap_or_else(|e| panic!("a Status literal: {e}"))
    }

    #[test]
    fn only_a_stale_read_is_a_conflict() {
        let cases = [
            (status(409, &[]), true),
            // A failed `test` op (04) and an `add` into a missing map (29): empty details.
            (status(422, &[]), true),
            // A validation error (08) or an admission policy's denial (15).
            (status(422, &["denied request"]), false),
            (status(403, &[]), false),
            (status(400, &[]), false),
        ];
        for (status, conflict) in cases {
            assert_eq!(is_conflict(&status), conflict, "{status:?}");
        }
    }
}
