//! The test server's own knobs: request log, fault injection, the Deployment controller modes,
//! and `TestCluster` plumbing (kubeconfig for subprocesses).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, ResourceExt};
use serde_json::json;
use tagwatch_testbed::apiserver::{ControllerMode, Fault, ImageHealth};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::{require_running_images, test_server_or_skip, wait};

use super::{api_status, create_deployment, DEADLINE};

#[tokio::test]
async fn request_log_records_method_path_query_type_body_and_status() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(cluster, "the request log is the test server's");
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let ops = json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]);
    let patch: Patch<()> = Patch::Json(serde_json::from_value(ops.clone())?);
    api.patch("api", &PatchParams::default(), &patch).await?;
    api.list(&ListParams::default().labels("app=api").limit(5))
        .await?;
    let _ = api.get("missing").await;

    let log = server.requests();
    let collection = format!("/apis/apps/v1/namespaces/{}/deployments", cluster.namespace);
    let summary: Vec<(&str, &str, u16)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    let item = format!("{collection}/api");
    let missing = format!("{collection}/missing");
    assert_eq!(
        summary,
        [
            ("POST", collection.as_str(), 201),
            ("PATCH", item.as_str(), 200),
            ("GET", collection.as_str(), 200),
            ("GET", missing.as_str(), 404),
        ]
    );
    let patch = &log[1];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(serde_json::from_str::<serde_json::Value>(&patch.body)?, ops);
    assert_eq!(
        log[2].query_param("labelSelector").as_deref(),
        Some("app=api")
    );
    assert_eq!(log[2].query_param("limit").as_deref(), Some("5"));
    assert!(log[0].body.contains("127.0.0.1:5000/api:1.2.3"));

    server.clear_requests();
    assert!(server.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn injected_faults_reach_the_client() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(cluster, "fault injection is the test server's");
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let prefix = "/apis/apps/v1/namespaces/";

    server.inject_fault("GET", prefix, Fault::Status(500), 1);
    let status = api_status(api.get("api").await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    assert!(
        api.get("api").await.is_ok(),
        "a fault fires only the given number of times"
    );

    // kube retries 429 by default, honouring Retry-After: the caller sees success.
    server.clear_requests();
    server.inject_fault("GET", prefix, Fault::Status(429), 1);
    assert!(api.get("api").await.is_ok());
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);

    server.inject_fault("PATCH", prefix, Fault::Drop, 1);
    let patch = Patch::Merge(json!({"spec": {"replicas": 2}}));
    match api.patch("api", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(status)) => {
            panic!("a dropped connection is no API answer: {status:?}")
        }
        Err(_) => {}
        Ok(_) => panic!("a dropped connection must fail"),
    }
    assert_eq!(server.requests().last().map(|r| r.status), Some(0));
    Ok(())
}

/// The Deployment's Progressing reason once the controller has observed its generation.
async fn progressing_reason(api: &Api<Deployment>, name: &str) -> Option<String> {
    let got = api.get(name).await.ok()?;
    let status = got.status?;
    if status.observed_generation != got.metadata.generation {
        return None;
    }
    status
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Progressing")?
        .reason
}

fn ready_pods(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count()
}

#[tokio::test]
async fn a_rollout_completes_only_once_its_pods_are_ready() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let patch = Patch::Merge(json!({"spec": {"replicas": 3}}));
    api.patch("api", &PatchParams::default(), &patch).await?;

    // Nothing runs until a test says so, like an unpullable image on a real cluster: the
    // rollout stays in progress and no pod is Ready.
    let reason = wait::until("the rollout observed", DEADLINE, || async {
        progressing_reason(&api, "api")
            .await
            .filter(|r| r == "ReplicaSetUpdated" || r == "NewReplicaSetCreated")
    })
    .await?;
    assert_ne!(reason, "NewReplicaSetAvailable");
    let status = api.get("api").await?.status.expect("status");
    assert_eq!(status.ready_replicas.unwrap_or(0), 0);
    assert_eq!(status.available_replicas.unwrap_or(0), 0);
    let listed = pods.list(&ListParams::default().labels("app=api")).await?;
    assert_eq!(ready_pods(&listed.items), 0);

    require_running_images!(cluster);
    wait::until("the rollout complete", DEADLINE, || async {
        (progressing_reason(&api, "api").await.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(())
    })
    .await?;
    let got = api.get("api").await?;
    let status = got.status.clone().expect("status");
    for count in [
        status.replicas,
        status.updated_replicas,
        status.ready_replicas,
        status.available_replicas,
    ] {
        assert_eq!(count, Some(3));
    }
    assert_eq!(
        got.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let listed = pods.list(&ListParams::default().labels("app=api")).await?;
    assert_eq!((listed.items.len(), ready_pods(&listed.items)), (3, 3));
    for pod in &listed.items {
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(
            status
                .container_statuses
                .as_ref()
                .map(|c| c[0].restart_count),
            Some(0)
        );
        assert_eq!(pod.owner_references()[0].kind, "ReplicaSet");
    }

    // A new image replaces the pods and bumps the revision.
    let old: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
    let patch = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "127.0.0.1:5000/api:1.2.4"}
    ]}}}}));
    api.patch("api", &PatchParams::default(), &patch).await?;
    let new = wait::until("the new pods alone", DEADLINE, || async {
        let items = pods
            .list(&ListParams::default().labels("app=api"))
            .await
            .ok()?
            .items;
        let fresh = items.iter().all(|p| !old.contains(&p.name_any()));
        (items.len() == 3 && fresh && ready_pods(&items) == 3).then_some(items)
    })
    .await?;
    assert_eq!(new.len(), 3);
    let revision = api
        .get("api")
        .await?
        .annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned();
    assert_eq!(revision.as_deref(), Some("2"));
    Ok(())
}

