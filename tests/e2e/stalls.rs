//! What one slow thing must not hold up: a registry that answers slowly delays only the workloads
//! that use it (decisions and rollbacks of the others go on), and a control loop that does stall
//! is reported by `/healthz`, so the replica is restarted.

use std::time::Duration;

use tagwatch_testbed::apiserver::{Fault, ImageHealth};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::stub_registry::StubRegistry;
use tagwatch_testbed::{test_server_or_skip, wait};

use crate::support::{deployment, events, image, push, Tagwatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_registry_delays_neither_other_decisions_nor_rollbacks() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "ships a version that never becomes Ready, which a real cluster cannot be told to do");
    server.set_default_image_health(ImageHealth::Ready);
    let ns = cluster.namespace.clone();
    // A registry that takes a while: five pages, three seconds each.
    let slow = StubRegistry::start().await.expect("stub");
    slow.set_tags("slow", ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"]);
    slow.set_page_size("slow", 1);
    slow.set_page_delay("slow", Duration::from_secs(3));
    let pages = || slow.count("GET", "/v2/slow/tags/list");
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    push(&registry, "app", &["1.0.0"]).await;
    deployment("slowpoke")
        .image(&format!("{}/slow:1.0.0", slow.host()))
        .policy("patch")
        .create(&cluster, &ns)
        .await;
    deployment("fast")
        .image(&format!("{host}/app:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    // The next release is broken: its rollout passes its deadline and is rolled back.
    server.set_image_health(&format!("{host}/app:1.1.0"), ImageHealth::NeverReady);
    let slow_host = slow.host();
    let tagwatch = Tagwatch::watching(&cluster, &registry, &["--insecure-registry", &slow_host]);
    wait::until(
        "the slow listing under way",
        Duration::from_secs(20),
        || async { (pages() >= 1).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    push(&registry, "app", &["1.1.0"]).await;

    // Updated, found stuck, rolled back: all while the slow registry's listing is still going.
    wait::until("fast updated to 1.1.0", Duration::from_secs(20), || async {
        let history = crate::support::annotation(
            &crate::support::get(&cluster, &ns, "fast").await,
            "tagwatch.dev/history",
        )?;
        history.contains("1.1.0").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    wait::until("fast rolled back", Duration::from_secs(20), || async {
        let rolled = events(&cluster, &ns)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("RolledBack"));
        rolled.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert_eq!(
        image(&cluster, &ns, "fast").await,
        format!("{host}/app:1.0.0")
    );
    assert!(
        pages() < 5,
        "the slow listing had already finished ({} pages served): nothing was shown",
        pages()
    );
    assert_eq!(
        tagwatch.get("/healthz").await.map(|(code, _)| code),
        Some(200),
        "a slow registry is not a sick replica"
    );
    // And the slow one is served in its turn.
    wait::until("slowpoke updated", Duration::from_secs(40), || async {
        (image(&cluster, &ns, "slowpoke").await == format!("{slow_host}/slow:1.0.4")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_control_loop_is_stalled() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "stalls the loop with a slow API server, which only the test server can be told to be");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0"]).await;
    let tagwatch = Tagwatch::watching(&cluster, &registry, &["--liveness-timeout", "2s"]);
    wait::until("ready", Duration::from_secs(20), || async {
        tagwatch
            .get("/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert_eq!(
        tagwatch.get("/healthz").await,
        Some((200, "ok".to_string()))
    );
    // Reading a workload's pull secret now hangs for 4 s: the loop waits on it (its bound is
    // 5 s), longer than the 2 s liveness timeout.
    server.inject_fault(
        "GET",
        &format!("/api/v1/namespaces/{ns}/secrets/"),
        Fault::Delay(Duration::from_secs(4)),
        1,
    );
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .pull_secret("pull")
        .create(&cluster, &ns)
        .await;
    let stalled = wait::until("/healthz to fail", Duration::from_secs(15), || async {
        tagwatch
            .get("/healthz")
            .await
            .filter(|(code, _)| *code == 503)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert!(
        stalled.1.starts_with("control loop stalled"),
        "{}",
        stalled.1
    );
    wait::until("/healthz to recover", Duration::from_secs(15), || async {
        tagwatch
            .get("/healthz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}
