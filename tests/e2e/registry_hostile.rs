//! The registry client against hostile registries (the stub): every answer a registry or a tenant
//! controls stays bounded in time, space and destination, and never panics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tagwatch::metrics::{render, Metrics};
use tagwatch::model::image::Repository;
use tagwatch::registry::{
    AllowList, ClientOptions, Credentials, ListLimits, RegistryClient, RegistryError, Secret,
};
use tagwatch_testbed::stub_registry::{Reply, StubRegistry};

const PASSWORD: &str = "pw-MARKER-7f3a";

fn basic() -> Credentials {
    Credentials::Basic {
        username: "tenant".into(),
        password: Secret::new(PASSWORD),
    }
}

fn options(stub: &StubRegistry) -> ClientOptions {
    ClientOptions {
        insecure_registries: vec![stub.host()],
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn client(options: ClientOptions) -> RegistryClient {
    RegistryClient::new(options, Metrics::unregistered().expect("metrics")).expect("client")
}

fn repo(registry: &str, path: &str) -> Repository {
    Repository {
        registry: registry.into(),
        path: path.into(),
    }
}

async fn list(
    client: &RegistryClient,
    stub: &StubRegistry,
    credentials: &Credentials,
) -> Result<Vec<String>, RegistryError> {
    client
        .list_tags(&repo(&stub.host(), "app"), credentials)
        .await
}

// ---- 1. no panic from input ----

#[tokio::test]
async fn a_huge_retry_after_is_clamped_to_an_hour() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    let client = client(options(&stub));
    for reply in [
        Reply::TooManyRequests {
            retry_after_secs: u64::MAX,
        },
        Reply::TooManyRequestsRaw("99999999999999999999999999999".into()),
    ] {
        stub.script("app", vec![reply.clone()]);
        let err = list(&client, &stub, &Credentials::Anonymous)
            .await
            .expect_err("429");
        assert_eq!(err.kind(), "rate_limited", "{reply:?}: {err}");
        let wait = err.retry_after();
        assert_eq!(wait, Some(Duration::from_secs(3600)), "{reply:?}");
        // What the scheduler does with it must not overflow.
        assert!(Instant::now()
            .checked_add(wait.unwrap_or_default())
            .is_some());
    }
}

#[tokio::test]
async fn a_huge_token_lifetime_neither_panics_nor_is_kept_for_ever() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    stub.require_token(true);
    stub.set_token_expires_in("18446744073709551615");
    let client = client(options(&stub));
    for _ in 0..2 {
        let tags = list(&client, &stub, &basic()).await.expect("listing");
        assert_eq!(tags, ["1.0.0"]);
    }
    assert_eq!(stub.token_requests(), 1, "the clamped token is reused");
    // Garbage lifetimes fall back to a sane one instead of failing or panicking.
    stub.set_token_expires_in(r#"{"not":"a number"}"#);
    let other = client
        .list_tags(&repo(&stub.host(), "other"), &basic())
        .await;
    assert_eq!(other.expect_err("no such repo").kind(), "not_found");
    assert_eq!(stub.token_requests(), 2);
}

// ---- 2. bounded in time and space ----

#[tokio::test]
async fn slow_pages_hit_the_listing_deadline() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", (0..20).map(|i| format!("1.0.{i}")));
    stub.set_page_size("app", 1);
    stub.set_page_delay("app", Duration::from_millis(300));
    let client = client(ClientOptions {
        list_timeout: Duration::from_secs(1),
        ..options(&stub)
    });
    let started = Instant::now();
    let err = list(&client, &stub, &Credentials::Anonymous)
        .await
        .expect_err("deadline");
    let took = started.elapsed();
    assert!(
        matches!(err, RegistryError::ListTimeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    assert_eq!(err.kind(), "list_timeout");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}/app", stub.host())),
        "{message}"
    );
    assert!(message.contains("listTimeout"), "{message}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let pages = stub.count("GET", "/v2/app/tags/list");
    assert!(
        (3..=5).contains(&pages),
        "{pages} pages in 1 s of 300 ms pages"
    );
}

#[tokio::test]
async fn endless_empty_pages_hit_the_listing_deadline() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_endless("app", 0);
    stub.set_page_delay("app", Duration::from_millis(20));
    let client = client(ClientOptions {
        list_timeout: Duration::from_secs(1),
        ..options(&stub)
    });
    let err = list(&client, &stub, &Credentials::Anonymous)
        .await
        .expect_err("deadline");
    assert_eq!(err.kind(), "list_timeout", "{err}");
    let pages = stub.count("GET", "/v2/app/tags/list");
    assert!(pages > 5 && pages <= 60, "{pages}");
}

