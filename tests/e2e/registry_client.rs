//! tagwatch's registry client against the stub: paging, all-or-nothing listings, HEAD digests.

use tagwatch::metrics::Metrics;
use tagwatch::model::image::Repository;
use tagwatch::registry::{ClientOptions, Credentials, RegistryClient, RegistryError};
use tagwatch_testbed::stub_registry::{Reply, StubRegistry};

fn client(stub: &StubRegistry, page_size: usize) -> RegistryClient {
    RegistryClient::new(
        ClientOptions {
            insecure_registries: vec![stub.host()],
            page_size,
            ..ClientOptions::default()
        },
        Metrics::unregistered().expect("metrics"),
    )
    .expect("client")
}

fn repo(stub: &StubRegistry, path: &str) -> Repository {
    Repository {
        registry: stub.host(),
        path: path.into(),
    }
}

#[tokio::test]
async fn link_pages_are_followed_to_the_end() {
    let stub = StubRegistry::start().await.expect("stub");
    let tags: Vec<String> = (0..5).map(|i| format!("1.0.{i}")).collect();
    stub.set_tags("app", tags.clone());
    stub.set_page_size("app", 2);
    let mut listed = client(&stub, 100)
        .list_tags(&repo(&stub, "app"), &Credentials::Anonymous)
        .await
        .expect("listing");
    listed.sort();
    assert_eq!(listed, tags);
    assert_eq!(stub.count("GET", "/v2/app/tags/list"), 3);
}

#[tokio::test]
async fn a_listing_that_fails_half_way_yields_nothing() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0", "1.0.1", "1.0.2"]);
    stub.set_page_size("app", 1);
    stub.script("app", vec![Reply::PageFailure]);
    let result = client(&stub, 100)
        .list_tags(&repo(&stub, "app"), &Credentials::Anonymous)
        .await;
    assert!(
        matches!(result, Err(RegistryError::Server { status: 500, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn every_failure_is_a_typed_error() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    let client = client(&stub, 100);
    let cases = [
        (Reply::Status(500), "server_error"),
        (Reply::Status(404), "not_found"),
        (Reply::Garbage, "malformed"),
        (Reply::Truncated, "malformed"),
        (
            Reply::TooManyRequests {
                retry_after_secs: 7,
            },
            "rate_limited",
        ),
    ];
    for (reply, kind) in cases {
        stub.script("app", vec![reply.clone()]);
        let err = client
            .list_tags(&repo(&stub, "app"), &Credentials::Anonymous)
            .await
            .expect_err("must fail");
        assert_eq!(err.kind(), kind, "{reply:?}: {err}");
        if kind == "rate_limited" {
            assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(7)));
        }
    }
    // A 401 loop ends after one challenge answered, as unauthorized.
    stub.set_default_reply("app", Reply::Unauthorized);
    let before = stub.count("GET", "/v2/app/tags/list");
    let err = client
        .list_tags(&repo(&stub, "app"), &Credentials::Anonymous)
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), "unauthorized", "{err}");
    assert!(stub.count("GET", "/v2/app/tags/list") - before <= 2);
}

#[tokio::test]
async fn digests_are_read_with_one_head_listing_all_manifest_types() {
    let stub = StubRegistry::start().await.expect("stub");
    let digest = format!("sha256:{}", "ab".repeat(32));
    stub.set_manifest(
        "app",
        "1.0.0",
        &digest,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    let got = client(&stub, 100)
        .manifest_digest(&repo(&stub, "app"), "1.0.0", &Credentials::Anonymous)
        .await
        .expect("digest");
    assert_eq!(got, Some(digest));
    let requests = stub.requests();
    let heads: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v2/app/manifests/1.0.0")
        .collect();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].method, "HEAD");
    let accept = heads[0]
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for media_type in [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ] {
        assert!(accept.contains(media_type), "{accept}");
    }
}
