//! A shared cluster: tenants with their own (or no, or wrong) credentials on the same repository,
//! a person's edit racing a decision, a write the API server refuses, a registry not allowed.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::Api;
use tagwatch::registry::egress::AllowList;
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::apiserver::Fault;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::test_server_or_skip;

use crate::support::{
    annotation, deployment, events, get, image, poller, poller_with, push, snapshot,
};

fn docker_config(host: &str, user: &str, password: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

async fn pull_secret(cluster: &TestCluster, namespace: &str, name: &str, config: String) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(config.into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.client.clone(), namespace)
        .create(&Default::default(), &secret)
        .await
        .expect("create secret");
}

/// Event notes in a namespace, for what they reveal.
async fn notes(cluster: &TestCluster, namespace: &str) -> String {
    events(cluster, namespace)
        .await
        .iter()
        .filter_map(|e| e.note.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_workload_is_decided_only_from_a_listing_made_with_its_own_credentials() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::basic("team-a", "a-secret")
        .await
        .expect("registry");
    let host = registry.host();
    let mut h = poller(
        &cluster,
        std::slice::from_ref(&host),
        DockerConfig::default(),
    );
    push(&registry, "private/app", &["1.0.0", "1.1.0"]).await;
    let owner = cluster.namespace.clone();
    let nosy = cluster.extra_namespace("nosy").await.expect("namespace");
    let bogus = cluster.extra_namespace("bogus").await.expect("namespace");
    // The owner pulls with its credentials; a second tenant names the same private repository
    // with none; a third with a wrong password.
    pull_secret(
        &cluster,
        &owner,
        "pull",
        docker_config(&host, "team-a", "a-secret"),
    )
    .await;
    pull_secret(
        &cluster,
        &bogus,
        "pull",
        docker_config(&host, "team-a", "guess"),
    )
    .await;
    let image_at = |tag: &str| format!("{host}/private/app:{tag}");
    for (namespace, secret) in [
        (&owner, Some("pull")),
        (&nosy, None),
        (&bogus, Some("pull")),
    ] {
        // Two releases follow each other: each rollout must complete, with or without pods.
        let mut web = deployment("web")
            .replicas(0)
            .image(&image_at("1.0.0"))
            .policy("minor");
        if let Some(secret) = secret {
            web = web.pull_secret(secret);
        }
        web.create(&cluster, namespace).await;
    }

    let report = h
        .poller
        .round_all(&snapshot(&cluster, &[&owner, &nosy, &bogus]).await)
        .await;
    // One listing per login: the owner's succeeds; anonymous and the wrong password are refused.
    assert_eq!((report.listed, report.listing_failures), (1, 2));
    assert_eq!(image(&cluster, &owner, "web").await, image_at("1.1.0"));
    assert_eq!(image(&cluster, &nosy, "web").await, image_at("1.0.0"));
    assert_eq!(image(&cluster, &bogus, "web").await, image_at("1.0.0"));
    for namespace in [&nosy, &bogus] {
        let web = get(&cluster, namespace, "web").await;
        assert_eq!(annotation(&web, "tagwatch.dev/applied"), None);
        assert_eq!(annotation(&web, "tagwatch.dev/history"), None);
        let told = notes(&cluster, namespace).await;
        assert!(
            !told.contains("1.1.0"),
            "{namespace} learnt of 1.1.0: {told}"
        );
    }
    // A newer release reaches the owner, while the refused logins back off on their own: the
    // owner's listing is not held back by them.
    push(&registry, "private/app", &["1.2.0"]).await;
    let report = h
        .poller
        .round_all(&snapshot(&cluster, &[&owner, &nosy, &bogus]).await)
        .await;
    assert!(report.listed >= 1, "{report:?}");
    assert_eq!(image(&cluster, &owner, "web").await, image_at("1.2.0"));
    assert_eq!(image(&cluster, &nosy, "web").await, image_at("1.0.0"));
    assert_eq!(image(&cluster, &bogus, "web").await, image_at("1.0.0"));
}

#[tokio::test]
async fn a_persons_edit_made_while_a_round_listed_always_wins() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let mut h = poller(&cluster, &[registry.host()], DockerConfig::default());
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    for name in ["off", "rejects"] {
        deployment(name)
            .image(&format!("{app}:1.0.0"))
            .policy("minor")
            .create(&cluster, &ns)
            .await;
    }
    // tagwatch read the objects (the round's snapshot); then people edit them.
    let stale = snapshot(&cluster, &[&ns]).await;
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), &ns);
    let annotate = |key: &str, value: &str| {
        Patch::Merge(serde_json::json!({"metadata": {"annotations": {key: value}}}))
    };
    api.patch(
        "off",
        &PatchParams::default(),
        &annotate("tagwatch.dev/policy", "off"),
    )
    .await
    .expect("opt out");
    api.patch(
        "rejects",
        &PatchParams::default(),
        &annotate("tagwatch.dev/rejected", "1.1.0"),
    )
    .await
    .expect("reject 1.1.0");

    let report = h.poller.round_all(&stale).await;
    assert_eq!(report.applied, 0, "{report:?}");
    assert_eq!(report.conflicts, 2, "both writes met the person's edit");
    assert_eq!(image(&cluster, &ns, "off").await, format!("{app}:1.0.0"));
    assert_eq!(
        image(&cluster, &ns, "rejects").await,
        format!("{app}:1.0.0")
    );
    let rejects = get(&cluster, &ns, "rejects").await;
    assert_eq!(
        annotation(&rejects, "tagwatch.dev/rejected").as_deref(),
        Some("1.1.0"),
        "the person's entry stands as written"
    );
    assert_eq!(
        annotation(&get(&cluster, &ns, "off").await, "tagwatch.dev/policy").as_deref(),
        Some("off")
    );
}

