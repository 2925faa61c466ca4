//! People saying "not now": update windows, the incident freeze (`tagwatch freeze` /
//! `unfreeze`, read from tagwatch's state ConfigMap), scheduled freezes, the limit on rollouts at
//! once, and `tagwatch pending`.

use std::time::Duration;

use tagwatch::plan::holds::{Freeze, Limits};
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::apiserver::ImageHealth;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::{test_server_or_skip, wait};

use crate::support::{deployment, events, image, poller_with, push, snapshot, Tagwatch};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

async fn waiting_notes(cluster: &TestCluster, ns: &str) -> Vec<String> {
    events(cluster, ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("UpdateWaiting"))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// A window closed now: the hour that starts 3 hours from now (UTC), whatever the clock says.
fn closed_window() -> String {
    let hour = (jiff::Timestamp::now().as_second().rem_euclid(86_400) / 3600 + 3) % 24;
    format!("{hour:02}:00-{:02}:00", (hour + 1) % 24)
}

#[tokio::test]
async fn an_update_outside_its_window_waits_and_goes_once_the_window_is_open() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/window", &closed_window())
        .annotate("tagwatch.dev/window-timezone", "Etc/UTC")
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        h.metric(r#"tagwatch_updates_waiting{reason="window"}"#),
        1.0
    );
    let notes = wait::until(
        "an UpdateWaiting Event",
        Duration::from_secs(10),
        || async {
            let notes = waiting_notes(&cluster, &ns).await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await
    .expect("event");
    assert!(
        notes[0].contains("web → 1.1.0 waits: outside the update window")
            && notes[0].contains("opens at"),
        "{notes:?}"
    );

    // The owner widens the window to every day, all day, in another zone: it goes at once.
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cluster.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {
        "tagwatch.dev/window": "Mon-Sun 00:00-24:00",
        "tagwatch.dev/window-timezone": "Asia/Tokyo",
    }}});
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch");
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    assert_eq!(
        h.metric(r#"tagwatch_updates_waiting{reason="window"}"#),
        0.0
    );
}

#[tokio::test]
async fn a_window_that_does_not_parse_stops_updates() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/window", "Mon-Fri 09:00-17:00")
        .annotate("tagwatch.dev/window-timezone", "Mars/Olympus_Mons")
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    let found = wait::until(
        "an InvalidAnnotation Event",
        Duration::from_secs(10),
        || async {
            events(&cluster, &ns)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidAnnotation"))
        },
    )
    .await
    .expect("event");
    let note = found.note.unwrap_or_default();
    assert!(
        note.contains("tagwatch.dev/window-timezone") && note.contains("Mars/Olympus_Mons"),
        "{note}"
    );
}