#[tokio::test]
async fn old_pods_keep_serving_while_a_new_version_is_not_ready() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    require_running_images!(cluster);
    wait::until("the first rollout complete", DEADLINE, || async {
        (progressing_reason(&api, "api").await.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(())
    })
    .await?;
    let server = test_server_or_skip!(
        cluster,
        "a real cluster cannot be told that one version's pods never start"
    );
    server.set_image_health("127.0.0.1:5000/api:1.2.4", ImageHealth::Pending);
    let patch = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "127.0.0.1:5000/api:1.2.4"}
    ]}}}}));
    api.patch("api", &PatchParams::default(), &patch).await?;

    let got = api.get("api").await?;
    let status = got.status.expect("status");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.unavailable_replicas
        ),
        (Some(2), Some(1), Some(1), None)
    );
    assert_eq!(
        progressing_reason(&api, "api").await.as_deref(),
        Some("ReplicaSetUpdated")
    );
    let listed = pods.list(&ListParams::default().labels("app=api")).await?;
    assert_eq!((listed.items.len(), ready_pods(&listed.items)), (2, 1));

    // The test says the new version's pods start: the old pod goes, the rollout completes.
    server.set_image_health("127.0.0.1:5000/api:1.2.4", ImageHealth::Ready);
    assert_eq!(
        progressing_reason(&api, "api").await.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let listed = pods.list(&ListParams::default().labels("app=api")).await?;
    assert_eq!((listed.items.len(), ready_pods(&listed.items)), (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_deployment_scaled_to_zero_completes_at_once() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut zero = super::deployment("api", "127.0.0.1:5000/api:1.2.3");
    if let Some(spec) = zero.spec.as_mut() {
        spec.replicas = Some(0);
    }
    api.create(&Default::default(), &zero).await?;
    wait::until("the rollout of zero complete", DEADLINE, || async {
        (progressing_reason(&api, "api").await.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(())
    })
    .await?;
    let patch = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "127.0.0.1:5000/api:1.2.4"}
    ]}}}}));
    let patched = api.patch("api", &PatchParams::default(), &patch).await?;
    wait::until("the second rollout of zero complete", DEADLINE, || async {
        let got = api.get("api").await.ok()?;
        let observed = got.status.as_ref()?.observed_generation;
        (observed == patched.metadata.generation
            && progressing_reason(&api, "api").await.as_deref() == Some("NewReplicaSetAvailable"))
        .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn manual_controller_lets_tests_stall_rollouts_and_break_pods() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(cluster, "the controller modes are the test server's");
    let ns = cluster.namespace.as_str();
    server.set_controller(ControllerMode::Manual);
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let created = create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    assert_eq!(
        api.get("api")
            .await?
            .status
            .and_then(|s| s.observed_generation),
        None
    );
    assert!(server.pods(ns).is_empty());

    let stuck = DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        unavailable_replicas: Some(1),
        conditions: Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"api-x\" has timed out progressing.".into()),
            ..DeploymentCondition::default()
        }]),
        ..DeploymentStatus::default()
    };
    server.set_deployment_status(ns, "api", stuck)?;
    let got = api.get("api").await?;
    assert_eq!(got.metadata.generation, Some(1));
    assert!(super::rv_number(&got) > super::rv_number(&created));
    let reason = got
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c[0].reason.clone());
    assert_eq!(reason.as_deref(), Some("ProgressDeadlineExceeded"));

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "api-abc-0", "namespace": ns, "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "127.0.0.1:5000/api:1.2.3"}]}
    }))?;
    server.put_pod(&pod)?;
    server.set_pod_ready(ns, "api-abc-0", false)?;
    server.set_pod_restarts(ns, "api-abc-0", 4)?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let got = pods.get("api-abc-0").await?;
    let status = got.status.expect("pod status");
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status.as_str()), Some("False"));
    let container = &status.container_statuses.expect("container statuses")[0];
    assert_eq!((container.ready, container.restart_count), (false, 4));

    server.set_controller(ControllerMode::Instant);
    let status = api.get("api").await?.status.expect("status");
    assert_eq!(
        (status.updated_replicas, status.ready_replicas),
        (Some(1), None)
    );
    server.set_default_image_health(ImageHealth::Ready);
    let observed = api.get("api").await?.status.and_then(|s| s.ready_replicas);
    assert_eq!(observed, Some(1));
    Ok(())
}

#[tokio::test]
async fn kubeconfig_points_a_fresh_client_at_the_cluster() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;

    // The root crate has no tempfile: a directory named after the unique namespace will do.
    let dir = std::env::temp_dir().join(&cluster.namespace);
    std::fs::create_dir_all(&dir)?;
    let path = cluster.kubeconfig(&dir)?;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let other: Api<Deployment> = Api::namespaced(client, &cluster.namespace);
    let got = other.get("api").await;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(got?.name_any(), "api");
    Ok(())
}

/// Waits until the test server has seen a watch request on `collection`, so a write made next is
/// certain to be streamed rather than raced.
pub(super) async fn wait_for_watch(
    server: &tagwatch_testbed::apiserver::ApiServer,
    collection: &str,
) -> anyhow::Result<()> {
    tagwatch_testbed::wait::until("a watch request", super::DEADLINE, || async {
        let seen = server
            .requests()
            .iter()
            .any(|r| r.path == collection && r.is_watch());
        seen.then_some(())
    })
    .await
}
