//! WATCH: 10 (MODIFIED for the patch, then the controller's status write), bookmarks, and
//! 410 Expired making a kube-runtime watcher relist.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::json;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::test_server_or_skip;
use tagwatch_testbed::wait::until;

use super::{create_deployment, image_of, rv_number, DEADLINE};

fn observed(d: &Deployment) -> Option<i64> {
    d.status.as_ref().and_then(|s| s.observed_generation)
}

#[tokio::test]
async fn watch_sees_the_patch_then_the_controller_status_write() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let settled = until("the first rollout", DEADLINE, || async {
        let d = api.get("api").await.ok()?;
        (observed(&d) == Some(1)).then_some(d)
    })
    .await?;
    let start = settled.resource_version().expect("resourceVersion");

    let mut events = api
        .watch(&WatchParams::default().timeout(10), &start)
        .await?
        .boxed();
    let patch = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "127.0.0.1:5000/api:1.2.5"}
    ]}}}}));
    api.patch("api", &PatchParams::default(), &patch).await?;

    let mut modified = Vec::new();
    let rolled_out = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.try_next().await? {
            if let WatchEvent::Modified(d) = event {
                let done = observed(&d) == Some(2);
                modified.push(d);
                if done {
                    break;
                }
            }
        }
        anyhow::Ok(())
    })
    .await;
    assert!(
        matches!(rolled_out, Ok(Ok(()))),
        "watch ended early: {rolled_out:?}"
    );

    let spec_write = modified.first().expect("a MODIFIED event");
    assert_eq!(image_of(spec_write), "127.0.0.1:5000/api:1.2.5");
    assert_eq!(spec_write.metadata.generation, Some(2));
    assert_eq!(observed(spec_write), Some(1), "status lags the spec write");
    let status_write = modified.last().expect("a MODIFIED event");
    assert_eq!(
        status_write.metadata.generation,
        Some(2),
        "a status write keeps generation"
    );
    assert!(rv_number(status_write) > rv_number(spec_write));
    assert!(rv_number(spec_write) > start.parse::<u64>()?);
    Ok(())
}

#[tokio::test]
async fn watch_sends_bookmarks_and_ends_at_its_timeout() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    test_server_or_skip!(
        cluster,
        "a real server bookmarks about once a minute, too slow to wait for"
    );
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let rv = api
        .list(&Default::default())
        .await?
        .metadata
        .resource_version
        .expect("rv");
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await?
        .try_collect()
        .await?;
    let bookmarks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
            _ => None,
        })
        .collect();
    assert!(!bookmarks.is_empty(), "events: {events:?}");
    assert!(bookmarks
        .iter()
        .all(|b| b.parse::<u64>().is_ok_and(|b| b >= rv.parse().unwrap_or(0))));
    Ok(())
}

#[tokio::test]
async fn watch_from_an_expired_resource_version_gets_410_expired() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(cluster, "compaction cannot be forced on a real cluster");
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let old = create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    server.expire_watches();
    let old_rv = old.resource_version().expect("rv");
    let mut events = api.watch(&WatchParams::default(), &old_rv).await?.boxed();
    match events.try_next().await? {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(
        events.try_next().await?.is_none(),
        "the stream ends after the error"
    );
    Ok(())
}

#[tokio::test]
async fn expired_watch_makes_the_watcher_relist() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(
        cluster,
        "watch expiry (compaction) cannot be forced on a real cluster"
    );
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "first", "127.0.0.1:5000/api:1.0.0").await;

    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await?;
    let path = format!("/apis/apps/v1/namespaces/{}/deployments", cluster.namespace);
    until("the watcher's watch request", DEADLINE, || async {
        server
            .requests()
            .iter()
            .any(|r| r.path == path && r.is_watch())
            .then_some(())
    })
    .await?;

    server.clear_requests();
    server.expire_watches();
    create_deployment(&api, "second", "127.0.0.1:5000/api:1.0.0").await;

    until(
        "a relist and both objects in the reflector",
        DEADLINE,
        || async {
            let relisted = server.requests().iter().any(|r| r.is_list_of(&path));
            let mut names: Vec<String> = reader.state().iter().map(|d| d.name_any()).collect();
            names.sort();
            (relisted && names == ["first", "second"]).then_some(())
        },
    )
    .await?;
    until(
        "the watcher to watch again after relisting",
        DEADLINE,
        || async {
            let log = server.requests();
            let relist = log.iter().position(|r| r.is_list_of(&path))?;
            log[relist..]
                .iter()
                .any(|r| r.path == path && r.is_watch())
                .then_some(())
        },
    )
    .await?;
    task.abort();
    Ok(())
}

#[tokio::test]
async fn a_label_filtered_watch_sees_an_object_leave_and_enter_its_selector() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let created = create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let start = created.resource_version().expect("resourceVersion");
    let mut events = api
        .watch(
            &WatchParams::default().labels("app=api").timeout(10),
            &start,
        )
        .await?
        .boxed();
    let relabel = |value: &str| Patch::Merge(json!({"metadata": {"labels": {"app": value}}}));
    let left = api
        .patch("api", &PatchParams::default(), &relabel("other"))
        .await?;
    let back = api
        .patch("api", &PatchParams::default(), &relabel("api"))
        .await?;

    // Status writes by the controller may come in between; only the membership changes count.
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.try_next().await? {
            match event {
                WatchEvent::Deleted(d) => seen.push(("DELETED", d)),
                WatchEvent::Added(d) => seen.push(("ADDED", d)),
                _ => {}
            }
            if seen.len() == 2 {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["DELETED", "ADDED"]);
    let (_, gone) = &seen[0];
    // The real cacher sends the object as it last matched, at the change's resourceVersion.
    assert_eq!(gone.labels().get("app").map(String::as_str), Some("api"));
    assert_eq!(gone.resource_version(), left.resource_version());
    let (_, again) = &seen[1];
    assert_eq!(again.resource_version(), back.resource_version());
    Ok(())
}

#[tokio::test]
async fn a_label_filtered_reflector_drops_an_object_that_stops_matching() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().labels("app=api")),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.try_next().await.is_ok_and(|e| e.is_some()) {}
    });
    until("the reflector holds api", DEADLINE, || async {
        (reader.state().len() == 1).then_some(())
    })
    .await?;
    let patch = Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}}));
    api.patch("api", &PatchParams::default(), &patch).await?;
    until("the reflector drops api", DEADLINE, || async {
        reader.state().is_empty().then_some(())
    })
    .await?;
    task.abort();
    Ok(())
}
