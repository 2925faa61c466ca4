//! Webhooks: the real registry notifies tagwatch, a push reaches the cluster at once, alias tags
//! follow; wrong secrets, forged or stale hints, and oversized or garbage bodies change nothing.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Notifications, Registry, RegistryOptions};
use tagwatch_testbed::wait;

use crate::support::{deployment, free_address, image, push, Tagwatch};

const SECRET: &str = "s3cret-webhook";

async fn digest(registry: &Registry, repo: &str, tag: &str) -> Option<String> {
    registry.manifest_digest(repo, tag).await.expect("HEAD")
}

/// Waits until `repo:alias` names the same manifest as `repo:version`.
async fn alias_at(registry: &Registry, repo: &str, alias: &str, version: &str) {
    let want = digest(registry, repo, version).await;
    assert!(want.is_some(), "{repo}:{version} exists");
    wait::until(
        &format!("{repo}:{alias} → {version}"),
        Duration::from_secs(10),
        || async { (digest(registry, repo, alias).await == want).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_the_cluster_through_registry_notifications_and_aliases_follow() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let listen = free_address();
    let registry = Registry::start(RegistryOptions {
        notifications: Some(
            Notifications::to(format!("http://{listen}/webhooks/registry"))
                .header("Authorization", format!("Bearer {SECRET}")),
        ),
        ..RegistryOptions::default()
    })
    .await
    .expect("registry");
    let host = registry.host();
    push(&registry, "app", &["1.1.8", "1.2.3"]).await;
    registry
        .push_image("multi", "2.0.0", ImageKind::OciIndex)
        .await
        .expect("index");
    deployment("web")
        .image(&format!("{host}/app:1.2.3"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let app = format!("{host}/app");
    let multi = format!("{host}/multi");
    let tagwatch = Tagwatch::run_on(
        &cluster,
        listen,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            // Ten minutes: anything sooner came through the webhook.
            "--interval",
            "10m",
            "--maintain-aliases",
            &app,
            "--maintain-aliases",
            &multi,
            "--webhook-secret",
            SECRET,
            "--lease-namespace",
            &ns,
        ],
    );
    tagwatch.wait_polling().await;
    // The start-up listing backfills the aliases.
    alias_at(&registry, "app", "1.2", "1.2.3").await;
    alias_at(&registry, "app", "1", "1.2.3").await;
    alias_at(&registry, "app", "1.1", "1.1.8").await;
    alias_at(&registry, "multi", "2.0", "2.0.0").await;

    push(&registry, "app", &["1.2.4"]).await;
    let pushed = Instant::now();
    wait::until("1.2.4 running", Duration::from_secs(5), || async {
        (image(&cluster, &ns, "web").await == format!("{host}/app:1.2.4")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let latency = pushed.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "push to patch took {latency:?}"
    );
    alias_at(&registry, "app", "1.2", "1.2.4").await;
    alias_at(&registry, "app", "1", "1.2.4").await;

    // A multi-arch index: the alias is the index itself.
    let index = registry
        .push_image("multi", "2.0.1", ImageKind::OciIndex)
        .await
        .expect("index");
    alias_at(&registry, "multi", "2.0", "2.0.1").await;
    alias_at(&registry, "multi", "2", "2.0.1").await;
    assert_eq!(digest(&registry, "multi", "2").await, Some(index));

    // A hotfix on the older line moves 1.1 only.
    let one = digest(&registry, "app", "1").await;
    push(&registry, "app", &["1.1.9"]).await;
    alias_at(&registry, "app", "1.1", "1.1.9").await;
    assert_eq!(digest(&registry, "app", "1").await, one);
    assert_eq!(
        digest(&registry, "app", "1.2").await,
        digest(&registry, "app", "1.2.4").await
    );

    // A prerelease moves nothing and is not deployed.
    let listings = |t: &Tagwatch| {
        let t = t.listen;
        async move {
            let body = reqwest::get(format!("http://{t}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            Some(
                body.lines()
                    .filter(|l| {
                        l.starts_with("tagwatch_registry_requests_total")
                            && l.contains("operation=\"tags\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>(),
            )
        }
    };
    let before = listings(&tagwatch).await.expect("metrics");
    push(&registry, "app", &["1.3.0-rc.1"]).await;
    wait::until("the prerelease listed", Duration::from_secs(5), || async {
        (listings(&tagwatch).await? > before).then_some(())
    })
    .await
    .expect("a webhook re-listing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(digest(&registry, "app", "1").await, one);
    assert_eq!(digest(&registry, "app", "1.3").await, None);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.2.4")
    );

    // Deleting 1.2.4 (its aliases share its manifest and go with it) moves them back to 1.2.3;
    // the Deployment is never downgraded.
    let gone = digest(&registry, "app", "1.2.4").await.expect("digest");
    registry
        .delete_manifest("app", &gone)
        .await
        .expect("delete");
    alias_at(&registry, "app", "1.2", "1.2.3").await;
    alias_at(&registry, "app", "1", "1.2.3").await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.2.4")
    );
    let accepted = tagwatch
        .metric(r#"tagwatch_webhooks_total{result="accepted",source="registry"}"#)
        .await
        .unwrap_or(0.0);
    assert!(
        accepted >= 4.0,
        "registry notifications accepted: {accepted}"
    );
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_the_secret_and_are_only_hints() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    push(&registry, "hint", &["1.0.0"]).await;
    deployment("hinted")
        .image(&format!("{host}/hint:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let tagwatch = Tagwatch::run(
        &cluster,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            "--interval",
            "10m",
            "--webhook-secret",
            SECRET,
            "--lease-namespace",
            &ns,
        ],
    );
    tagwatch.wait_polling().await;
    registry.sync_log().await.expect("log");
    let listed = || registry.count("GET", "/hint/tags/list");
    let at_start = listed();
    assert_eq!(at_start, 1, "one start-up listing");

    let body = serde_json::json!({"image": format!("{host}/hint"), "tag": "9.9.9"})
        .to_string()
        .into_bytes();
    let wrong: &[(&str, &str)] = &[("Authorization", "Bearer not-the-secret")];
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", wrong, body.clone())
            .await,
        401
    );
    assert_eq!(
        tagwatch.post("/webhooks/generic", &[], body.clone()).await,
        401
    );
    let forged = sign(b"another body");
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/generic",
                &[("X-Tagwatch-Signature", &forged)],
                body.clone()
            )
            .await,
        401
    );
    let github_body = br#"{"action":"published"}"#.to_vec();
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/github",
                &[
                    ("X-GitHub-Event", "registry_package"),
                    ("X-Hub-Signature-256", "sha256=00")
                ],
                github_body
            )
            .await,
        401
    );
    let bearer = format!("Bearer {SECRET}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", auth, vec![b'{'; 1024 * 1024 + 1])
            .await,
        413
    );
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", auth, b"not json".to_vec())
            .await,
        400
    );
    assert_eq!(
        tagwatch.post("/webhooks/nosuch", auth, body.clone()).await,
        404
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(
        listed(),
        at_start,
        "refused webhooks read nothing from the registry"
    );
    assert_eq!(
        tagwatch
            .metric(r#"tagwatch_webhooks_total{result="unauthorized",source="generic"}"#)
            .await,
        Some(3.0)
    );

    // Signed, naming a tag that does not exist: one re-listing, no patch.
    let signature = sign(&body);
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/generic",
                &[("X-Tagwatch-Signature", &signature)],
                body.clone()
            )
            .await,
        202
    );
    wait::until("one re-listing", Duration::from_secs(5), || async {
        registry.sync_log().await.ok()?;
        (listed() == at_start + 1).then_some(())
    })
    .await
    .expect("re-listed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(listed(), at_start + 1, "exactly one");
    assert_eq!(
        image(&cluster, &ns, "hinted").await,
        format!("{host}/hint:1.0.0")
    );

    // A repository nobody uses is ignored: no listing at all.
    let stranger = serde_json::json!({"image": format!("{host}/stranger"), "tag": "1.0.0"})
        .to_string()
        .into_bytes();
    assert_eq!(
        tagwatch.post("/webhooks/generic", auth, stranger).await,
        202
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(registry.count("GET", "/stranger/tags/list"), 0);

    // A real new tag through the query-token form (what Docker Hub and Quay can send).
    push(&registry, "hint", &["1.1.0"]).await;
    let path = format!("/webhooks/generic?token={SECRET}");
    let body = serde_json::json!({"image": format!("{host}/hint:1.1.0")})
        .to_string()
        .into_bytes();
    assert_eq!(tagwatch.post(&path, &[], body).await, 202);
    wait::until("the real tag applied", Duration::from_secs(5), || async {
        (image(&cluster, &ns, "hinted").await == format!("{host}/hint:1.1.0")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}
