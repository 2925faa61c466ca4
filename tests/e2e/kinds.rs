//! Every kind but Deployments end to end — StatefulSet, DaemonSet, CronJob and Argo Rollout —
//! through the same scenarios: an update written at the kind's template path and judged done the
//! kind's way, alias tracking, digest pins, a person's rollback respected, the automatic rollback
//! (tagwatch's own deadline, a `Degraded` Rollout, a CronJob's failed next Job), history and the
//! `rollback` command, and a GitOps-owned workload left alone. Then what only one kind has.
//!
//! Each scenario is one function over a [`Kind`]; [`per_kind!`] makes one test per kind of it
//! (`kinds::alias_tracking::cron_job`), so a failure names both.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tagwatch::discover::object::api_resource;
use tagwatch::model::kind::Kind;
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::apiserver::{ApiServer, Fault, ImageHealth, JobOutcome};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::wait;

use crate::support::{deployment, events, poller, push, snapshot, Harness, Tagwatch};

/// One `#[tokio::test]` per kind for a scenario `async fn scenario(kind: Kind)`.
macro_rules! per_kind {
    ($scenario:ident) => {
        mod $scenario {
            use tagwatch::model::kind::Kind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stateful_set() {
                super::$scenario(Kind::StatefulSet).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn daemon_set() {
                super::$scenario(Kind::DaemonSet).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cron_job() {
                super::$scenario(Kind::CronJob).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rollout() {
                super::$scenario(Kind::Rollout).await
            }
        }
    };
}

per_kind!(update_is_written_at_the_template_path_and_completes_the_kinds_way);
per_kind!(alias_tracking);
per_kind!(digest_pin);
per_kind!(manual_rollback_is_respected);
per_kind!(automatic_rollback);
per_kind!(history_and_the_rollback_command);
per_kind!(gitops_owned_workload_is_skipped);

/// The name a test of `kind` gives its workload (and its container).
fn name_of(kind: Kind) -> &'static str {
    match kind {
        Kind::StatefulSet => "db",
        Kind::DaemonSet => "agent",
        Kind::CronJob => "nightly",
        Kind::Rollout => "web",
        Kind::Deployment => "deploy",
    }
}

/// The test function's name for `kind`, as [`per_kind!`] names it.
fn test_of(kind: Kind) -> &'static str {
    match kind {
        Kind::StatefulSet => "stateful_set",
        Kind::DaemonSet => "daemon_set",
        Kind::CronJob => "cron_job",
        Kind::Rollout => "rollout",
        Kind::Deployment => "deployment",
    }
}

/// Reports `kinds::<scenario>::<kind>` skipped, by its test's name.
fn skip(scenario: &str, kind: Kind, reason: &str) {
    tagwatch_testbed::skip::report(
        &format!("kinds::{scenario}::{}", test_of(kind)),
        reason,
        env!("CARGO_TARGET_TMPDIR"),
    );
}

/// The in-process API server, or `None` after reporting the test skipped.
fn test_server<'a>(
    cluster: &'a TestCluster,
    scenario: &str,
    kind: Kind,
    reason: &str,
) -> Option<&'a ApiServer> {
    let server = cluster.server();
    if server.is_none() {
        skip(scenario, kind, reason);
    }
    server
}

/// Everything a scenario starts from: a cluster where `kind` is served, a registry, a poller.
struct Bed {
    cluster: TestCluster,
    registry: Registry,
    /// Behind a lock so a round (which needs the poller mutably) can run while the test holds
    /// the test server, which lives in `cluster`.
    h: tokio::sync::Mutex<Harness>,
    ns: String,
    kind: Kind,
    name: &'static str,
}

impl Bed {
    /// `None` (reported skipped) where the kind cannot be served: Argo Rollouts' CRD is
    /// installed on the test bed, and must already be served on a real cluster.
    async fn start(scenario: &str, kind: Kind) -> Option<Bed> {
        let cluster = TestCluster::start().await.expect("cluster");
        if kind == Kind::Rollout {
            match cluster.server() {
                Some(server) => {
                    server.install_argo_rollouts().expect("Argo Rollouts' CRD");
                }
                None if !rollouts_served(&cluster).await => {
                    skip(
                        scenario,
                        kind,
                        "Argo Rollouts is not installed on this cluster",
                    );
                    return None;
                }
                None => {}
            }
        }
        let registry = Registry::anonymous().await.expect("registry");
        let h = poller(&cluster, &[registry.host()], DockerConfig::default());
        let ns = cluster.namespace.clone();
        Some(Bed {
            cluster,
            registry,
            h: tokio::sync::Mutex::new(h),
            ns,
            kind,
            name: name_of(kind),
        })
    }

