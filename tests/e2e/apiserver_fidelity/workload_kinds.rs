//! The other workload kinds: StatefulSets (16–21), DaemonSets (22) and CronJobs (23, 24), as
//! `../shared/apiserver-wire` records them. Settling needs Ready pods, which a real cluster cannot
//! give the `registry.example` images used here: there those parts print SKIPPED.

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tagwatch_testbed::apiserver::{ControllerMode, ImageHealth, JobOutcome};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::wait::until;

use super::{api_status, DEADLINE};

const DB: &str = "registry.example/db:2.0.0";
const DB_NEXT: &str = "registry.example/db:2.1.0";

/// Reports `test` (a function of this module) skipped, in the skip log CI prints.
fn skipped(test: &str, reason: &str) {
    let module = module_path!().trim_start_matches("e2e::");
    tagwatch_testbed::skip::report(
        &format!("{module}::{test}"),
        reason,
        env!("CARGO_TARGET_TMPDIR"),
    );
}

fn json_patch(ops: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).expect("a valid JSON Patch"))
}

/// A pod template as the recordings' manifests give it, before server defaulting.
fn template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })
}

/// The pod spec of a template after server defaulting (16, 22, 23).
fn defaulted_pod_spec(image: &str, restart_policy: &str) -> Value {
    json!({
        "containers": [{
            "name": "app",
            "image": image,
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        }],
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler"
    })
}

fn policy_annotation() -> Value {
    json!({"tagwatch.dev/policy": "minor"})
}

/// The StatefulSet of 16: three replicas of `db`.
async fn create_db(api: &Api<StatefulSet>) -> StatefulSet {
    let set: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "annotations": policy_annotation()},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "serviceName": "db",
            "template": template("db", DB),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        }
    }))
    .expect("a valid StatefulSet literal");
    api.create(&PostParams::default(), &set)
        .await
        .expect("creating a StatefulSet")
}

fn set_status(set: &StatefulSet) -> StatefulSetStatus {
    set.status.clone().unwrap_or_default()
}

/// Waits until the controller has observed `generation` and `settled` holds for its status.
async fn settled_at(
    api: &Api<StatefulSet>,
    generation: i64,
    settled: impl Fn(&StatefulSetStatus) -> bool,
) -> anyhow::Result<StatefulSet> {
    until("the StatefulSet to settle", DEADLINE, || async {
        let set = api.get("db").await.ok()?;
        let status = set_status(&set);
        (status.observed_generation == Some(generation) && settled(&status)).then_some(set)
    })
    .await
}

/// 16: every pod Ready and updated, `currentRevision == updateRevision`.
async fn settled_db(api: &Api<StatefulSet>) -> anyhow::Result<StatefulSet> {
    settled_at(api, 1, |s| s.ready_replicas == Some(3)).await
}

/// 17: the partition canary step, one guarded JSON Patch.
fn partition_step() -> Patch<()> {
    json_patch(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": DB},
        {"op": "replace", "path": "/spec/updateStrategy/rollingUpdate/partition", "value": 2},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": DB_NEXT}
    ]))
}

fn image_of_template(set: &StatefulSet) -> Option<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
}

fn partition_of(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
}

