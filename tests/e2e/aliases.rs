//! Alias tags kept in the registry: `tagwatch alias` against the real registry, with image
//! manifests and multi-arch indexes, and with token auth needing push scope.

use std::process::Command;
use std::time::Duration;

use tagwatch::leader::Leadership;
use tagwatch::metrics::Metrics;
use tagwatch::model::image::Repository;
use tagwatch::plan::alias_tags::Levels;
use tagwatch::registry::alias_tags::{Action, AliasOutcome, Confirmed, Sync};
use tagwatch::registry::{ClientOptions, Credentials, RegistryClient};
use tagwatch_testbed::registry::{ImageKind, Registry};

use crate::support::push;

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

fn alias(registry: &Registry, repo: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let output = Command::new(BIN)
        .args([
            "alias",
            &format!("{}/{repo}", registry.host()),
            "--insecure",
            "-o",
            "json",
        ])
        .args(extra)
        .output()
        .expect("run tagwatch alias");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&output.stdout)));
    (output.status.code().unwrap_or(-1), json, stderr)
}

fn actions(json: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["alias"].as_str().unwrap_or_default().to_string(),
                r["target"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn row(alias: &str, target: &str, action: &str) -> (String, String, String) {
    (alias.into(), target.into(), action.into())
}

async fn digest(registry: &Registry, repo: &str, tag: &str) -> Option<String> {
    registry.manifest_digest(repo, tag).await.expect("HEAD")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_backfills_a_repository_once_and_then_has_nothing_to_do() {
    let registry = Registry::anonymous().await.expect("registry");
    push(
        &registry,
        "app",
        &["1.1.8", "1.1.9", "1.2.3", "1.2.4", "1.3.0-rc.1", "v2.0.0"],
    )
    .await;

    let (code, json, stderr) = alias(&registry, "app", &["--dry-run"]);
    assert_eq!(code, 1, "moves pending: {stderr}");
    assert_eq!(
        actions(&json),
        vec![
            row("1", "1.2.4", "would-move"),
            row("1.1", "1.1.9", "would-move"),
            row("1.2", "1.2.4", "would-move"),
            row("v2", "v2.0.0", "would-move"),
            row("v2.0", "v2.0.0", "would-move"),
        ]
    );
    assert_eq!(
        digest(&registry, "app", "1.2").await,
        None,
        "a dry run writes nothing"
    );

    let (code, json, stderr) = alias(&registry, "app", &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        actions(&json).iter().all(|(_, _, a)| a == "moved"),
        "{json}"
    );
    let v124 = digest(&registry, "app", "1.2.4").await;
    assert!(v124.is_some());
    assert_eq!(digest(&registry, "app", "1.2").await, v124);
    assert_eq!(digest(&registry, "app", "1").await, v124);
    assert_eq!(
        digest(&registry, "app", "1.1").await,
        digest(&registry, "app", "1.1.9").await
    );
    assert_eq!(
        digest(&registry, "app", "v2").await,
        digest(&registry, "app", "v2.0.0").await
    );
    // A prerelease makes no alias of its own and moves none.
    assert_eq!(digest(&registry, "app", "1.3").await, None);

    registry.sync_log().await.expect("log");
    let puts = registry.count("PUT", "/manifests/1.2");
    assert_eq!(puts, 1);
    let (code, json, stderr) = alias(&registry, "app", &[]);
    assert_eq!(code, 0, "idempotent: {stderr}");
    assert!(
        actions(&json).iter().all(|(_, _, a)| a == "unchanged"),
        "{json}"
    );
    registry.sync_log().await.expect("log");
    assert_eq!(
        registry.count("PUT", "/manifests/1.2"),
        puts,
        "no second write"
    );

    // A hotfix on the older line moves only that line.
    push(&registry, "app", &["1.1.10"]).await;
    let (_, json, _) = alias(&registry, "app", &[]);
    let moved: Vec<_> = actions(&json)
        .into_iter()
        .filter(|(_, _, a)| a == "moved")
        .collect();
    assert_eq!(moved, vec![row("1.1", "1.1.10", "moved")]);
    assert_eq!(digest(&registry, "app", "1").await, v124);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_of_multi_arch_indexes_keep_the_index_and_its_media_type() {
    let registry = Registry::anonymous().await.expect("registry");
    let index = registry
        .push_image("multi", "3.0.0", ImageKind::OciIndex)
        .await
        .expect("push index");
    let list = registry
        .push_image("multi", "3.1.0", ImageKind::DockerManifestList)
        .await
        .expect("push manifest list");
    let (code, _, stderr) = alias(&registry, "multi", &["--levels", "major,minor,latest"]);
    assert_eq!(code, 1, "{stderr}");
    let head = |tag: &str| {
        let url = format!("{}/v2/multi/manifests/{tag}", registry.url());
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .header(
                    "Accept",
                    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                )
                .send()
                .await
                .expect("GET");
            let media = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let digest = response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (digest, media)
        }
    };
    let (d300, m300) = head("3.0.0").await;
    let (d310, m310) = head("3.1.0").await;
    assert_eq!(d300, index);
    assert_eq!(d310, list);
    assert_eq!(head("3.0").await, (d300, m300.clone()));
    assert_eq!(head("3.1").await, (d310.clone(), m310.clone()));
    assert_eq!(head("3").await, (d310.clone(), m310.clone()));
    assert_eq!(head("latest").await, (d310, m310.clone()));
    assert_eq!(m300, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        m310,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_pushes_with_credentials_that_carry_push_scope() {
    let registry = Registry::token("ci", "pw-alias").await.expect("registry");
    push(&registry, "secure", &["4.0.0", "4.0.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ci:pw-alias");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let (code, json, stderr) = alias(&registry, "secure", &["--registry-credentials", &config]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        actions(&json),
        vec![row("4", "4.0.1", "moved"), row("4.0", "4.0.1", "moved")]
    );
    assert!(!stderr.contains("pw-alias"));
    let issuer = registry.token_issuer().expect("token auth");
    let asked_push = issuer.requests().iter().any(|r| {
        r.status == 200
            && r.username.as_deref() == Some("ci")
            && r.scopes
                .iter()
                .any(|s| s.contains("secure") && s.contains("push"))
    });
    assert!(asked_push, "{:?}", issuer.requests());

    // Without credentials the repository cannot even be listed: an error, nothing moves.
    let (code, _, stderr) = {
        let output = Command::new(BIN)
            .args([
                "alias",
                &format!("{}/secure", registry.host()),
                "--insecure",
            ])
            .output()
            .expect("run");
        (
            output.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    assert_eq!(code, 2, "{stderr}");
}

/// One alias maintenance pass over `repo`, as the poller runs it, under `leadership`.
async fn maintain(
    registry: &Registry,
    repo: &str,
    leadership: &Leadership,
    metrics: &prometheus::Registry,
) -> Vec<AliasOutcome> {
    let metrics = Metrics::new(metrics).expect("metrics");
    let client = RegistryClient::new(
        ClientOptions {
            insecure_registries: vec![registry.host()],
            timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
        metrics.clone(),
    )
    .expect("registry client");
    let repo = Repository {
        registry: registry.host(),
        path: repo.into(),
    };
    let credentials = Credentials::Anonymous;
    let tags = client.list_tags(&repo, &credentials).await.expect("tags");
    let may_write = || leadership.is_leader();
    let sync = Sync {
        verified: None,
        client: &client,
        metrics: &metrics,
        credentials: &credentials,
        may_write: &may_write,
        dry_run: false,
    };
    sync.run(&repo, &tags, Levels::MAJOR_MINOR, &mut Confirmed::default())
        .await
}

/// A replica whose lease lapsed during a round pushes no alias; the leader, on the same
/// listing, moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_lead_pushes_no_alias() {
    let registry = Registry::anonymous().await.expect("registry");
    push(&registry, "fenced", &["1.2.3", "1.2.4"]).await;

    let metrics = prometheus::Registry::new();
    let outcomes = maintain(&registry, "fenced", &Leadership::follower(), &metrics).await;
    registry.sync_log().await.expect("log");
    assert_eq!(registry.count("PUT", "/manifests/1.2"), 0, "{outcomes:?}");
    assert_eq!(registry.count("PUT", "/manifests/1"), 0, "{outcomes:?}");
    assert!(!outcomes.is_empty());
    assert!(
        outcomes.iter().all(|o| o.action == Action::NotLeader),
        "{outcomes:?}"
    );
    assert_eq!(digest(&registry, "fenced", "1.2").await, None);
    let skipped = format!(
        r#"tagwatch_alias_writes_total{{registry="{}",result="not_leader"}} 1"#,
        registry.host()
    );
    assert!(
        tagwatch::metrics::render(&metrics).contains(&skipped),
        "{}",
        tagwatch::metrics::render(&metrics)
    );

    let outcomes = maintain(
        &registry,
        "fenced",
        &Leadership::always(),
        &prometheus::Registry::new(),
    )
    .await;
    assert!(
        outcomes.iter().all(|o| o.action == Action::Moved),
        "{outcomes:?}"
    );
    registry.sync_log().await.expect("log");
    assert_eq!(registry.count("PUT", "/manifests/1.2"), 1);
    assert_eq!(registry.count("PUT", "/manifests/1"), 1);
    assert_eq!(
        digest(&registry, "fenced", "1.2").await,
        digest(&registry, "fenced", "1.2.4").await
    );
}