    fn image(&self, tag: &str) -> String {
        format!("{}/app:{tag}", self.registry.host())
    }

    async fn push(&self, tags: &[&str]) {
        push(&self.registry, "app", tags).await;
    }

    /// The workload of this bed's kind, named for it, running `app:<tag>`.
    fn workload(&self, tag: &str) -> WorkloadBuilder {
        workload(self.kind, self.name, &self.image(tag))
    }

    async fn round(&self) -> tagwatch::control::RoundReport {
        let objects = snapshot(&self.cluster, &[&self.ns]).await;
        self.h.lock().await.poller.round_all(&objects).await
    }

    async fn metric(&self, sample: &str) -> f64 {
        self.h.lock().await.metric(sample)
    }

    async fn read(&self) -> DynamicObject {
        self.api().get(self.name).await.expect("get the workload")
    }

    async fn current_image(&self) -> String {
        image_of(self.kind, &self.read().await)
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.cluster.client.clone(),
            &self.ns,
            &api_resource(self.kind),
        )
    }

    /// A person sets the image (a merge patch of the template: a Rollout, a custom resource,
    /// takes no strategic merge patch).
    async fn set_image(&self, image: &str) {
        let containers = json!({"spec": {"containers": [{"name": self.name, "image": image}]}});
        let mut patch = containers;
        for segment in self
            .kind
            .template_pointer()
            .trim_start_matches('/')
            .rsplit('/')
        {
            patch = json!({ segment: patch });
        }
        self.api()
            .patch(self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("set image");
    }

    /// Rounds until `done` holds for the workload (or `timeout` passes: a panic).
    async fn rounds_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&DynamicObject) -> bool,
    ) -> DynamicObject {
        let deadline = Instant::now() + timeout;
        loop {
            self.round().await;
            let object = self.read().await;
            if done(&object) {
                return object;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}: {:?}",
                object.metadata.annotations
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Events of `reason` about this bed's workload (its kind and name).
    async fn events(&self, reason: &str) -> Vec<Event> {
        events(&self.cluster, &self.ns)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(self.kind.name())
                        && r.name.as_deref() == Some(self.name)
                })
            })
            .collect()
    }

    /// Makes the rollout tagwatch just started to `image` complete the kind's way: its pods
    /// Ready for a StatefulSet or DaemonSet (on a real cluster they are already running), a
    /// `Healthy` phase on the generation written for a Rollout, a next Job that succeeds for a
    /// CronJob.
    async fn complete(&self, server: Option<&ApiServer>, image: &str) {
        let Some(server) = server else {
            return;
        };
        match self.kind {
            Kind::Rollout => {
                let generation = self.read().await.metadata.generation;
                set_rollout_status(server, &self.ns, self.name, "Healthy", generation, "");
            }
            Kind::CronJob => {
                server
                    .run_cronjob(&self.ns, self.name, JobOutcome::Succeeded)
                    .expect("run the CronJob");
            }
            _ => server.set_image_health(image, ImageHealth::Ready),
        }
    }
}

/// Writes an Argo Rollout's status as its controller would, about `generation`.
fn set_rollout_status(
    server: &ApiServer,
    ns: &str,
    name: &str,
    phase: &str,
    generation: Option<i64>,
    message: &str,
) {
    let kind = tagwatch_testbed::apiserver::CustomKind::argo_rollouts();
    let observed = generation.map(|g| g.to_string()).unwrap_or_default();
    let status = json!({"phase": phase, "observedGeneration": observed, "message": message,
        "replicas": 0, "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0});
    server
        .set_custom_status(&kind, ns, name, status)
        .expect("Rollout status");
}

/// Whether a real cluster serves Argo Rollouts' `argoproj.io/v1alpha1` rollouts.
async fn rollouts_served(cluster: &TestCluster) -> bool {
    cluster
        .client
        .list_api_group_resources(Kind::Rollout.api_version())
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "rollouts"))
}

/// A workload of any kind, built as JSON: `workload(kind, "db", image).policy("minor")`.
struct WorkloadBuilder {
    kind: Kind,
    name: String,
    image: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    pods: bool,
}

fn workload(kind: Kind, name: &str, image: &str) -> WorkloadBuilder {
    WorkloadBuilder {
        kind,
        name: name.to_string(),
        image: image.to_string(),
        annotations: BTreeMap::new(),
        labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        pods: false,
    }
}