#[tokio::test]
async fn statefulset_defaults_and_settled_status_like_16() -> anyhow::Result<()> {
    let test = "statefulset_defaults_and_settled_status_like_16";
    let cluster = TestCluster::start().await?;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let created = create_db(&api).await;
    assert_eq!(created.metadata.generation, Some(1));
    let spec = serde_json::to_value(created.spec.as_ref().expect("spec"))?;
    let want = json!({
        "replicas": 3,
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": defaulted_pod_spec(DB, "Always")},
        "serviceName": "db",
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "revisionHistoryLimit": 10,
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}
    });
    assert_eq!(spec, want, "16's spec, defaults filled in");

    let Some(server) = cluster.server() else {
        skipped(
            test,
            "settling needs Ready pods of registry.example images (real cluster)",
        );
        return Ok(());
    };
    // The images here run on the test bed (settling needs Ready pods).
    server.set_default_image_health(ImageHealth::Ready);
    let settled = settled_db(&api).await?;
    assert_eq!(
        settled.metadata.generation,
        Some(1),
        "a status write keeps generation"
    );
    let status = set_status(&settled);
    let revision = status.update_revision.clone().expect("updateRevision");
    assert!(revision.starts_with("db-"), "{revision}");
    let want = StatefulSetStatus {
        observed_generation: Some(1),
        replicas: 3,
        ready_replicas: Some(3),
        current_replicas: Some(3),
        updated_replicas: Some(3),
        current_revision: Some(revision.clone()),
        update_revision: Some(revision),
        collision_count: Some(0),
        available_replicas: Some(3),
        ..StatefulSetStatus::default()
    };
    assert_eq!(status, want);

    // Only the test server: the raw body carries exactly 16's status fields.
    let url = format!(
        "{}/apis/apps/v1/namespaces/{}/statefulsets/db",
        server.url(),
        cluster.namespace
    );
    let body: Value = reqwest::get(url).await?.json().await?;
    let mut fields: Vec<&str> = body["status"]
        .as_object()
        .expect("a status object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "availableReplicas",
            "collisionCount",
            "currentReplicas",
            "currentRevision",
            "observedGeneration",
            "readyReplicas",
            "replicas",
            "updateRevision",
            "updatedReplicas"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn statefulset_partition_step_like_17_18() -> anyhow::Result<()> {
    let test = "statefulset_partition_step_like_17_18";
    let cluster = TestCluster::start().await?;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_db(&api).await;
    // Settling needs Ready pods: the test bed runs the images; a real cluster only when it can.
    let before = match cluster.run_images() {
        true => Some(settled_db(&api).await?),
        false => None,
    };

    let patched = api
        .patch("db", &PatchParams::default(), &partition_step())
        .await?;
    assert_eq!(patched.metadata.generation, Some(2), "17: generation bumps");
    assert_eq!(partition_of(&patched), Some(2));
    assert_eq!(image_of_template(&patched).as_deref(), Some(DB_NEXT));
    assert_ne!(
        set_status(&patched).observed_generation,
        Some(2),
        "17: the answer is the spec write; status moves in a later write"
    );

    let Some(before) = before else {
        skipped(
            test,
            "18 needs Ready pods of registry.example images (real cluster)",
        );
        return Ok(());
    };
    let old_revision = set_status(&before).current_revision;
    let settled = settled_at(&api, 2, |s| s.updated_replicas == Some(1)).await?;
    let status = set_status(&settled);
    assert_eq!(
        status.current_revision, old_revision,
        "18: not complete while partition > 0"
    );
    assert_ne!(status.update_revision, status.current_revision);
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.current_replicas,
            status.updated_replicas,
            status.available_replicas,
            status.collision_count
        ),
        (3, Some(3), Some(2), Some(1), Some(3), Some(0))
    );
    Ok(())
}

fn revision_label(pod: &Pod) -> Option<&str> {
    pod.labels()
        .get("controller-revision-hash")
        .map(String::as_str)
}

