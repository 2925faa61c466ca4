//! Making a CronJob "run" on a test's cue (the schedule is never followed): the Job its
//! controller would create, finished the way the test chooses, the CronJob's status, and the
//! history limits.

use serde_json::{json, Value};

use super::managed::Writer;
use super::resources::{Target, CRONJOBS, JOBS};
use super::status::ApiError;
use super::store::now;
use super::verbs::{self, Owner};
use super::workloads::{self, owner_reference};
use super::Cluster;

/// How the Job of a CronJob run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    Failed,
    /// Not at all: its pod never starts (an image that cannot be pulled), which a Job never
    /// gives up on by itself. The Job stays active (`active: 1`, `ready: 0`) and is listed in
    /// the CronJob's `status.active`, as the real controller keeps a running Job there.
    Pending,
}

/// Creates the Job of one run, finished (or left pending), and records the run on the CronJob.
/// Returns the Job.
pub(crate) fn run(
    cluster: &mut Cluster,
    namespace: &str,
    name: &str,
    outcome: JobOutcome,
) -> Result<Value, ApiError> {
    let cronjob = cluster
        .store
        .get(&CRONJOBS, namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&CRONJOBS, name))?;
    let scheduled = now();
    let template = &cronjob["spec"]["jobTemplate"];
    let mut annotations = template["metadata"]["annotations"].clone();
    annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = json!(scheduled);
    let mut metadata = json!({
        "name": job_name(cluster, namespace, name),
        "namespace": namespace,
        "labels": template["metadata"]["labels"],
        "annotations": annotations,
        "ownerReferences": [owner_reference(&cronjob)]
    });
    if let Some(meta) = metadata.as_object_mut() {
        meta.retain(|_, v| !v.is_null());
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template["spec"]
    });
    let target = Target {
        resource: &JOBS,
        namespace: Some(namespace.to_string()),
        name: None,
        subresource: None,
    };
    let writer = Writer::new("cronjob-controller");
    let mut finished = verbs::create(cluster, &target, job, Owner::Writer(&writer))?;
    finished["status"] = job_status(&finished, outcome, &scheduled);
    let finished = cluster.store.update(&JOBS, finished);

    let mut recorded = cronjob.clone();
    recorded["status"]["lastScheduleTime"] = json!(scheduled);
    match outcome {
        JobOutcome::Succeeded => recorded["status"]["lastSuccessfulTime"] = json!(now()),
        JobOutcome::Failed => {}
        JobOutcome::Pending => {
            let meta = &finished["metadata"];
            let reference = json!({"kind": "Job", "namespace": meta["namespace"],
                "name": meta["name"], "uid": meta["uid"], "apiVersion": "batch/v1",
                "resourceVersion": meta["resourceVersion"]});
            match recorded["status"]["active"].as_array_mut() {
                Some(active) => active.push(reference),
                None => recorded["status"]["active"] = json!([reference]),
            }
        }
    }
    cluster.store.update(&CRONJOBS, recorded);
    prune_history(cluster, &cronjob);
    Ok(finished)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`, as the real controller names Jobs;
/// runs within one minute take the next free number.
fn job_name(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let minutes = k8s_openapi::jiff::Timestamp::now().as_second() / 60;
    (minutes..)
        .map(|n| format!("{name}-{n}"))
        .find(|job| cluster.store.get(&JOBS, namespace, job).is_none())
        .unwrap_or_else(|| format!("{name}-{minutes}"))
}

fn job_status(job: &Value, outcome: JobOutcome, started: &str) -> Value {
    let at = now();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": at, "lastTransitionTime": at})
    };
    let mut status = json!({
        "startTime": started,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {}
    });
    match outcome {
        JobOutcome::Succeeded => {
            let reached = "Reached expected number of succeeded pods";
            status["conditions"] = json!([
                condition("SuccessCriteriaMet", "CompletionsReached", reached),
                condition("Complete", "CompletionsReached", reached)
            ]);
            status["completionTime"] = json!(at);
            status["succeeded"] = job["spec"]["completions"].clone();
        }
        JobOutcome::Pending => {
            status["active"] = json!(1);
        }
        JobOutcome::Failed => {
            let limit = "Job has reached the specified backoff limit";
            status["conditions"] = json!([
                condition("FailureTarget", "BackoffLimitExceeded", limit),
                condition("Failed", "BackoffLimitExceeded", limit)
            ]);
            // Every attempt failed: the first try and each retry.
            status["failed"] = json!(job["spec"]["backoffLimit"].as_i64().unwrap_or(6) + 1);
        }
    }
    status
}

/// Keeps the newest `successfulJobsHistoryLimit` succeeded and `failedJobsHistoryLimit` failed
/// Jobs of the CronJob, deleting older ones.
fn prune_history(cluster: &mut Cluster, cronjob: &Value) {
    let (namespace, name) = workloads::namespace_and_name(cronjob);
    let uid = &cronjob["metadata"]["uid"];
    let spec = &cronjob["spec"];
    for (condition, limit) in [
        ("Complete", &spec["successfulJobsHistoryLimit"]),
        ("Failed", &spec["failedJobsHistoryLimit"]),
    ] {
        let mut finished: Vec<(u64, String)> = cluster
            .store
            .list(&JOBS, Some(&namespace))
            .filter(|j| j["metadata"]["ownerReferences"][0]["uid"] == *uid)
            .filter(|j| {
                j["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == condition && c["status"] == "True")
            })
            .filter_map(|j| {
                let job = j["metadata"]["name"].as_str()?;
                let n = job.strip_prefix(&name)?.strip_prefix('-')?.parse().ok()?;
                Some((n, job.to_string()))
            })
            .collect();
        finished.sort();
        let keep = limit.as_u64().unwrap_or(u64::MAX) as usize;
        let excess = finished.len().saturating_sub(keep);
        for (_, job) in finished.into_iter().take(excess) {
            cluster.store.remove(&JOBS, &namespace, &job);
        }
    }
}
