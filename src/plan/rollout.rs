//! Watching a rollout tagwatch started: complete, still going, or stuck (past its progress
//! deadline, or failed by the kind's own verdict), judged the way each kind says it is done.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
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
    /// Past its progress deadline (the controller's, or tagwatch's own). The text is the
    /// rollback's whole reason.
    Stuck(String),
    /// Failed by its kind's own verdict: a `Degraded` Argo Rollout, a failed Job.
    Failed(String),
}

/// A rollout of any kind, judged from the object's status; for kinds without a progress deadline
/// of their own (StatefulSet, DaemonSet), tagwatch's `deadline` counted from `started`. A
/// CronJob is judged here from its own status only; [`cron_job`] judges it with its Jobs.
pub fn progress_of(object: &Object, started: &str, deadline: Duration, now: Timestamp) -> Progress {
    let judged = match object {
        Object::Deployment(d) => return progress(d),
        Object::StatefulSet(s) => stateful_set(s),
        Object::DaemonSet(d) => daemon_set(d),
        Object::CronJob(c) => return cron_job(c, &[], &BTreeMap::new(), started, deadline, now),
        Object::Rollout(r) => argo_rollout(r),
    };
    if judged != Progress::InProgress || !object.kind().needs_own_deadline() {
        return judged;
    }
    if elapsed_since(started, now).is_some_and(|elapsed| elapsed > deadline) {
        Progress::Stuck(format!(
            "rollout passed its progress deadline: not rolled out within {} \
             (tagwatch.dev/progress-deadline)",
            humantime::format_duration(deadline)
        ))
    } else {
        judged
    }
}

fn elapsed_since(started: &str, now: Timestamp) -> Option<Duration> {
    let started = started.parse::<Timestamp>().ok()?;
    Duration::try_from(now.duration_since(started)).ok()
}

/// `started` to the whole second: an API server stamps objects in whole seconds, so a Job
/// created in the same second as tagwatch's write carries an earlier-looking time.
fn second_of(started: &str) -> Option<Timestamp> {
    let started = started.parse::<Timestamp>().ok()?;
    Timestamp::from_second(started.as_second()).ok()
}

/// Whether a CronJob's status shows a run since `started` (scheduled since, or a Job of it
/// running now): only then can the Job that judges the rollout exist. The Jobs are listed only
/// then, so a weekly job costs no request all week.
pub fn cron_job_ran(cron_job: &CronJob, started: &str) -> bool {
    let Some(status) = &cron_job.status else {
        return false;
    };
    let Some(since) = second_of(started) else {
        return false;
    };
    let running = status.active.as_ref().is_some_and(|a| !a.is_empty());
    let scheduled = status
        .last_schedule_time
        .as_ref()
        .is_some_and(|t| t.0 >= since);
    running || scheduled
}

/// A CronJob's rollout: done when the first Job it created since `started` that runs the
/// `written` images succeeds, failed when that Job fails. Waiting for the schedule is no failure
/// (a weekly job is simply in progress all week, and a newer version supersedes it as any plain
/// rollout); but a Job none of whose pods has run (`ready`, `succeeded` and `failed` all 0: an
/// image that cannot be pulled, which a Job never gives up on) fails once older than `deadline`.
/// Without such a Job in `jobs` (deleted at once by `ttlSecondsAfterFinished`), the CronJob's own
/// status still tells a success: a run scheduled since, none running, and a success after it.
pub fn cron_job(
    cron_job: &CronJob,
    jobs: &[Job],
    written: &BTreeMap<String, String>,
    started: &str,
    deadline: Duration,
    now: Timestamp,
) -> Progress {
    // A record edited by hand: there is no telling which Job would judge it.
    let Some(since) = second_of(started) else {
        return Progress::Complete;
    };
    let uid = cron_job.metadata.uid.as_deref();
    let mut judged: Vec<&Job> = jobs
        .iter()
        .filter(|job| {
            let owned = job
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(o.uid.as_str()) == uid);
            let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
            owned && created.is_some_and(|c| c >= since) && runs_images(job, written)
        })
        .collect();
    judged.sort_by_key(|job| {
        (
            job.metadata.creation_timestamp.as_ref().map(|t| t.0),
            job.metadata.name.clone(),
        )
    });
    if let Some(job) = judged.first() {
        return next_job(job, deadline, now);
    }
    let status = cron_job.status.as_ref();
    let scheduled = status.and_then(|s| s.last_schedule_time.as_ref().map(|t| t.0));
    let succeeded = status.and_then(|s| s.last_successful_time.as_ref().map(|t| t.0));
    let running = status
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| !a.is_empty());
    match (scheduled, succeeded) {
        (Some(scheduled), Some(succeeded))
            if !running && scheduled >= since && succeeded >= scheduled =>
        {
            Progress::Complete
        }
        _ => Progress::InProgress,
    }
}

