//! Deleting with preconditions, and the garbage collector: what a deleted object owned goes with
//! it, whatever its kind (a Deployment owned by a Deployment, a ConfigMap), unless another owner
//! remains or the delete orphans it. The real collector works in the background: every assertion
//! waits.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::wait::until;

use super::{api_status, deployment, DEADLINE};

fn owner_reference(owner: &impl ResourceExt, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": owner.name_any(),
        "uid": owner.uid().expect("a stored object has a uid")
    })
}

/// A Deployment of zero replicas (no pods, on a real cluster too), owned by `owners`.
async fn owned_deployment(api: &Api<Deployment>, name: &str, owners: Vec<Value>) -> Deployment {
    let mut value = serde_json::to_value(deployment(name, "registry.example/app:1.0.0"))
        .expect("a Deployment serializes");
    value["spec"]["replicas"] = json!(0);
    value["metadata"]["ownerReferences"] = json!(owners);
    let object: Deployment = serde_json::from_value(value).expect("a valid Deployment");
    api.create(&PostParams::default(), &object)
        .await
        .expect("creating a Deployment")
}

async fn config_map(api: &Api<ConfigMap>, name: &str, owners: Vec<Value>) -> ConfigMap {
    let object: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "data": {"k": "v"}
    }))
    .expect("a valid ConfigMap");
    api.create(&PostParams::default(), &object)
        .await
        .expect("creating a ConfigMap")
}

#[tokio::test]
async fn deleting_an_owner_collects_what_it_owns_of_any_kind() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let owner = owned_deployment(&deployments, "web", vec![]).await;
    let by_owner = || vec![owner_reference(&owner, "apps/v1", "Deployment")];
    owned_deployment(&deployments, "web-canary", by_owner()).await;
    config_map(&maps, "web-settings", by_owner()).await;
    let keeper = config_map(&maps, "keeper", vec![]).await;
    let shared = config_map(
        &maps,
        "shared",
        vec![
            owner_reference(&owner, "apps/v1", "Deployment"),
            owner_reference(&keeper, "v1", "ConfigMap"),
        ],
    )
    .await;
    let bystander = owned_deployment(&deployments, "api", vec![]).await;

    deployments
        .delete("web", &DeleteParams::background())
        .await?;
    until("the dependents collected", DEADLINE, || async {
        let canary = deployments.get_opt("web-canary").await.ok()?;
        let settings = maps.get_opt("web-settings").await.ok()?;
        (canary.is_none() && settings.is_none()).then_some(())
    })
    .await?;
    // Another owner remains: the object stays, without the reference to the deleted owner.
    let still_shared = until("the dangling reference dropped", DEADLINE, || async {
        let got = maps.get_opt("shared").await.ok()??;
        (got.owner_references().len() == 1).then_some(got)
    })
    .await?;
    assert_eq!(still_shared.uid(), shared.uid());
    assert_eq!(
        still_shared.owner_references()[0].uid,
        keeper.uid().expect("uid")
    );
    assert_eq!(
        deployments.get("api").await?.uid(),
        bystander.uid(),
        "an object the owner does not own stays"
    );
    Ok(())
}

#[tokio::test]
async fn an_orphaning_delete_leaves_the_dependents_without_the_owner_reference(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let owner = owned_deployment(&deployments, "web", vec![]).await;
    let dependent = owned_deployment(
        &deployments,
        "web-canary",
        vec![owner_reference(&owner, "apps/v1", "Deployment")],
    )
    .await;
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    deployments.delete("web", &orphan).await?;
    let orphaned = until(
        "the owner gone, its dependent orphaned",
        DEADLINE,
        || async {
            let owner_gone = deployments.get_opt("web").await.ok()?.is_none();
            let got = deployments.get_opt("web-canary").await.ok()??;
            (owner_gone && got.owner_references().is_empty()).then_some(got)
        },
    )
    .await?;
    assert_eq!(orphaned.uid(), dependent.uid());
    Ok(())
}

#[tokio::test]
async fn a_delete_whose_preconditions_fail_is_409_conflict_and_deletes_nothing(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let created = owned_deployment(&deployments, "web-canary", vec![]).await;
    let uid = created.uid().expect("uid");
    let guarded = |preconditions: Preconditions| DeleteParams {
        preconditions: Some(preconditions),
        ..DeleteParams::background()
    };

    let wrong_uid = guarded(Preconditions {
        uid: Some("8b0c1e5e-0000-4000-8000-000000000000".into()),
        ..Preconditions::default()
    });
    let status = api_status(deployments.delete("web-canary", &wrong_uid).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status
            .message
            .starts_with("Operation cannot be fulfilled on deployments.apps \"web-canary\": ")
            && status.message.contains(&format!(
                "Precondition failed: UID in precondition: 8b0c1e5e-0000-4000-8000-000000000000, \
             UID in object meta: {uid}"
            )),
        "{}",
        status.message
    );

    let stale_version = guarded(Preconditions {
        resource_version: Some("1".into()),
        ..Preconditions::default()
    });
    let status = api_status(deployments.delete("web-canary", &stale_version).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status
            .message
            .contains("Precondition failed: ResourceVersion in precondition: 1, "),
        "{}",
        status.message
    );
    assert_eq!(
        deployments.get("web-canary").await?.uid(),
        Some(uid.clone()),
        "nothing deleted"
    );

    let right_uid = guarded(Preconditions {
        uid: Some(uid.clone()),
        ..Preconditions::default()
    });
    let deleted = deployments.delete("web-canary", &right_uid).await?;
    let uid_answered = deleted.either(|d| d.uid(), |s| s.details.map(|d| d.uid));
    assert_eq!(uid_answered, Some(uid));
    until("the Deployment gone", DEADLINE, || async {
        deployments
            .get_opt("web-canary")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await?;
    Ok(())
}
