//! The watcher end to end: real registry, real kube client, the poller's rounds.

use tagwatch::registry::DockerConfig;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::stub_registry::{Reply, StubRegistry};

use crate::support::{
    annotation, deployment, events, get, image, poller, push, set_image, snapshot, Harness,
};

async fn setup() -> (TestCluster, Registry, Harness) {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let harness = poller(&cluster, &[registry.host()], DockerConfig::default());
    (cluster, registry, harness)
}

#[tokio::test]
async fn a_pushed_version_reaches_the_annotated_deployment_only() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.2.3"]).await;
    deployment("web")
        .image(&format!("{app}:1.2.3"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("plain")
        .image(&format!("{app}:1.2.3"))
        .create(&cluster, &ns)
        .await;

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!((report.listed, report.applied), (1, 0));

    push(&registry, "app", &["1.2.4"]).await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);

    let web = get(&cluster, &ns, "web").await;
    assert_eq!(crate::support::images(&web), vec![format!("{app}:1.2.4")]);
    assert_eq!(
        annotation(&web, "tagwatch.dev/applied"),
        Some(format!("{{\"web\":\"{app}:1.2.4\"}}"))
    );
    assert_eq!(
        annotation(&web, "kubernetes.io/change-cause").as_deref(),
        Some("tagwatch: web 1.2.3 → 1.2.4")
    );
    assert_eq!(image(&cluster, &ns, "plain").await, format!("{app}:1.2.3"));
    let updated: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ImageUpdated"))
        .collect();
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("web")
    );
    assert_eq!(
        h.metric(r#"tagwatch_updates_total{reason="policy",result="applied"}"#),
        1.0
    );

    // Nothing new: a further round writes nothing.
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
}

#[tokio::test]
async fn shared_repositories_are_listed_once_and_idle_rounds_cost_no_api_request() {
    let (cluster, registry, mut h) = setup().await;
    let ns1 = cluster.namespace.clone();
    let ns2 = cluster.extra_namespace("b").await.expect("ns");
    let ns3 = cluster.extra_namespace("c").await.expect("ns");
    push(&registry, "one", &["1.0.0"]).await;
    push(&registry, "two", &["2.0.0"]).await;
    let namespaces = [ns1.as_str(), ns2.as_str(), ns3.as_str()];
    for i in 0..10 {
        let repo = if i % 2 == 0 { "one" } else { "two" };
        let tag = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
        deployment(&format!("d{i}"))
            .image(&format!("{}/{repo}:{tag}", registry.host()))
            .policy("major")
            .create(&cluster, namespaces[i % 3])
            .await;
    }
    let deployments = snapshot(&cluster, &namespaces).await;
    let report = h.poller.round_all(&deployments).await;
    assert_eq!((report.listed, report.planned), (2, 10));
    registry.sync_log().await.expect("sync");
    assert_eq!(registry.count("GET", "/one/tags/list"), 1);
    assert_eq!(registry.count("GET", "/two/tags/list"), 1);

    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    let report = h.poller.round_all(&deployments).await;
    // Listings that brought nothing new decide nothing again: steady cost follows change.
    assert_eq!((report.listed, report.planned, report.applied), (2, 0, 0));
    registry.sync_log().await.expect("sync");
    assert_eq!(registry.count("GET", "/one/tags/list"), 2);
    assert_eq!(registry.count("GET", "/two/tags/list"), 2);
    if let Some(server) = cluster.server() {
        assert_eq!(
            server.requests(),
            vec![],
            "an idle round sends no API request"
        );
    }

    // A new tag in one repository: only that repository's five users are decided (and updated).
    push(&registry, "one", &["1.1.0"]).await;
    let report = h.poller.round_all(&deployments).await;
    assert_eq!((report.listed, report.planned, report.applied), (2, 5, 5));
    for i in (0..10).step_by(2) {
        assert_eq!(
            image(&cluster, namespaces[i % 3], &format!("d{i}")).await,
            format!("{}/one:1.1.0", registry.host())
        );
    }
}

#[tokio::test]
async fn an_alias_set_by_hand_rolls_back_and_stays_inside_it() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.3.0", "1.4.2", "2.0.0"]).await;
    // Updates follow each other: each rollout must complete first, with or without pods.
    deployment("web")
        .replicas(0)
        .image(&format!("{app}:2.0.0"))
        .policy("major")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:2.0.0"));

    set_image(&cluster, &ns, "web", &format!("{app}:1")).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    let web = get(&cluster, &ns, "web").await;
    assert_eq!(crate::support::images(&web), vec![format!("{app}:1.4.2")]);
    assert_eq!(annotation(&web, "tagwatch.dev/track").as_deref(), Some("1"));

    push(&registry, "app", &["2.1.0"]).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.4.2"));

    push(&registry, "app", &["1.5.0"]).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.5.0"));
}

