//! Updates that wait for people (`tagwatch.dev/approvals`): the proposal, approvals by distinct
//! identities (as the API server reports them to `tagwatch approve`), a denial, a newer version
//! superseding a proposal, and a proposal expiring.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tagwatch::plan::approvals::Proposal;
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::{skip, wait};

use crate::support::{annotation, deployment, events, get, image, poller_with, push, snapshot};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

/// Runs the real CLI (beside the in-process API server: not blocking the runtime).
async fn cli(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .await
        .expect("tagwatch runs")
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn proposal(cluster: &TestCluster, ns: &str) -> Option<Proposal> {
    annotation(&get(cluster, ns, "web").await, "tagwatch.dev/proposal")
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Waits for a proposal of `version` (recorded by a task beside the loop).
async fn proposed(cluster: &TestCluster, ns: &str, version: &str) -> Proposal {
    wait::until(
        &format!("a proposal of {version}"),
        Duration::from_secs(10),
        || async {
            proposal(cluster, ns)
                .await
                .filter(|p| p.label() == version && !p.expired)
        },
    )
    .await
    .expect("proposal")
}

async fn notes(cluster: &TestCluster, ns: &str, reason: &str) -> Vec<String> {
    events(cluster, ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

async fn wait_note(cluster: &TestCluster, ns: &str, reason: &str) -> Vec<String> {
    wait::until(
        &format!("a {reason} Event"),
        Duration::from_secs(10),
        || async {
            let notes = notes(cluster, ns, reason).await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await
    .expect("event")
}

/// The kubeconfigs of people named `users`, or `None` on a real cluster (it cannot mint them).
fn people(cluster: &TestCluster, dir: &Path, users: &[&str]) -> Option<Vec<PathBuf>> {
    users
        .iter()
        .map(|u| cluster.kubeconfig_as(dir, u).expect("kubeconfig"))
        .collect()
}

#[tokio::test]
async fn one_approver_releases_the_update_and_the_cli_records_who_the_api_server_says() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", "1")
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
    let p = proposed(&cluster, &ns, "1.1.0").await;
    assert_eq!(p.versions.get("web").map(String::as_str), Some("1.1.0"));
    let required = wait_note(&cluster, &ns, "ApprovalRequired").await;
    assert!(
        required[0].contains(&format!("tagwatch approve {ns}/web --version 1.1.0")),
        "{required:?}"
    );
    // Decided again on the proposal as recorded: still waiting, nothing written.
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        h.metric(r#"tagwatch_updates_waiting{reason="approval"}"#),
        1.0
    );

    let dir = tempfile::tempdir().expect("tempdir");
    // The identity is the API server's answer: on a real cluster, whoever the kubeconfig is.
    let kubeconfig = match cluster
        .kubeconfig_as(dir.path(), "alice")
        .expect("kubeconfig")
    {
        Some(path) => path,
        None => cluster.kubeconfig(dir.path()).expect("kubeconfig"),
    };
    let out = ok(&cli(
        &kubeconfig,
        &["approve", &format!("{ns}/web"), "--version", "1.1.0"],
    )
    .await);
    let given = annotation(
        &get(&cluster, &ns, "web").await,
        "tagwatch.dev/approvals-given",
    )
    .expect("approvals recorded");
    let given: Vec<serde_json::Value> = serde_json::from_str(&given).expect("json");
    assert_eq!(given.len(), 1);
    assert_eq!(given[0]["version"], "1.1.0");
    if cluster.server().is_some() {
        assert_eq!(given[0]["user"], "alice", "{out}");
    }

    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    let granted = wait_note(&cluster, &ns, "ApprovalGranted").await;
    assert!(granted[0].contains("1.1.0"), "{granted:?}");
    assert_eq!(
        h.metric(r#"tagwatch_updates_waiting{reason="approval"}"#),
        0.0
    );
}

#[tokio::test]
async fn two_approvers_must_be_distinct_people() {
    let cluster = TestCluster::start().await.expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(people) = people(&cluster, dir.path(), &["alice", "bob"]) else {
        skip!("a real cluster gives one identity per kubeconfig: two approvers need the test bed");
        return;
    };
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", "2")
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    proposed(&cluster, &ns, "1.1.0").await;
    let target = format!("{ns}/web");
    ok(&cli(&people[0], &["approve", &target]).await);
    // The same person again counts once.
    let again = ok(&cli(&people[0], &["approve", &target]).await);
    assert!(again.contains("already approved by alice"), "{again}");
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    // `tagwatch pending` lists the proposal with the approvals given and needed.
    let host = registry.host();
    let pending = ok(&cli(
        &people[0],
        &[
            "pending",
            "-o",
            "json",
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            "--state-namespace",
            &ns,
        ],
    )
    .await);
    let pending: serde_json::Value = serde_json::from_str(&pending).expect("json");
    let row = &pending["waiting"][0];
    assert_eq!(row["reason"], "approval", "{pending}");
    assert_eq!(row["approvals_given"], 1, "{pending}");
    assert_eq!(row["approvals_needed"], 2, "{pending}");

    ok(&cli(&people[1], &["approve", &target, "--version", "1.1.0"]).await);
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    let granted = wait_note(&cluster, &ns, "ApprovalGranted").await;
    assert!(
        granted[0].contains("alice") && granted[0].contains("bob"),
        "{granted:?}"
    );
}

#[tokio::test]
async fn a_denial_rejects_the_version() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", "1")
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    proposed(&cluster, &ns, "1.1.0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let target = format!("{ns}/web");
    // Naming another version than the one proposed is refused.
    let wrong = cli(&kubeconfig, &["deny", &target, "--version", "9.9.9"]).await;
    assert!(!wrong.status.success());
    ok(&cli(&kubeconfig, &["deny", &target, "--version", "1.1.0"]).await);
    let web = get(&cluster, &ns, "web").await;
    let rejected = annotation(&web, "tagwatch.dev/rejected").expect("rejected");
    assert!(rejected.contains("1.1.0"), "{rejected}");
    assert_eq!(annotation(&web, "tagwatch.dev/proposal"), None);

    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        proposal(&cluster, &ns).await,
        None,
        "a denied version is not proposed again"
    );
}

#[tokio::test]
async fn a_newer_version_supersedes_the_proposal_and_its_approvals() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", "2")
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    proposed(&cluster, &ns, "1.1.0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let target = format!("{ns}/web");
    ok(&cli(&kubeconfig, &["approve", &target]).await);

    push(&registry, "app", &["1.2.0"]).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    proposed(&cluster, &ns, "1.2.0").await;
    // The approval of 1.1.0 does not count for 1.2.0, and 1.1.0 is no longer approvable.
    let stale = cli(&kubeconfig, &["approve", &target, "--version", "1.1.0"]).await;
    assert!(!stale.status.success());
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    let required = wait::until(
        "an ApprovalRequired Event for 1.2.0",
        Duration::from_secs(10),
        || async {
            let notes = notes(&cluster, &ns, "ApprovalRequired").await;
            notes
                .iter()
                .any(|n| n.contains("--version 1.2.0"))
                .then_some(notes)
        },
    )
    .await
    .expect("event");
    assert!(required.len() >= 2, "{required:?}");
}

#[tokio::test]
async fn an_unapproved_proposal_expires_at_its_deadline() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    // The deadline's floor is a minute: a proposal made 58 s ago expires in 2 s.
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(58);
    let old = serde_json::json!({"versions": {"web": "1.1.0"}, "since": since.to_string()});
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", "1")
        .annotate("tagwatch.dev/approval-deadline", "1m")
        .annotate("tagwatch.dev/proposal", &old.to_string())
        .create(&cluster, &ns)
        .await;
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |_| {},
    );
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert!(
        h.poller.next_wakeup().is_some(),
        "the deadline is a wake-up"
    );
    // The loop wakes at the deadline and decides again.
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    let expired = loop {
        if let Some(p) = proposal(&cluster, &ns).await.filter(|p| p.expired) {
            break p;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the proposal never expired"
        );
        let at = h
            .poller
            .next_wakeup()
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_millis(100));
        tokio::time::sleep_until(at.into()).await;
        h.poller.wake(&snapshot(&cluster, &[&ns]).await).await;
    };
    assert_eq!(expired.label(), "1.1.0");
    let notes = wait_note(&cluster, &ns, "ApprovalExpired").await;
    assert!(notes[0].contains("1.1.0"), "{notes:?}");
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
}
