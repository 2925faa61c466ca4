//! What a kubelet would report for a pod: running containers, readiness, restart counts.

use serde_json::{json, Value};

use super::store::now;

/// A running pod's status for `spec`, with every container `ready` and restarted `restarts` times.
pub(crate) fn running_status(spec: &Value, ready: bool, restarts: i64) -> Value {
    let started = now();
    let containers: Vec<Value> = spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "started": true,
                "restartCount": restarts,
                "state": {"running": {"startedAt": started}}
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "conditions": conditions(ready, &started),
        "containerStatuses": containers,
        "startTime": started,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1"
    })
}

fn conditions(ready: bool, at: &str) -> Value {
    let status = if ready { "True" } else { "False" };
    json!([
        {"type": "Initialized", "status": "True", "lastTransitionTime": at},
        {"type": "Ready", "status": status, "lastTransitionTime": at},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": at},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at}
    ])
}

fn ensure_running(pod: &mut Value) {
    if pod["status"]["containerStatuses"].as_array().is_none() {
        pod["status"] = running_status(&pod["spec"], true, 0);
    }
}

/// Flips the pod's Ready/ContainersReady conditions and every container's `ready`.
pub(crate) fn set_ready(pod: &mut Value, ready: bool) {
    ensure_running(pod);
    let status = if ready { "True" } else { "False" };
    if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
        for condition in conditions {
            if matches!(
                condition["type"].as_str(),
                Some("Ready" | "ContainersReady")
            ) {
                condition["status"] = json!(status);
                condition["lastTransitionTime"] = json!(now());
            }
        }
    }
    for container in containers(pod) {
        container["ready"] = json!(ready);
    }
}

pub(crate) fn set_restarts(pod: &mut Value, restarts: i64) {
    ensure_running(pod);
    for container in containers(pod) {
        container["restartCount"] = json!(restarts);
    }
}

fn containers(pod: &mut Value) -> impl Iterator<Item = &mut Value> {
    pod["status"]["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
}

/// Whether the kubelet reports the pod Ready: what every controller counts.
pub(crate) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