#[tokio::test]
async fn a_manual_rollback_is_not_undone_but_newer_versions_apply() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.4.1", "1.4.2"]).await;
    deployment("web")
        .image(&format!("{app}:1.4.1"))
        .policy("patch")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.4.2"));

    set_image(&cluster, &ns, "web", &format!("{app}:1.4.1")).await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.4.1"));
    // The person's change is recorded once: history, the new baseline, the version left rejected.
    let seen = get(&cluster, &ns, "web").await;
    let history: Vec<serde_json::Value> =
        serde_json::from_str(&annotation(&seen, "tagwatch.dev/history").expect("history"))
            .expect("json");
    let last = history.last().expect("an entry");
    assert_eq!(last["how"], "manual");
    assert_eq!(last["from"], format!("{app}:1.4.2"));
    assert_eq!(last["to"], format!("{app}:1.4.1"));
    assert_eq!(
        annotation(&seen, "tagwatch.dev/applied").as_deref(),
        Some(format!(r#"{{"web":"{app}:1.4.1"}}"#).as_str())
    );
    assert_eq!(
        annotation(&seen, "tagwatch.dev/rejected").as_deref(),
        Some(r#"{"web":["1.4.2"]}"#)
    );
    let version = seen.metadata.resource_version.clone();
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        get(&cluster, &ns, "web").await.metadata.resource_version,
        version,
        "recorded once, not every round"
    );

    push(&registry, "app", &["1.4.3"]).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    let web = get(&cluster, &ns, "web").await;
    assert_eq!(crate::support::images(&web), vec![format!("{app}:1.4.3")]);
    assert_eq!(
        annotation(&web, "tagwatch.dev/rejected").as_deref(),
        Some(r#"{"web":["1.4.2"]}"#)
    );
}

#[tokio::test]
async fn a_change_between_plan_and_patch_is_never_overwritten() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.2.3", "1.2.4"]).await;
    deployment("web")
        .image(&format!("{app}:1.2.3"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let stale = snapshot(&cluster, &[&ns]).await;
    // A person moves the image after tagwatch read the object.
    set_image(&cluster, &ns, "web", &format!("{app}:1")).await;
    let report = h.poller.round_all(&stale).await;
    // The write decided on the stale object is refused by its guard; tagwatch reads the object
    // again at once and decides on what the person wrote: `app:1` is an alias, so 1.2.4, tracked.
    assert_eq!((report.applied, report.conflicts), (1, 1));
    assert_eq!(h.metric("tagwatch_patch_conflicts_total"), 1.0);
    let web = get(&cluster, &ns, "web").await;
    assert_eq!(crate::support::images(&web), vec![format!("{app}:1.2.4")]);
    assert_eq!(annotation(&web, "tagwatch.dev/track").as_deref(), Some("1"));

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!((report.applied, report.conflicts), (0, 0));
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.2.4"));
}

#[tokio::test]
async fn a_failing_registry_stops_only_its_own_workloads() {
    let (cluster, registry, _) = setup().await;
    let stub = StubRegistry::start().await.expect("stub");
    let mut h = poller(
        &cluster,
        &[registry.host(), stub.host()],
        DockerConfig::default(),
    );
    let ns = cluster.namespace.clone();
    push(&registry, "good", &["1.0.0", "1.1.0"]).await;
    stub.set_tags("bad", ["1.0.0", "1.1.0"]);
    deployment("good")
        .image(&format!("{}/good:1.0.0", registry.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("bad")
        .image(&format!("{}/bad:1.0.0", stub.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;

    for reply in [Reply::Status(500), Reply::Garbage, Reply::Truncated] {
        stub.script("bad", vec![reply.clone()]);
        let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
        assert_eq!(report.listing_failures, 1, "{reply:?}");
        assert_eq!(
            image(&cluster, &ns, "bad").await,
            format!("{}/bad:1.0.0", stub.host()),
            "{reply:?}"
        );
    }
    assert_eq!(
        image(&cluster, &ns, "good").await,
        format!("{}/good:1.1.0", registry.host())
    );
    let backoff = h.metric(&format!(
        "tagwatch_registry_backoff_seconds{{registry=\"{}\"}}",
        stub.host()
    ));
    assert!(backoff > 60.0, "backoff grows after 3 failures: {backoff}");

    // 429 with Retry-After: the repository is not asked again before that time.
    stub.script(
        "bad",
        vec![Reply::TooManyRequests {
            retry_after_secs: 3600,
        }],
    );
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    let before = stub.count("GET", "/v2/bad/tags/list");
    h.poller.round(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(stub.count("GET", "/v2/bad/tags/list"), before);
    assert!(
        h.metric(&format!(
            "tagwatch_registry_rate_limited_total{{registry=\"{}\"}}",
            stub.host()
        )) >= 1.0
    );
}

fn docker_auth(host: &str, user: &str, password: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"{host}":{{"auth":"{auth}"}}}}"#)
}

async fn create_secret(cluster: &TestCluster, name: &str, type_: &str, key: &str, value: String) {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some([(key.to_string(), ByteString(value.into_bytes()))].into()),
        ..Default::default()
    };
    kube::Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&Default::default(), &secret)
        .await
        .expect("create secret");
}

#[tokio::test]
async fn token_auth_through_a_pod_pull_secret_reuses_the_token() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::token("ci", "s3cret-pw").await.expect("registry");
    let mut h = poller(&cluster, &[registry.host()], DockerConfig::default());
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    let config = format!(
        r#"{{"auths":{}}}"#,
        docker_auth(&registry.host(), "ci", "s3cret-pw")
    );
    create_secret(
        &cluster,
        "pull",
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        config,
    )
    .await;
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .pull_secret("pull")
        .create(&cluster, &ns)
        .await;
    let issuer = registry.token_issuer().expect("token registry");
    let before = issuer.token_requests();
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.1.0", registry.host())
    );
    let after_first = issuer.token_requests();
    assert!(after_first > before, "a token was fetched");
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(issuer.token_requests(), after_first, "the token is reused");
}

#[tokio::test]
async fn basic_auth_through_the_service_account_and_none_without_it() {
    use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::basic("ci", "pw-basic").await.expect("registry");
    let mut h = poller(&cluster, &[registry.host()], DockerConfig::default());
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    create_secret(
        &cluster,
        "legacy",
        "kubernetes.io/dockercfg",
        ".dockercfg",
        docker_auth(&registry.host(), "ci", "pw-basic"),
    )
    .await;
    let account = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("builder".into()),
            ..Default::default()
        },
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: "legacy".into(),
        }]),
        ..Default::default()
    };
    kube::Api::<ServiceAccount>::namespaced(cluster.client.clone(), &ns)
        .create(&Default::default(), &account)
        .await
        .expect("create service account");
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .service_account("builder")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.1.0", registry.host())
    );

    // Another repository nobody holds credentials for: refused, reported, not patched.
    push(&registry, "other", &["1.0.0", "1.1.0"]).await;
    deployment("nocreds")
        .image(&format!("{}/other:1.0.0", registry.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.listing_failures, 1);
    assert_eq!(
        image(&cluster, &ns, "nocreds").await,
        format!("{}/other:1.0.0", registry.host())
    );
    assert!(h.metric(r#"tagwatch_updates_total{reason="unauthorized",result="skipped"}"#) >= 1.0);
}

#[tokio::test]
async fn digest_pinning_and_the_digest_policy() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.2.3"]).await;
    let digest = registry
        .push_image("app", "1.2.4", ImageKind::OciIndex)
        .await
        .expect("push");
    // Updates follow each other: each rollout must complete first, with or without pods.
    deployment("pinned")
        .replicas(0)
        .image(&format!("{app}:1.2.3"))
        .policy("patch")
        .annotate("tagwatch.dev/pin", "digest")
        .create(&cluster, &ns)
        .await;
    let first = registry
        .push_image_variant("app", "stable", ImageKind::DockerV2, "a")
        .await
        .expect("push");
    deployment("stable")
        .replicas(0)
        .image(&format!("{app}:stable"))
        .policy("digest")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "pinned").await,
        format!("{app}:1.2.4@{digest}")
    );
    assert_eq!(
        image(&cluster, &ns, "stable").await,
        format!("{app}:stable@{first}")
    );

    let second = registry
        .push_image_variant("app", "stable", ImageKind::DockerV2, "b")
        .await
        .expect("push");
    assert_ne!(first, second);
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "stable").await,
        format!("{app}:stable@{second}")
    );
    registry.sync_log().await.expect("sync");
    assert_eq!(
        registry.count("GET", "/app/manifests/stable"),
        0,
        "digests are read with HEAD, never GET"
    );
}

#[tokio::test]
async fn a_bad_annotation_is_reported_once_and_others_are_served() {
    let (cluster, registry, mut h) = setup().await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("bad")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/match", "v1[")
        .create(&cluster, &ns)
        .await;
    deployment("good")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(image(&cluster, &ns, "good").await, format!("{app}:1.1.0"));
    assert_eq!(image(&cluster, &ns, "bad").await, format!("{app}:1.0.0"));
    let warnings: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "reported once: {warnings:?}");
    assert_eq!(warnings[0].reason.as_deref(), Some("InvalidAnnotation"));
    assert!(warnings[0]
        .note
        .as_deref()
        .unwrap_or_default()
        .contains("tagwatch.dev/match"));
    assert_eq!(
        h.metric(r#"tagwatch_updates_total{reason="invalid_annotation",result="skipped"}"#),
        1.0
    );
}
