//! Kinds served from CustomResourceDefinitions (25, 28), what answers when the CRD is absent
//! (26), and discovery (27), as `../shared/apiserver-wire` records them. CRDs are created through
//! the API, so this runs on a real cluster too where the credentials may create CRDs.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Discovery, Scope};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tagwatch_testbed::apiserver::{CustomKind, MANAGED_BY};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::wait::until;

use super::{api_status, DEADLINE};

/// Reports `test` (a function of this module) skipped, in the skip log CI prints.
fn skipped(test: &str, reason: &str) {
    let module = module_path!().trim_start_matches("e2e::");
    tagwatch_testbed::skip::report(
        &format!("{module}::{test}"),
        reason,
        env!("CARGO_TARGET_TMPDIR"),
    );
}

/// Whose CRD a test works with.
#[derive(Debug, PartialEq)]
enum Installed {
    /// Made by the test bed (now or by an earlier run): nothing else acts on its objects.
    Ours,
    /// Installed by someone else (Argo itself): its controller may write status.
    Theirs,
}

/// Creates the CRD (or finds it installed) and waits until its kind is served. `None`: the
/// credentials may not create CRDs, and the test is skipped.
async fn install(
    cluster: &TestCluster,
    kind: &CustomKind,
    test: &str,
) -> anyhow::Result<Option<Installed>> {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let installed = match crds
        .create(&PostParams::default(), &kind.definition()?)
        .await
    {
        Ok(_) => Installed::Ours,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = crds.get(&kind.crd_name()).await?;
            let manager = existing.labels().get("app.kubernetes.io/managed-by");
            if manager.map(String::as_str) == Some(MANAGED_BY) {
                Installed::Ours
            } else {
                Installed::Theirs
            }
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            skipped(test, &format!("may not create CRDs: {}", status.message));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
    until("the CRD's kind to be served", DEADLINE, || async {
        discovery::pinned_kind(&cluster.client, &gvk).await.ok()
    })
    .await?;
    Ok(Some(installed))
}

/// The Rollout of 25, before it is stored.
fn rollout(kind: &CustomKind, spec: &Value) -> DynamicObject {
    let mut object = DynamicObject::new("ro", &kind.api_resource()).data(json!({"spec": spec}));
    object
        .annotations_mut()
        .insert("tagwatch.dev/policy".into(), "minor".into());
    object
}

fn rollout_spec(image: &str) -> Value {
    json!({
        "replicas": 1,
        "selector": {"matchLabels": {"app": "ro"}},
        "template": {
            "metadata": {"labels": {"app": "ro"}},
            "spec": {"containers": [{"image": image, "name": "app"}]}
        }
    })
}

#[tokio::test]
async fn custom_resource_is_stored_as_sent_and_patched_like_25_28() -> anyhow::Result<()> {
    let test = "custom_resource_is_stored_as_sent_and_patched_like_25_28";
    let cluster = TestCluster::start().await?;
    let kind = CustomKind::argo_rollouts();
    match install(&cluster, &kind, test).await? {
        Some(Installed::Ours) => {}
        Some(Installed::Theirs) => {
            skipped(
                test,
                "Argo Rollouts is installed here: its controller writes status",
            );
            return Ok(());
        }
        None => return Ok(()),
    }
    // On a real cluster the CRD stays installed: other tests (and runs) share it.
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &kind.api_resource(),
    );
    let sent = rollout_spec("registry.example/ro:1.0.0");
    api.create(&PostParams::default(), &rollout(&kind, &sent))
        .await?;

    let got = api.get("ro").await?;
    assert_eq!(got.metadata.generation, Some(1));
    assert_eq!(got.data["spec"], sent, "25: no defaulting");
    assert!(
        got.data.get("status").is_none(),
        "25: no status until Argo writes one"
    );
    let types = got.types.clone().expect("apiVersion and kind");
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("argoproj.io/v1alpha1", "Rollout")
    );

    let patch: Patch<()> = Patch::Json(serde_json::from_value(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "registry.example/ro:1.0.0"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example/ro:1.1.0"}
    ]))?);
    let patched = api.patch("ro", &PatchParams::default(), &patch).await?;
    assert_eq!(patched.metadata.generation, Some(2), "28: generation bumps");
    assert_eq!(
        patched.data["spec"],
        rollout_spec("registry.example/ro:1.1.0")
    );
    assert!(patched.data.get("status").is_none());
    let status = api_status(api.patch("ro", &PatchParams::default(), &patch).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "a failed guard, like 04"
    );

    // Metadata and status do not count for generation; the main resource cannot write status.
    let label = Patch::Merge(
        json!({"metadata": {"labels": {"team": "core"}}, "status": {"phase": "Healthy"}}),
    );
    let labelled = api.patch("ro", &PatchParams::default(), &label).await?;
    assert_eq!(labelled.metadata.generation, Some(2));
    assert!(labelled.data.get("status").is_none());
    let status = Patch::Merge(json!({"status": {"phase": "Healthy"}}));
    let reported = api
        .patch_status("ro", &PatchParams::default(), &status)
        .await?;
    assert_eq!(reported.metadata.generation, Some(2));
    assert_eq!(reported.data["status"], json!({"phase": "Healthy"}));

    if let Some(server) = cluster.server() {
        // Only the test server: the seeding helper writes status as the operator would.
        server.set_custom_status(
            &kind,
            &cluster.namespace,
            "ro",
            json!({"phase": "Degraded"}),
        )?;
        assert_eq!(
            api.get("ro").await?.data["status"],
            json!({"phase": "Degraded"})
        );
    }
    Ok(())
}

