//! `tagwatch history` and `tagwatch rollback`, run as a person runs them, against Deployments
//! that `tagwatch run` updated and workloads of the other kinds.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::DynamicObject;
use kube::Api;
use tagwatch::discover::object::api_resource;
use tagwatch::model::kind::Kind;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;

use crate::support::{annotation, deployment, events, get, image, push, Tagwatch};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

const CANARY_STATE: &str = r#"{"phase":"running","images":{"web":"x:2"},"from":{"web":"x:1"},"started":"2026-01-01T00:00:00Z"}"#;

/// `tagwatch <args> --kubeconfig <kubeconfig>`, to completion.
fn tagwatch(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("run tagwatch")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

async fn wait_for_image(cluster: &TestCluster, ns: &str, expected: &str, tagwatch: &Tagwatch) {
    wait::until(
        &format!("web runs {expected}"),
        Duration::from_secs(30),
        || async { (image(cluster, ns, "web").await == expected).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_rejects_the_version_left_and_newer_versions_still_apply() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let v100 = format!("{host}/app:1.0.0");
    let v110 = format!("{host}/app:1.1.0");
    let v120 = format!("{host}/app:1.2.0");
    push(&registry, "app", &["1.0.0"]).await;
    deployment("web")
        .image(&v100)
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let target = format!("{ns}/web");

    // tagwatch updates 1.0.0 → 1.1.0 and records it.
    let service = Tagwatch::watching(&cluster, &registry, &[]);
    service.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;
    wait_for_image(&cluster, &ns, &v110, &service).await;
    drop(service);

    let json = succeeded(&tagwatch(&kubeconfig, &["history", &target, "-o", "json"]));
    let entries: serde_json::Value = serde_json::from_str(&json).expect("history json");
    let entries = entries.as_array().expect("an array");
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["container"], "web");
    assert_eq!(entries[0]["from"], v100.as_str());
    assert_eq!(entries[0]["to"], v110.as_str());
    assert_eq!(entries[0]["how"], "update");
    let table = succeeded(&tagwatch(&kubeconfig, &["history", &target]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["TIME", "CONTAINER", "FROM", "TO", "HOW", "REASON"]);
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row[1..], ["web", v100.as_str(), v110.as_str(), "update"]);

    // A person rolls back: the image before, 1.1.0 rejected, recorded, announced.
    let before = get(&cluster, &ns, "web").await.metadata.resource_version;
    let printed = succeeded(&tagwatch(&kubeconfig, &["rollback", &target]));
    assert!(
        printed.contains(&format!("rolled back {target}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("web: {v110} → {v100} (1.1.0 rejected)")),
        "{printed}"
    );
    let d = get(&cluster, &ns, "web").await;
    assert_ne!(d.metadata.resource_version, before);
    assert_eq!(image(&cluster, &ns, "web").await, v100);
    let rejected: serde_json::Value =
        serde_json::from_str(&annotation(&d, "tagwatch.dev/rejected").expect("rejected"))
            .expect("rejected json");
    assert_eq!(rejected, serde_json::json!({"web": ["1.1.0"]}));
    let applied: serde_json::Value =
        serde_json::from_str(&annotation(&d, "tagwatch.dev/applied").expect("applied"))
            .expect("applied json");
    assert_eq!(applied, serde_json::json!({"web": v100}));
    assert_eq!(annotation(&d, "tagwatch.dev/rollout"), None);
    assert_eq!(
        annotation(&d, "kubernetes.io/change-cause").as_deref(),
        Some("tagwatch: web 1.1.0 → 1.0.0")
    );
    let history: serde_json::Value =
        serde_json::from_str(&annotation(&d, "tagwatch.dev/history").expect("history"))
            .expect("history json");
    let history = history.as_array().expect("an array");
    assert_eq!(history.len(), 2);
    let last = &history[1];
    assert_eq!(last["how"], "manual-rollback");
    assert_eq!(last["container"], "web");
    assert_eq!(last["from"], v110.as_str());
    assert_eq!(last["to"], v100.as_str());
    assert_eq!(last["reason"], "tagwatch rollback");
    let rolled_back: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RolledBack"))
        .collect();
    assert_eq!(rolled_back.len(), 1, "one RolledBack event");
    assert_eq!(rolled_back[0].type_.as_deref(), Some("Normal"));
    assert_eq!(
        rolled_back[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("web")
    );
    assert_eq!(
        rolled_back[0].note.as_deref(),
        Some(format!("web: {v110} → {v100} (tagwatch rollback)").as_str())
    );
    let table = succeeded(&tagwatch(&kubeconfig, &["history", &target]));
    let last_row = table.lines().last().expect("a row");
    assert!(
        last_row.contains("manual-rollback") && last_row.ends_with("tagwatch rollback"),
        "{table}"
    );

    // tagwatch again, 1.1.0 still in the registry: rejected, so it stays on 1.0.0 …
    let service = Tagwatch::watching(&cluster, &registry, &["--lease-name", "tagwatch-again"]);
    service.wait_polling().await;
    let cycles = service
        .metric("tagwatch_poll_cycles_total")
        .await
        .expect("cycles");
    wait::until(
        "three more poll cycles",
        Duration::from_secs(30),
        || async {
            (service.metric("tagwatch_poll_cycles_total").await? >= cycles + 3.0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert_eq!(image(&cluster, &ns, "web").await, v100, "1.1.0 is rejected");
    // … and a newer version still applies.
    push(&registry, "app", &["1.2.0"]).await;
    wait_for_image(&cluster, &ns, &v120, &service).await;
    let d = get(&cluster, &ns, "web").await;
    assert!(
        annotation(&d, "tagwatch.dev/rejected")
            .expect("rejected kept")
            .contains("1.1.0"),
        "the rejection stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    deployment("web")
        .image("registry.example/team/app:1.1.0")
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let before = get(&cluster, &ns, "web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    let printed = succeeded(&tagwatch(
        &kubeconfig,
        &[
            "rollback",
            &format!("{ns}/web"),
            "--to",
            "1.0.0",
            "--dry-run",
        ],
    ));
    assert_eq!(
        printed,
        format!(
            "would roll back {ns}/web (dry run: nothing written)\n  web: registry.example/team/app:1.1.0 → registry.example/team/app:1.0.0 (1.1.0 rejected)\n"
        )
    );
    let after = get(&cluster, &ns, "web").await;
    crate::support::assert_unchanged(&before, &after);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        "registry.example/team/app:1.1.0"
    );
    if let Some(server) = cluster.server() {
        let writes: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert_eq!(writes, vec![], "a dry run sends no write");
    }
    assert!(events(&cluster, &ns)
        .await
        .iter()
        .all(|e| e.reason.as_deref() != Some("RolledBack")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_exit_2_with_a_message_and_write_nothing() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    deployment("web")
        .image("registry.example/app:1.1.0")
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("canary")
        .image("x:1")
        .policy("minor")
        .annotate("tagwatch.dev/canary-state", CANARY_STATE)
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let refused = |args: &[&str], message: &str| {
        let output = tagwatch(&kubeconfig, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {:?} lacks {message:?}",
            stderr(&output)
        );
    };

    refused(
        &["rollback", &format!("{ns}/web")],
        "no earlier image in tagwatch.dev/history for container web; use --to VERSION",
    );
    refused(
        &["history", &format!("{ns}/missing")],
        &format!("workload {ns}/missing not found"),
    );
    refused(
        &["rollback", &format!("{ns}/missing"), "--to", "1.0.0"],
        &format!("workload {ns}/missing not found"),
    );
    refused(
        &["history", "web"],
        "is not NAMESPACE/NAME or NAMESPACE/KIND/NAME",
    );
    refused(
        &["rollback", &format!("{ns}/canary"), "--to", "0"],
        "a canary is in progress",
    );
    refused(
        &[
            "rollback",
            &format!("{ns}/web"),
            "--to",
            "1.0.0",
            "--container",
            "side",
        ],
        "container side is not watched by tagwatch (watched: web)",
    );
    assert_eq!(
        image(&cluster, &ns, "web").await,
        "registry.example/app:1.1.0"
    );
    assert_eq!(image(&cluster, &ns, "canary").await, "x:1");
    assert_eq!(
        annotation(&get(&cluster, &ns, "web").await, "tagwatch.dev/rejected"),
        None
    );

    // `history` shows the canary in progress.
    let table = succeeded(&tagwatch(
        &kubeconfig,
        &["history", &format!("{ns}/canary")],
    ));
    assert_eq!(
        table,
        format!(
            "no image changes recorded on {ns}/canary (tagwatch.dev/history)\ncanary in progress: phase running, web x:1 → x:2, started 2026-01-01T00:00:00Z\n"
        )
    );
    let json = succeeded(&tagwatch(
        &kubeconfig,
        &["history", &format!("{ns}/web"), "-o", "json"],
    ));
    assert_eq!(json.trim(), "[]");
}

/// A StatefulSet `name` (no pods: `replicas: 0`) created through the dynamic API, as any kind is.
async fn stateful_set(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    image: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), ns, &api_resource(Kind::StatefulSet));
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"replicas": 0, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}}}
    }))
    .expect("StatefulSet");
    api.create(&Default::default(), &object)
        .await
        .expect("create StatefulSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_rollback_work_on_a_stateful_set() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let v090 = "registry.example/team/db:0.9.0";
    let v100 = "registry.example/team/db:1.0.0";
    let v110 = "registry.example/team/db:1.1.0";
    // As tagwatch leaves it after updating 1.0.0 → 1.1.0.
    let recorded = serde_json::json!([{"time": "2026-01-01T00:00:00Z", "container": "db",
        "from": v100, "to": v110, "how": "update"}]);
    stateful_set(
        &cluster,
        &ns,
        "db",
        v110,
        serde_json::json!({"app": "db"}),
        serde_json::json!({
            "tagwatch.dev/policy": "minor",
            "tagwatch.dev/applied": serde_json::json!({"db": v110}).to_string(),
            "tagwatch.dev/history": recorded.to_string(),
        }),
    )
    .await;
    // The same, applied by Argo CD.
    stateful_set(
        &cluster,
        &ns,
        "argo",
        v110,
        serde_json::json!({"app": "argo", "argocd.argoproj.io/instance": "shop"}),
        serde_json::json!({"tagwatch.dev/policy": "minor"}),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let target = format!("{ns}/sts/db");
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &ns);
    let annotation = |set: &StatefulSet, key: &str| {
        set.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key).cloned())
    };
    let image = |set: &StatefulSet| {
        set.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
            .containers[0]
            .image
            .clone()
            .expect("image")
    };

    let json = succeeded(&tagwatch(&kubeconfig, &["history", &target, "-o", "json"]));
    let entries: serde_json::Value = serde_json::from_str(&json).expect("history json");
    assert_eq!(entries, recorded, "{json}");
    let table = succeeded(&tagwatch(&kubeconfig, &["history", &target]));
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(row[1..], ["db", v100, v110, "update"]);

    // Back to a version of the person's choosing (not the image before, 1.0.0).
    let printed = succeeded(&tagwatch(
        &kubeconfig,
        &["rollback", &target, "--to", "0.9.0"],
    ));
    assert_eq!(
        printed,
        format!("rolled back {ns}/statefulset/db\n  db: {v110} → {v090} (1.1.0 rejected)\n")
    );
    let set = sets.get("db").await.expect("get StatefulSet");
    assert_eq!(image(&set), v090);
    let rejected: serde_json::Value =
        serde_json::from_str(&annotation(&set, "tagwatch.dev/rejected").expect("rejected"))
            .expect("rejected json");
    assert_eq!(rejected, serde_json::json!({"db": ["1.1.0"]}));
    let applied: serde_json::Value =
        serde_json::from_str(&annotation(&set, "tagwatch.dev/applied").expect("applied"))
            .expect("applied json");
    assert_eq!(applied, serde_json::json!({"db": v090}));
    let history: serde_json::Value =
        serde_json::from_str(&annotation(&set, "tagwatch.dev/history").expect("history"))
            .expect("history json");
    let last = &history.as_array().expect("an array")[1];
    assert_eq!(
        (&last["how"], &last["from"], &last["to"], &last["reason"]),
        (
            &serde_json::json!("manual-rollback"),
            &serde_json::json!(v110),
            &serde_json::json!(v090),
            &serde_json::json!("tagwatch rollback")
        )
    );
    let rolled_back: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RolledBack"))
        .collect();
    assert_eq!(rolled_back.len(), 1, "one RolledBack event");
    let regarding = rolled_back[0].regarding.as_ref().expect("regarding");
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("StatefulSet"), Some("db"))
    );
    let table = succeeded(&tagwatch(
        &kubeconfig,
        &["history", &format!("{ns}/statefulset/db")],
    ));
    assert!(
        table
            .lines()
            .last()
            .expect("a row")
            .contains("manual-rollback"),
        "{table}"
    );

    let refused = |args: &[&str], message: &str| {
        let output = tagwatch(&kubeconfig, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {:?} lacks {message:?}",
            stderr(&output)
        );
    };
    refused(
        &["rollback", &target, "--to", "0.9.0"],
        "container db already runs registry.example/team/db:0.9.0",
    );
    refused(
        &["rollback", &format!("{ns}/sts/argo"), "--to", "1.0.0"],
        &format!(
            "workload {ns}/statefulset/argo is managed by Argo CD application \"shop\", which \
             would undo the rollback"
        ),
    );
    refused(
        &["history", &format!("{ns}/sts/missing")],
        &format!("workload {ns}/statefulset/missing not found"),
    );
    // The name of a StatefulSet, asked for as a DaemonSet: another object.
    refused(
        &["rollback", &format!("{ns}/ds/db"), "--to", "1.0.0"],
        &format!("workload {ns}/daemonset/db not found"),
    );
    // Argo Rollouts' kind, served or not.
    refused(
        &["history", &format!("{ns}/rollout/db")],
        &format!("workload {ns}/rollout/db not found"),
    );
    refused(
        &["history", &format!("{ns}/rs/db")],
        "`rs` is not a kind tagwatch updates",
    );
    let argo = sets.get("argo").await.expect("get StatefulSet");
    assert_eq!(image(&argo), v110);
    assert_eq!(annotation(&argo, "tagwatch.dev/rejected"), None);
}