impl WorkloadBuilder {
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    fn policy(self, policy: &str) -> Self {
        self.annotate("tagwatch.dev/policy", policy)
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// With one pod (a StatefulSet's replica, a DaemonSet's pod per eligible node, a Rollout's
    /// replica). Without, a StatefulSet or Rollout has `replicas: 0` and a DaemonSet selects no
    /// node: their rollouts complete at once on a real cluster too, where the test images never
    /// run. A CronJob has no pods until it runs either way.
    fn with_pods(mut self) -> Self {
        self.pods = true;
        self
    }

    fn build(&self) -> Value {
        let name = &self.name;
        let container = json!({"name": name, "image": self.image});
        let selector = json!({"matchLabels": {"app": name}});
        let template = |extra: Value| {
            let mut spec = json!({"containers": [container.clone()]});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            json!({"metadata": {"labels": {"app": name}}, "spec": spec})
        };
        let replicas = u32::from(self.pods);
        let (api_version, spec) = match self.kind {
            Kind::StatefulSet => (
                "apps/v1",
                json!({"replicas": replicas, "serviceName": name, "selector": selector,
                    "template": template(json!({}))}),
            ),
            Kind::DaemonSet => {
                let placement = if self.pods {
                    json!({})
                } else {
                    json!({"nodeSelector": {"tagwatch.dev/test-node": "none"}})
                };
                (
                    "apps/v1",
                    json!({"selector": selector, "template": template(placement)}),
                )
            }
            Kind::CronJob => (
                "batch/v1",
                json!({"schedule": "0 3 * * *",
                    "jobTemplate": {"metadata": {"labels": {"app": name}},
                        "spec": {"backoffLimit": 0,
                            "template": template(json!({"restartPolicy": "Never"}))}}}),
            ),
            Kind::Rollout => (
                "argoproj.io/v1alpha1",
                json!({"replicas": replicas, "selector": selector,
                    "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
                    "template": template(json!({}))}),
            ),
            Kind::Deployment => (
                "apps/v1",
                json!({"replicas": replicas, "selector": selector, "template": template(json!({}))}),
            ),
        };
        json!({
            "apiVersion": api_version,
            "kind": self.kind.name(),
            "metadata": {"name": name, "labels": self.labels, "annotations": self.annotations},
            "spec": spec
        })
    }

    async fn create(self, cluster: &TestCluster, ns: &str) -> DynamicObject {
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), ns, &api_resource(self.kind));
        let object: DynamicObject = serde_json::from_value(self.build()).expect("object");
        api.create(&Default::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {} {}: {e}", self.kind.name(), self.name))
    }
}

/// The first container's image, read at the kind's template path.
fn image_of(kind: Kind, object: &DynamicObject) -> String {
    let pointer = format!("{}/spec/containers/0/image", kind.template_pointer());
    object
        .data
        .pointer(&pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no image at {pointer}"))
        .to_string()
}

fn annotation(object: &DynamicObject, key: &str) -> Option<String> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

fn json_annotation(object: &DynamicObject, key: &str) -> Value {
    annotation(object, key)
        .map(|text| serde_json::from_str(&text).expect("a JSON annotation"))
        .unwrap_or(Value::Null)
}

/// `tagwatch.dev/history`, oldest first.
fn history(object: &DynamicObject) -> Vec<Value> {
    match json_annotation(object, "tagwatch.dev/history") {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    }
}

/// `(how, from, to)` of every history entry, oldest first.
fn hows(object: &DynamicObject) -> Vec<(String, String, String)> {
    history(object)
        .iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or_default().to_string();
            (text("how"), text("from"), text("to"))
        })
        .collect()
}

