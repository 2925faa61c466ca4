//! Release gates end to end against the real registry: platforms (listed and `auto`), minimum
//! release age with first-seen times kept in a ConfigMap, fail-closed reads, and what they cost.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use tagwatch::act::gates::{load_first_seen, STATE_CONFIGMAP};
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::{test_server_or_skip, wait};

use crate::support::{deployment, events, image, poller, snapshot, Harness};

const BOTH: &[&str] = &["amd64", "arm64"];
const AMD: &[&str] = &["amd64"];

async fn setup() -> (TestCluster, Registry, Harness) {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let harness = poller(&cluster, &[registry.host()], DockerConfig::default());
    (cluster, registry, harness)
}

/// Registry requests a gate sends: manifest GETs and blob GETs (oci-client's pushes use
/// HEAD/PUT/POST/PATCH, and the harness's own reads are not logged).
async fn gate_requests(registry: &Registry) -> (usize, usize) {
    registry.sync_log().await.expect("sync");
    let requests = registry.requests();
    let count = |what: &str| {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains(what))
            .count()
    };
    (count("/manifests/"), count("/blobs/"))
}

async fn gate_events(cluster: &TestCluster, ns: &str) -> Vec<(String, String)> {
    events(cluster, ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("GateBlocked"))
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn wait_for_events(cluster: &TestCluster, ns: &str, n: usize) -> Vec<(String, String)> {
    wait::until("GateBlocked Events", Duration::from_secs(10), || async {
        let found = gate_events(cluster, ns).await;
        (found.len() >= n).then_some(found)
    })
    .await
    .expect("events")
}

#[tokio::test]
async fn a_newer_version_missing_a_platform_is_skipped_and_the_newest_passing_index_is_pinned() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciIndex, BOTH, None)
        .await
        .expect("push");
    let passing = registry
        .push_image_with("app", "1.1.0", ImageKind::DockerManifestList, BOTH, None)
        .await
        .expect("push");
    registry
        .push_image_with("app", "1.2.0", ImageKind::OciIndex, AMD, None)
        .await
        .expect("push");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/platforms", "linux/amd64,linux/arm64")
        .annotate("tagwatch.dev/pin", "digest")
        .create(&cluster, &ns)
        .await;
    let before = gate_requests(&registry).await;

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    // The index's own digest, never a child's.
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.1.0@{passing}")
    );
    let after = gate_requests(&registry).await;
    // One manifest GET per candidate judged (1.2.0, then 1.1.0), no blob for an index.
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 0));
    let found = wait_for_events(&cluster, &ns, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "Normal");
    assert!(
        found[0].1.contains("1.2.0") && found[0].1.contains("platforms"),
        "{found:?}"
    );
    assert!(found[0].1.contains("linux/arm64"), "{found:?}");
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="platforms",result="blocked"}"#),
        1.0
    );
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="platforms",result="passed"}"#),
        1.0
    );

    // Steady: the cached judgements cost no request, and nothing is reported again.
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(gate_requests(&registry).await, after);
    assert_eq!(gate_events(&cluster, &ns).await.len(), 1);
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="platforms",result="blocked"}"#),
        1.0
    );

    // A new index that passes: one manifest GET, and it is written.
    let newest = registry
        .push_image_with("app", "1.3.0", ImageKind::OciIndex, BOTH, None)
        .await
        .expect("push");
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.3.0@{newest}")
    );
    let last = gate_requests(&registry).await;
    assert_eq!((last.0 - after.0, last.1 - after.1), (1, 0));
}