#[tokio::test]
async fn statefulset_pods_carry_their_revision_like_19() -> anyhow::Result<()> {
    let test = "statefulset_pods_carry_their_revision_like_19";
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let created = create_db(&api).await;

    // db-0 comes first whether or not it ever becomes Ready.
    let first = until("pod db-0", DEADLINE, || async {
        pods.get("db-0").await.ok()
    })
    .await?;
    let labels = first.labels();
    let label = |key: &str| labels.get(key).map(String::as_str);
    assert_eq!(label("app"), Some("db"));
    assert_eq!(label("apps.kubernetes.io/pod-index"), Some("0"));
    assert_eq!(label("statefulset.kubernetes.io/pod-name"), Some("db-0"));
    let update_revision = until("an updateRevision", DEADLINE, || async {
        set_status(&api.get("db").await.ok()?).update_revision
    })
    .await?;
    assert_eq!(revision_label(&first), Some(update_revision.as_str()));
    let owner = &first.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("StatefulSet", "db", Some(true))
    );
    assert_eq!(Some(owner.uid.clone()), created.uid());
    let spec = first.spec.as_ref().expect("pod spec");
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("db-0"), Some("db"))
    );

    if !cluster.run_images() {
        skipped(
            test,
            "the revision split needs Ready pods of registry.example images (real cluster)",
        );
        return Ok(());
    }
    settled_db(&api).await?;
    api.patch("db", &PatchParams::default(), &partition_step())
        .await?;
    let status = set_status(&settled_at(&api, 2, |s| s.updated_replicas == Some(1)).await?);
    let listed = pods.list(&ListParams::default().labels("app=db")).await?;
    let by_revision: Vec<(String, Option<&str>, Option<String>)> = listed
        .items
        .iter()
        .map(|p| {
            let image = p.spec.as_ref().and_then(|s| s.containers[0].image.clone());
            (p.name_any(), revision_label(p), image)
        })
        .collect();
    let (current, update) = (
        status.current_revision.as_deref(),
        status.update_revision.as_deref(),
    );
    assert_eq!(
        by_revision,
        [
            ("db-0".to_string(), current, Some(DB.to_string())),
            ("db-1".to_string(), current, Some(DB.to_string())),
            ("db-2".to_string(), update, Some(DB_NEXT.to_string())),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn statefulset_promotion_like_20_21() -> anyhow::Result<()> {
    let test = "statefulset_promotion_like_20_21";
    let cluster = TestCluster::start().await?;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_db(&api).await;
    // Settling needs Ready pods: the test bed runs the images; a real cluster only when it can.
    let on_server = cluster.run_images();
    if on_server {
        settled_db(&api).await?;
    }
    api.patch("db", &PatchParams::default(), &partition_step())
        .await?;
    let canary = if on_server {
        Some(settled_at(&api, 2, |s| s.updated_replicas == Some(1)).await?)
    } else {
        None
    };

    let promote = json_patch(json!([
        {"op": "replace", "path": "/spec/updateStrategy/rollingUpdate/partition", "value": 0}
    ]));
    let promoted = api.patch("db", &PatchParams::default(), &promote).await?;
    assert_eq!(
        promoted.metadata.generation,
        Some(3),
        "20: generation bumps"
    );
    assert_eq!(partition_of(&promoted), Some(0));

    let Some(canary) = canary else {
        skipped(
            test,
            "21 needs Ready pods of registry.example images (real cluster)",
        );
        return Ok(());
    };
    let target = set_status(&canary).update_revision;
    let settled = settled_at(&api, 3, |s| s.current_revision == target).await?;
    let status = set_status(&settled);
    assert_eq!(
        status.update_revision, target,
        "21: currentRevision == updateRevision"
    );
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.current_replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (3, Some(3), Some(3), Some(3), Some(3))
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let listed = pods.list(&ListParams::default().labels("app=db")).await?;
    assert_eq!(listed.items.len(), 3);
    assert!(listed
        .items
        .iter()
        .all(|p| revision_label(p) == target.as_deref()));
    Ok(())
}

/// Only the test server: pod readiness follows the image's health, and an updated pod that never
/// becomes Ready halts the rollout, as OrderedReady does; a kubelet report lets it go on.
#[tokio::test]
async fn statefulset_rollout_waits_for_ready_pods() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let Some(server) = cluster.server() else {
        skipped(
            "statefulset_rollout_waits_for_ready_pods",
            "image health and pod readiness are the test server's knobs",
        );
        return Ok(());
    };
    // The images here run on the test bed (settling needs Ready pods).
    server.set_default_image_health(ImageHealth::Ready);
    let ns = cluster.namespace.as_str();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    create_db(&api).await;
    let old = set_status(&settled_db(&api).await?).current_revision;
    server.set_image_health(DB_NEXT, ImageHealth::NeverReady);
    let promote = json_patch(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": DB_NEXT}
    ]));
    api.patch("db", &PatchParams::default(), &promote).await?;
    let status = set_status(&settled_at(&api, 2, |s| s.updated_replicas.is_some()).await?);
    assert_eq!(
        (
            status.ready_replicas,
            status.updated_replicas,
            status.current_replicas
        ),
        (Some(2), Some(1), Some(2)),
        "db-2 was replaced and is not Ready: nothing else moves"
    );
    assert_eq!(status.current_revision, old);

    server.set_pod_ready(ns, "db-2", true)?;
    let status = set_status(&settled_at(&api, 2, |s| s.updated_replicas == Some(2)).await?);
    assert_eq!(
        status.ready_replicas,
        Some(2),
        "db-1 is next, and not Ready either"
    );
    assert_eq!(status.current_revision, old);

    server.set_image_health(DB_NEXT, ImageHealth::Restarting(3));
    server.set_pod_ready(ns, "db-1", true)?;
    let status = set_status(&settled_at(&api, 2, |s| s.current_revision != old).await?);
    assert_eq!(status.updated_replicas, Some(3));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let restarts = pods
        .get("db-0")
        .await?
        .status
        .and_then(|s| s.container_statuses)
        .map(|c| c[0].restart_count);
    assert_eq!(
        restarts,
        Some(3),
        "db-0 came back with the crash-looping health"
    );
    Ok(())
}