/// An update is written where the kind keeps its pod template, with tagwatch's annotations and
/// an `ImageUpdated` Event; the rollout completes the kind's way (ready pods, a `Healthy` phase, a
/// next Job that succeeds), which the next version shows: it does not supersede a completed
/// rollout, so its history entry stays an `update` and a rollback would return to it.
async fn update_is_written_at_the_template_path_and_completes_the_kinds_way(kind: Kind) {
    let scenario = "update_is_written_at_the_template_path_and_completes_the_kinds_way";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let server = bed.cluster.server();
    // A StatefulSet or DaemonSet completes by running pods, wherever the test images run; the
    // other kinds' verdicts are played by the test (Argo's controller, the CronJob's schedule).
    let pods = matches!(kind, Kind::StatefulSet | Kind::DaemonSet);
    if pods && !bed.cluster.run_images() {
        skip(
            scenario,
            kind,
            "needs its test images to run (pods Ready, rollouts complete); set \
             TAGWATCH_E2E_RUNS_IMAGES on a cluster that can pull them",
        );
        return;
    }
    if !pods && server.is_none() {
        skip(
            scenario,
            kind,
            "the test plays Argo Rollouts' controller and runs the CronJob on cue",
        );
        return;
    }
    if let Some(server) = server {
        // 1.1.0's pods come up only when the test says: the rollout is seen in progress first.
        server.set_image_health(&bed.image("1.1.0"), ImageHealth::Pending);
        if kind == Kind::DaemonSet {
            server.add_node("node-1").expect("node");
        }
    }
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .with_pods()
        .create(&bed.cluster, &bed.ns)
        .await;
    if let (Kind::CronJob, Some(server)) = (kind, server) {
        // A run before the write, failed: not the judge of tagwatch's rollout.
        server
            .run_cronjob(&bed.ns, bed.name, JobOutcome::Failed)
            .expect("run");
    }

    let report = bed.round().await;
    assert_eq!(report.applied, 1);
    let written = bed.read().await;
    assert_eq!(image_of(kind, &written), bed.image("1.1.0"));
    assert_eq!(
        json_annotation(&written, "tagwatch.dev/applied"),
        json!({ bed.name: bed.image("1.1.0") })
    );
    assert_eq!(
        annotation(&written, "kubernetes.io/change-cause").as_deref(),
        Some(format!("tagwatch: {} 1.0.0 → 1.1.0", bed.name).as_str())
    );
    let rollout = json_annotation(&written, "tagwatch.dev/rollout");
    assert_eq!(rollout["to"], json!({ bed.name: bed.image("1.1.0") }));
    assert_eq!(bed.events("ImageUpdated").await.len(), 1);

    let completions = "tagwatch_rollout_duration_seconds_count";
    if server.is_some() {
        // Still rolling out a round later: the new pods do not run yet, Argo has not reported
        // on the new generation, the CronJob has not run since.
        bed.round().await;
        assert_eq!(bed.current_image().await, bed.image("1.1.0"));
        assert_eq!(bed.metric(completions).await, 0.0);
    }
    bed.complete(server, &bed.image("1.1.0")).await;
    if kind == Kind::CronJob {
        // Its rollout waits for the schedule: that wait is not timed. The next version shows
        // it completed (below).
        bed.round().await;
        assert_eq!(bed.metric(completions).await, 0.0);
    } else {
        let deadline = Instant::now() + Duration::from_secs(120);
        while bed.metric(completions).await < 1.0 {
            assert!(Instant::now() < deadline, "the rollout never completed");
            tokio::time::sleep(Duration::from_millis(250)).await;
            bed.round().await;
        }
        assert_eq!(bed.metric(completions).await, 1.0);
    }

    bed.push(&["1.2.0"]).await;
    bed.round().await;
    let next = bed.read().await;
    assert_eq!(image_of(kind, &next), bed.image("1.2.0"));
    let (v100, v110, v120) = (bed.image("1.0.0"), bed.image("1.1.0"), bed.image("1.2.0"));
    assert_eq!(
        hows(&next),
        [
            ("update".into(), v100, v110.clone()),
            ("update".into(), v110.clone(), v120)
        ],
        "1.1.0 completed: not superseded"
    );
    assert_eq!(
        json_annotation(&next, "tagwatch.dev/rollout")["from"],
        json!({ bed.name: v110 }),
        "a rollback of 1.2.0 returns to 1.1.0"
    );
}

/// `app:1` set by a person tracks the newest `1.x.y` and stays inside it.
async fn alias_tracking(kind: Kind) {
    let Some(bed) = Bed::start("alias_tracking", kind).await else {
        return;
    };
    bed.push(&["1.3.0", "1.4.2", "2.0.0"]).await;
    bed.workload("2.0.0")
        .policy("major")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    assert_eq!(bed.current_image().await, bed.image("2.0.0"));

    bed.set_image(&bed.image("1")).await;
    bed.round().await;
    let tracked = bed.read().await;
    assert_eq!(image_of(kind, &tracked), bed.image("1.4.2"));
    assert_eq!(
        annotation(&tracked, "tagwatch.dev/track").as_deref(),
        Some("1")
    );

    bed.push(&["2.1.0"]).await;
    bed.round().await;
    assert_eq!(bed.current_image().await, bed.image("1.4.2"));

    bed.push(&["1.5.0"]).await;
    bed.round().await;
    assert_eq!(bed.current_image().await, bed.image("1.5.0"));
}

/// `tagwatch.dev/pin: digest` writes `repo:tag@sha256:…`.
async fn digest_pin(kind: Kind) {
    let Some(bed) = Bed::start("digest_pin", kind).await else {
        return;
    };
    bed.push(&["1.2.3"]).await;
    let digest = bed
        .registry
        .push_image("app", "1.2.4", ImageKind::OciIndex)
        .await
        .expect("push");
    bed.workload("1.2.3")
        .policy("patch")
        .annotate("tagwatch.dev/pin", "digest")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    let pinned = bed.read().await;
    let want = format!("{}@{digest}", bed.image("1.2.4"));
    assert_eq!(image_of(kind, &pinned), want);
    assert_eq!(
        json_annotation(&pinned, "tagwatch.dev/applied"),
        json!({ bed.name: want })
    );
    // Pinned as it should be: nothing more to write.
    assert_eq!(bed.round().await.applied, 0);
}