/// A scheduled freeze in the operator's config holds updates in its namespaces only.
#[tokio::test]
async fn a_scheduled_freeze_holds_its_namespaces_only() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .create(&cluster, &ns)
        .await;
    let now = jiff::Timestamp::now();
    let freeze = |namespace: &str| Freeze {
        from: Some(now - jiff::SignedDuration::from_hours(1)),
        to: Some(now + jiff::SignedDuration::from_hours(1)),
        reason: "release week".into(),
        namespaces: vec![namespace.to_string()],
        by: None,
    };
    let mut other = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |ctx| {
            ctx.holds.freezes = vec![freeze("some-other-namespace")];
        },
    );
    let mut frozen = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |ctx| {
            ctx.holds.freezes = vec![freeze(&ns)];
        },
    );
    let report = frozen
        .poller
        .round_all(&snapshot(&cluster, &[&ns]).await)
        .await;
    assert_eq!(report.applied, 0);
    assert_eq!(
        frozen.metric(r#"tagwatch_updates_waiting{reason="freeze"}"#),
        1.0
    );
    let notes = wait::until(
        "an UpdateWaiting Event",
        Duration::from_secs(10),
        || async {
            let notes = waiting_notes(&cluster, &ns).await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await
    .expect("event");
    assert!(
        notes[0].contains("updates are frozen (release week) until"),
        "{notes:?}"
    );
    let report = other
        .poller
        .round_all(&snapshot(&cluster, &[&ns]).await)
        .await;
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
}

/// With `maxConcurrentRollouts: 1`, a shared base image rolls through in waves: one workload at
/// a time while its rollout runs, the next once it completes, in the order they came.
#[tokio::test]
async fn the_rollout_limit_lets_one_rollout_run_at_a_time() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "needs to hold pods Pending and then make them Ready (the test server's image health)");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/base", registry.host());
    push(&registry, "base", &["1.0.0", "1.1.0"]).await;
    server.set_image_health(&format!("{app}:1.0.0"), ImageHealth::Ready);
    // The new version's pods stay Pending: its rollouts do not complete until said so.
    server.set_image_health(&format!("{app}:1.1.0"), ImageHealth::Pending);
    for name in ["a", "b", "c"] {
        deployment(name)
            .image(&format!("{app}:1.0.0"))
            .policy("minor")
            .create(&cluster, &ns)
            .await;
    }
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |ctx| {
            ctx.holds.limits = Limits {
                total: Some(1),
                per_namespace: None,
            };
        },
    );
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    let updated = |images: &[String]| images.iter().filter(|i| i.ends_with(":1.1.0")).count();
    let images = async {
        let mut all = Vec::new();
        for name in ["a", "b", "c"] {
            all.push(image(&cluster, &ns, name).await);
        }
        all
    };
    assert_eq!(updated(&images.await), 1);
    assert_eq!(h.metric(r#"tagwatch_updates_waiting{reason="limit"}"#), 2.0);
    // More rounds change nothing while the rollout runs.
    h.poller.round(&snapshot(&cluster, &[&ns]).await).await;
    let mut now = Vec::new();
    for name in ["a", "b", "c"] {
        now.push(image(&cluster, &ns, name).await);
    }
    assert_eq!(updated(&now), 1);

    // The rollout completes: the next one goes, then the last.
    server.set_image_health(&format!("{app}:1.1.0"), ImageHealth::Ready);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        h.poller.round(&snapshot(&cluster, &[&ns]).await).await;
        let mut all = Vec::new();
        for name in ["a", "b", "c"] {
            all.push(image(&cluster, &ns, name).await);
        }
        if updated(&all) == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waves did not finish: {all:?}"
        );
        // Each round waits for what it started; the rollouts' progress is the test server's.
        tokio::task::yield_now().await;
    }
    assert_eq!(h.metric(r#"tagwatch_updates_waiting{reason="limit"}"#), 0.0);
}

/// `tagwatch freeze` stops a running service from starting updates within seconds, `pending`
/// shows what waits, and `tagwatch unfreeze` lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_freezes_and_unfreezes_a_running_service() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let cli = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--state-namespace", &ns])
            .output()
            .expect("tagwatch")
    };
    let out = cli(&["freeze", "--reason", "incident 42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("until `tagwatch unfreeze`"));

    let service = Tagwatch::watching(&cluster, &registry, &[]);
    service.wait_polling().await;
    push(&registry, "app", &["1.1.0"]).await;
    wait::until(
        "the update held by the freeze",
        Duration::from_secs(30),
        || async {
            let notes = waiting_notes(&cluster, &ns).await;
            notes
                .iter()
                .any(|n| n.contains("incident 42"))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));

    let out = std::process::Command::new(BIN)
        .args([
            "pending",
            "-o",
            "json",
            "-n",
            &ns,
            "--insecure-registry",
            &registry.host(),
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--state-namespace", &ns])
        .output()
        .expect("pending");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["freezes"][0]["reason"], "incident 42", "{json}");
    // Who froze, as the API server names the caller (whoever runs the test on a real cluster).
    assert!(
        json["freezes"][0]["by"]
            .as_str()
            .is_some_and(|by| !by.is_empty()),
        "{json}"
    );
    assert_eq!(
        json["waiting"][0]["workload"],
        format!("{ns}/web"),
        "{json}"
    );
    assert_eq!(json["waiting"][0]["reason"], "freeze", "{json}");
    assert_eq!(json["waiting"][0]["updates"][0], "web → 1.1.0", "{json}");

    let out = cli(&["unfreeze"]);
    assert_eq!(out.status.code(), Some(0));
    wait::until(
        "the update after unfreeze",
        Duration::from_secs(30),
        || async { (image(&cluster, &ns, "web").await == format!("{app}:1.1.0")).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert_eq!(
        cli(&["unfreeze"]).status.code(),
        Some(1),
        "nothing left to lift"
    );
}