/// Only the test server: in `Manual` mode status stays what a create leaves (the zero status a
/// real server encodes), tests seed it, and `Instant` catches up.
#[tokio::test]
async fn statefulset_manual_mode_and_seeded_status() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let Some(server) = cluster.server() else {
        skipped(
            "statefulset_manual_mode_and_seeded_status",
            "controller modes and status seeding are the test server's knobs",
        );
        return Ok(());
    };
    // The images here run on the test bed (settling needs Ready pods).
    server.set_default_image_health(ImageHealth::Ready);
    let ns = cluster.namespace.as_str();
    server.set_controller(ControllerMode::Manual);
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    create_db(&api).await;
    let url = format!(
        "{}/apis/apps/v1/namespaces/{ns}/statefulsets/db",
        server.url()
    );
    let body: Value = reqwest::get(&url).await?.json().await?;
    assert_eq!(
        body["status"],
        json!({"replicas": 0}),
        "replicas has no omitempty"
    );
    assert!(server.pods(ns).is_empty());

    let seeded = StatefulSetStatus {
        observed_generation: Some(1),
        replicas: 3,
        ready_replicas: Some(1),
        current_revision: Some("db-old".into()),
        update_revision: Some("db-new".into()),
        ..StatefulSetStatus::default()
    };
    server.set_statefulset_status(ns, "db", seeded.clone())?;
    let got = api.get("db").await?;
    assert_eq!(got.metadata.generation, Some(1));
    assert_eq!(set_status(&got), seeded);
    assert_eq!(
        server.get::<StatefulSet>(ns, "db").map(|s| set_status(&s)),
        Some(seeded)
    );

    server.set_controller(ControllerMode::Instant);
    let status = set_status(&api.get("db").await?);
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(server.pods(ns).len(), 3);
    Ok(())
}

fn agent() -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "annotations": policy_annotation()},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": template("agent", "registry.example/agent:1.0.0")
        }
    }))
    .expect("a valid DaemonSet literal")
}

fn template_generation(set: &DaemonSet) -> Option<&str> {
    set.annotations()
        .get("deprecated.daemonset.template.generation")
        .map(String::as_str)
}

