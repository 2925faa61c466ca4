//! PATCH and validation: 04 (test op fails), 05 (guarded patch), 06 (stale merge patch),
//! 07 (bad path), 08 (empty image), 09 (unsupported patch type), 29 (add into a missing map),
//! 30 (server-side apply).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::test_server_or_skip;

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
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    // An opted-in workload always has an annotations map to `add` into (see 29 for one without).
    let mut opted_in = super::deployment("api", IMAGE);
    opted_in
        .annotations_mut()
        .insert("tagwatch.dev/policy".into(), "minor".into());
    let before = api.create(&Default::default(), &opted_in).await?;
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
    crate::support::assert_unchanged(&before, &after);
    Ok(())
}

#[tokio::test]
async fn json_patch_add_into_a_missing_annotations_map_is_422() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    // As in 29: no controller writes ConfigMaps, so nothing adds the map between create and patch.
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let plain: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "plain"}, "data": {"a": "b"}
    }))?;
    let before = api.create(&Default::default(), &plain).await?;
    assert!(before.metadata.annotations.is_none());
    let patch = json_patch(json!([
        {"op": "add", "path": "/metadata/annotations/tagwatch.dev~1applied", "value": "x"}
    ]));
    let status = api_status(api.patch("plain", &PatchParams::default(), &patch).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "the server rejected our request due to an error in our request"
    );
    assert!(status.details.is_none_or(|d| d.causes.is_empty()));
    let after = api.get("plain").await?;
    assert!(after.metadata.annotations.is_none());
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

/// The managers that own a field of `object`, by the field's FieldsV1 key under `spec`.
fn owners_of_spec_field(object: &Deployment, field: &str) -> Vec<(String, String)> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get(field).is_some())
        })
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_default(),
                entry.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_conflicts_unless_forced() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let config = |replicas: i32| {
        let mut d = super::deployment("applied", IMAGE);
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        d
    };
    // Apply upserts: the first apply creates, and records its manager.
    let created = api
        .patch(
            "applied",
            &PatchParams::apply("ci"),
            &Patch::Apply(config(2)),
        )
        .await?;
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        owners_of_spec_field(&created, "f:replicas"),
        [("ci".to_string(), "Apply".to_string())]
    );

    // Another manager takes the field with an ordinary patch.
    let scale = Patch::Merge(json!({"spec": {"replicas": 3}}));
    let scaled = api
        .patch(
            "applied",
            &PatchParams {
                field_manager: Some("hpa".into()),
                ..PatchParams::default()
            },
            &scale,
        )
        .await?;
    assert_eq!(
        owners_of_spec_field(&scaled, "f:replicas"),
        [("hpa".to_string(), "Update".to_string())]
    );

    // Re-applying the old value now conflicts with that manager, and changes nothing.
    let status = api_status(
        api.patch(
            "applied",
            &PatchParams::apply("ci"),
            &Patch::Apply(config(2)),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("conflict with \"hpa\"")
            && status.message.contains(".spec.replicas"),
        "{}",
        status.message
    );
    let details = status.details.expect("details");
    assert_eq!(details.causes[0].reason, "FieldManagerConflict");
    assert_eq!(details.causes[0].field, ".spec.replicas");
    assert_eq!(
        api.get("applied").await?.spec.and_then(|s| s.replicas),
        Some(3)
    );

    // Forced, the applier wins the field back.
    let forced = api
        .patch(
            "applied",
            &PatchParams::apply("ci").force(),
            &Patch::Apply(config(2)),
        )
        .await?;
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        owners_of_spec_field(&forced, "f:replicas"),
        [("ci".to_string(), "Apply".to_string())]
    );
    Ok(())
}

#[tokio::test]
async fn an_apply_body_without_kind_is_400_and_an_unknown_patch_type_415() -> anyhow::Result<()> {
    let (cluster, api) = setup().await?;
    let kindless = Patch::Apply(json!({"spec": {"replicas": 2}}));
    let status = api_status(
        api.patch("api", &PatchParams::apply("test"), &kindless)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(api.get("api").await?.spec.and_then(|s| s.replicas), Some(1));

    let server = test_server_or_skip!(
        cluster,
        "sends a raw text/plain PATCH, which needs the test server's unauthenticated URL"
    );
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
