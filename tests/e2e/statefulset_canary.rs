//! A StatefulSet's canary on its own rolling-update partition, with `tagwatch run` as a user runs
//! it: no `<name>-canary` object; the partition holds the new version to the highest ordinals,
//! only the update revision's pods are judged, and a pass gives the partition back while a
//! failure restores images and partition exactly. Kinds without tagwatch's canary refuse it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing;
use axum::Router;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tagwatch_testbed::apiserver::ImageHealth;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;
use tagwatch_testbed::{require_running_images, test_server_or_skip};

use crate::support::{events, push, Prometheus, Tagwatch};

const CANARY: &str = "tagwatch.dev/canary";
const CANARY_REPLICAS: &str = "tagwatch.dev/canary-replicas";
const BAKE: &str = "tagwatch.dev/canary-bake";
const TIMEOUT: &str = "tagwatch.dev/canary-timeout";
const STATE: &str = "tagwatch.dev/canary-state";

/// A StatefulSet `name` of `replicas` running `image`, with `annotations` and, when given, the
/// `updateStrategy` of its manifest (else the API server's default).
fn stateful_set(
    name: &str,
    image: &str,
    replicas: i32,
    annotations: &[(&str, &str)],
    strategy: Option<Value>,
) -> StatefulSet {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}}
        }
    });
    if let Some(strategy) = strategy {
        set["spec"]["updateStrategy"] = strategy;
    }
    serde_json::from_value(set).expect("a valid StatefulSet")
}

fn sets(cluster: &TestCluster) -> Api<StatefulSet> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

async fn get_set(cluster: &TestCluster, name: &str) -> StatefulSet {
    sets(cluster).get(name).await.expect("get StatefulSet")
}

fn set_image(set: &StatefulSet) -> String {
    set.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].image.clone())
        .unwrap_or_default()
}

/// `spec.updateStrategy` as JSON (what must come back exactly after a canary).
fn strategy(set: &StatefulSet) -> Value {
    serde_json::to_value(set).expect("json")["spec"]["updateStrategy"].clone()
}

fn partition(set: &StatefulSet) -> Option<i64> {
    strategy(set)["rollingUpdate"]["partition"].as_i64()
}

fn set_annotation(set: &StatefulSet, key: &str) -> Option<String> {
    set.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

fn history(set: &StatefulSet) -> Vec<Value> {
    set_annotation(set, "tagwatch.dev/history")
        .and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default()
}

/// The set's pods by name: (revision, image).
async fn pods(cluster: &TestCluster, app: &str) -> Vec<(String, String, String)> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut pods: Vec<(String, String, String)> = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let revision = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash").cloned())
                .unwrap_or_default();
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), revision, image)
        })
        .collect();
    pods.sort();
    pods
}

