//! PATCH and validation: 04 (test op fails), 05 (guarded patch), 06 (stale merge patch),
//! 07 (bad path), 08 (empty image), 09 (unsupported patch type).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tagwatch_testbed::cluster::TestCluster;

use super::{api_status, create_deployment, image_of, rv_number};

const IMAGE: &str = "127.0.0.1:5000/api:1.2.3";

fn json_patch(ops: serde_json::Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).expect("a valid JSON Patch"))
}

async fn setup() -> anyhow::Result<(TestCluster, Api<Deployment>)> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", IMAGE).await;
    Ok((cluster, api))
}

#[tokio::test]
async fn guarded_json_patch_updates_image_and_bumps_generation() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let before = api.get("api").await?;
    let patch = json_patch(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": IMAGE},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "127.0.0.1:5000/api:1.2.4"},
        {"op": "add", "path": "/metadata/annotations/tagwatch.dev~1applied", "value": "1.2.4"}
    ]));
    let after = api.patch("api", &PatchParams::default(), &patch).await?;
    assert_eq!(image_of(&after), "127.0.0.1:5000/api:1.2.4");
    assert_eq!(
        after.metadata.generation,
        Some(before.metadata.generation.unwrap_or(0) + 1)
    );
    assert!(rv_number(&after) > rv_number(&before));
    assert_eq!(
        after
            .annotations()
            .get("tagwatch.dev/applied")
            .map(String::as_str),
        Some("1.2.4")
    );
    assert_eq!(after.uid(), before.uid());
    Ok(())
}

#[tokio::test]
async fn failing_test_op_is_422_invalid_and_changes_nothing() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let before = api.get("api").await?;
    let patch = json_patch(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "127.0.0.1:5000/api:9.9.9"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "127.0.0.1:5000/api:1.2.4"}
    ]));
    let status = api_status(api.patch("api", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "the server rejected our request due to an error in our request"
    );
    let after = api.get("api").await?;
    assert_eq!(image_of(&after), IMAGE);
    assert_eq!(after.resource_version(), before.resource_version());
    Ok(())
}

#[tokio::test]
async fn json_patch_on_a_missing_path_is_422() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let patch = json_patch(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/5/image", "value": "x:1"}
    ]));
    let status = api_status(api.patch("api", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    Ok(())
}

#[tokio::test]
async fn merge_patch_with_a_stale_resource_version_is_409_conflict() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let patch =
        Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}}));
    let status = api_status(api.patch("api", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    assert_eq!(api.get("api").await?.spec.and_then(|s| s.replicas), Some(1));

    // With the current resourceVersion the same patch goes through.
    let current = api.get("api").await?.resource_version();
    let patch =
        Patch::Merge(json!({"metadata": {"resourceVersion": current}, "spec": {"replicas": 3}}));
    let patched = api.patch("api", &PatchParams::default(), &patch).await?;
    assert_eq!(patched.spec.and_then(|s| s.replicas), Some(3));
    Ok(())
}

#[tokio::test]
async fn unsupported_patch_type_is_415() -> anyhow::Result<()> {
    let (cluster, api) = setup().await?;
    let apply = Patch::Apply(json!({"spec": {"replicas": 2}}));
    let status = api_status(api.patch("api", &PatchParams::apply("test"), &apply).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (415, "UnsupportedMediaType")
    );

    if let Some(server) = cluster.server() {
        let url = format!(
            "{}/apis/apps/v1/namespaces/{}/deployments/api",
            server.url(),
            cluster.namespace
        );
        let response = reqwest::Client::new()
            .patch(url)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 415);
        let body: serde_json::Value = response.json().await?;
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["message"], "415: Unsupported Media Type");
        assert_eq!(body["code"], 415);
    }
    Ok(())
}

#[tokio::test]
async fn empty_image_is_422_with_field_causes() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let patch = json_patch(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": ""}
    ]));
    let status = api_status(api.patch("api", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Deployment.apps \"api\" is invalid: spec.template.spec.containers[0].image: Required value"
    );
    let details = status.details.expect("details");
    assert_eq!(details.kind, "Deployment");
    let cause = &details.causes[0];
    assert_eq!(cause.reason, "FieldValueRequired");
    assert_eq!(cause.field, "spec.template.spec.containers[0].image");
    assert_eq!(image_of(&api.get("api").await?), IMAGE);
    Ok(())
}

#[tokio::test]
async fn stale_put_conflicts_and_metadata_only_change_keeps_generation() -> anyhow::Result<()> {
    let (_cluster, api) = setup().await?;
    let original = api.get("api").await?;
    let mut labelled = original.clone();
    labelled.labels_mut().insert("team".into(), "core".into());
    let replaced = api.replace("api", &Default::default(), &labelled).await?;
    assert_eq!(replaced.metadata.generation, original.metadata.generation);

    let status = api_status(api.replace("api", &Default::default(), &original).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    Ok(())
}