#[tokio::test]
async fn endless_pages_stop_at_max_tags() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_endless("app", 10);
    let client = client(ClientOptions {
        max_tags: 1000,
        ..options(&stub)
    });
    let err = list(&client, &stub, &Credentials::Anonymous)
        .await
        .expect_err("cap");
    assert!(
        matches!(err, RegistryError::TooManyTags { max_tags: 1000, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}/app", stub.host())),
        "{message}"
    );
    assert!(message.contains("maxTags"), "{message}");
    // 100 full pages fill the cap; the 101st is refused as it is read.
    assert_eq!(stub.count("GET", "/v2/app/tags/list"), 101);
}

#[tokio::test]
async fn one_huge_page_is_refused_at_the_default_cap() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", (0..200_000).map(|i| i.to_string()));
    stub.ignore_n("app");
    let err = list(&client(options(&stub)), &stub, &Credentials::Anonymous)
        .await
        .expect_err("cap");
    assert!(
        matches!(
            err,
            RegistryError::TooManyTags {
                max_tags: 100_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(stub.count("GET", "/v2/app/tags/list"), 1);
}

#[tokio::test]
async fn listing_bounds_are_overridden_per_host() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", (0..10).map(|i| format!("1.0.{i}")));
    let small = client(ClientOptions {
        host_limits: HashMap::from([(
            stub.host(),
            ListLimits {
                list_timeout: None,
                max_tags: Some(5),
            },
        )]),
        ..options(&stub)
    });
    let err = list(&small, &stub, &Credentials::Anonymous)
        .await
        .expect_err("cap");
    assert!(
        matches!(err, RegistryError::TooManyTags { max_tags: 5, .. }),
        "{err:?}"
    );
    let other = StubRegistry::start().await.expect("stub");
    other.set_tags("app", (0..10).map(|i| format!("1.0.{i}")));
    let mut opts = options(&other);
    opts.host_limits = HashMap::from([(
        stub.host(),
        ListLimits {
            list_timeout: None,
            max_tags: Some(5),
        },
    )]);
    let listed = list(&client(opts), &other, &Credentials::Anonymous)
        .await
        .expect("other hosts keep the default");
    assert_eq!(listed.len(), 10);
}

// ---- 3. outbound requests stay where they belong ----

#[tokio::test]
async fn a_link_to_another_host_is_refused_and_gets_no_credentials() {
    let stub = StubRegistry::start().await.expect("stub");
    let elsewhere = StubRegistry::start().await.expect("stub");
    for s in [&stub, &elsewhere] {
        s.set_tags("app", ["1.0.0", "1.1.0", "1.2.0"]);
        s.set_page_size("app", 1);
    }
    stub.require_token(true);
    stub.set_link_base("app", &elsewhere.url());
    let client = client(ClientOptions {
        insecure_registries: vec![stub.host(), elsewhere.host()],
        ..options(&stub)
    });
    let err = list(&client, &stub, &basic()).await.expect_err("refused");
    assert_eq!(err.kind(), "unsafe_target", "{err}");
    assert!(err.to_string().contains(&elsewhere.host()), "{err}");
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );

    // The same server under another name is another origin too.
    stub.set_link_base("app", &format!("http://{}", stub.localhost()));
    let err = list(&client, &stub, &basic()).await.expect_err("refused");
    assert_eq!(err.kind(), "unsafe_target", "{err}");
    assert_eq!(stub.count_host(&stub.localhost()), (0, 0));
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let stub = StubRegistry::start().await.expect("stub");
    let elsewhere = StubRegistry::start().await.expect("stub");
    elsewhere.set_tags("app", ["6.6.6"]);
    stub.set_tags("app", ["1.0.0"]);
    stub.require_token(true);
    stub.redirect_tags("app", &format!("{}/v2/app/tags/list", elsewhere.url()));
    let client = client(ClientOptions {
        insecure_registries: vec![stub.host(), elsewhere.host()],
        ..options(&stub)
    });
    let err = list(&client, &stub, &basic()).await.expect_err("refused");
    assert_eq!(err.kind(), "unsafe_target", "{err}");
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(
        stub.authorized_requests() >= 1,
        "the registry itself got the token"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert_eq!(elsewhere.authorized_requests(), 0);
}

#[tokio::test]
async fn a_redirect_on_the_same_origin_is_followed_with_its_credentials() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    stub.require_token(true);
    stub.redirect_tags("old", &format!("{}/v2/app/tags/list", stub.url()));
    let tags = client(options(&stub))
        .list_tags(&repo(&stub.host(), "old"), &basic())
        .await
        .expect("same-origin redirect");
    assert_eq!(tags, ["1.0.0"]);
    let followed = stub
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/app/tags/list")
        .collect::<Vec<_>>();
    assert_eq!(followed.len(), 1);
    assert!(followed[0].has_authorization());
}