#[tokio::test]
async fn daemonset_defaults_and_zero_nodes_like_22() -> anyhow::Result<()> {
    let test = "daemonset_defaults_and_zero_nodes_like_22";
    let cluster = TestCluster::start().await?;
    let api: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let created = api.create(&PostParams::default(), &agent()).await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(template_generation(&created), Some("1"));
    let spec = serde_json::to_value(created.spec.as_ref().expect("spec"))?;
    let want = json!({
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": defaulted_pod_spec("registry.example/agent:1.0.0", "Always")
        },
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "revisionHistoryLimit": 10
    });
    assert_eq!(spec, want, "22's spec, defaults filled in");

    let observed = until("the DaemonSet controller", DEADLINE, || async {
        let set = api.get("agent").await.ok()?;
        let status = set.status.clone()?;
        (status.observed_generation == Some(1)).then_some(status)
    })
    .await?;
    assert_eq!(observed.number_misscheduled, 0);
    if cluster.server().is_some() {
        // 22: no nodes, so nothing to schedule; the zero counts without omitempty are present.
        let status = serde_json::to_value(&observed)?;
        let want = json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
            "observedGeneration": 1
        });
        assert_eq!(status, want);
    } else {
        skipped(
            test,
            "a real cluster has nodes: desiredNumberScheduled 0 is not checked",
        );
    }

    let patch = json_patch(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "registry.example/agent:1.0.0"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example/agent:1.1.0"}
    ]));
    let patched = api.patch("agent", &PatchParams::default(), &patch).await?;
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(
        template_generation(&patched),
        Some("2"),
        "follows template changes"
    );
    Ok(())
}

/// Only the test server: Nodes are seeded, one pod runs on each, and a rolling update replaces
/// them while at most `maxUnavailable` (1) is unavailable.
#[tokio::test]
async fn daemonset_runs_a_pod_per_seeded_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let Some(server) = cluster.server() else {
        skipped(
            "daemonset_runs_a_pod_per_seeded_node",
            "a real cluster's nodes cannot be seeded",
        );
        return Ok(());
    };
    // The images here run on the test bed (settling needs Ready pods).
    server.set_default_image_health(ImageHealth::Ready);
    let ns = cluster.namespace.as_str();
    for node in ["node-a", "node-b"] {
        server.add_node(node)?;
    }
    let api: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), ns);
    api.create(&PostParams::default(), &agent()).await?;
    let counts = |set: &DaemonSet| {
        let s = set.status.clone().unwrap_or_default();
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready,
            s.updated_number_scheduled,
            s.number_available,
            s.number_unavailable,
        )
    };
    assert_eq!(
        counts(&api.get("agent").await?),
        (2, 2, 2, Some(2), Some(2), None)
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let mut nodes: Vec<Option<String>> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
        .iter()
        .map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [Some("node-a".to_string()), Some("node-b".to_string())]
    );

    server.add_node("node-c")?;
    assert_eq!(
        counts(&api.get("agent").await?),
        (3, 3, 3, Some(3), Some(3), None)
    );

    server.set_image_health("registry.example/agent:1.1.0", ImageHealth::NeverReady);
    let patch = json_patch(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example/agent:1.1.0"}
    ]));
    api.patch("agent", &PatchParams::default(), &patch).await?;
    let stuck = api.get("agent").await?;
    assert_eq!(
        counts(&stuck),
        (3, 3, 2, Some(1), Some(2), Some(1)),
        "one at a time"
    );
    assert_eq!(stuck.status.and_then(|s| s.observed_generation), Some(2));

    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.client.clone());
    nodes.delete("node-c", &Default::default()).await?;
    let shrunk = counts(&api.get("agent").await?);
    assert_eq!(shrunk.0, 2, "a deleted node takes its daemon pod with it");
    Ok(())
}

fn nightly(restart_policy: Option<&str>) -> CronJob {
    let mut pod_spec =
        json!({"containers": [{"name": "app", "image": "registry.example/batch:1.0.0"}]});
    if let Some(policy) = restart_policy {
        pod_spec["restartPolicy"] = json!(policy);
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "annotations": policy_annotation()},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}
        }
    }))
    .expect("a valid CronJob literal")
}