/// A person's rollback is recorded once and not undone; the version left is rejected, newer
/// ones still apply.
async fn manual_rollback_is_respected(kind: Kind) {
    let Some(bed) = Bed::start("manual_rollback_is_respected", kind).await else {
        return;
    };
    let (v141, v142, v143) = (bed.image("1.4.1"), bed.image("1.4.2"), bed.image("1.4.3"));
    bed.push(&["1.4.1", "1.4.2"]).await;
    bed.workload("1.4.1")
        .policy("patch")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v142);

    bed.set_image(&v141).await;
    let report = bed.round().await;
    assert_eq!(report.applied, 0);
    let seen = bed.read().await;
    assert_eq!(image_of(kind, &seen), v141);
    let last = hows(&seen).pop().expect("an entry");
    assert_eq!(last, ("manual".into(), v142.clone(), v141.clone()));
    assert_eq!(
        json_annotation(&seen, "tagwatch.dev/applied"),
        json!({ bed.name: v141 })
    );
    assert_eq!(
        json_annotation(&seen, "tagwatch.dev/rejected"),
        json!({ bed.name: ["1.4.2"] })
    );
    assert_eq!(annotation(&seen, "tagwatch.dev/rollout"), None);
    bed.round().await;
    assert_eq!(
        bed.read().await.metadata.resource_version,
        seen.metadata.resource_version,
        "recorded once, not every round"
    );

    bed.push(&["1.4.3"]).await;
    bed.round().await;
    let newer = bed.read().await;
    assert_eq!(image_of(kind, &newer), v143);
    assert_eq!(
        json_annotation(&newer, "tagwatch.dev/rejected"),
        json!({ bed.name: ["1.4.2"] })
    );
}

/// A rollout that fails the kind's way is rolled back and its version rejected: a StatefulSet
/// or DaemonSet whose new pods are not Ready within `tagwatch.dev/progress-deadline`, a Rollout
/// Argo reports `Degraded` after the write, a CronJob whose next Job fails. Newer versions still
/// apply.
async fn automatic_rollback(kind: Kind) {
    let scenario = "automatic_rollback";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let Some(server) = test_server(
        &bed.cluster,
        scenario,
        kind,
        "a real cluster cannot be told to break a version on demand",
    ) else {
        return;
    };
    let (v100, v110, v120) = (bed.image("1.0.0"), bed.image("1.1.0"), bed.image("1.2.0"));
    server.set_image_health(&v100, ImageHealth::Ready);
    server.set_image_health(&v110, ImageHealth::Pending);
    if kind == Kind::DaemonSet {
        server.add_node("node-1").expect("node");
    }
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .with_pods()
        .annotate("tagwatch.dev/progress-deadline", "10s")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    let written = bed.read().await;
    assert_eq!(image_of(kind, &written), v110);

    let (why, cause) = match kind {
        Kind::Rollout => {
            let generation = written.metadata.generation;
            set_rollout_status(
                server,
                &bed.ns,
                bed.name,
                "Degraded",
                generation,
                "RolloutAborted: Rollout aborted update to revision 2",
            );
            (
                "the Rollout is Degraded: RolloutAborted".to_string(),
                "rollout_failed",
            )
        }
        Kind::CronJob => {
            let job = server
                .run_cronjob(&bed.ns, bed.name, JobOutcome::Failed)
                .expect("run");
            let name = job.metadata.name.expect("job name");
            (
                format!("the next Job {name} failed (BackoffLimitExceeded"),
                "rollout_failed",
            )
        }
        _ => (
            "rollout passed its progress deadline: not rolled out within 10s".to_string(),
            "progress_deadline",
        ),
    };
    let rolled_back = bed
        .rounds_until("rolled back", Duration::from_secs(40), |o| {
            hows(o).last().is_some_and(|(how, _, _)| how == "rollback")
        })
        .await;
    assert_eq!(image_of(kind, &rolled_back), v100);
    let last = history(&rolled_back).pop().expect("an entry");
    assert_eq!((&last["from"], &last["to"]), (&json!(v110), &json!(v100)));
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&why),
        "{reason:?} does not start {why:?}"
    );
    assert_eq!(
        json_annotation(&rolled_back, "tagwatch.dev/rejected"),
        json!({ bed.name: ["1.1.0"] })
    );
    assert_eq!(annotation(&rolled_back, "tagwatch.dev/rollout"), None);
    let events = bed.events("RolledBack").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0].note.as_deref().unwrap_or_default().contains(&why),
        "{:?}",
        events[0].note
    );
    assert_eq!(
        bed.metric(&format!(r#"tagwatch_rollbacks_total{{reason="{cause}"}}"#))
            .await,
        1.0
    );

    // Not applied again; a newer version is.
    bed.round().await;
    assert_eq!(bed.current_image().await, v100);
    bed.push(&["1.2.0"]).await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v120);
}