#[tokio::test]
async fn absent_crd_paths_are_plain_text_404_like_26() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = &cluster.namespace;
    let absent = [
        format!("/apis/example.dev/v1/namespaces/{ns}/widgets"),
        "/apis/example.dev/v1".to_string(),
    ];
    for path in &absent {
        let request = http::Request::get(path.as_str()).body(Vec::new())?;
        let status = api_status(cluster.client.request::<Value>(request).await);
        // kube makes a Status of a body that is none: the text is the message.
        assert_eq!(
            (status.code, status.message.as_str()),
            (404, "404 page not found"),
            "{path}"
        );
    }
    // A served group/version without the resource is a JSON NotFound Status instead.
    let request = http::Request::get(format!("/apis/apps/v1/namespaces/{ns}/frobnicators"))
        .body(Vec::new())?;
    let status = api_status(cluster.client.request::<Value>(request).await);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            404,
            "NotFound",
            "the server could not find the requested resource"
        )
    );

    let Some(server) = cluster.server() else {
        skipped(
            "absent_crd_paths_are_plain_text_404_like_26",
            "raw bytes and headers are read from the test server only",
        );
        return Ok(());
    };
    let response = reqwest::get(format!("{}{}", server.url(), absent[0])).await?;
    assert_eq!(response.status().as_u16(), 404);
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await?, "404 page not found\n");
    Ok(())
}

#[tokio::test]
async fn discovery_lists_the_crd_kind_like_27() -> anyhow::Result<()> {
    let test = "discovery_lists_the_crd_kind_like_27";
    let cluster = TestCluster::start().await?;
    let kind = CustomKind::argo_rollouts();
    if install(&cluster, &kind, test).await?.is_none() {
        return Ok(());
    }
    let list = cluster
        .client
        .list_api_group_resources("argoproj.io/v1alpha1")
        .await?;
    assert_eq!(list.group_version, "argoproj.io/v1alpha1");
    // Argo's own CRDs add more kinds and `rollouts/scale` to the group.
    let entries: Vec<Value> = list
        .resources
        .iter()
        .filter(|r| r.name == "rollouts" || r.name == "rollouts/status")
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let want = [
        json!({
            "name": "rollouts",
            "singularName": "rollout",
            "namespaced": true,
            "kind": "Rollout",
            "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
            "shortNames": ["ro"],
            "storageVersionHash": "T0mdNo50nFA="
        }),
        json!({
            "name": "rollouts/status",
            "singularName": "",
            "namespaced": true,
            "kind": "Rollout",
            "verbs": ["get", "patch", "update"]
        }),
    ];
    assert_eq!(entries, want);

    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
    let (resource, capabilities) = discovery::pinned_kind(&cluster.client, &gvk).await?;
    assert_eq!(resource.plural, "rollouts");
    assert_eq!(capabilities.scope, Scope::Namespaced);
    assert!(capabilities
        .subresources
        .iter()
        .any(|(r, _)| r.plural == "status"));

    // The discovery walk (/api, /apis, then each group/version) finds it among the built-ins;
    // limited to these groups, as a real cluster's other APIServices may be unavailable.
    let everything = Discovery::new(cluster.client.clone())
        .filter(&["argoproj.io", "apps", "batch", ""])
        .run()
        .await?;
    let group = everything
        .get("argoproj.io")
        .expect("the argoproj.io group");
    assert!(group.recommended_kind("Rollout").is_some());
    for (group, kind) in [
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "CronJob"),
        ("", "ConfigMap"),
    ] {
        let found = everything.get(group).and_then(|g| g.recommended_kind(kind));
        assert!(found.is_some(), "{group} {kind}");
    }
    Ok(())
}