#[tokio::test]
async fn auto_requires_every_platform_of_the_nodes() {
    let (cluster, registry, mut h) = setup().await;
    let server = test_server_or_skip!(cluster => (),
        "the Nodes' platforms are set on the in-process API server");
    server.add_node_on("amd", "linux", "amd64").expect("node");
    server.add_node_on("arm", "linux", "arm64").expect("node");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    registry
        .push_image_with("app", "1.0.1", ImageKind::OciIndex, BOTH, None)
        .await
        .expect("push");
    // A single-platform image: its platform comes from its config blob.
    registry
        .push_image_with("app", "1.1.0", ImageKind::DockerV2, AMD, None)
        .await
        .expect("push");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/platforms", "auto")
        .create(&cluster, &ns)
        .await;
    let before = gate_requests(&registry).await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.1"));
    let after = gate_requests(&registry).await;
    // 1.1.0: manifest + config blob; 1.0.1: the index alone.
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
    let found = wait_for_events(&cluster, &ns, 1).await;
    assert!(
        found[0].1.contains("1.1.0") && found[0].1.contains("linux/arm64"),
        "{found:?}"
    );
    let nodes_listed = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/api/v1/nodes"))
        .count();
    assert_eq!(nodes_listed, 1);
}

#[tokio::test]
async fn min_age_waits_for_first_seen_and_applies_when_due_and_a_forged_created_does_not_bypass() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/min-age", "2s")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;

    // Claims to be 25 years old; tagwatch has known it for no time at all.
    registry
        .push_image_with(
            "app",
            "1.1.0",
            ImageKind::OciManifest,
            AMD,
            Some("2001-01-01T00:00:00Z"),
        )
        .await
        .expect("push");
    let seen = std::time::Instant::now();
    let deployments = snapshot(&cluster, &[&ns]).await;
    let report = h.poller.round_all(&deployments).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="min-age",result="waiting"}"#),
        1.0
    );
    let found = wait_for_events(&cluster, &ns, 1).await;
    assert!(found[0].1.contains("1.1.0") && found[0].1.contains("min-age"));

    // The next decision is due when the candidate comes of age, not at the next poll (60 s).
    let due = h.poller.next_wakeup().expect("a wake-up");
    let wait = due.saturating_duration_since(seen);
    assert!(
        wait <= Duration::from_millis(2100) && wait >= Duration::from_millis(1500),
        "due in {wait:?}"
    );
    // Not a moment before.
    h.poller.turn(&deployments).await;
    h.poller.drain(&deployments, None).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    let (manifests, _) = gate_requests(&registry).await;

    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    h.poller.turn(&deployments).await;
    h.poller.drain(&deployments, None).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    // Decided from the wake-up alone: no listing, no facts read again.
    assert_eq!(gate_requests(&registry).await.0, manifests);
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="min-age",result="passed"}"#),
        1.0
    );
}

#[tokio::test]
async fn first_seen_times_survive_a_restart_in_the_state_config_map() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    registry
        .push_image_with("app", "1.1.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/min-age", "3s")
        .create(&cluster, &ns)
        .await;
    let saved = load_first_seen(&cluster.client, &ns).await.expect("load");
    h.poller.keep_first_seen(ns.clone(), saved);
    let deployments = snapshot(&cluster, &[&ns]).await;
    h.poller.round_all(&deployments).await;
    let first_due = h.poller.next_wakeup().expect("a wake-up");
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let stored = wait::until("the state ConfigMap", Duration::from_secs(10), || async {
        maps.get_opt(STATE_CONFIGMAP).await.ok().flatten()
    })
    .await
    .expect("ConfigMap");
    let text = stored
        .data
        .as_ref()
        .and_then(|d| d.get("first-seen.json"))
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("1.1.0"), "{text}");
    drop(h);

    // A new process: the saved times count, so 1.1.0 is due when it was before, not 3 s later.
    let mut h = poller(&cluster, &[registry.host()], DockerConfig::default());
    let saved = load_first_seen(&cluster.client, &ns).await.expect("load");
    h.poller.keep_first_seen(ns.clone(), saved);
    h.poller.round_all(&deployments).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    let due = h.poller.next_wakeup().expect("a wake-up");
    let drift = if due > first_due {
        due - first_due
    } else {
        first_due - due
    };
    assert!(drift < Duration::from_millis(500), "due moved by {drift:?}");
    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    h.poller.turn(&deployments).await;
    h.poller.drain(&deployments, None).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
}