/// The verdict of the Job that judges a CronJob's rollout.
fn next_job(job: &Job, deadline: Duration, now: Timestamp) -> Progress {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() {
        return Progress::Complete;
    }
    if let Some(failed) = condition("Failed") {
        let why = match (failed.reason.as_deref(), failed.message.as_deref()) {
            (Some(reason), Some(message)) => format!(" ({reason}: {message})"),
            (Some(reason), None) => format!(" ({reason})"),
            (None, Some(message)) => format!(" ({message})"),
            (None, None) => String::new(),
        };
        return Progress::Failed(format!("the next Job {name} failed{why}"));
    }
    let count = |v: Option<i32>| v.unwrap_or(0);
    // `ready` is absent on servers that do not count ready pods: nothing to go by then.
    let none_ran = status
        .is_some_and(|s| s.ready == Some(0) && count(s.succeeded) == 0 && count(s.failed) == 0);
    let age = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok());
    if none_ran && age.is_some_and(|age| age > deadline) {
        return Progress::Stuck(format!(
            "the next Job {name} ran no pod within {} (tagwatch.dev/progress-deadline)",
            humantime::format_duration(deadline)
        ));
    }
    Progress::InProgress
}

/// Whether the Job's pod template runs every written image, by container name.
fn runs_images(job: &Job, written: &BTreeMap<String, String>) -> bool {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return written.is_empty();
    };
    let containers: Vec<_> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .collect();
    written.iter().all(|(name, image)| {
        containers
            .iter()
            .any(|c| &c.name == name && c.image.as_deref() == Some(image.as_str()))
    })
}