/// A CRD of a group no other test uses, so that deleting it races nobody on a real cluster.
fn gadgets(cluster: &TestCluster) -> CustomKind {
    let group = format!("{}.example.dev", cluster.namespace);
    CustomKind::new(&group, "v1", "Gadget", "gadgets", true)
}

/// One change a watch streamed: type, object name, generation.
type Seen = (&'static str, String, Option<i64>);

/// Reads watch events until `enough` holds for the changes and the number of bookmarks seen.
async fn read_until(
    events: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin),
    seen: &mut Vec<Seen>,
    bookmarks: &mut usize,
    enough: impl Fn(&[Seen], usize) -> bool,
) -> anyhow::Result<()> {
    let read = tokio::time::timeout(DEADLINE, async {
        while !enough(seen, *bookmarks) {
            let Some(event) = events.try_next().await? else {
                anyhow::bail!("the watch ended after {seen:?}");
            };
            let (kind, object) = match event {
                WatchEvent::Added(o) => ("ADDED", o),
                WatchEvent::Modified(o) => ("MODIFIED", o),
                WatchEvent::Deleted(o) => ("DELETED", o),
                WatchEvent::Bookmark(_) => {
                    *bookmarks += 1;
                    continue;
                }
                WatchEvent::Error(status) => anyhow::bail!("watch error {status:?}"),
            };
            seen.push((kind, object.name_any(), object.metadata.generation));
        }
        Ok(())
    })
    .await;
    match read {
        Ok(result) => result,
        Err(_) => anyhow::bail!("timed out watching; saw {seen:?}"),
    }
}

#[tokio::test]
async fn custom_kind_watches_like_built_ins_until_its_crd_goes() -> anyhow::Result<()> {
    let test = "custom_kind_watches_like_built_ins_until_its_crd_goes";
    let cluster = TestCluster::start().await?;
    let kind = gadgets(&cluster);
    if install(&cluster, &kind, test).await?.is_none() {
        return Ok(());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &kind.api_resource(),
    );
    let rv = api
        .list(&Default::default())
        .await?
        .metadata
        .resource_version
        .expect("rv");
    let mut events = api
        .watch(&WatchParams::default().timeout(20), &rv)
        .await?
        .boxed();
    let gadget = |name: &str| {
        DynamicObject::new(name, &kind.api_resource()).data(json!({"spec": {"size": 1}}))
    };
    api.create(&PostParams::default(), &gadget("g1")).await?;
    api.patch(
        "g1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await?;
    api.delete("g1", &Default::default()).await?;

    let (mut seen, mut bookmarks) = (Vec::new(), 0);
    read_until(&mut events, &mut seen, &mut bookmarks, |s, _| s.len() == 3).await?;
    let g1 = |kind: &'static str, generation: i64| (kind, "g1".to_string(), Some(generation));
    assert_eq!(seen, [g1("ADDED", 1), g1("MODIFIED", 2), g1("DELETED", 2)]);

    api.create(&PostParams::default(), &gadget("g2")).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    crds.delete(&kind.crd_name(), &Default::default()).await?;
    let path = format!(
        "/apis/{}/namespaces/{}/gadgets/g2",
        kind.api_version(),
        cluster.namespace
    );
    until("the CRD's kind to stop being served", DEADLINE, || async {
        let request = http::Request::get(path.as_str()).body(Vec::new()).ok()?;
        match cluster.client.request::<Value>(request).await {
            Err(kube::Error::Api(status)) if status.message == "404 page not found" => Some(()),
            _ => None,
        }
    })
    .await?;

    if cluster.server().is_none() {
        skipped(
            test,
            "a real server may end the watch before the objects' DELETED events",
        );
        return Ok(());
    }
    // Only the test server: objects go with their CRD, each with a DELETED event, and the
    // watch bookmarks like a built-in one (the test server about once a second).
    seen.clear();
    read_until(&mut events, &mut seen, &mut bookmarks, |s, _| s.len() == 2).await?;
    let g2 = |kind: &'static str| (kind, "g2".to_string(), Some(1));
    assert_eq!(seen, [g2("ADDED"), g2("DELETED")]);
    read_until(&mut events, &mut seen, &mut bookmarks, |_, marks| marks > 0).await?;
    Ok(())
}