#[tokio::test]
async fn cronjob_defaults_and_guarded_patch_like_23_24() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<CronJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let created = api
        .create(&PostParams::default(), &nightly(Some("Never")))
        .await?;
    assert_eq!(created.metadata.generation, Some(1));
    let got = serde_json::to_value(api.get("nightly").await?)?;
    let job_spec = |image: &str| {
        json!({
            "metadata": {},
            "spec": {"template": {"metadata": {}, "spec": defaulted_pod_spec(image, "Never")}}
        })
    };
    let want = json!({
        "schedule": "0 3 * * *",
        "concurrencyPolicy": "Allow",
        "suspend": false,
        "jobTemplate": job_spec("registry.example/batch:1.0.0"),
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1
    });
    assert_eq!(got["spec"], want, "23's spec, defaults filled in");
    assert_eq!(got["status"], json!({}), "23: status {{}} until it runs");

    let patch = json_patch(json!([
        {"op": "test", "path": "/spec/jobTemplate/spec/template/spec/containers/0/image", "value": "registry.example/batch:1.0.0"},
        {"op": "replace", "path": "/spec/jobTemplate/spec/template/spec/containers/0/image", "value": "registry.example/batch:1.1.0"}
    ]));
    let patched = serde_json::to_value(
        api.patch("nightly", &PatchParams::default(), &patch)
            .await?,
    )?;
    assert_eq!(patched["metadata"]["generation"], 2, "24: generation bumps");
    assert_eq!(
        patched["spec"]["jobTemplate"],
        job_spec("registry.example/batch:1.1.0")
    );
    assert_eq!(patched["status"], json!({}));

    // The same guard again fails: the image it tests for is gone (like 04).
    let status = api_status(api.patch("nightly", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));

    // Job pods may not restart in place, and the defaulted `Always` says so.
    let mut always = nightly(None);
    always.metadata.name = Some("always".into());
    let status = api_status(api.create(&PostParams::default(), &always).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = status
        .details
        .map(|d| d.causes.into_iter().map(|c| c.field).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        ["spec.jobTemplate.spec.template.spec.restartPolicy"]
    );
    Ok(())
}

fn condition_types(job: &Job) -> Vec<String> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

