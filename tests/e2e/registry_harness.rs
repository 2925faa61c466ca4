//! The registry side of the test bed: the real docker-registry harness (anonymous, basic and token
//! auth, real images through oci-client, request counting) and the scripted stub registry.

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use reqwest::StatusCode;
use tagwatch_testbed::registry::{
    missing_binary_message, sha256_digest, ImageKind, Notifications, Registry, RegistryOptions,
    ALL_MANIFEST_TYPES, OCI_USER_AGENT,
};
use tagwatch_testbed::stub_registry::{Reply, StubRegistry};

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

fn strings(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn anonymous_push_and_list_through_oci_client() -> anyhow::Result<()> {
    let registry = Registry::anonymous().await?;
    let d1 = registry
        .push_image("app", "1.0.0", ImageKind::OciManifest)
        .await?;
    let d2 = registry
        .push_image("app", "1.1.0", ImageKind::DockerV2)
        .await?;
    assert_ne!(d1, d2, "each tag has its own digest");

    let tags = registry.list_tags("app").await?;
    assert_eq!(sorted(tags), strings(&["1.0.0", "1.1.0"]));
    assert_eq!(registry.manifest_digest("app", "1.1.0").await?, Some(d2));
    assert_eq!(registry.manifest_digest("app", "9.9.9").await?, None);
    assert_eq!(registry.credentials(), None);
    assert!(registry.token_issuer().is_none());
    Ok(())
}

#[tokio::test]
async fn basic_auth_push_and_list_and_a_wrong_password_gets_401() -> anyhow::Result<()> {
    let registry = Registry::basic("alice", "correct horse").await?;
    registry
        .push_image("team/app", "2.0.0", ImageKind::OciManifest)
        .await?;
    assert_eq!(registry.list_tags("team/app").await?, strings(&["2.0.0"]));

    // A fresh oci-client with the wrong password is refused.
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let wrong = RegistryAuth::Basic("alice".into(), "wrong".into());
    let listed = client
        .list_tags(
            &registry.reference("team/app", "latest"),
            &wrong,
            None,
            None,
        )
        .await;
    assert!(
        listed.is_err(),
        "listing with a wrong password must fail: {listed:?}"
    );

    let response = reqwest::Client::new()
        .get(format!("{}/v2/team/app/tags/list", registry.url()))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    registry.sync_log().await?;
    let refused = registry
        .requests()
        .iter()
        .filter(|r| r.path == "/v2/team/app/tags/list" && r.status == 401)
        .count();
    assert!(
        refused >= 2,
        "the access log records refused requests too: {:?}",
        registry.requests()
    );
    Ok(())
}

#[tokio::test]
async fn token_auth_push_and_list_reuse_the_token() -> anyhow::Result<()> {
    let registry = Registry::token("bob", "hunter2").await?;
    let issuer = registry
        .token_issuer()
        .ok_or_else(|| anyhow::anyhow!("token registry without issuer"))?;
    registry
        .push_image("app", "1.0.0", ImageKind::OciManifest)
        .await?;
    let after_push = issuer.token_requests();
    assert!(after_push >= 1);
    assert!(issuer
        .requests()
        .iter()
        .any(|r| r.scopes == vec!["repository:app:pull,push".to_string()] && r.status == 200));

    assert_eq!(registry.list_tags("app").await?, strings(&["1.0.0"]));
    let after_first_list = issuer.token_requests();
    assert_eq!(
        after_first_list,
        after_push + 1,
        "a listing asks for a pull token once"
    );
    let pull = issuer.requests().last().cloned();
    assert_eq!(
        pull.as_ref().map(|r| r.scopes.clone()),
        Some(vec!["repository:app:pull".to_string()])
    );
    assert_eq!(pull.and_then(|r| r.username), Some("bob".to_string()));

    assert_eq!(registry.list_tags("app").await?, strings(&["1.0.0"]));
    assert_eq!(
        issuer.token_requests(),
        after_first_list,
        "the same oci Client reuses its token"
    );
    Ok(())
}

#[tokio::test]
async fn token_auth_refuses_wrong_and_anonymous_callers() -> anyhow::Result<()> {
    let registry = Registry::token("bob", "hunter2").await?;
    registry
        .push_image("app", "1.0.0", ImageKind::OciManifest)
        .await?;
    let issuer = registry
        .token_issuer()
        .ok_or_else(|| anyhow::anyhow!("no issuer"))?;
    let http = reqwest::Client::new();
    let realm = issuer.realm();

    let wrong = http
        .get(&realm)
        .query(&[
            ("service", "tagwatch-testbed-registry"),
            ("scope", "repository:app:pull"),
        ])
        .basic_auth("bob", Some("nope"))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // An anonymous token is valid but grants nothing: the registry refuses it.
    let anonymous: serde_json::Value = http
        .get(&realm)
        .query(&[
            ("service", "tagwatch-testbed-registry"),
            ("scope", "repository:app:pull"),
        ])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(anonymous["expires_in"], 300);
    let token = anonymous["token"].as_str().unwrap_or_default();
    let listed = http
        .get(format!("{}/v2/app/tags/list", registry.url()))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);
    let challenge = listed
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    let seen = issuer.requests();
    assert_eq!(
        seen.iter()
            .rev()
            .take(2)
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![200, 401]
    );
    assert_eq!(seen.last().and_then(|r| r.username.clone()), None);
    Ok(())
}