/// The set rolled out: every replica Ready on one revision.
async fn wait_rolled_out(cluster: &TestCluster, name: &str, replicas: i32) {
    wait::until(
        &format!("{name} rolled out"),
        Duration::from_secs(60),
        || async {
            let set = get_set(cluster, name).await;
            let status = set.status?;
            (status.ready_replicas == Some(replicas)
                && status.updated_replicas == Some(replicas)
                && status.current_revision.is_some()
                && status.current_revision == status.update_revision)
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Events with `reason` about the object `name`.
async fn events_on(cluster: &TestCluster, reason: &str, name: &str) -> Vec<Event> {
    events(cluster, &cluster.namespace)
        .await
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// The first Event with `reason` about `name`, waiting for it (published after the write).
async fn event_on(cluster: &TestCluster, reason: &str, name: &str, tagwatch: &Tagwatch) -> Event {
    wait::until(
        &format!("{reason} on {name}"),
        Duration::from_secs(20),
        || async { events_on(cluster, reason, name).await.into_iter().next() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()))
}

/// Waits for `count` more poll cycles of `tagwatch`: the time in which a retry would show.
async fn more_polls(tagwatch: &Tagwatch, count: f64) {
    let polls = tagwatch
        .metric("tagwatch_poll_cycles_total")
        .await
        .unwrap_or(0.0);
    wait::until("more polls", Duration::from_secs(30), || async {
        let now = tagwatch.metric("tagwatch_poll_cycles_total").await?;
        (now >= polls + count).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

/// The canary state removed again: the canary ended (promoted, or failed and restored).
async fn wait_canary_over(cluster: &TestCluster, name: &str, tagwatch: &Tagwatch) -> StatefulSet {
    wait::until("the canary over", Duration::from_secs(60), || async {
        let set = get_set(cluster, name).await;
        let ended = set_annotation(&set, STATE).is_none()
            && history(&set)
                .last()
                .is_some_and(|e| e["how"] == "canary-pass" || e["how"] == "canary-fail");
        ended.then_some(set)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()))
}

/// PATCH requests the test server saw on the StatefulSet `name`.
fn patches_of(cluster: &TestCluster, name: &str) -> Vec<String> {
    cluster
        .server()
        .map(|server| {
            server
                .requests()
                .into_iter()
                .filter(|r| {
                    r.method == "PATCH" && r.path.ends_with(&format!("/statefulsets/{name}"))
                })
                .map(|r| r.body)
                .collect()
        })
        .unwrap_or_default()
}

/// A canary that passes: the partition leaves `canary_replicas` pods to 1.1.0, only they are
/// judged (on the test bed the pods of the revision before have restarted, as long-running pods
/// do: judged, they would fail it), then the partition goes back exactly as it was and the
/// controller rolls out the rest.
async fn a_partition_canary_passes(manifest_strategy: Option<Value>, canary_replicas: i32) {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let (v100, v110) = (format!("{host}/db:1.0.0"), format!("{host}/db:1.1.0"));
    if let Some(server) = cluster.server() {
        server.set_image_health(&v100, ImageHealth::Restarting(1));
    }
    push(&registry, "db", &["1.0.0"]).await;
    let replicas = canary_replicas.to_string();
    let set = stateful_set(
        "db",
        &v100,
        3,
        &[
            ("tagwatch.dev/policy", "minor"),
            (CANARY, "true"),
            (CANARY_REPLICAS, &replicas),
            (BAKE, "4s"),
        ],
        manifest_strategy,
    );
    sets(&cluster)
        .create(&PostParams::default(), &set)
        .await
        .expect("create StatefulSet");
    wait_rolled_out(&cluster, "db", 3).await;
    let before = get_set(&cluster, "db").await;
    let old_revision = before
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .expect("a revision");

    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    push(&registry, "db", &["1.1.0"]).await;

    // The canary: the new image behind a partition, in one write; no canary object.
    let canary_partition = i64::from(3 - canary_replicas);
    let running = wait::until("the partition canary", Duration::from_secs(30), || async {
        let set = get_set(&cluster, "db").await;
        (set_image(&set) == v110 && partition(&set) == Some(canary_partition)).then_some(set)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let state: Value =
        serde_json::from_str(&set_annotation(&running, STATE).expect("canary state"))
            .expect("state json");
    assert_eq!(state["phase"], "running");
    assert_eq!(state["images"]["db"], v110.as_str());
    assert_eq!(state["from"]["db"], v100.as_str());
    assert_eq!(
        state["partition"]["original"].as_i64(),
        partition(&before),
        "the partition before, for the verdict to put back"
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), &ns);
    assert!(
        deployments
            .get_opt("db-canary")
            .await
            .expect("get")
            .is_none(),
        "no canary object"
    );
    // Only the highest ordinals move to the new revision; the others keep the one before.
    let canary_pods: Vec<String> = (canary_partition..3).map(|o| format!("db-{o}")).collect();
    let split = wait::until("the canary's pods", Duration::from_secs(30), || async {
        let pods = pods(&cluster, "db").await;
        let on_new: Vec<String> = pods
            .iter()
            .filter(|(_, _, image)| *image == v110)
            .map(|(name, _, _)| name.clone())
            .collect();
        (pods.len() == 3 && on_new == canary_pods).then_some(pods)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    for (name, revision, _) in &split {
        assert_eq!(
            revision == &old_revision,
            !canary_pods.contains(name),
            "{name} at {revision}"
        );
    }
    assert!(
        set_annotation(&get_set(&cluster, "db").await, STATE).is_some(),
        "still baking while the split is seen (bake 4s)"
    );

    // Passed: the partition back exactly as it was, every pod on 1.1.0.
    let after = wait_canary_over(&cluster, "db", &tagwatch).await;
    assert_eq!(set_image(&after), v110);
    assert_eq!(strategy(&after), strategy(&before), "partition as it was");
    assert_eq!(set_annotation(&after, "tagwatch.dev/rollout"), None);
    assert_eq!(set_annotation(&after, "tagwatch.dev/rejected"), None);
    let last = history(&after).last().cloned().expect("a history entry");
    assert_eq!(last["how"], "canary-pass");
    assert_eq!(last["from"], v100.as_str());
    assert_eq!(last["to"], v110.as_str());
    wait::until("every pod on 1.1.0", Duration::from_secs(30), || async {
        let pods = pods(&cluster, "db").await;
        (pods.len() == 3 && pods.iter().all(|(_, _, image)| *image == v110)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    for reason in ["CanaryStarted", "CanaryPassed", "CanaryPromoted"] {
        let event = event_on(&cluster, reason, "db", &tagwatch).await;
        assert_eq!(event.type_.as_deref(), Some("Normal"), "{reason}");
        let regarding = event.regarding.expect("regarding");
        assert_eq!(regarding.kind.as_deref(), Some("StatefulSet"));
    }
    let started = event_on(&cluster, "CanaryStarted", "db", &tagwatch).await;
    let note = started.note.unwrap_or_default();
    assert!(
        note.contains(&format!("partition {canary_partition}")) && note.contains("1.1.0"),
        "{note}"
    );
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="passed",result="promoted"}"#,
            1.0,
        )
        .await;
    tagwatch
        .wait_metric("tagwatch_canaries_in_progress", 0.0)
        .await;

    // `tagwatch history` tells it as for a Deployment.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args(["history", &format!("{ns}/sts/db"), "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("tagwatch history");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("canary-pass"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_canary_passes_and_gives_back_a_defaulted_partition() {
    // No updateStrategy in the manifest: whatever the API server made of it comes back.
    a_partition_canary_passes(None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_canary_passes_and_gives_back_an_explicit_partition_of_zero() {
    a_partition_canary_passes(
        Some(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_canary_whose_pod_restarts_is_rejected_and_the_set_restored() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a real cluster cannot be told to break an image on demand");
    server.set_default_image_health(ImageHealth::Ready);
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    let (v100, v110) = (format!("{host}/db:1.0.0"), format!("{host}/db:1.1.0"));
    server.set_image_health(&v110, ImageHealth::Restarting(2));
    push(&registry, "db", &["1.0.0"]).await;
    let set = stateful_set(
        "db",
        &v100,
        3,
        &[
            ("tagwatch.dev/policy", "minor"),
            (CANARY, "true"),
            (BAKE, "3s"),
            (TIMEOUT, "30s"),
        ],
        None,
    );
    sets(&cluster)
        .create(&PostParams::default(), &set)
        .await
        .expect("create StatefulSet");
    wait_rolled_out(&cluster, "db", 3).await;
    let before = get_set(&cluster, "db").await;
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    server.clear_requests();
    push(&registry, "db", &["1.1.0"]).await;

    let after = wait_canary_over(&cluster, "db", &tagwatch).await;
    // Images and partition exactly as before; the version rejected.
    assert_eq!(set_image(&after), v100);
    assert_eq!(strategy(&after), strategy(&before));
    assert_eq!(
        after.spec.as_ref().map(|s| &s.template),
        before.spec.as_ref().map(|s| &s.template),
        "the pod template as it was"
    );
    let rejected = set_annotation(&after, "tagwatch.dev/rejected").unwrap_or_default();
    assert!(rejected.contains("1.1.0"), "rejected: {rejected}");
    let applied = set_annotation(&after, "tagwatch.dev/applied").unwrap_or_default();
    assert!(applied.contains(&v100), "applied back: {applied}");
    let last = history(&after).last().cloned().expect("entry");
    assert_eq!(last["how"], "canary-fail");
    assert_eq!(last["to"], v110.as_str());
    let warning = event_on(&cluster, "CanaryFailed", "db", &tagwatch).await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.unwrap_or_default();
    assert!(
        note.contains("1.1.0") && note.contains("pod db-2 restarted 2 time(s)"),
        "only the canary's pod, db-2: {note}"
    );
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="restarts",result="failed"}"#,
            1.0,
        )
        .await;

    // The canary ran as one write and ended as one write: the first put 1.1.0 behind partition
    // 2, the last put back 1.0.0 and the partition.
    let patches = patches_of(&cluster, "db");
    let first = patches.first().expect("the canary's start");
    assert!(
        first.contains(r#""path":"/spec/updateStrategy/rollingUpdate/partition","value":2"#)
            && first.contains(&format!(r#""value":"{v110}""#)),
        "{first}"
    );
    let last = patches.last().expect("the canary's end");
    assert!(
        last.contains(r#""path":"/spec/updateStrategy/rollingUpdate/partition","value":0"#)
            && last.contains(&format!(
                r#""op":"replace","path":"/spec/template/spec/containers/0/image","value":"{v100}""#
            )),
        "{last}"
    );
    assert!(
        patches
            .iter()
            .all(|p| p.starts_with(r#"[{"op":"test","path":"/metadata/resourceVersion""#)),
        "every write guarded: {patches:?}"
    );

    // The controller puts db-2 back on 1.0.0.
    wait::until("every pod on 1.0.0", Duration::from_secs(30), || async {
        let pods = pods(&cluster, "db").await;
        (pods.len() == 3 && pods.iter().all(|(_, _, image)| *image == v100)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));

    // Rejected for good: more polls see 1.1.0 and neither write nor start a canary.
    let written = patches_of(&cluster, "db").len();
    more_polls(&tagwatch, 3.0).await;
    assert_eq!(patches_of(&cluster, "db").len(), written, "not tried again");
    assert_eq!(
        tagwatch
            .metric(r#"tagwatch_canaries_total{reason="new_version",result="started"}"#)
            .await,
        Some(1.0)
    );
    let still = get_set(&cluster, "db").await;
    assert_eq!(set_image(&still), v100);
    assert_eq!(set_annotation(&still, STATE), None);
}

/// The exporter behind the query gate: the canary's error ratio, by StatefulSet name.
async fn exporter(ns: String, canary_ratio: Arc<Mutex<f64>>) -> String {
    let app = Router::new().route(
        "/metrics",
        routing::get(move || {
            let ratio = *canary_ratio.lock().unwrap_or_else(|p| p.into_inner());
            let ns = ns.clone();
            async move {
                format!(
                    "# TYPE canary_error_ratio gauge\n\
                     canary_error_ratio{{namespace=\"{ns}\",deployment=\"db\",track=\"canary\"}} {ratio}\n\
                     canary_error_ratio{{namespace=\"{ns}\",deployment=\"db\",track=\"primary\"}} 0\n"
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_canary_over_its_query_threshold_is_rejected_and_the_set_restored() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let (v100, v110) = (format!("{host}/db:1.0.0"), format!("{host}/db:1.1.0"));
    let ratio = Arc::new(Mutex::new(0.5));
    let target = exporter(ns.clone(), ratio.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path(), "apps", &[&target]);
    let query_url = format!(
        "http://{}/api/v1/query?query=canary_error_ratio",
        prometheus.addr
    );
    wait::until(
        "Prometheus has the series",
        Duration::from_secs(30),
        || async {
            let body = reqwest::get(&query_url).await.ok()?.text().await.ok()?;
            body.contains(&ns).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prometheus.logs()));

    push(&registry, "db", &["1.0.0"]).await;
    let set = stateful_set(
        "db",
        &v100,
        3,
        &[
            ("tagwatch.dev/policy", "minor"),
            (CANARY, "true"),
            (BAKE, "3s"),
            (
                "tagwatch.dev/canary-query",
                "max(canary_error_ratio{namespace=\"{{namespace}}\",deployment=\"{{deployment}}\",track=\"{{track}}\"})",
            ),
            ("tagwatch.dev/canary-threshold", "< 0.05"),
        ],
        None,
    );
    sets(&cluster)
        .create(&PostParams::default(), &set)
        .await
        .expect("create StatefulSet");
    wait_rolled_out(&cluster, "db", 3).await;
    let before = get_set(&cluster, "db").await;
    let url = prometheus.url();
    let tagwatch = Tagwatch::watching(&cluster, &registry, &["--prometheus-url", &url]);
    tagwatch.wait_polling().await;
    push(&registry, "db", &["1.1.0"]).await;

    let after = wait_canary_over(&cluster, "db", &tagwatch).await;
    assert_eq!(set_image(&after), v100);
    assert_eq!(strategy(&after), strategy(&before));
    assert!(set_annotation(&after, "tagwatch.dev/rejected")
        .unwrap_or_default()
        .contains("1.1.0"));
    assert_eq!(history(&after).last().expect("entry")["to"], v110.as_str());
    let warning = event_on(&cluster, "CanaryFailed", "db", &tagwatch).await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.unwrap_or_default();
    assert!(
        note.contains("query returned 0.5") && note.contains("< 0.05"),
        "{note}"
    );
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="query",result="failed"}"#,
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_delete_stateful_set_refuses_the_canary_and_is_not_written() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    let v100 = format!("{host}/db:1.0.0");
    push(&registry, "db", &["1.0.0"]).await;
    let set = stateful_set(
        "db",
        &v100,
        0,
        &[("tagwatch.dev/policy", "minor"), (CANARY, "true")],
        Some(json!({"type": "OnDelete"})),
    );
    let created = sets(&cluster)
        .create(&PostParams::default(), &set)
        .await
        .expect("create StatefulSet");
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    push(&registry, "db", &["1.1.0"]).await;

    let refused = event_on(&cluster, "CanaryUnsupported", "db", &tagwatch).await;
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    let note = refused.note.unwrap_or_default();
    assert!(
        note.contains("StatefulSet") && note.contains("OnDelete") && note.contains("partition"),
        "explains why: {note}"
    );
    more_polls(&tagwatch, 3.0).await;
    let after = get_set(&cluster, "db").await;
    assert_eq!(after.spec, created.spec, "nothing written");
    assert_eq!(after.metadata.annotations, created.metadata.annotations);
    assert_eq!(
        events_on(&cluster, "CanaryUnsupported", "db").await.len(),
        1,
        "reported once"
    );
    assert!(patches_of(&cluster, "db").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_and_a_cron_job_refuse_the_canary_and_are_not_updated() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let v100 = format!("{host}/app:1.0.0");
    push(&registry, "app", &["1.0.0"]).await;
    let annotations = json!({"tagwatch.dev/policy": "minor", CANARY: "true"});
    let template = json!({"metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "app", "image": v100}]}});
    let daemon: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template}
    }))
    .expect("DaemonSet");
    let daemons: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), &ns);
    let daemon = daemons
        .create(&PostParams::default(), &daemon)
        .await
        .expect("create DaemonSet");
    let job: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "annotations": annotations},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure",
                     "containers": [{"name": "app", "image": v100}]}}}}}
    }))
    .expect("CronJob");
    let jobs: Api<CronJob> = Api::namespaced(cluster.client.clone(), &ns);
    let job = jobs
        .create(&PostParams::default(), &job)
        .await
        .expect("create CronJob");
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    push(&registry, "app", &["1.1.0"]).await;

    for (name, kind) in [("agent", "DaemonSet"), ("nightly", "CronJob")] {
        let refused = event_on(&cluster, "CanaryUnsupported", name, &tagwatch).await;
        assert_eq!(refused.type_.as_deref(), Some("Warning"), "{name}");
        assert_eq!(
            refused.regarding.and_then(|r| r.kind).as_deref(),
            Some(kind)
        );
        let note = refused.note.unwrap_or_default();
        assert!(
            note.contains(kind) && note.contains("tagwatch.dev/canary"),
            "{note}"
        );
    }
    more_polls(&tagwatch, 3.0).await;
    let daemon_after = daemons.get("agent").await.expect("get DaemonSet");
    assert_eq!(daemon_after.spec, daemon.spec, "DaemonSet not updated");
    assert_eq!(
        daemon_after.metadata.annotations,
        daemon.metadata.annotations
    );
    let job_after = jobs.get("nightly").await.expect("get CronJob");
    assert_eq!(job_after.spec, job.spec, "CronJob not updated");
    assert_eq!(job_after.metadata.annotations, job.metadata.annotations);
    for name in ["agent", "nightly"] {
        assert_eq!(
            events_on(&cluster, "CanaryUnsupported", name).await.len(),
            1,
            "reported once: {name}"
        );
    }
    if let Some(server) = cluster.server() {
        let written: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| {
                r.method == "PATCH"
                    && (r.path.ends_with("/daemonsets/agent")
                        || r.path.ends_with("/cronjobs/nightly"))
            })
            .collect();
        assert!(written.is_empty(), "{written:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_waits_for_the_partition_canary_which_a_restart_resumes() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    let image = |tag: &str| format!("{host}/db:{tag}");
    push(&registry, "db", &["1.0.0"]).await;
    let set = stateful_set(
        "db",
        &image("1.0.0"),
        3,
        &[
            ("tagwatch.dev/policy", "minor"),
            (CANARY, "true"),
            // Long enough that two polls and a kill fit inside the bake on a loaded machine.
            (BAKE, "20s"),
        ],
        None,
    );
    sets(&cluster)
        .create(&PostParams::default(), &set)
        .await
        .expect("create StatefulSet");
    wait_rolled_out(&cluster, "db", 3).await;
    let before = get_set(&cluster, "db").await;
    let mut first = Tagwatch::watching(&cluster, &registry, &[]);
    first.wait_polling().await;
    push(&registry, "db", &["1.1.0"]).await;
    // Stopped mid-bake, with a newer version already pushed: it waits, it does not supersede.
    wait::until("the bake under way", Duration::from_secs(30), || async {
        let state = set_annotation(&get_set(&cluster, "db").await, STATE)?;
        state.contains("readySince").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", first.logs()));
    push(&registry, "db", &["1.2.0"]).await;
    more_polls(&first, 2.0).await;
    let waiting = get_set(&cluster, "db").await;
    assert_eq!(set_image(&waiting), image("1.1.0"), "1.2.0 waits");
    assert_eq!(partition(&waiting), Some(2), "still baking (bake 20s)");
    first.kill();
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }

    // Another process finds the canary on the set and ends it: passed once, partition back.
    let second = Tagwatch::watching(&cluster, &registry, &[]);
    let passed = wait::until("1.1.0 passed", Duration::from_secs(60), || async {
        let set = get_set(&cluster, "db").await;
        history(&set)
            .iter()
            .any(|e| e["how"] == "canary-pass" && e["to"] == image("1.1.0").as_str())
            .then_some(set)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", second.logs()));
    assert_eq!(set_image(&passed), image("1.1.0"));
    assert_eq!(partition(&passed), partition(&before), "partition back");
    if let Some(server) = cluster.server() {
        let resumed = server
            .requests()
            .into_iter()
            .find(|r| r.method == "PATCH" && r.path.ends_with("/statefulsets/db"))
            .expect("the promotion");
        assert!(
            !resumed.body.contains("1.2.0") && resumed.body.contains("promoting"),
            "the first write resumes the canary, it starts none: {}",
            resumed.body
        );
    }

    // Then 1.2.0 gets a canary of its own, and passes.
    let after = wait::until("1.2.0 passed", Duration::from_secs(60), || async {
        let set = get_set(&cluster, "db").await;
        let done = set_annotation(&set, STATE).is_none()
            && history(&set)
                .last()
                .is_some_and(|e| e["how"] == "canary-pass" && e["to"] == image("1.2.0").as_str());
        done.then_some(set)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", second.logs()));
    let passes: Vec<(String, String)> = history(&after)
        .iter()
        .filter(|e| e["how"] == "canary-pass")
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default().to_string(),
                e["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        passes,
        vec![
            (image("1.0.0"), image("1.1.0")),
            (image("1.1.0"), image("1.2.0"))
        ],
        "each version judged once, in order"
    );
    assert_eq!(strategy(&after), strategy(&before));
}
