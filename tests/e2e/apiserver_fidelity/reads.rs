//! GET and LIST: defaults (01), NotFound (03), paging (02), label selectors.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tagwatch_testbed::cluster::TestCluster;

use super::{api_status, create_deployment};

#[tokio::test]
async fn get_returns_the_object_with_server_defaults() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    create_deployment(&api, "edge", "127.0.0.1:5000/edge").await;

    let got = api.get("api").await?;
    assert_eq!(got.metadata.generation, Some(1));
    assert!(
        got.uid().is_some_and(|u| u.len() == 36),
        "uid {:?}",
        got.uid()
    );
    assert!(got.creation_timestamp().is_some());
    let spec = got.spec.as_ref().expect("spec");
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.as_ref().expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
    let pct = |v: &Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
        serde_json::to_value(v).expect("serializable")
    };
    assert_eq!(pct(&rolling.max_surge), "25%");
    assert_eq!(pct(&rolling.max_unavailable), "25%");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(pod.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert!(pod.security_context.is_some());
    let container = &pod.containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        container.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("File")
    );

    let untagged = api.get("edge").await?;
    let policy = untagged
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].image_pull_policy.clone());
    assert_eq!(policy, Some(Some("Always".to_string())));
    Ok(())
}

#[tokio::test]
async fn missing_object_is_404_not_found() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let status = api_status(api.get("nope").await);
    assert_eq!(status.code, 404);
    assert_eq!(status.reason, "NotFound");
    assert_eq!(status.message, "deployments.apps \"nope\" not found");
    let details = status.details.expect("details");
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("nope", "apps", "deployments")
    );
    assert_eq!(api.get_opt("nope").await?, None);
    Ok(())
}

#[tokio::test]
async fn list_with_limit_pages_with_continue_and_remaining_count() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for name in ["a", "b", "c"] {
        create_deployment(&api, name, "127.0.0.1:5000/x:1.0.0").await;
    }
    let first = api.list(&ListParams::default().limit(1)).await?;
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].name_any(), "a");
    assert_eq!(first.metadata.remaining_item_count, Some(2));
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert!(first.metadata.resource_version.is_some());

    let mut names = vec![first.items[0].name_any()];
    let mut next = Some(token);
    while let Some(token) = next {
        let page = api
            .list(&ListParams::default().limit(1).continue_token(&token))
            .await?;
        names.extend(page.items.iter().map(|d| d.name_any()));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(names, ["a", "b", "c"]);

    let everywhere: Api<Deployment> = Api::all(cluster.client.clone());
    let all = everywhere.list(&ListParams::default()).await?;
    let mine = all
        .items
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(cluster.namespace.as_str()));
    assert_eq!(mine.count(), 3);
    assert_eq!(all.metadata.continue_.as_deref().unwrap_or_default(), "");
    Ok(())
}

#[tokio::test]
async fn label_selectors_filter_lists() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for (name, tier) in [("web", Some("web")), ("db", Some("db")), ("batch", None)] {
        let mut d = super::deployment(name, "127.0.0.1:5000/x:1.0.0");
        if let Some(tier) = tier {
            d.labels_mut().insert("tier".into(), tier.into());
        }
        api.create(&Default::default(), &d).await?;
    }
    let cases = [
        ("tier=web", vec!["web"]),
        ("tier!=web", vec!["batch", "db"]),
        ("tier in (web,db)", vec!["db", "web"]),
        ("tier notin (web)", vec!["batch", "db"]),
        ("tier", vec!["db", "web"]),
        ("!tier", vec!["batch"]),
        ("tier,app=db", vec!["db"]),
    ];
    for (selector, want) in cases {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let mut names: Vec<String> = list.items.iter().map(|d| d.name_any()).collect();
        names.sort();
        assert_eq!(names, want, "selector {selector}");
    }
    Ok(())
}