#[tokio::test]
async fn a_token_realm_must_be_https_or_on_an_insecure_host() {
    let stub = StubRegistry::start().await.expect("stub");
    let issuer = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    stub.require_token(true);
    let client = client(options(&stub));

    for realm in [
        // Plain HTTP to a host not configured as insecure (the same machine under another name).
        format!("http://{}/token", issuer.localhost()),
        format!("ftp://{}/token", issuer.host()),
        format!("file:///{}/token", issuer.host()),
        format!("http://user:pw@{}/token", issuer.host()),
    ] {
        stub.set_token_realm(&realm);
        let err = list(&client, &stub, &basic()).await.expect_err(&realm);
        assert_eq!(err.kind(), "unsafe_target", "{realm}: {err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
    assert!(issuer.requests().is_empty(), "{:?}", issuer.requests());

    // A realm on another port of an insecure host is the usual test set-up, and fine.
    stub.set_token_realm(&format!("http://{}/token", issuer.host()));
    let tags = list(&client, &stub, &basic()).await.expect("listing");
    assert_eq!(tags, ["1.0.0"]);
    assert_eq!(issuer.token_requests(), 1);
    assert_eq!(issuer.authorized_requests(), 1, "the realm gets the login");
}

#[tokio::test]
async fn link_local_hosts_are_refused_before_any_request() {
    // Literals are refused before a socket is opened; names resolving to link-local addresses
    // are refused by the resolver, also before connecting. No packet leaves loopback here.
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    let port = stub
        .host()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).expect("metrics");
    let named = format!("registry.test:{port}");
    let metadata = format!("metadata.test:{port}");
    let client = RegistryClient::new(
        ClientOptions {
            insecure_registries: vec![
                named.clone(),
                metadata.clone(),
                "169.254.169.254".into(),
                format!("[fe80::1]:{port}"),
            ],
            fixed_addresses: vec![
                ("registry.test".into(), "127.0.0.1".parse().expect("ip")),
                (
                    "metadata.test".into(),
                    "169.254.169.254".parse().expect("ip"),
                ),
            ],
            ..ClientOptions::default()
        },
        metrics,
    )
    .expect("client");

    for host in ["169.254.169.254", "[fe80::1]:5000", &metadata] {
        let err = client
            .list_tags(&repo(host, "app"), &Credentials::Anonymous)
            .await
            .expect_err(host);
        assert_eq!(err.kind(), "unsafe_target", "{host}: {err}");
        assert!(err.to_string().contains("link-local"), "{host}: {err}");
    }
    let text = render(&registry);
    assert!(
        !text.contains("169.254"),
        "no request was even attempted:\n{text}"
    );
    assert!(!text.contains("fe80"), "{text}");

    // The resolver still resolves: a fixed name on loopback works.
    let tags = client
        .list_tags(&repo(&named, "app"), &Credentials::Anonymous)
        .await
        .expect("loopback name");
    assert_eq!(tags, ["1.0.0"]);
    assert_eq!(
        stub.count("GET", "/v2/app/tags/list"),
        1,
        "only the loopback one"
    );
}

#[tokio::test]
async fn hosts_outside_allowed_registries_are_refused_before_any_request() {
    let stub = StubRegistry::start().await.expect("stub");
    stub.set_tags("app", ["1.0.0"]);
    let refused = client(ClientOptions {
        allowed_registries: Some(AllowList::new(["*.example.com", "ghcr.io"]).expect("globs")),
        ..options(&stub)
    });
    let err = list(&refused, &stub, &basic())
        .await
        .expect_err("not allowed");
    assert!(
        matches!(&err, RegistryError::NotAllowed { registry } if *registry == stub.host()),
        "{err:?}"
    );
    assert_eq!(err.kind(), "not_allowed");
    let digest = refused
        .manifest_digest(&repo(&stub.host(), "app"), "1.0.0", &basic())
        .await;
    assert_eq!(digest.expect_err("not allowed").kind(), "not_allowed");
    assert!(stub.requests().is_empty(), "{:?}", stub.requests());

    let allowed = client(ClientOptions {
        allowed_registries: Some(AllowList::new(["127.0.0.1"]).expect("globs")),
        ..options(&stub)
    });
    assert_eq!(
        list(&allowed, &stub, &Credentials::Anonymous)
            .await
            .expect("allowed"),
        ["1.0.0"]
    );
}