/// `tagwatch <args> --kubeconfig <kubeconfig>`, to completion.
fn tagwatch(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("run tagwatch")
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `tagwatch history` shows what tagwatch wrote on the kind; `tagwatch rollback` puts the image
/// before back, rejects the version left (tagwatch does not move to it again) and says so with
/// an Event; a newer version still applies.
async fn history_and_the_rollback_command(kind: Kind) {
    let Some(bed) = Bed::start("history_and_the_rollback_command", kind).await else {
        return;
    };
    let (v100, v110, v120) = (bed.image("1.0.0"), bed.image("1.1.0"), bed.image("1.2.0"));
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v110);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = bed.cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let target = format!("{}/{}/{}", bed.ns, kind.short(), bed.name);

    let printed = succeeded(&tagwatch(&kubeconfig, &["history", &target, "-o", "json"]));
    let entries: Value = serde_json::from_str(&printed).expect("history json");
    let entries = entries.as_array().expect("an array");
    assert_eq!(entries.len(), 1, "{printed}");
    assert_eq!(
        (
            &entries[0]["container"],
            &entries[0]["from"],
            &entries[0]["to"],
            &entries[0]["how"]
        ),
        (
            &json!(bed.name),
            &json!(v100),
            &json!(v110),
            &json!("update")
        )
    );

    let printed = succeeded(&tagwatch(&kubeconfig, &["rollback", &target]));
    let id = format!("{}/{kind}/{}", bed.ns, bed.name);
    assert_eq!(
        printed,
        format!(
            "rolled back {id}\n  {}: {v110} → {v100} (1.1.0 rejected)\n",
            bed.name
        )
    );
    let rolled_back = bed.read().await;
    assert_eq!(image_of(kind, &rolled_back), v100);
    assert_eq!(
        json_annotation(&rolled_back, "tagwatch.dev/rejected"),
        json!({ bed.name: ["1.1.0"] })
    );
    assert_eq!(
        hows(&rolled_back).pop(),
        Some(("manual-rollback".into(), v110.clone(), v100.clone()))
    );
    let events = bed.events("RolledBack").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].type_.as_deref(), Some("Normal"));
    let table = succeeded(&tagwatch(&kubeconfig, &["history", &target]));
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|row| row.contains("manual-rollback")),
        "{table}"
    );

    // tagwatch respects it: 1.1.0 stays rejected, a newer version applies.
    assert_eq!(bed.round().await.applied, 0);
    assert_eq!(bed.current_image().await, v100);
    bed.push(&["1.2.0"]).await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v120);
}

/// A workload Argo CD applies is not written to: one `ManagedByGitOps` Warning, then quiet.
async fn gitops_owned_workload_is_skipped(kind: Kind) {
    let Some(bed) = Bed::start("gitops_owned_workload_is_skipped", kind).await else {
        return;
    };
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .label("argocd.argoproj.io/instance", "shop")
        .create(&bed.cluster, &bed.ns)
        .await;
    let before = bed.read().await;
    bed.round().await;
    bed.round().await;
    let after = bed.read().await;
    assert_eq!(image_of(kind, &after), bed.image("1.0.0"));
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    let warnings = bed.events("ManagedByGitOps").await;
    assert_eq!(warnings.len(), 1, "reported once: {warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert!(
        warnings[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Argo CD application \"shop\""),
        "{:?}",
        warnings[0].note
    );
}

/// A CronJob's next Job that never runs a pod (an image that cannot be pulled: the Job waits for
/// ever) rolls the CronJob back once older than `tagwatch.dev/progress-deadline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_jobs_next_job_that_runs_no_pod_is_rolled_back_after_the_deadline() {
    let kind = Kind::CronJob;
    let scenario = "a_cron_jobs_next_job_that_runs_no_pod_is_rolled_back_after_the_deadline";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let Some(server) = test_server(
        &bed.cluster,
        scenario,
        kind,
        "a real CronJob runs on its schedule, not on cue",
    ) else {
        return;
    };
    let (v100, v110) = (bed.image("1.0.0"), bed.image("1.1.0"));
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .annotate("tagwatch.dev/progress-deadline", "10s")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v110);
    let job = server
        .run_cronjob(&bed.ns, bed.name, JobOutcome::Pending)
        .expect("run");
    let created = Instant::now();
    let rolled_back = bed
        .rounds_until("rolled back", Duration::from_secs(40), |o| {
            hows(o).last().is_some_and(|(how, _, _)| how == "rollback")
        })
        .await;
    assert!(
        created.elapsed() >= Duration::from_secs(9),
        "judged by the deadline"
    );
    assert_eq!(image_of(kind, &rolled_back), v100);
    let reason = history(&rolled_back).pop().expect("an entry")["reason"].clone();
    let name = job.metadata.name.expect("job name");
    assert_eq!(
        reason,
        json!(format!(
            "the next Job {name} ran no pod within 10s (tagwatch.dev/progress-deadline)"
        ))
    );
    assert_eq!(
        json_annotation(&rolled_back, "tagwatch.dev/rejected"),
        json!({ bed.name: ["1.1.0"] })
    );
}