#[tokio::test]
async fn multi_arch_digests_read_back_equal_the_local_ones() -> anyhow::Result<()> {
    let registry = Registry::anonymous().await?;
    for (tag, kind, media_type) in [
        (
            "oci-index",
            ImageKind::OciIndex,
            "application/vnd.oci.image.index.v1+json",
        ),
        (
            "docker-list",
            ImageKind::DockerManifestList,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    ] {
        let digest = registry.push_image("multi", tag, kind).await?;
        assert_eq!(
            registry.manifest_digest("multi", tag).await?,
            Some(digest.clone())
        );

        // Recompute from the bytes the registry serves.
        let response = reqwest::Client::new()
            .get(format!("{}/v2/multi/manifests/{tag}", registry.url()))
            .header("Accept", ALL_MANIFEST_TYPES.join(", "))
            .send()
            .await?;
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(media_type)
        );
        let body = response.bytes().await?;
        assert_eq!(sha256_digest(&body), digest);
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let archs: Vec<&str> = list["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["platform"]["architecture"].as_str())
            .collect();
        assert_eq!(archs, vec!["amd64", "arm64"]);
    }
    Ok(())
}

#[tokio::test]
async fn tag_copies_a_digest_and_delete_tag_removes_only_that_tag() -> anyhow::Result<()> {
    let registry = Registry::anonymous().await?;
    let digest = registry
        .push_image("app", "1.2.3", ImageKind::OciManifest)
        .await?;
    assert_eq!(registry.tag("app", "1.2.3", "1.2").await?, digest);
    assert_eq!(registry.tag("app", &digest, "latest").await?, digest);
    assert_eq!(
        sorted(registry.list_tags("app").await?),
        strings(&["1.2", "1.2.3", "latest"])
    );

    registry.delete_tag("app", "1.2").await?;
    assert_eq!(
        sorted(registry.list_tags("app").await?),
        strings(&["1.2.3", "latest"])
    );
    assert_eq!(registry.manifest_digest("app", "1.2").await?, None);
    assert_eq!(
        registry.manifest_digest("app", "1.2.3").await?,
        Some(digest.clone())
    );

    // The last tag of a repository can go too.
    registry
        .push_image("solo", "1.0.0", ImageKind::OciManifest)
        .await?;
    registry.delete_tag("solo", "1.0.0").await?;
    assert_eq!(registry.list_tags("solo").await?, Vec::<String>::new());

    // Deleting by digest takes every tag that points to it.
    let other = registry
        .push_image("app", "2.0.0", ImageKind::DockerV2)
        .await?;
    registry.delete_manifest("app", &digest).await?;
    assert_eq!(registry.manifest_digest("app", "1.2.3").await?, None);
    assert_eq!(registry.manifest_digest("app", "2.0.0").await?, Some(other));
    Ok(())
}

#[tokio::test]
async fn requests_and_count_see_what_the_registry_served() -> anyhow::Result<()> {
    let registry = Registry::anonymous().await?;
    registry
        .push_image("app", "1.0.0", ImageKind::OciManifest)
        .await?;
    registry.sync_log().await?;
    assert_eq!(registry.count("GET", "/app/tags/list"), 0);
    assert_eq!(registry.count("PUT", "/app/manifests/1.0.0"), 1);
    assert!(registry
        .requests()
        .iter()
        .all(|r| r.user_agent == OCI_USER_AGENT));

    registry.list_tags("app").await?;
    registry.list_tags("app").await?;
    registry.sync_log().await?;
    assert_eq!(registry.count("GET", "/app/tags/list"), 2);
    let listing = registry
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/app/tags/list");
    assert_eq!(
        listing.map(|r| (r.method, r.status)),
        Some(("GET".to_string(), 200))
    );
    Ok(())
}

#[test]
fn a_missing_binary_error_says_how_to_install_it() {
    let message = missing_binary_message(std::path::Path::new("/usr/bin/docker-registry"));
    assert!(
        message.contains("apt-get update && apt-get install -y docker-registry"),
        "{message}"
    );
}

#[tokio::test]
async fn stub_paginates_with_link_over_three_pages() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"]);
    stub.set_page_size("app", 2);

    let http = reqwest::Client::new();
    let mut next = Some("/v2/app/tags/list".to_string());
    let mut all = Vec::new();
    while let Some(path) = next.take() {
        let response = http.get(format!("{}{path}", stub.url())).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
        next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix('<'))
            .and_then(|v| v.split_once('>'))
            .map(|(target, _)| target.to_string());
        let body: serde_json::Value = response.json().await?;
        all.extend(
            body["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
    }
    assert_eq!(all, strings(&["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"]));
    assert_eq!(stub.count("GET", "/v2/app/tags/list"), 3);
    let queries: Vec<Option<String>> = stub.requests().into_iter().map(|r| r.query).collect();
    assert_eq!(
        queries,
        vec![
            None,
            Some("last=1.1.0&n=2".to_string()),
            Some("last=2.0.0&n=2".to_string())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn stub_pages_through_oci_client_with_n_and_last() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["a", "b", "c"]);
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let image = oci_client::Reference::with_tag(stub.host(), "app".into(), "latest".into());
    let first = client
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), None)
        .await?;
    assert_eq!(first.tags, strings(&["a", "b"]));
    let second = client
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), Some("b"))
        .await?;
    assert_eq!(second.tags, strings(&["c"]));
    Ok(())
}

