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

/// A pod whose image never starts (unpullable, as the test images are on a real cluster):
/// scheduled, every container waiting, never Ready.
pub(crate) fn pending_status(spec: &Value) -> Value {
    let at = now();
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
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{}\"", c["image"].as_str().unwrap_or_default())}}
            })
        })
        .collect();
    json!({
        "phase": "Pending",
        "conditions": conditions(false, &at),
        "containerStatuses": containers,
        "startTime": at,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1"
    })
}

/// Whether a pod already shows what `health` would report: phase, readiness and restarts.
pub(crate) fn behaves_as(pod: &Value, health: super::ImageHealth) -> bool {
    let want = health.pod_status(&pod["spec"]);
    let status = &pod["status"];
    let restarts = |s: &Value| s["containerStatuses"][0]["restartCount"].clone();
    status["phase"] == want["phase"]
        && is_ready(pod) == health.ready()
        && restarts(status) == restarts(&want)
}

/// Whether a pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
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