#[tokio::test]
async fn an_unreadable_candidate_is_blocked_and_read_again_at_the_next_listing() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    registry
        .push_image_with("app", "1.1.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    let config = registry
        .config_digest("app", "1.1.0")
        .await
        .expect("config");
    registry.delete_blob("app", &config).await.expect("delete");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/platforms", "linux/amd64")
        .create(&cluster, &ns)
        .await;
    let deployments = snapshot(&cluster, &[&ns]).await;
    let report = h.poller.round_all(&deployments).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="platforms",result="error"}"#),
        1.0
    );
    let found = wait_for_events(&cluster, &ns, 1).await;
    assert!(found[0].1.contains("cannot be checked"), "{found:?}");
    let (manifests, _) = gate_requests(&registry).await;

    // Still unreadable: read again at the next listing (nothing new listed), still blocked.
    let report = h.poller.round_all(&deployments).await;
    assert_eq!(report.applied, 0);
    assert_eq!(gate_requests(&registry).await.0, manifests + 1);

    // Readable again: it passes.
    registry
        .push_image_with("app", "1.1.0", ImageKind::OciManifest, AMD, None)
        .await
        .expect("push");
    let report = h.poller.round_all(&deployments).await;
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
}

#[tokio::test]
async fn resolve_runs_the_same_gates_from_the_command_line() {
    let registry = Registry::anonymous().await.expect("registry");
    let app = format!("{}/app", registry.host());
    registry
        .push_image_with("app", "1.0.0", ImageKind::OciIndex, BOTH, None)
        .await
        .expect("push");
    let passing = registry
        .push_image_with("app", "1.1.0", ImageKind::OciIndex, BOTH, None)
        .await
        .expect("push");
    registry
        .push_image_with("app", "1.2.0", ImageKind::OciIndex, AMD, None)
        .await
        .expect("push");
    // Built just now (by its own account): too young for a day's wait.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    registry
        .push_image_with("app", "1.1.1", ImageKind::OciManifest, AMD, Some(&now))
        .await
        .expect("push");
    let resolve = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
            .args([
                "resolve",
                &format!("{app}:1.0.0"),
                "--insecure",
                "-o",
                "json",
            ])
            .args(extra)
            .output()
            .expect("resolve");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    let (code, json) = resolve(&["--platforms", "linux/amd64,linux/arm64"]);
    assert_eq!(code, Some(0));
    assert_eq!(json["tag"], "1.1.0");
    assert_eq!(json["new_image"], format!("{app}:1.1.0@{passing}"));
    let gated: Vec<(String, String)> = json["gated"]
        .as_array()
        .expect("gated")
        .iter()
        .map(|g| {
            (
                g["tag"].as_str().unwrap_or_default().to_string(),
                g["gate"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        gated,
        vec![
            ("1.2.0".to_string(), "platforms".to_string()),
            ("1.1.1".to_string(), "platforms".to_string())
        ]
    );

    // Age: 1.2.0 has no `created` (counts as now), 1.1.1 was built now; 1.1.0 has none either.
    let (code, json) = resolve(&["--min-age", "24h"]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["gated"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(
        json["gated"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("younger than 1day"),
        "{json}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args([
            "resolve",
            &format!("{app}:1.0.0"),
            "--insecure",
            "--platforms",
            "auto",
        ])
        .output()
        .expect("resolve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auto"));
}

// The API server runs in this process: the runtime must keep serving while `plan` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_versions_a_gate_holds_back() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    for (tag, platforms) in [("1.0.0", BOTH), ("1.1.0", BOTH), ("1.2.0", AMD)] {
        registry
            .push_image_with("app", tag, ImageKind::OciIndex, platforms, None)
            .await
            .expect("push");
    }
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/platforms", "linux/amd64,linux/arm64")
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args(["plan", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "-n",
            &ns,
            "--insecure-registry",
            &registry.host(),
            "-o",
            "json",
        ])
        .output()
        .expect("plan");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let row = &rows[0];
    assert_eq!(row["decision"], "update", "{rows}");
    assert_eq!(row["tag"], "1.1.0", "{rows}");
    let gated = row["gated"][0].as_str().unwrap_or_default();
    assert!(
        gated.starts_with("1.2.0 held back by platforms") && gated.contains("linux/arm64"),
        "{rows}"
    );
    // Read-only: nothing written.
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
}
