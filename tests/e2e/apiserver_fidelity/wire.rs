//! Byte-level shapes, compared with the recordings: exact `Status` bodies (03, 04, 06, 07, 08,
//! 09), list metadata (02) and watch framing (10). Raw HTTP, so only against the test server.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{json, Value};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::test_server_or_skip;

use super::create_deployment;

struct Wire {
    http: reqwest::Client,
    base: String,
}

impl Wire {
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await?;
        let code = response.status().as_u16();
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        Ok((code, response.json().await?))
    }
}

fn failure(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code
    })
}

#[tokio::test]
async fn status_bodies_match_the_recordings_exactly() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(
        cluster,
        "compares raw bodies with the recordings; the recordings are the real server's"
    );
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    create_deployment(&api, "api", "127.0.0.1:5000/api:1.2.3").await;
    let wire = Wire {
        http: reqwest::Client::new(),
        base: server.url(),
    };
    let item = format!(
        "/apis/apps/v1/namespaces/{}/deployments/api",
        cluster.namespace
    );
    let missing = format!(
        "/apis/apps/v1/namespaces/{}/deployments/nope",
        cluster.namespace
    );
    let json_patch = "application/json-patch+json";
    let rejected = "the server rejected our request due to an error in our request";

    let cases = [
        ("03", "GET", missing.as_str(), "application/json", "", failure(404, "NotFound",
            "deployments.apps \"nope\" not found",
            json!({"name": "nope", "group": "apps", "kind": "deployments"}))),
        ("04", "PATCH", item.as_str(), json_patch,
            r#"[{"op":"test","path":"/spec/template/spec/containers/0/image","value":"127.0.0.1:5000/api:9.9.9"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"127.0.0.1:5000/api:1.2.4"}]"#,
            failure(422, "Invalid", rejected, json!({}))),
        ("06", "PATCH", item.as_str(), "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"},"spec":{"replicas":3}}"#,
            failure(409, "Conflict",
                "Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified; please apply your changes to the latest version and try again",
                json!({"name": "api", "group": "apps", "kind": "deployments"}))),
        ("07", "PATCH", item.as_str(), json_patch,
            r#"[{"op":"replace","path":"/spec/template/spec/containers/5/image","value":"x:1"}]"#,
            failure(422, "Invalid", rejected, json!({}))),
        ("08", "PATCH", item.as_str(), json_patch,
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":""}]"#,
            failure(422, "Invalid",
                "Deployment.apps \"api\" is invalid: spec.template.spec.containers[0].image: Required value",
                json!({"name": "api", "group": "apps", "kind": "Deployment", "causes": [
                    {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.template.spec.containers[0].image"}
                ]}))),
        ("09", "PATCH", item.as_str(), "text/plain", "x",
            failure(415, "UnsupportedMediaType", "415: Unsupported Media Type", json!({}))),
    ];
    for (recording, method, path, content_type, body, want) in cases {
        let (code, got) = wire.send(method, path, content_type, body).await?;
        assert_eq!(
            u64::from(code),
            want["code"].as_u64().unwrap_or_default(),
            "{recording}"
        );
        assert_eq!(got, want, "{recording}");
    }
    Ok(())
}

#[tokio::test]
async fn list_and_watch_framing_match_the_recordings() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(
        cluster,
        "compares raw framing with the recordings; the recordings are the real server's"
    );
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for name in ["api", "web"] {
        create_deployment(&api, name, "127.0.0.1:5000/api:1.2.3").await;
    }
    let wire = Wire {
        http: reqwest::Client::new(),
        base: server.url(),
    };
    let collection = format!("/apis/apps/v1/namespaces/{}/deployments", cluster.namespace);

    let (code, list) = wire
        .send(
            "GET",
            &format!("{collection}?limit=1"),
            "application/json",
            "",
        )
        .await?;
    assert_eq!(code, 200);
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("DeploymentList"), Some("apps/v1"))
    );
    assert_eq!(list["metadata"]["remainingItemCount"], 1);
    assert!(list["metadata"]["continue"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = &list["items"][0];
    assert!(
        first.get("kind").is_none() && first.get("apiVersion").is_none(),
        "items carry no kind, like 02"
    );
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    let url = format!(
        "{}{collection}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2",
        server.url()
    );
    let watching = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    let patch = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "127.0.0.1:5000/api:1.2.5"}]);
    super::harness::wait_for_watch(server, &collection).await?;
    let patch: kube::api::Patch<()> = kube::api::Patch::Json(serde_json::from_value(patch)?);
    api.patch("api", &Default::default(), &patch).await?;
    let text = watching.await??;
    let events: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(&types[..2], ["MODIFIED", "MODIFIED"], "{text}");
    assert_eq!(types.last(), Some(&"BOOKMARK"), "a bookmark before closing");
    assert_eq!(events[0]["object"]["kind"], "Deployment");
    assert_eq!(events[0]["object"]["metadata"]["generation"], 2);
    assert_eq!(events[1]["object"]["metadata"]["generation"], 2);
    assert_eq!(events[1]["object"]["status"]["observedGeneration"], 2);
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let bookmark = &events[events.len() - 1]["object"];
    assert_eq!(
        (bookmark["kind"].as_str(), bookmark["apiVersion"].as_str()),
        (Some("Deployment"), Some("apps/v1"))
    );
    Ok(())
}

/// `SelfSubjectReview` (authentication.k8s.io/v1): no recording exists, so the documented v1
/// shape: 201, the review echoed with `metadata.creationTimestamp: null` and `status.userInfo`
/// naming the caller. The test bed's caller is the bearer token's user, else its administrator.
#[tokio::test]
async fn self_subject_review_answers_the_documented_shape() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let server = test_server_or_skip!(
        cluster,
        "compares raw bodies with the documented shape and names users only the test bed mints"
    );
    let http = reqwest::Client::new();
    let url = format!(
        "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        server.url()
    );
    let body =
        r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{}}"#;
    let review = |user: &str, groups: Value| {
        json!({
            "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": user, "groups": groups}}
        })
    };
    for (token, want) in [
        (
            None,
            review(
                "testbed-admin",
                json!(["system:masters", "system:authenticated"]),
            ),
        ),
        (
            Some("alice"),
            review("alice", json!(["system:authenticated"])),
        ),
    ] {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(response.json::<Value>().await?, want, "{token:?}");
    }
    // Only `create` is served.
    let get = http.get(&url).send().await?;
    assert_eq!(get.status().as_u16(), 405);

    // kube's typed client reads it as the CLI does.
    let user = tagwatch::act::approvals::whoami(&cluster.client).await?;
    assert_eq!(user, "testbed-admin");
    Ok(())
}