#[tokio::test]
async fn stub_scripted_failures_then_the_default() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["1.0.0"]);
    stub.script(
        "app",
        vec![
            Reply::TooManyRequests {
                retry_after_secs: 7,
            },
            Reply::Status(500),
            Reply::Garbage,
            Reply::Truncated,
            Reply::Slow(Duration::from_millis(300)),
        ],
    );
    let http = reqwest::Client::new();
    let url = format!("{}/v2/app/tags/list", stub.url());

    let limited = http.get(&url).send().await?;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );

    assert_eq!(
        http.get(&url).send().await?.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let garbage = http.get(&url).send().await?;
    assert_eq!(garbage.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<serde_json::Value>(&garbage.bytes().await?).is_err());

    let truncated = http.get(&url).send().await?;
    assert_eq!(truncated.status(), StatusCode::OK);
    let body = truncated.bytes().await?;
    assert!(body.starts_with(b"{\"name\""));
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());

    let started = Instant::now();
    let slow = http.get(&url).send().await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status(), StatusCode::OK);

    let body: serde_json::Value = http.get(&url).send().await?.json().await?;
    assert_eq!(body["tags"], serde_json::json!(["1.0.0"]));
    assert_eq!(stub.count("GET", "/v2/app/tags/list"), 6);
    Ok(())
}

#[tokio::test]
async fn stub_slow_answer_trips_a_client_timeout() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["1.0.0"]);
    stub.script("app", vec![Reply::Slow(Duration::from_secs(5))]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()?;
    let result = http
        .get(format!("{}/v2/app/tags/list", stub.url()))
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    Ok(())
}

