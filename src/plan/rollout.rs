//! Watching a rollout tagwatch started: complete, still going, or stuck past its progress
//! deadline (the Deployment controller's verdict, read from the `Progressing` condition).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;

use crate::discover::{Object, Source};

use super::patch::ImageChange;
use crate::model::history::{Entry, How};
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

/// A newer version replaces a plain rollout still in progress, as the Deployment controller's
/// rollover does: the new rollout is watched from the last version whose rollout *completed*
/// (where an automatic rollback returns to), and the history entries of the replaced update end
/// as `superseded`.
pub fn supersede(
    replaced: &RolloutState,
    next: RolloutState,
    history: &[Entry],
) -> (RolloutState, Vec<Entry>) {
    let mut next = next;
    for (container, from) in next.from.iter_mut() {
        if let Some(completed) = replaced.from.get(container) {
            *from = completed.clone();
        }
    }
    let mut history = history.to_vec();
    for (container, to) in &replaced.to {
        if let Some(entry) = history
            .iter_mut()
            .rev()
            .find(|e| &e.container == container && &e.to == to && e.how == How::Update)
        {
            entry.how = How::Superseded;
        }
    }
    (next, history)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Complete,
    InProgress,
    /// `ProgressDeadlineExceeded`, with the controller's message.
    Stuck(String),
}

/// A rollout of any kind, judged from the object's status; for kinds without a progress deadline
/// of their own (StatefulSet, DaemonSet), tagwatch's `deadline` counted from `started`.
pub fn progress_of(object: &Object, started: &str, deadline: Duration, now: Timestamp) -> Progress {
    let judged = match object {
        Object::Deployment(d) => return progress(d),
        Object::StatefulSet(s) => stateful_set(s),
        Object::DaemonSet(d) => daemon_set(d),
        // A CronJob's rollout is its next Job, watched by whoever can list Jobs: from the
        // object alone, the template is all there is, and it is written.
        Object::CronJob(_) => Progress::Complete,
        Object::Rollout(r) => argo_rollout(r),
    };
    if judged != Progress::InProgress || !object.kind().needs_own_deadline() {
        return judged;
    }
    let overdue = started
        .parse::<Timestamp>()
        .ok()
        .map(|t| now.duration_since(t))
        .and_then(|elapsed| Duration::try_from(elapsed).ok())
        .is_some_and(|elapsed| elapsed > deadline);
    if overdue {
        Progress::Stuck(format!(
            "not rolled out within {} (tagwatch.dev/progress-deadline)",
            humantime::format_duration(deadline)
        ))
    } else {
        judged
    }
}

/// Every replica on the update revision and ready, the revisions equal (18, 21): a partition
/// above zero is never complete.
fn stateful_set(set: &StatefulSet) -> Progress {
    let Some(status) = &set.status else {
        return Progress::InProgress;
    };
    let spec = set.spec.as_ref();
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    let partition = spec
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
    let revisions =
        status.update_revision.is_some() && status.update_revision == status.current_revision;
    let count = |v: Option<i32>| v.unwrap_or(0);
    if observed
        && partition == 0
        && (revisions || wanted == 0)
        && count(status.updated_replicas) >= wanted
        && status.ready_replicas.unwrap_or(0) >= wanted
    {
        Progress::Complete
    } else {
        Progress::InProgress
    }
}

/// Every scheduled pod updated and none unavailable (22).
fn daemon_set(set: &DaemonSet) -> Progress {
    let Some(status) = &set.status else {
        return Progress::InProgress;
    };
    let observed = status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
    if observed
        && status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled
        && status.number_unavailable.unwrap_or(0) == 0
    {
        Progress::Complete
    } else {
        Progress::InProgress
    }
}

/// Argo's verdict: `Healthy` done, `Degraded` failed (its controller has aborted the update).
fn argo_rollout(rollout: &DynamicObject) -> Progress {
    let status = rollout.data.get("status");
    let phase = status.and_then(|s| s.get("phase")).and_then(|p| p.as_str());
    // Argo reports the generation it acted on as a string.
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(|g| {
            g.as_str()
                .map(str::to_string)
                .or_else(|| g.as_i64().map(|n| n.to_string()))
        });
    let current = rollout.metadata.generation.map(|g| g.to_string());
    match phase {
        Some("Degraded") => Progress::Stuck(
            status
                .and_then(|s| s.get("message"))
                .and_then(|m| m.as_str())
                .unwrap_or("the Rollout is Degraded")
                .to_string(),
        ),
        Some("Healthy") if observed.is_none() || observed == current => Progress::Complete,
        _ => Progress::InProgress,
    }
}

/// A Deployment's rollout, as the Deployment controller reports it.
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
    fn a_superseded_rollout_leaves_the_rollback_target_at_the_last_completed_version() {
        let state = |from: &str, to: &str| RolloutState {
            from: [("web".to_string(), from.to_string())].into(),
            to: [("web".to_string(), to.to_string())].into(),
            started: "2026-12-01T10:00:00Z".into(),
            generation: Some(2),
        };
        let history = vec![
            Entry::new("t0", "web", "app:1.0.0", "app:1.1.0", How::Update),
            Entry::new("t1", "web", "app:1.1.0", "app:1.2.0", How::Update),
        ];
        // 1.1.0 completed; 1.2.0 (broken) was rolling out when 1.2.1 came.
        let (next, history) = supersede(
            &state("app:1.1.0", "app:1.2.0"),
            state("app:1.2.0", "app:1.2.1"),
            &history,
        );
        assert_eq!(
            next.from["web"], "app:1.1.0",
            "a rollback returns to what completed"
        );
        assert_eq!(next.to["web"], "app:1.2.1");
        let hows: Vec<How> = history.iter().map(|e| e.how).collect();
        assert_eq!(hows, [How::Update, How::Superseded]);
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