/// Every replica on the update revision and ready, the revisions equal (18, 21). A partition
/// above zero that a person set (a staged rollout) holds the lower ordinals back on purpose:
/// done once every ordinal at or above it is updated and all replicas are ready, as
/// `kubectl rollout status` judges a partitioned roll out.
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
    let ready = status.ready_replicas.unwrap_or(0) >= wanted;
    let done = if partition > 0 {
        count(status.updated_replicas) >= wanted.saturating_sub(partition).max(0)
    } else {
        (revisions || wanted == 0) && count(status.updated_replicas) >= wanted
    };
    if observed && ready && done {
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

/// Argo's verdict on the spec it has seen: `Healthy` done, `Degraded` failed (its controller has
/// aborted the update). A status about an earlier generation says nothing about tagwatch's write:
/// a release that left the Rollout `Degraded` must not get the fix pushed for it rejected.
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
    if observed.is_some() && observed != current {
        return Progress::InProgress;
    }
    match phase {
        Some("Degraded") => {
            let message = status
                .and_then(|s| s.get("message"))
                .and_then(|m| m.as_str())
                .filter(|m| !m.is_empty());
            Progress::Failed(match message {
                Some(message) => format!("the Rollout is Degraded: {message}"),
                None => "the Rollout is Degraded".to_string(),
            })
        }
        Some("Healthy") => Progress::Complete,
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
        return Progress::Stuck(format!(
            "rollout passed its progress deadline: {}",
            stuck
                .message
                .as_deref()
                .unwrap_or("ProgressDeadlineExceeded")
        ));
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
    fn a_stateful_set_is_done_when_its_updatable_ordinals_are_updated_and_all_are_ready() {
        let set = |partition: Option<i32>, status: serde_json::Value| -> StatefulSet {
            let mut spec =
                json!({"replicas": 4, "selector": {}, "serviceName": "db", "template": {}});
            if let Some(p) = partition {
                spec["updateStrategy"] =
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": p}});
            }
            serde_json::from_value(json!({
                "metadata": {"name": "db", "generation": 2},
                "spec": spec,
                "status": status,
            }))
            .unwrap()
        };
        let status = |updated: i32, ready: i32, same: bool| {
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": updated,
                "readyReplicas": ready, "currentRevision": if same { "db-2" } else { "db-1" },
                "updateRevision": "db-2"})
        };
        let table = [
            // (partition, updated, ready, revisions equal, complete)
            (None, 4, 4, true, true),
            (None, 4, 4, false, false),
            (None, 3, 4, false, false),
            (None, 4, 3, true, false),
            (Some(0), 4, 4, true, true),
            // A person's staged rollout: ordinals 3 and 2 are tagwatch's to wait for.
            (Some(2), 2, 4, false, true),
            (Some(2), 1, 4, false, false),
            (Some(2), 2, 3, false, false),
            // A partition above the replicas holds every pod back: nothing to wait for.
            (Some(9), 0, 4, false, true),
        ];
        for (partition, updated, ready, same, complete) in table {
            let judged = stateful_set(&set(partition, status(updated, ready, same)));
            assert_eq!(
                judged == Progress::Complete,
                complete,
                "partition {partition:?}, updated {updated}, ready {ready}, same {same}: {judged:?}"
            );
        }
        // Not yet observed: never done.
        let mut stale = status(4, 4, true);
        stale["observedGeneration"] = json!(1);
        assert_eq!(stateful_set(&set(None, stale)), Progress::InProgress);
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
                Progress::Stuck(
                    "rollout passed its progress deadline: ReplicaSet \"web-1\" has timed out \
                     progressing."
                        .into(),
                ),
            ),
        ];
        for (status, want) in cases {
            assert_eq!(progress(&deployment(status.clone())), want, "{status}");
        }
    }

    const STARTED: &str = "2026-12-01T10:00:00.250Z";

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cron_job_with(status: serde_json::Value) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly", "uid": "cj-uid", "generation": 2},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "app:1.1.0"}]}}}}},
            "status": status
        }))
        .unwrap()
    }

    fn written() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), "app:1.1.0".to_string())])
    }

    /// A Job of `owner` created at `created`, running `image`, with `status`.
    fn job(owner: &str, created: &str, image: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": format!("nightly-{created}"), "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                    "uid": owner, "controller": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "app", "image": image}]}}},
            "status": status
        }))
        .unwrap()
    }

    fn finished(type_: &str) -> serde_json::Value {
        json!({"conditions": [{"type": type_, "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit"}]})
    }

    #[test]
    fn a_cron_job_is_judged_by_the_first_job_it_created_since_the_write_running_the_new_images() {
        let deadline = Duration::from_secs(600);
        let now = at("2026-12-01T10:05:00Z");
        let running = json!({"active": 1, "ready": 1});
        let pending = json!({"active": 1, "ready": 0, "succeeded": 0, "failed": 0});
        let cases: Vec<(&str, Vec<Job>, Progress)> =
            vec![
            ("no Job yet: waiting for the schedule", vec![], Progress::InProgress),
            (
                "succeeded",
                vec![job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", finished("Complete"))],
                Progress::Complete,
            ),
            (
                "failed",
                vec![job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", finished("Failed"))],
                Progress::Failed(
                    "the next Job nightly-2026-12-01T10:01:00Z failed (BackoffLimitExceeded: Job \
                     has reached the specified backoff limit)"
                        .into(),
                ),
            ),
            (
                "created in the second of the write, after it",
                vec![job("cj-uid", "2026-12-01T10:00:00Z", "app:1.1.0", finished("Complete"))],
                Progress::Complete,
            ),
            (
                "created before the write: not this rollout's",
                vec![job("cj-uid", "2026-12-01T09:59:59Z", "app:1.1.0", finished("Failed"))],
                Progress::InProgress,
            ),
            (
                "another CronJob's",
                vec![job("other", "2026-12-01T10:01:00Z", "app:1.1.0", finished("Failed"))],
                Progress::InProgress,
            ),
            (
                "made from the template before the write",
                vec![job("cj-uid", "2026-12-01T10:00:00Z", "app:1.0.0", finished("Failed"))],
                Progress::InProgress,
            ),
            (
                "the first such Job judges, not a later one",
                vec![
                    job("cj-uid", "2026-12-01T10:03:00Z", "app:1.1.0", finished("Failed")),
                    job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", finished("Complete")),
                ],
                Progress::Complete,
            ),
            (
                "running",
                vec![job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", running.clone())],
                Progress::InProgress,
            ),
            (
                "no pod ran yet, within the deadline",
                vec![job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", pending.clone())],
                Progress::InProgress,
            ),
        ];
        for (what, jobs, want) in cases {
            let cron = cron_job_with(json!({}));
            let got = cron_job(&cron, &jobs, &written(), STARTED, deadline, now);
            assert_eq!(got, want, "{what}");
        }
        // A long run is no failure: only a Job none of whose pods ran has a deadline.
        let long = [job("cj-uid", "2026-12-01T09:00:01Z", "app:1.1.0", running)];
        let cron = cron_job_with(json!({}));
        let started = "2026-12-01T09:00:00Z";
        assert_eq!(
            cron_job(&cron, &long, &written(), started, deadline, now),
            Progress::InProgress
        );

        // A Job none of whose pods ran (an image that cannot be pulled) never fails by itself.
        let stalled = [job("cj-uid", "2026-12-01T10:01:00Z", "app:1.1.0", pending)];
        let cron = cron_job_with(json!({}));
        let later = at("2026-12-01T10:11:01Z");
        assert_eq!(
            cron_job(&cron, &stalled, &written(), STARTED, deadline, later),
            Progress::Stuck(
                "the next Job nightly-2026-12-01T10:01:00Z ran no pod within 10m \
                 (tagwatch.dev/progress-deadline)"
                    .into()
            )
        );
        // Without `ready` (a server that does not count ready pods) there is nothing to go by.
        let unknown = [job(
            "cj-uid",
            "2026-12-01T10:01:00Z",
            "app:1.1.0",
            json!({"active": 1}),
        )];
        assert_eq!(
            cron_job(&cron, &unknown, &written(), STARTED, deadline, later),
            Progress::InProgress
        );
        // A record edited by hand: nothing to judge by, nothing to wait for.
        assert_eq!(
            cron_job(&cron, &[], &written(), "yesterday", deadline, later),
            Progress::Complete
        );
    }

    #[test]
    fn a_cron_job_status_alone_tells_a_success_since_the_write_and_when_jobs_are_worth_listing() {
        // (status, ran since the write, verdict without any Job)
        let cases = [
            (json!({}), false, Progress::InProgress),
            (
                json!({"lastScheduleTime": "2026-12-01T03:00:00Z",
                    "lastSuccessfulTime": "2026-12-01T03:00:09Z"}),
                false,
                Progress::InProgress,
            ),
            (
                json!({"lastScheduleTime": "2026-12-01T10:00:00Z"}),
                true,
                Progress::InProgress,
            ),
            (
                json!({"lastScheduleTime": "2026-12-01T11:00:00Z",
                    "lastSuccessfulTime": "2026-12-01T11:00:07Z"}),
                true,
                Progress::Complete,
            ),
            // A success after the run, but a Job of it still running: not told yet.
            (
                json!({"lastScheduleTime": "2026-12-01T11:00:00Z",
                    "lastSuccessfulTime": "2026-12-01T11:00:07Z",
                    "active": [{"kind": "Job", "name": "nightly-2", "uid": "j2"}]}),
                true,
                Progress::InProgress,
            ),
            // The last success is older than the run since the write (which failed, or runs).
            (
                json!({"lastScheduleTime": "2026-12-01T11:00:00Z",
                    "lastSuccessfulTime": "2026-12-01T03:00:07Z"}),
                true,
                Progress::InProgress,
            ),
            // A Job running that was started by hand (kubectl create job --from=cronjob/...).
            (
                json!({"lastScheduleTime": "2026-12-01T03:00:00Z",
                    "active": [{"kind": "Job", "name": "manual", "uid": "j3"}]}),
                true,
                Progress::InProgress,
            ),
        ];
        let now = at("2026-12-01T12:00:00Z");
        for (status, ran, want) in cases {
            let cron = cron_job_with(status.clone());
            assert_eq!(cron_job_ran(&cron, STARTED), ran, "{status}");
            let got = cron_job(
                &cron,
                &[],
                &written(),
                STARTED,
                Duration::from_secs(600),
                now,
            );
            assert_eq!(got, want, "{status}");
            let object = Object::from(cron);
            let deadline = Duration::from_secs(1);
            assert_eq!(
                progress_of(&object, STARTED, deadline, now),
                want,
                "{status}"
            );
        }
    }

    #[test]
    fn an_argo_rollout_is_judged_on_the_generation_it_observed() {
        let rollout = |status: serde_json::Value| -> Object {
            Object::Rollout(std::sync::Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "metadata": {"name": "web", "generation": 3},
                    "spec": {}, "status": status
                }))
                .unwrap(),
            ))
        };
        let degraded = "the Rollout is Degraded: ProgressDeadlineExceeded: ReplicaSet \"web-7d\" \
                        has timed out progressing.";
        let cases = [
            (json!({}), Progress::InProgress),
            (
                json!({"phase": "Progressing", "observedGeneration": "3"}),
                Progress::InProgress,
            ),
            (
                json!({"phase": "Paused", "observedGeneration": "3"}),
                Progress::InProgress,
            ),
            (
                json!({"phase": "Healthy", "observedGeneration": "3"}),
                Progress::Complete,
            ),
            (
                json!({"phase": "Healthy", "observedGeneration": 3}),
                Progress::Complete,
            ),
            (json!({"phase": "Healthy"}), Progress::Complete),
            // Healthy on the spec before tagwatch's write: not done yet.
            (
                json!({"phase": "Healthy", "observedGeneration": "2"}),
                Progress::InProgress,
            ),
            (
                json!({"phase": "Degraded", "observedGeneration": "3",
                    "message": "ProgressDeadlineExceeded: ReplicaSet \"web-7d\" has timed out progressing."}),
                Progress::Failed(degraded.into()),
            ),
            (
                json!({"phase": "Degraded", "observedGeneration": "3"}),
                Progress::Failed("the Rollout is Degraded".into()),
            ),
            // Degraded by the release before: says nothing about the fix tagwatch just wrote.
            (
                json!({"phase": "Degraded", "observedGeneration": "2", "message": "crashed"}),
                Progress::InProgress,
            ),
        ];
        let now = at("2026-12-01T12:00:00Z");
        for (status, want) in cases {
            let got = progress_of(
                &rollout(status.clone()),
                STARTED,
                Duration::from_secs(1),
                now,
            );
            assert_eq!(got, want, "{status}");
        }
    }

    #[test]
    fn kinds_without_a_deadline_of_their_own_get_tagwatchs() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "serviceName": "db", "template": {}},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 0,
                "currentRevision": "db-1", "updateRevision": "db-2"}
        }))
        .unwrap();
        let object = Object::from(set);
        let deadline = Duration::from_secs(10);
        let judged = |now: &str| progress_of(&object, "2026-12-01T10:00:00Z", deadline, at(now));
        assert_eq!(judged("2026-12-01T10:00:10Z"), Progress::InProgress);
        assert_eq!(
            judged("2026-12-01T10:00:11Z"),
            Progress::Stuck(
                "rollout passed its progress deadline: not rolled out within 10s \
                 (tagwatch.dev/progress-deadline)"
                    .into()
            )
        );
    }
}
