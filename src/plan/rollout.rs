//! Watching a rollout tagwatch started: complete, still going, or stuck past its progress
//! deadline (the Deployment controller's verdict, read from the `Progressing` condition).

use k8s_openapi::api::apps::v1::Deployment;

use super::patch::ImageChange;
use crate::model::rollout_state::RolloutState;

/// The rollout `changes` start; the patch changes the spec, so the server moves the
/// generation from `generation` to the next.
pub fn watch(changes: &[ImageChange], started: String, generation: Option<i64>) -> RolloutState {
    RolloutState {
        from: changes
            .iter()
            .map(|c| (c.container.clone(), c.from.clone()))
            .collect(),
        to: changes
            .iter()
            .map(|c| (c.container.clone(), c.to.clone()))
            .collect(),
        started,
        generation: generation.map(|g| g + 1),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Complete,
    InProgress,
    /// `ProgressDeadlineExceeded`, with the controller's message.
    Stuck(String),
}

pub fn progress(deployment: &Deployment) -> Progress {
    let Some(status) = &deployment.status else {
        return Progress::InProgress;
    };
    if let Some(stuck) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Progress::Stuck(
            stuck
                .message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".into()),
        );
    }
    let generation = deployment.metadata.generation.unwrap_or(0);
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let count = |v: Option<i32>| v.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    // As `kubectl rollout status`: every replica updated and available, and no old one left.
    if observed
        && count(status.updated_replicas) >= wanted
        && count(status.replicas) <= count(status.updated_replicas)
        && count(status.available_replicas) >= count(status.updated_replicas)
    {
        Progress::Complete
    } else {
        Progress::InProgress
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn reads_the_controller_verdict() {
        let cases = [
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                Progress::Complete,
            ),
            (
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                Progress::InProgress,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}),
                Progress::InProgress,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                Progress::InProgress,
            ),
            (
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": "ReplicaSet \"web-1\" has timed out progressing."}]}),
                Progress::Stuck("ReplicaSet \"web-1\" has timed out progressing.".into()),
            ),
        ];
        for (status, want) in cases {
            assert_eq!(progress(&deployment(status.clone())), want, "{status}");
        }
    }
}