/// Without the right to list Jobs, a CronJob's rollout counts as complete once it ran (asked
/// once, not every second), and the image stays: the watch is optional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_rollout_counts_complete_when_jobs_cannot_be_listed() {
    let kind = Kind::CronJob;
    let scenario = "a_cron_job_rollout_counts_complete_when_jobs_cannot_be_listed";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let Some(server) = test_server(
        &bed.cluster,
        scenario,
        kind,
        "only the test server can refuse the Job listing and run the CronJob on cue",
    ) else {
        return;
    };
    let (v110, v120) = (bed.image("1.1.0"), bed.image("1.2.0"));
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .create(&bed.cluster, &bed.ns)
        .await;
    let jobs = format!("/apis/batch/v1/namespaces/{}/jobs", bed.ns);
    server.inject_fault("GET", &jobs, Fault::Status(403), 1000);
    bed.round().await;
    assert_eq!(bed.current_image().await, v110);
    // Not run yet: nothing to list.
    bed.round().await;
    let listed = |server: &ApiServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == jobs)
            .map(|r| r.status)
            .collect::<Vec<u16>>()
    };
    assert_eq!(listed(server), Vec::<u16>::new());

    // The run fails, but tagwatch cannot see it: complete, not rolled back.
    server
        .run_cronjob(&bed.ns, bed.name, JobOutcome::Failed)
        .expect("run");
    bed.round().await;
    bed.round().await;
    assert_eq!(listed(server), [403], "asked once");
    assert_eq!(bed.current_image().await, v110);
    bed.push(&["1.2.0"]).await;
    bed.round().await;
    let next = bed.read().await;
    assert_eq!(image_of(kind, &next), v120);
    assert_eq!(
        hows(&next).first().map(|(how, _, _)| how.as_str()),
        Some("update"),
        "complete: not superseded"
    );
}

/// A Rollout left `Degraded` by the release before does not get the fix pushed for it rejected:
/// only a `Degraded` phase on the generation tagwatch wrote counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_degraded_before_the_write_does_not_reject_the_fix() {
    let kind = Kind::Rollout;
    let scenario = "a_rollout_degraded_before_the_write_does_not_reject_the_fix";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let Some(server) = test_server(
        &bed.cluster,
        scenario,
        kind,
        "the test plays Argo Rollouts' controller",
    ) else {
        return;
    };
    let (v100, v101) = (bed.image("1.0.0"), bed.image("1.0.1"));
    bed.push(&["1.0.0"]).await;
    let created = bed
        .workload("1.0.0")
        .policy("patch")
        .create(&bed.cluster, &bed.ns)
        .await;
    // 1.0.0 crashes: Argo aborts it.
    set_rollout_status(
        server,
        &bed.ns,
        bed.name,
        "Degraded",
        created.metadata.generation,
        "RolloutAborted: Rollout aborted update to revision 1",
    );
    bed.round().await;
    bed.push(&["1.0.1"]).await;
    bed.round().await;
    // The status still speaks of 1.0.0 until Argo observes the new generation.
    for _ in 0..3 {
        bed.round().await;
    }
    let fixed = bed.read().await;
    assert_eq!(image_of(kind, &fixed), v101);
    assert_eq!(annotation(&fixed, "tagwatch.dev/rejected"), None);
    set_rollout_status(
        server,
        &bed.ns,
        bed.name,
        "Healthy",
        fixed.metadata.generation,
        "",
    );
    bed.round().await;
    assert_eq!(
        bed.metric("tagwatch_rollout_duration_seconds_count").await,
        1.0
    );
    assert!(bed.events("RolledBack").await.is_empty());
    assert_eq!(
        hows(&bed.read().await),
        [("update".into(), v100, v101)],
        "nothing rolled back"
    );
}

