//! The other kinds: Events (12), Leases (13), Secrets, ServiceAccounts, Namespaces, unknown paths.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::{Api, ResourceExt};
use serde_json::json;
use tagwatch_testbed::cluster::TestCluster;

use super::api_status;

fn event(namespace: &str, metadata: serde_json::Value) -> Event {
    serde_json::from_value(json!({
        "metadata": metadata,
        "eventTime": "2026-11-21T23:40:00.000000Z",
        "reportingController": "tagwatch.dev/tagwatch",
        "reportingInstance": "tagwatch-0",
        "action": "Update",
        "reason": "ImageUpdated",
        "note": "api: 1.2.4 -> 1.2.5",
        "type": "Normal",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "namespace": namespace}
    }))
    .expect("a valid Event literal")
}

#[tokio::test]
async fn events_k8s_io_create_is_201_and_a_bad_generate_name_is_422() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), ns);

    let created = api
        .create(
            &PostParams::default(),
            &event(ns, json!({"generateName": "api-"})),
        )
        .await?;
    assert!(created.name_any().starts_with("api-") && created.name_any().len() == 9);
    assert!(created.uid().is_some());

    let status = api_status(
        api.create(
            &PostParams::default(),
            &event(ns, json!({"generateName": "api."})),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let details = status.details.expect("details");
    assert_eq!(details.kind, "Event");
    assert_eq!(details.causes[0].field, "metadata.generateName");
    assert!(details.causes[0]
        .message
        .starts_with("Invalid value: \"api.\": a lowercase RFC 1123 subdomain"));

    if let Some(server) = cluster.server() {
        let posts: Vec<u16> = server
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
            .map(|r| r.status)
            .collect();
        assert_eq!(posts, [201, 422]);
    }
    Ok(())
}

#[tokio::test]
async fn kube_recorder_creates_then_patches_a_repeated_event() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let reporter = Reporter {
        controller: "tagwatch".into(),
        instance: Some("tagwatch-0".into()),
    };
    let recorder = Recorder::new(cluster.client.clone(), reporter);
    let regarding = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some("api".into()),
        namespace: Some(cluster.namespace.clone()),
        ..ObjectReference::default()
    };
    let published = RecordedEvent {
        type_: EventType::Normal,
        reason: "ImageUpdated".into(),
        note: Some("1.2.4 -> 1.2.5".into()),
        action: "Update".into(),
        secondary: None,
    };
    recorder.publish(&published, &regarding).await?;
    recorder.publish(&published, &regarding).await?;

    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let events = api.list(&ListParams::default()).await?;
    assert_eq!(events.items.len(), 1);
    let series = events.items[0]
        .series
        .as_ref()
        .expect("a series after the repeat");
    assert_eq!(series.count, 2);
    if let Some(server) = cluster.server() {
        let verbs: Vec<(String, u16)> = server
            .requests()
            .iter()
            .filter(|r| r.path.contains("/events"))
            .map(|r| (r.method.clone(), r.status))
            .collect();
        assert_eq!(
            verbs,
            [
                ("POST".to_string(), 201),
                ("PATCH".to_string(), 200),
                ("GET".to_string(), 200)
            ]
        );
    }
    Ok(())
}

#[tokio::test]
async fn lease_create_conflicts_on_stale_update_and_on_duplicate_create() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "tagwatch"},
        "spec": {"holderIdentity": "tagwatch-0", "leaseDurationSeconds": 15}
    }))?;
    let created = api.create(&PostParams::default(), &lease).await?;
    assert!(created.resource_version().is_some());
    assert_eq!(
        created.metadata.generation, None,
        "13-create-lease has no generation"
    );

    let status = api_status(api.create(&PostParams::default(), &lease).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let mut renewed = created.clone();
    renewed
        .spec
        .get_or_insert_with(Default::default)
        .holder_identity = Some("tagwatch-1".into());
    let updated = api
        .replace("tagwatch", &PostParams::default(), &renewed)
        .await?;
    assert_eq!(
        updated
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some("tagwatch-1")
    );

    // `renewed` still carries the resourceVersion from before the update.
    let status = api_status(
        api.replace("tagwatch", &PostParams::default(), &renewed)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(status
        .message
        .starts_with("Operation cannot be fulfilled on leases.coordination.k8s.io \"tagwatch\""));
    Ok(())
}

#[tokio::test]
async fn secrets_service_accounts_and_namespaces_round_trip() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": "{\"auths\":{}}"}
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    let got = secrets.get("pull").await?;
    let data = got.data.expect("stringData folded into data");
    assert_eq!(data[".dockerconfigjson"].0, b"{\"auths\":{}}");

    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    let account: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "tagwatch"},
        "imagePullSecrets": [{"name": "pull"}]
    }))?;
    accounts.create(&PostParams::default(), &account).await?;
    let got = accounts.get("tagwatch").await?;
    assert_eq!(got.image_pull_secrets.map(|s| s.len()), Some(1));

    let extra = cluster.extra_namespace("extra").await?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let got = namespaces.get(&extra).await?;
    assert_eq!(got.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    Ok(())
}

#[tokio::test]
async fn version_answers_and_unknown_resources_are_404_not_found() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let version = cluster.client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    let path = format!(
        "/apis/apps/v1/namespaces/{}/frobnicators",
        cluster.namespace
    );
    let request = http::Request::get(path).body(Vec::new())?;
    let status = api_status(cluster.client.request::<serde_json::Value>(request).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));

    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let fresh = Namespace {
        metadata: ObjectMeta {
            name: Some(format!("{}-gone", cluster.namespace)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces.create(&PostParams::default(), &fresh).await?;
    namespaces
        .delete(&fresh.name_any(), &Default::default())
        .await?;
    if cluster.server().is_some() {
        assert_eq!(
            api_status(namespaces.get(&fresh.name_any()).await).code,
            404
        );
    }
    Ok(())
}