#[tokio::test]
async fn stub_second_page_failure() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["a", "b", "c"]);
    stub.set_page_size("app", 2);
    stub.script("app", vec![Reply::PageFailure]);
    let http = reqwest::Client::new();
    let first = http
        .get(format!("{}/v2/app/tags/list", stub.url()))
        .send()
        .await?;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().contains_key("link"));
    let second = http
        .get(format!("{}/v2/app/tags/list?last=b&n=2", stub.url()))
        .send()
        .await?;
    assert_eq!(second.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retried = http
        .get(format!("{}/v2/app/tags/list?last=b&n=2", stub.url()))
        .send()
        .await?;
    assert_eq!(retried.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn stub_401_loop_and_token_endpoint() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    stub.set_tags("app", ["1.0.0"]);
    stub.require_token(true);
    stub.set_default_reply("app", Reply::Unauthorized);

    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let image = oci_client::Reference::with_tag(stub.host(), "app".into(), "latest".into());
    let auth = RegistryAuth::Basic("u".into(), "p".into());
    assert!(client.list_tags(&image, &auth, None, None).await.is_err());
    assert!(stub.token_requests() >= 1);
    let listings: Vec<_> = stub
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/app/tags/list")
        .collect();
    assert!(!listings.is_empty());
    assert!(listings.iter().all(|r| r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "))));

    let http = reqwest::Client::new();
    let refused = http
        .get(format!("{}/v2/app/tags/list", stub.url()))
        .bearer_auth("stub-token")
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        challenge.starts_with("Bearer realm=\"") && challenge.contains(&stub.token_realm()),
        "{challenge}"
    );
    Ok(())
}

#[tokio::test]
async fn stub_manifest_digest_needs_the_media_type_in_accept() -> anyhow::Result<()> {
    let stub = StubRegistry::start().await?;
    let digest = format!("sha256:{}", "ab".repeat(32));
    stub.set_manifest(
        "app",
        "1.0.0",
        &digest,
        "application/vnd.oci.image.index.v1+json",
    );
    let http = reqwest::Client::new();
    let url = format!("{}/v2/app/manifests/1.0.0", stub.url());

    let without = http
        .head(&url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await?;
    assert_eq!(without.status(), StatusCode::NOT_FOUND);
    let with = http
        .head(&url)
        .header("Accept", ALL_MANIFEST_TYPES.join(", "))
        .send()
        .await?;
    assert_eq!(with.status(), StatusCode::OK);
    assert_eq!(
        with.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest.as_str())
    );
    let accepts: Vec<String> = stub
        .requests()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(accepts.len(), 2);
    assert_eq!(stub.count("HEAD", "/v2/app/manifests/1.0.0"), 2);
    Ok(())
}

#[tokio::test]
async fn notifications_reach_the_configured_endpoint_with_its_headers() -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;
    let seen: Seen = Arc::default();
    let receiver = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(seen): axum::extract::State<Seen>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let value = serde_json::from_str(&body).unwrap_or_default();
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((auth, value));
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });

    let registry = Registry::start(RegistryOptions {
        notifications: Some(Notifications::to(hook).header("Authorization", "Bearer hook-secret")),
        ..Default::default()
    })
    .await?;
    let digest = registry
        .push_image("app", "3.0.0", ImageKind::OciManifest)
        .await?;

    let event = tagwatch_testbed::wait::until(
        "a push event for app:3.0.0",
        Duration::from_secs(10),
        || {
            let found = seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find_map(|(auth, body)| {
                    body["events"]
                        .as_array()?
                        .iter()
                        .find(|e| e["target"]["tag"] == "3.0.0")
                        .map(|e| (auth.clone(), e.clone()))
                });
            async move { found }
        },
    )
    .await?;
    server.abort();
    assert_eq!(event.0.as_deref(), Some("Bearer hook-secret"));
    assert_eq!(event.1["action"], "push");
    assert_eq!(event.1["target"]["digest"], digest);
    assert_eq!(event.1["target"]["repository"], "app");
    // Pulls are ignored (the harness's own HEAD requests would be pull events otherwise).
    let all = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(all
        .iter()
        .flat_map(|(_, b)| b["events"].as_array().cloned().unwrap_or_default())
        .all(|e| e["action"] != "pull"));
    Ok(())
}