/// Only the test server: a CronJob runs on the test's cue, making an owned, finished Job.
#[tokio::test]
async fn cronjob_runs_on_cue_with_owned_jobs_and_history_limits() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let Some(server) = cluster.server() else {
        skipped(
            "cronjob_runs_on_cue_with_owned_jobs_and_history_limits",
            "a real CronJob runs on its schedule, not on cue",
        );
        return Ok(());
    };
    // The images here run on the test bed (settling needs Ready pods).
    server.set_default_image_health(ImageHealth::Ready);
    let ns = cluster.namespace.as_str();
    let api: Api<CronJob> = Api::namespaced(cluster.client.clone(), ns);
    let created = api
        .create(&PostParams::default(), &nightly(Some("Never")))
        .await?;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);

    let job = server.run_cronjob(ns, "nightly", JobOutcome::Succeeded)?;
    let name = job.name_any();
    assert!(
        name.strip_prefix("nightly-")
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "{name}"
    );
    let got = jobs.get(&name).await?;
    let owner = &got.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "nightly")
    );
    assert_eq!(Some(owner.uid.clone()), created.uid());
    let image = got
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some("registry.example/batch:1.0.0"));
    assert_eq!(condition_types(&got), ["SuccessCriteriaMet", "Complete"]);
    assert_eq!(got.status.as_ref().and_then(|s| s.succeeded), Some(1));
    let status = api.get("nightly").await?.status.unwrap_or_default();
    assert!(status.last_schedule_time.is_some() && status.last_successful_time.is_some());
    let last_success = status.last_successful_time;

    let first_failure = server.run_cronjob(ns, "nightly", JobOutcome::Failed)?;
    assert_eq!(condition_types(&first_failure), ["FailureTarget", "Failed"]);
    let second_failure = server.run_cronjob(ns, "nightly", JobOutcome::Failed)?;
    let status = api.get("nightly").await?.status.unwrap_or_default();
    assert_eq!(
        status.last_successful_time, last_success,
        "failures do not count"
    );
    let mut names: Vec<String> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    let mut want = vec![name, second_failure.name_any()];
    want.sort();
    assert_eq!(
        names, want,
        "failedJobsHistoryLimit 1 keeps the newest failure only"
    );

    // A run whose pod never starts: the Job stays active, and the CronJob lists it as running.
    let pending = server.run_cronjob(ns, "nightly", JobOutcome::Pending)?;
    assert!(condition_types(&pending).is_empty());
    let counts = pending
        .status
        .as_ref()
        .map(|s| (s.active, s.ready, s.succeeded, s.failed));
    assert_eq!(counts, Some((Some(1), Some(0), None, None)));
    let status = api.get("nightly").await?.status.unwrap_or_default();
    let active: Vec<_> = status
        .active
        .iter()
        .flatten()
        .map(|r| (r.kind.clone(), r.name.clone(), r.uid.clone()))
        .collect();
    assert_eq!(
        active,
        [(
            Some("Job".to_string()),
            Some(pending.name_any()),
            pending.uid()
        )]
    );
    assert_eq!(status.last_successful_time, last_success);

    api.delete("nightly", &Default::default()).await?;
    assert!(
        jobs.list(&ListParams::default()).await?.items.is_empty(),
        "owned Jobs are collected"
    );
    Ok(())
}

/// Jobs (with `/status`) and ConfigMaps are served plainly.
#[tokio::test]
async fn jobs_and_config_maps_are_served_plainly() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    // Suspended, so a real cluster starts no pods for it.
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "once"},
        "spec": {
            "suspend": true,
            "template": {"spec": {
                "containers": [{"name": "app", "image": "registry.example/batch:1.0.0"}],
                "restartPolicy": "Never"
            }}
        }
    }))?;
    let created = jobs.create(&PostParams::default(), &job).await?;
    assert_eq!(created.metadata.generation, Some(1));
    let spec = serde_json::to_value(created.spec.as_ref().expect("spec"))?;
    for (field, want) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(true)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        assert_eq!(spec[field], want, "{field}");
    }
    let status = Patch::Merge(json!({"status": {"failed": 1}}));
    let ignored = jobs.patch("once", &PatchParams::default(), &status).await?;
    assert_eq!(
        ignored.status.and_then(|s| s.failed),
        None,
        "the main resource cannot write status"
    );
    match cluster.server() {
        Some(_) => {
            let reported = jobs
                .patch_status("once", &PatchParams::default(), &status)
                .await?;
            assert_eq!(reported.status.and_then(|s| s.failed), Some(1));
            assert_eq!(
                reported.metadata.generation,
                Some(1),
                "a status write keeps generation"
            );
        }
        None => skipped(
            "jobs_and_config_maps_are_served_plainly",
            "a real server validates Job status against its controller's bookkeeping",
        ),
    }

    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client.clone(), ns);
    let map =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "1"}}))?;
    maps.create(&PostParams::default(), &map).await?;
    let patched = maps
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await?;
    let data = patched.data.unwrap_or_default();
    assert_eq!(
        (data.get("a"), data.get("b")),
        (Some(&"1".to_string()), Some(&"2".to_string()))
    );
    if let Some(server) = cluster.server() {
        // Only the test server: direct reads reach the new kinds too.
        let direct: Option<k8s_openapi::api::core::v1::ConfigMap> = server.get(ns, "settings");
        assert!(direct.is_some());
    }
    Ok(())
}
