//! Canary rollouts and automatic rollback, with `tagwatch run` as a user runs it. The test bed's
//! deployment controller plays the broken versions (never Ready, crash-looping, stuck rollouts);
//! a real Prometheus answers the query gate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing;
use axum::Router;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use tagwatch_testbed::apiserver::{ApiServer, ImageHealth};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;
use tagwatch_testbed::{require_running_images, test_server_or_skip};

use crate::support::{
    annotation, assert_unchanged, deployment, events, get, image, images, push, Prometheus,
    Tagwatch,
};

const CANARY: &str = "tagwatch.dev/canary";
const BAKE: &str = "tagwatch.dev/canary-bake";
const TIMEOUT: &str = "tagwatch.dev/canary-timeout";

async fn canary(cluster: &TestCluster, ns: &str, name: &str) -> Option<Deployment> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    api.get_opt(&format!("{name}-canary"))
        .await
        .expect("get canary")
}

async fn wait_image(cluster: &TestCluster, ns: &str, name: &str, want: &str, tagwatch: &Tagwatch) {
    wait::until(
        &format!("{name} runs {want}"),
        Duration::from_secs(30),
        || async { (image(cluster, ns, name).await == want).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

/// The canary Deployment deleted and the primary's canary state cleared (the canary goes first,
/// then the primary is written).
async fn wait_canary_gone(cluster: &TestCluster, ns: &str, name: &str, tagwatch: &Tagwatch) {
    wait::until("the canary removed", Duration::from_secs(30), || async {
        let cleared =
            annotation(&get(cluster, ns, name).await, "tagwatch.dev/canary-state").is_none();
        (cleared && canary(cluster, ns, name).await.is_none()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

/// `app:1.0.0` in the registry and `web` running it, canary-enabled with `annotations`.
async fn canary_web(
    cluster: &TestCluster,
    registry: &Registry,
    annotations: &[(&str, &str)],
) -> Deployment {
    push(registry, "app", &["1.0.0"]).await;
    let mut web = deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .env("LOG_LEVEL", "debug")
        .policy("minor")
        .annotate(CANARY, "true");
    for (key, value) in annotations {
        web = web.annotate(key, value);
    }
    web.create(cluster, &cluster.namespace).await
}

/// The canary Deployment, once it exists.
async fn wait_canary(cluster: &TestCluster, tagwatch: &Tagwatch) -> Deployment {
    wait::until("the canary", Duration::from_secs(20), || async {
        canary(cluster, &cluster.namespace, "web").await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()))
}

/// The first Event with `reason`, waiting for it: it is published after the write it reports.
async fn event(
    cluster: &TestCluster,
    ns: &str,
    reason: &str,
) -> k8s_openapi::api::events::v1::Event {
    wait::until(reason, Duration::from_secs(10), || async {
        events(cluster, ns)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn history(d: &Deployment) -> Vec<serde_json::Value> {
    annotation(d, "tagwatch.dev/history")
        .and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_version_passes_its_canary_and_is_promoted() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let primary = canary_web(&cluster, &registry, &[(BAKE, "2s")]).await;
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;

    let canary_deployment = wait_canary(&cluster, &tagwatch).await;
    // While it bakes the primary is untouched.
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    let value = serde_json::to_value(&canary_deployment).expect("json");
    assert_eq!(value["metadata"]["labels"]["tagwatch.dev/track"], "canary");
    assert_eq!(
        value["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app": "web", "tagwatch.dev/track": "canary"})
    );
    assert_eq!(
        value["spec"]["template"]["metadata"]["labels"],
        serde_json::json!({"app": "web", "tagwatch.dev/track": "canary"})
    );
    assert_eq!(value["spec"]["replicas"], 1);
    assert_eq!(
        value["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{host}/app:1.1.0")
    );
    // The whole pod template, though tagwatch's cache keeps only the images of the primary.
    assert_eq!(
        value["spec"]["template"]["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "LOG_LEVEL", "value": "debug"}])
    );
    let owner = &value["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["name"], "web");
    assert_eq!(
        owner["uid"].as_str(),
        primary.metadata.uid.as_deref(),
        "owned by the primary: deleted with it"
    );
    assert!(value["metadata"]["annotations"]
        .get("tagwatch.dev/policy")
        .is_none());

    wait_image(
        &cluster,
        &ns,
        "web",
        &format!("{host}/app:1.1.0"),
        &tagwatch,
    )
    .await;
    wait_canary_gone(&cluster, &ns, "web", &tagwatch).await;
    let after = get(&cluster, &ns, "web").await;
    assert_eq!(annotation(&after, "tagwatch.dev/canary-state"), None);
    let entries = history(&after);
    let last = entries.last().expect("a history entry");
    assert_eq!(last["how"], "canary-pass");
    assert_eq!(last["from"], format!("{host}/app:1.0.0"));
    assert_eq!(last["to"], format!("{host}/app:1.1.0"));
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="passed",result="promoted"}"#,
            1.0,
        )
        .await;
    tagwatch
        .wait_metric("tagwatch_canaries_in_progress", 0.0)
        .await;

    // `tagwatch history` shows it too.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args(["history", &format!("{ns}/web"), "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("tagwatch history");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("canary-pass"), "{text}");
}

/// Each broken kind of version: the canary goes, the primary stays, the version is rejected
/// with a Warning Event saying why, and the next version gets its own canary.
async fn broken_version_is_rejected(
    cluster: &TestCluster,
    server: &ApiServer,
    health: ImageHealth,
    why: &str,
) {
    // The good version runs; the one under test is broken below.
    server.set_default_image_health(ImageHealth::Ready);
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    canary_web(cluster, &registry, &[(BAKE, "2s"), (TIMEOUT, "3s")]).await;
    server.set_image_health(&format!("{host}/app:1.1.0"), health);
    let tagwatch = Tagwatch::watching(cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;
    wait_canary(cluster, &tagwatch).await;
    wait_canary_gone(cluster, &ns, "web", &tagwatch).await;
    let after = get(cluster, &ns, "web").await;
    assert_eq!(
        image(cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    let rejected = annotation(&after, "tagwatch.dev/rejected").unwrap_or_default();
    assert!(rejected.contains("1.1.0"), "rejected: {rejected}");
    assert_eq!(annotation(&after, "tagwatch.dev/canary-state"), None);
    let warning = event(cluster, &ns, "CanaryFailed").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.unwrap_or_default();
    assert!(note.contains("1.1.0") && note.contains(why), "{note}");
    assert!(note.contains("web-canary-"), "names the pod: {note}");
    assert_eq!(history(&after).last().expect("entry")["how"], "canary-fail");

    // Rejected for good: still at 1.0.0 a few polls later, and no new canary for 1.1.0.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(canary(cluster, &ns, "web").await.is_none());
    assert_eq!(
        image(cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    // A newer version is tried, and passes.
    push(&registry, "app", &["1.2.0"]).await;
    wait_image(cluster, &ns, "web", &format!("{host}/app:1.2.0"), &tagwatch).await;
    wait_canary_gone(cluster, &ns, "web", &tagwatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_pods_never_become_ready_is_rejected() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a real cluster cannot be told to break an image on demand");
    broken_version_is_rejected(
        &cluster,
        server,
        ImageHealth::NeverReady,
        "not Ready within 3s",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_pods_restart_is_rejected() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a real cluster cannot be told to break an image on demand");
    broken_version_is_rejected(
        &cluster,
        server,
        ImageHealth::Restarting(2),
        "restarted 2 time(s)",
    )
    .await;
}

/// The exporter behind the query gate: one error ratio per track, changeable by the test.
async fn exporter(ns: String, canary_ratio: Arc<Mutex<f64>>) -> String {
    let app = Router::new().route(
        "/metrics",
        routing::get(move || {
            let ratio = *canary_ratio.lock().unwrap_or_else(|p| p.into_inner());
            let ns = ns.clone();
            async move {
                format!(
                    "# TYPE canary_error_ratio gauge\n\
                     canary_error_ratio{{namespace=\"{ns}\",deployment=\"web\",track=\"canary\"}} {ratio}\n\
                     canary_error_ratio{{namespace=\"{ns}\",deployment=\"web\",track=\"primary\"}} 0\n"
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
async fn the_query_gate_rejects_a_version_over_threshold_and_passes_the_next() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
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

    canary_web(
        &cluster,
        &registry,
        &[
            (BAKE, "3s"),
            (
                "tagwatch.dev/canary-query",
                "max(canary_error_ratio{namespace=\"{{namespace}}\",deployment=\"{{deployment}}\",track=\"{{track}}\"})",
            ),
            ("tagwatch.dev/canary-threshold", "< 0.05"),
        ],
    )
    .await;
    let url = prometheus.url();
    let tagwatch = Tagwatch::watching(&cluster, &registry, &["--prometheus-url", &url]);
    tagwatch.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;
    wait_canary(&cluster, &tagwatch).await;
    wait_canary_gone(&cluster, &ns, "web", &tagwatch).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    let warning = event(&cluster, &ns, "CanaryFailed").await;
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

    // The next version behaves: the same gate lets it through.
    *ratio.lock().unwrap_or_else(|p| p.into_inner()) = 0.01;
    tokio::time::sleep(Duration::from_secs(2)).await;
    push(&registry, "app", &["1.2.0"]).await;
    wait_image(
        &cluster,
        &ns,
        "web",
        &format!("{host}/app:1.2.0"),
        &tagwatch,
    )
    .await;
    wait_canary_gone(&cluster, &ns, "web", &tagwatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_interrupted_by_a_restart_completes_exactly_once() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    canary_web(&cluster, &registry, &[(BAKE, "4s")]).await;
    let mut first = Tagwatch::watching(&cluster, &registry, &[]);
    first.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;
    // Stopped mid-bake: the canary runs and its bake has started.
    wait::until("the bake under way", Duration::from_secs(20), || async {
        let state = annotation(
            &get(&cluster, &ns, "web").await,
            "tagwatch.dev/canary-state",
        )?;
        state.contains("readySince").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", first.logs()));
    first.kill();
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }

    let second = Tagwatch::watching(&cluster, &registry, &[]);
    wait_image(&cluster, &ns, "web", &format!("{host}/app:1.1.0"), &second).await;
    wait_canary_gone(&cluster, &ns, "web", &second).await;
    let passes: Vec<_> = history(&get(&cluster, &ns, "web").await)
        .into_iter()
        .filter(|e| e["how"] == "canary-pass")
        .collect();
    assert_eq!(passes.len(), 1, "promoted once");
    assert_eq!(second.log_events("image updated").len(), 1);
    if let Some(server) = cluster.server() {
        let requests = server.requests();
        let created = requests
            .iter()
            .filter(|r| {
                r.method == "POST" && r.path.ends_with(&format!("/namespaces/{ns}/deployments"))
            })
            .count();
        assert_eq!(
            created, 0,
            "the running canary was resumed, not created again"
        );
        let deleted = requests
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.ends_with("/deployments/web-canary"))
            .count();
        assert_eq!(deleted, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_stuck_past_its_deadline_is_rolled_back_and_the_version_rejected() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a real cluster cannot be told to break an image on demand");
    server.set_default_image_health(ImageHealth::Ready);
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    push(&registry, "app", &["1.0.0"]).await;
    deployment("web")
        .image(&format!("{host}/app:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("keep")
        .image(&format!("{host}/app:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/rollback", "off")
        .create(&cluster, &ns)
        .await;
    server.set_image_health(&format!("{host}/app:1.1.0"), ImageHealth::NeverReady);
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;

    wait::until("rolled back", Duration::from_secs(30), || async {
        let d = get(&cluster, &ns, "web").await;
        let last = history(&d).last().cloned()?;
        (last["how"] == "rollback").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let web = get(&cluster, &ns, "web").await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    assert!(annotation(&web, "tagwatch.dev/rejected")
        .unwrap_or_default()
        .contains("1.1.0"));
    assert_eq!(annotation(&web, "tagwatch.dev/rollout"), None);
    let entries = history(&web);
    assert_eq!(entries[entries.len() - 2]["how"], "update");
    assert!(entries
        .last()
        .and_then(|e| e["reason"].as_str())
        .is_some_and(|r| r.contains("progress deadline")));
    let rolled_back = event(&cluster, &ns, "RolledBack").await;
    assert_eq!(rolled_back.type_.as_deref(), Some("Warning"));
    tagwatch
        .wait_metric(
            r#"tagwatch_rollbacks_total{reason="progress_deadline"}"#,
            1.0,
        )
        .await;
    // With rollback off the stuck version stays, reported.
    assert_eq!(
        image(&cluster, &ns, "keep").await,
        format!("{host}/app:1.1.0")
    );
    event(&cluster, &ns, "RolloutStuck").await;

    // Not re-applied: a few polls later web still runs 1.0.0.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
}

/// A merge patch on one annotation of `name`: `Some` sets it, `None` removes it (a person's edit).
async fn set_annotation(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("annotate");
}

/// The canary Deployment with `uid` no longer exists (gone, or replaced by another object).
async fn wait_deleted(cluster: &TestCluster, ns: &str, uid: Option<&str>, tagwatch: &Tagwatch) {
    wait::until("that canary deleted", Duration::from_secs(30), || async {
        let now = canary(cluster, ns, "web").await;
        (now.and_then(|c| c.metadata.uid).as_deref() != uid).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

/// The Events with `reason`, as listed now.
async fn events_named(
    cluster: &TestCluster,
    ns: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    events(cluster, ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// A canary running a long bake (it cannot pass during the test): `web` at 1.0.0, 1.1.0 pushed.
async fn mid_canary(cluster: &TestCluster, registry: &Registry) -> (Tagwatch, Deployment) {
    canary_web(cluster, registry, &[(BAKE, "60s")]).await;
    let tagwatch = Tagwatch::watching(cluster, registry, &[]);
    tagwatch.wait_polling().await;
    push(registry, "app", &["1.1.0"]).await;
    let running = wait_canary(cluster, &tagwatch).await;
    (tagwatch, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_off_mid_canary_removes_the_canary_and_its_state() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let (tagwatch, running) = mid_canary(&cluster, &registry).await;

    set_annotation(&cluster, &ns, "web", "tagwatch.dev/policy", Some("off")).await;
    wait_canary_gone(&cluster, &ns, "web", &tagwatch).await;
    assert_ne!(running.metadata.uid, None);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    let after = get(&cluster, &ns, "web").await;
    assert_eq!(annotation(&after, "tagwatch.dev/canary-state"), None);
    assert_eq!(
        annotation(&after, "tagwatch.dev/rejected"),
        None,
        "an opt-out judges nothing"
    );
    let removed = event(&cluster, &ns, "CanaryRemoved").await;
    assert_eq!(removed.type_.as_deref(), Some("Normal"));
    let note = removed.note.unwrap_or_default();
    assert!(
        note.contains("web-canary") && note.contains("tagwatch.dev/policy"),
        "{note}"
    );
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="opted_out",result="removed"}"#,
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_canary_state_removes_that_canary() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let (tagwatch, running) = mid_canary(&cluster, &registry).await;

    set_annotation(&cluster, &ns, "web", "tagwatch.dev/canary-state", None).await;
    wait_deleted(&cluster, &ns, running.metadata.uid.as_deref(), &tagwatch).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.0.0")
    );
    let removed = event(&cluster, &ns, "CanaryRemoved").await;
    let note = removed.note.unwrap_or_default();
    assert!(note.contains("tagwatch.dev/canary-state"), "{note}");
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="state_removed",result="removed"}"#,
            1.0,
        )
        .await;
    // Nothing remembered the canary, so 1.1.0 is planned afresh: a new canary, a new state.
    let fresh = wait_canary(&cluster, &tagwatch).await;
    assert_ne!(fresh.metadata.uid, running.metadata.uid);
    let restarted = wait::until("a fresh canary state", Duration::from_secs(20), || async {
        annotation(
            &get(&cluster, &ns, "web").await,
            "tagwatch.dev/canary-state",
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert!(restarted.contains("1.1.0"), "{restarted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_primary_mid_canary_removes_the_canary() {
    let cluster = TestCluster::start().await.expect("cluster");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let (tagwatch, running) = mid_canary(&cluster, &registry).await;

    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    api.delete("web", &DeleteParams::background())
        .await
        .expect("delete the primary");
    // The garbage collector or tagwatch, whichever comes first.
    wait_deleted(&cluster, &ns, running.metadata.uid.as_deref(), &tagwatch).await;
    assert!(canary(&cluster, &ns, "web").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_deleted_while_the_garbage_collector_lags_loses_its_canary_all_the_same() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a real cluster's garbage collector cannot be held back");
    require_running_images!(cluster => ());
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let (tagwatch, running) = mid_canary(&cluster, &registry).await;

    server.pause_garbage_collector(true);
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    api.delete("web", &DeleteParams::background())
        .await
        .expect("delete the primary");
    wait_deleted(&cluster, &ns, running.metadata.uid.as_deref(), &tagwatch).await;
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="primary_deleted",result="removed"}"#,
            1.0,
        )
        .await;
    let deletes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/deployments/web-canary"))
        .collect();
    assert_eq!(deletes.len(), 1, "deleted once");
    let body: serde_json::Value = serde_json::from_str(&deletes[0].body).expect("delete options");
    assert_eq!(
        body["preconditions"]["uid"].as_str(),
        running.metadata.uid.as_deref(),
        "guarded by the canary's uid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_deployment_named_like_the_canary_is_never_adopted_nor_deleted() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    canary_web(&cluster, &registry, &[(BAKE, "60s")]).await;
    // Someone else's Deployment, even with tagwatch's annotation copied, but not owned by `web`.
    let foreign = deployment("web-canary")
        .image("registry.example/other:3.0.0")
        .annotate("tagwatch.dev/canary-of", "web")
        .replicas(0)
        .create(&cluster, &ns)
        .await;
    let tagwatch = Tagwatch::watching(&cluster, &registry, &[]);
    tagwatch.wait_polling().await;
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    push(&registry, "app", &["1.1.0"]).await;

    let warning = event(&cluster, &ns, "CanaryNameTaken").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.clone().unwrap_or_default();
    assert!(
        note.contains("web-canary") && note.contains("1.1.0"),
        "{note}"
    );
    tagwatch
        .wait_metric(
            r#"tagwatch_canaries_total{reason="name_taken",result="not_started"}"#,
            1.0,
        )
        .await;
    // A few more polls see the same version: reported once, not at every poll.
    let polls = tagwatch
        .metric("tagwatch_poll_cycles_total")
        .await
        .unwrap_or(0.0);
    wait::until("three more polls", Duration::from_secs(20), || async {
        let now = tagwatch.metric("tagwatch_poll_cycles_total").await?;
        (now >= polls + 3.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let reported = events_named(&cluster, &ns, "CanaryNameTaken").await;
    assert_eq!(reported.len(), 1);
    assert!(reported[0].series.is_none(), "published once");
    assert_eq!(
        tagwatch
            .metric(r#"tagwatch_canaries_total{reason="name_taken",result="not_started"}"#)
            .await,
        Some(1.0)
    );

    // The foreign Deployment is untouched, the primary waits, no canary state was written.
    let still = canary(&cluster, &ns, "web").await.expect("still there");
    assert_eq!(still.metadata.uid, foreign.metadata.uid);
    assert_unchanged(&foreign, &still);
    let web = get(&cluster, &ns, "web").await;
    assert_eq!(images(&web), vec![format!("{host}/app:1.0.0")]);
    assert_eq!(annotation(&web, "tagwatch.dev/canary-state"), None);
    if let Some(server) = cluster.server() {
        let requests = server.requests();
        assert!(
            !requests
                .iter()
                .any(|r| r.method == "DELETE" && r.path.contains("/deployments/")),
            "nothing deleted"
        );
        assert!(
            !requests.iter().any(|r| r.method == "PATCH"
                && (r.path.ends_with("/deployments/web")
                    || r.path.ends_with("/deployments/web-canary"))),
            "neither Deployment written"
        );
    }

    // Once the name is free, the version gets its canary, owned by `web`.
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    api.delete("web-canary", &DeleteParams::background())
        .await
        .expect("the owner removes it");
    let ours = wait::until("tagwatch's canary", Duration::from_secs(30), || async {
        canary(&cluster, &ns, "web")
            .await
            .filter(|c| c.metadata.uid != foreign.metadata.uid)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert_eq!(
        ours.metadata.owner_references.expect("owned")[0].uid,
        web.metadata.uid.expect("uid")
    );
}