/// Argo Rollouts runs its own canary: tagwatch's canary annotation on a Rollout is refused with
/// one `CanaryUnsupported` Warning, and the Rollout is not written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagwatch_canary_on_a_rollout_is_refused() {
    let kind = Kind::Rollout;
    let Some(bed) = Bed::start("a_tagwatch_canary_on_a_rollout_is_refused", kind).await else {
        return;
    };
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .annotate("tagwatch.dev/canary", "true")
        .create(&bed.cluster, &bed.ns)
        .await;
    let before = bed.read().await;
    bed.round().await;
    bed.round().await;
    let after = bed.read().await;
    assert_eq!(image_of(kind, &after), bed.image("1.0.0"));
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    let refused = bed.events("CanaryUnsupported").await;
    assert_eq!(refused.len(), 1, "reported once: {refused:?}");
    assert_eq!(refused[0].type_.as_deref(), Some("Warning"));
    assert!(
        refused[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Argo Rollouts runs this workload's canary itself"),
        "{:?}",
        refused[0].note
    );
}

/// A cluster without Argo Rollouts' CRD: `tagwatch run` serves the other kinds and reports no
/// error; once the CRD is installed it watches Rollouts and updates them, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_are_watched_once_their_crd_appears() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = tagwatch_testbed::test_server_or_skip!(cluster => (),
        "the test installs Argo Rollouts' CRD mid-run");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let v110 = format!("{}/app:1.1.0", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("plain")
        .replicas(0)
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let service = Tagwatch::watching(&cluster, &registry, &["--crd-recheck", "1s"]);
    service.wait_polling().await;
    wait::until(
        "the Deployment updated",
        Duration::from_secs(30),
        || async { (crate::support::image(&cluster, &ns, "plain").await == v110).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert_eq!(
        service
            .log_events(
                "Argo Rollouts' CRD is not installed: rollouts are not watched (looked for again \
                 every 1s)"
            )
            .len(),
        1,
        "said once\n{}",
        service.logs()
    );

    server.install_argo_rollouts().expect("Argo Rollouts' CRD");
    workload(
        Kind::Rollout,
        "web",
        &format!("{}/app:1.0.0", registry.host()),
    )
    .policy("minor")
    .create(&cluster, &ns)
    .await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &ns, &api_resource(Kind::Rollout));
    wait::until("the Rollout updated", Duration::from_secs(30), || async {
        let rollout = api.get("web").await.ok()?;
        (image_of(Kind::Rollout, &rollout) == v110).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert_eq!(
        service
            .log_events("Argo Rollouts' CRD is served: watching rollouts.argoproj.io")
            .len(),
        1,
        "{}",
        service.logs()
    );
    // Nothing went wrong on the way: no error, no warning about Rollouts.
    let troubles: Vec<Value> = service
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["level"] == "ERROR"
                || (l["level"] == "WARN" && l.to_string().to_lowercase().contains("rollout"))
        })
        .collect();
    assert_eq!(troubles, Vec::<Value>::new());
}

/// A newer version listed while the rollout in progress is being looked at (a slow Job listing
/// here) is applied when that look ends, not a poll later: the rollout is superseded at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_listed_during_a_rollout_check_is_applied_when_the_check_ends() {
    let kind = Kind::CronJob;
    let scenario = "a_version_listed_during_a_rollout_check_is_applied_when_the_check_ends";
    let Some(bed) = Bed::start(scenario, kind).await else {
        return;
    };
    let Some(server) = test_server(
        &bed.cluster,
        scenario,
        kind,
        "only the test server can slow the Job listing down",
    ) else {
        return;
    };
    let (v100, v110, v120) = (bed.image("1.0.0"), bed.image("1.1.0"), bed.image("1.2.0"));
    bed.push(&["1.0.0", "1.1.0"]).await;
    bed.workload("1.0.0")
        .policy("minor")
        .create(&bed.cluster, &bed.ns)
        .await;
    bed.round().await;
    assert_eq!(bed.current_image().await, v110);
    // 1.1.0's Job never starts a pod: its rollout stays in progress, and is looked at each round.
    server
        .run_cronjob(&bed.ns, bed.name, JobOutcome::Pending)
        .expect("run");
    bed.round().await;

    let jobs = format!("/apis/batch/v1/namespaces/{}/jobs", bed.ns);
    server.inject_fault("GET", &jobs, Fault::Delay(Duration::from_secs(2)), 1);
    bed.push(&["1.2.0"]).await;
    bed.round().await;
    let superseded = bed.read().await;
    assert_eq!(image_of(kind, &superseded), v120, "in the same round");
    assert_eq!(
        hows(&superseded),
        [
            ("superseded".into(), v100.clone(), v110.clone()),
            ("update".into(), v110, v120)
        ]
    );
    assert_eq!(
        json_annotation(&superseded, "tagwatch.dev/rollout")["from"],
        json!({ bed.name: v100 }),
        "a rollback returns to the last version that completed"
    );
}