#[tokio::test]
async fn a_refused_write_is_reported_once_and_not_resent_until_something_changes() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "a refusing admission policy is injected by the test server");
    let registry = Registry::anonymous().await.expect("registry");
    let mut h = poller(&cluster, &[registry.host()], DockerConfig::default());
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let item = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    server.inject_fault(
        "PATCH",
        &item,
        Fault::AdmissionDenied("images tagged 1.1.0 are not allowed here".into()),
        100,
    );
    let patches = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == item)
            .count()
    };

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        (report.applied, report.refused, report.conflicts),
        (0, 1, 0)
    );
    assert_eq!(patches(), 1, "sent once, not retried as a conflict");
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    for _ in 0..2 {
        let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
        assert_eq!(report.refused, 0);
    }
    assert_eq!(patches(), 1, "not resent while nothing changed");
    let refusals: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("UpdateRefused"))
        .collect();
    assert_eq!(refusals.len(), 1, "one Event");
    assert_eq!(refusals[0].type_.as_deref(), Some("Warning"));
    let note = refusals[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("images tagged 1.1.0 are not allowed here"),
        "{note}"
    );
    assert!(
        h.metric(r#"tagwatch_updates_total{reason="refused",result="failed"}"#) >= 1.0,
        "{}",
        h.metrics()
    );

    // A newer candidate is a new decision: tried (and, the policy lifted, written).
    push(&registry, "app", &["1.2.0"]).await;
    server.clear_faults();
    // The rollout of 1.0.0 was never started by tagwatch: nothing holds the next decision.
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(patches(), 2);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.2.0"));
}

#[tokio::test]
async fn images_outside_allowed_registries_are_skipped_and_reported() {
    let cluster = TestCluster::start().await.expect("cluster");
    let allowed = Registry::anonymous().await.expect("registry");
    let other = Registry::anonymous().await.expect("registry");
    let hosts = [allowed.host(), other.host()];
    let allow = AllowList::new([allowed.host()]).expect("allow-list");
    let mut h = poller_with(&cluster, &hosts, DockerConfig::default(), |ctx| {
        ctx.allowed_registries = Some(allow);
    });
    let ns = cluster.namespace.clone();
    push(&allowed, "app", &["1.0.0", "1.1.0"]).await;
    push(&other, "app", &["1.0.0", "1.1.0"]).await;
    deployment("inside")
        .image(&format!("{}/app:1.0.0", allowed.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("outside")
        .image(&format!("{}/app:1.0.0", other.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.listed, 1, "{report:?}");
    assert_eq!(
        image(&cluster, &ns, "inside").await,
        format!("{}/app:1.1.0", allowed.host())
    );
    assert_eq!(
        image(&cluster, &ns, "outside").await,
        format!("{}/app:1.0.0", other.host())
    );
    other.sync_log().await.expect("sync");
    assert_eq!(other.count("GET", "/app/tags/list"), 0, "no request to it");
    let warnings: Vec<_> = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RegistryNotAllowed"))
        .collect();
    assert_eq!(warnings.len(), 1);
    let note = warnings[0].note.clone().unwrap_or_default();
    assert!(note.contains(&other.host()), "{note}");
    // Reported once, not every round.
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    let again = events(&cluster, &ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RegistryNotAllowed"))
        .count();
    assert_eq!(again, 1);
}
