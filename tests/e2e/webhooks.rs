//! Webhooks: the real registry notifies tagwatch, a push reaches the cluster at once, alias tags
//! follow; wrong secrets, forged or stale hints, and oversized or garbage bodies change nothing.
//! Abuse: tokens are refused before the body is read, slow bodies are cut, at most 64 requests
//! are served at once, a full hint queue says so, and a hint never shortens a registry's backoff.
//! Hostile input elsewhere: an absurd `tagwatch.dev/interval` is reported, not a crash loop.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Notifications, Registry, RegistryOptions};
use tagwatch_testbed::stub_registry::{Reply, StubRegistry};
use tagwatch_testbed::wait;

use crate::support::{deployment, events, free_address, image, push, Tagwatch};

const SECRET: &str = "s3cret-webhook";

async fn digest(registry: &Registry, repo: &str, tag: &str) -> Option<String> {
    registry.manifest_digest(repo, tag).await.expect("HEAD")
}

/// Waits until `repo:alias` names the same manifest as `repo:version`. Alias writes run beside
/// the test's reads, and distribution's filesystem storage answers a HEAD racing a PUT of the
/// same manifest with 500 now and then: such an answer counts as "not yet".
async fn alias_at(registry: &Registry, repo: &str, alias: &str, version: &str) {
    let want = wait::until(
        &format!("{repo}:{version} readable"),
        Duration::from_secs(10),
        || async { registry.manifest_digest(repo, version).await.ok().flatten() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait::until(
        &format!("{repo}:{alias} → {version}"),
        Duration::from_secs(30),
        || async {
            let now = registry.manifest_digest(repo, alias).await.ok().flatten();
            (now.as_deref() == Some(want.as_str())).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_the_cluster_through_registry_notifications_and_aliases_follow() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let listen = free_address();
    let registry = Registry::start(RegistryOptions {
        notifications: Some(
            Notifications::to(format!("http://{listen}/webhooks/registry"))
                .header("Authorization", format!("Bearer {SECRET}")),
        ),
        ..RegistryOptions::default()
    })
    .await
    .expect("registry");
    let host = registry.host();
    push(&registry, "app", &["1.1.8", "1.2.3"]).await;
    registry
        .push_image("multi", "2.0.0", ImageKind::OciIndex)
        .await
        .expect("index");
    deployment("web")
        .image(&format!("{host}/app:1.2.3"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let app = format!("{host}/app");
    let multi = format!("{host}/multi");
    let tagwatch = Tagwatch::run_on(
        &cluster,
        listen,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            // Ten minutes: anything sooner came through the webhook.
            "--interval",
            "10m",
            "--maintain-aliases",
            &app,
            "--maintain-aliases",
            &multi,
            "--webhook-secret",
            SECRET,
            "--lease-namespace",
            &ns,
        ],
    );
    tagwatch.wait_polling().await;
    // The start-up listing backfills the aliases.
    alias_at(&registry, "app", "1.2", "1.2.3").await;
    alias_at(&registry, "app", "1", "1.2.3").await;
    alias_at(&registry, "app", "1.1", "1.1.8").await;
    alias_at(&registry, "multi", "2.0", "2.0.0").await;

    push(&registry, "app", &["1.2.4"]).await;
    let pushed = Instant::now();
    wait::until("1.2.4 running", Duration::from_secs(5), || async {
        (image(&cluster, &ns, "web").await == format!("{host}/app:1.2.4")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let latency = pushed.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "push to patch took {latency:?}"
    );
    alias_at(&registry, "app", "1.2", "1.2.4").await;
    alias_at(&registry, "app", "1", "1.2.4").await;

    // A multi-arch index: the alias is the index itself.
    let index = registry
        .push_image("multi", "2.0.1", ImageKind::OciIndex)
        .await
        .expect("index");
    alias_at(&registry, "multi", "2.0", "2.0.1").await;
    alias_at(&registry, "multi", "2", "2.0.1").await;
    assert_eq!(digest(&registry, "multi", "2").await, Some(index));

    // A hotfix on the older line moves 1.1 only.
    let one = digest(&registry, "app", "1").await;
    push(&registry, "app", &["1.1.9"]).await;
    alias_at(&registry, "app", "1.1", "1.1.9").await;
    assert_eq!(digest(&registry, "app", "1").await, one);
    assert_eq!(
        digest(&registry, "app", "1.2").await,
        digest(&registry, "app", "1.2.4").await
    );

    // A prerelease moves nothing and is not deployed.
    let listings = |t: &Tagwatch| {
        let t = t.listen;
        async move {
            let body = reqwest::get(format!("http://{t}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            Some(
                body.lines()
                    .filter(|l| {
                        l.starts_with("tagwatch_registry_requests_total")
                            && l.contains("operation=\"tags\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>(),
            )
        }
    };
    let before = listings(&tagwatch).await.expect("metrics");
    push(&registry, "app", &["1.3.0-rc.1"]).await;
    wait::until("the prerelease listed", Duration::from_secs(5), || async {
        (listings(&tagwatch).await? > before).then_some(())
    })
    .await
    .expect("a webhook re-listing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(digest(&registry, "app", "1").await, one);
    assert_eq!(digest(&registry, "app", "1.3").await, None);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.2.4")
    );

    // Deleting 1.2.4 (its aliases share its manifest and go with it) moves them back to 1.2.3;
    // the Deployment is never downgraded.
    let gone = digest(&registry, "app", "1.2.4").await.expect("digest");
    registry
        .delete_manifest("app", &gone)
        .await
        .expect("delete");
    alias_at(&registry, "app", "1.2", "1.2.3").await;
    alias_at(&registry, "app", "1", "1.2.3").await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{host}/app:1.2.4")
    );
    let accepted = tagwatch
        .metric(r#"tagwatch_webhooks_total{result="accepted",source="registry"}"#)
        .await
        .unwrap_or(0.0);
    assert!(
        accepted >= 4.0,
        "registry notifications accepted: {accepted}"
    );
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_the_secret_and_are_only_hints() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let registry = Registry::anonymous().await.expect("registry");
    let host = registry.host();
    push(&registry, "hint", &["1.0.0"]).await;
    deployment("hinted")
        .image(&format!("{host}/hint:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let tagwatch = Tagwatch::run(
        &cluster,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            "--interval",
            "10m",
            "--webhook-secret",
            SECRET,
            "--lease-namespace",
            &ns,
        ],
    );
    tagwatch.wait_polling().await;
    registry.sync_log().await.expect("log");
    let listed = || registry.count("GET", "/hint/tags/list");
    let at_start = listed();
    assert_eq!(at_start, 1, "one start-up listing");

    let body = serde_json::json!({"image": format!("{host}/hint"), "tag": "9.9.9"})
        .to_string()
        .into_bytes();
    let wrong: &[(&str, &str)] = &[("Authorization", "Bearer not-the-secret")];
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", wrong, body.clone())
            .await,
        401
    );
    assert_eq!(
        tagwatch.post("/webhooks/generic", &[], body.clone()).await,
        401
    );
    let forged = sign(b"another body");
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/generic",
                &[("X-Tagwatch-Signature", &forged)],
                body.clone()
            )
            .await,
        401
    );
    let github_body = br#"{"action":"published"}"#.to_vec();
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/github",
                &[
                    ("X-GitHub-Event", "registry_package"),
                    ("X-Hub-Signature-256", "sha256=00")
                ],
                github_body
            )
            .await,
        401
    );
    let bearer = format!("Bearer {SECRET}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", auth, vec![b'{'; 1024 * 1024 + 1])
            .await,
        413
    );
    assert_eq!(
        tagwatch
            .post("/webhooks/generic", auth, b"not json".to_vec())
            .await,
        400
    );
    assert_eq!(
        tagwatch.post("/webhooks/nosuch", auth, body.clone()).await,
        404
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(
        listed(),
        at_start,
        "refused webhooks read nothing from the registry"
    );
    assert_eq!(
        tagwatch
            .metric(r#"tagwatch_webhooks_total{result="unauthorized",source="generic"}"#)
            .await,
        Some(3.0)
    );

    // Signed, naming a tag that does not exist: one re-listing, no patch.
    let signature = sign(&body);
    assert_eq!(
        tagwatch
            .post(
                "/webhooks/generic",
                &[("X-Tagwatch-Signature", &signature)],
                body.clone()
            )
            .await,
        202
    );
    wait::until("one re-listing", Duration::from_secs(5), || async {
        registry.sync_log().await.ok()?;
        (listed() == at_start + 1).then_some(())
    })
    .await
    .expect("re-listed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(listed(), at_start + 1, "exactly one");
    assert_eq!(
        image(&cluster, &ns, "hinted").await,
        format!("{host}/hint:1.0.0")
    );

    // A repository nobody uses is ignored: no listing at all.
    let stranger = serde_json::json!({"image": format!("{host}/stranger"), "tag": "1.0.0"})
        .to_string()
        .into_bytes();
    assert_eq!(
        tagwatch.post("/webhooks/generic", auth, stranger).await,
        202
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    registry.sync_log().await.expect("log");
    assert_eq!(registry.count("GET", "/stranger/tags/list"), 0);

    // A real new tag through the query-token form (what Docker Hub and Quay can send).
    push(&registry, "hint", &["1.1.0"]).await;
    let path = format!("/webhooks/generic?token={SECRET}");
    let body = serde_json::json!({"image": format!("{host}/hint:1.1.0")})
        .to_string()
        .into_bytes();
    assert_eq!(tagwatch.post(&path, &[], body).await, 202);
    wait::until("the real tag applied", Duration::from_secs(5), || async {
        (image(&cluster, &ns, "hinted").await == format!("{host}/hint:1.1.0")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
}

// ---------------------------------------------------------------------------------------------
// The webhook endpoint under abuse, served in-process: the limits are fields of its state, so a
// test can shorten the body timeout instead of waiting 5 s.

/// The webhook routes alone (no cluster, no poller): `hints` is kept but never drained.
struct Endpoint {
    addr: std::net::SocketAddr,
    registry: prometheus::Registry,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    _hints: tokio::sync::mpsc::Receiver<Vec<tagwatch::server::webhooks::Hint>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn endpoint(queue: usize, body_timeout: Duration) -> Endpoint {
    let registry = prometheus::Registry::new();
    let metrics = tagwatch::metrics::Metrics::new(&registry).expect("metrics");
    let (hints_tx, hints) = tokio::sync::mpsc::channel(queue);
    let mut hooks = tagwatch::server::Webhooks::new(
        Some(SECRET.into()),
        hints_tx,
        tagwatch::leader::Leadership::always(),
        metrics,
    );
    hooks.body_timeout = body_timeout;
    let in_flight = hooks.in_flight.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = tagwatch::server::serve(
        "127.0.0.1:0".parse().expect("address"),
        tagwatch::server::HttpState {
            liveness: None,
            registry: registry.clone(),
            ready: Default::default(),
            webhooks: Some(hooks),
            slack: None,
        },
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .expect("serve");
    Endpoint {
        addr,
        registry,
        in_flight,
        _hints: hints,
        _stop: stop,
    }
}

impl Endpoint {
    fn metric(&self, source: &str, result: &str) -> f64 {
        let sample = format!(r#"tagwatch_webhooks_total{{result="{result}",source="{source}"}} "#);
        tagwatch::metrics::render(&self.registry)
            .lines()
            .find_map(|l| l.strip_prefix(&sample))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(10))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("POST")
    }

    /// A raw connection that sent the request head (declaring `length` body bytes) and `first`.
    async fn open(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        length: usize,
        first: &[u8],
    ) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("head");
        stream.write_all(first).await.expect("first bytes");
        stream
    }
}

/// The response head (status line and headers, lower-cased), or None if none came `within`.
async fn response_head(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&head).to_ascii_lowercase())
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn hint_body(image: &str) -> Vec<u8> {
    serde_json::json!({"image": image, "tag": "1.0.0"})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_the_body_is_read() {
    // A server waiting for the body would answer 408 (after 1 s), not 401.
    let hooks = endpoint(8, Duration::from_secs(1)).await;
    let mib = 1024 * 1024;
    let chunk = vec![b' '; 16 * 1024];
    let signature = sign(b"the body it will never see");
    #[rustfmt::skip]
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/webhooks/generic", &[("Authorization", "Bearer wrong")]),
        ("/webhooks/registry?token=wrong", &[]),
        ("/webhooks/harbor", &[("Authorization", "wrong")]),
        ("/webhooks/dockerhub", &[]),
        ("/webhooks/github", &[("X-GitHub-Event", "registry_package")]),
        ("/webhooks/github", &[("X-Hub-Signature-256", "sha256=00")]),
        ("/webhooks/generic", &[("X-Tagwatch-Signature", "sha256=zz")]),
        // A matching token in the wrong place for GitHub: still no reason to read.
        ("/webhooks/github", &[("Authorization", "Bearer s3cret-webhook")]),
    ];
    for (path, headers) in cases {
        let started = Instant::now();
        // 1 MiB declared, 16 KiB sent: the rest never comes.
        let mut stream = hooks.open(path, headers, mib, &chunk).await;
        let head = response_head(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| {
                panic!("{path} {headers:?}: no answer while the body is incomplete")
            });
        assert_eq!(status(&head), 401, "{path} {headers:?}: {head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(hooks.metric("generic", "unauthorized"), 2.0);
    assert_eq!(hooks.metric("github", "unauthorized"), 3.0);
    assert_eq!(hooks.metric("generic", "timeout"), 0.0);

    // A well-formed signature is worth reading the body for: the server waits for it (and cuts it
    // at the body timeout), then checks it.
    let mut stream = hooks
        .open(
            "/webhooks/github",
            &[("X-Hub-Signature-256", &signature)],
            mib,
            &chunk,
        )
        .await;
    let head = response_head(&mut stream, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(status(&head), 408, "{head}");
    assert_eq!(hooks.metric("github", "timeout"), 1.0);
    // An authenticated sender declaring more than 1 MiB is refused before its body too.
    let bearer = format!("Bearer {SECRET}");
    let mut stream = hooks
        .open(
            "/webhooks/generic",
            &[("Authorization", &bearer)],
            mib + 1,
            &chunk,
        )
        .await;
    let head = response_head(&mut stream, Duration::from_secs(2))
        .await
        .expect("an answer");
    assert_eq!(status(&head), 413, "{head}");
}

#[tokio::test]
async fn a_slow_body_is_cut_with_408_and_frees_its_slot() {
    use tokio::io::AsyncWriteExt;
    let timeout = Duration::from_millis(400);
    let hooks = endpoint(8, timeout).await;
    let bearer = format!("Bearer {SECRET}");
    let body = hint_body("reg.example/app");
    let stream = hooks
        .open(
            "/webhooks/generic",
            &[("Authorization", &bearer)],
            body.len(),
            &body[..1],
        )
        .await;
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    // A byte every 50 ms: always something, never the whole body in time.
    let trickle = tokio::spawn(async move {
        for byte in &body[1..] {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let head = {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        let read = async {
            while !head.ends_with(b"\r\n\r\n") {
                if read.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("an answer within 5 s");
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    };
    let elapsed = started.elapsed();
    trickle.abort();
    assert_eq!(status(&head), 408, "{head}");
    assert!(
        elapsed >= timeout && elapsed < Duration::from_secs(3),
        "cut after {elapsed:?}"
    );
    assert_eq!(hooks.metric("generic", "timeout"), 1.0);
    wait::until("the slot freed", Duration::from_secs(5), || async {
        (hooks.in_flight.available_permits() == tagwatch::server::MAX_WEBHOOKS_IN_FLIGHT)
            .then_some(())
    })
    .await
    .expect("slot freed");
    // A sender that sends its body at once is served.
    let response = hooks
        .post(
            "/webhooks/generic",
            &[("Authorization", &bearer)],
            hint_body("reg.example/app"),
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_64_webhooks_are_served_at_once() {
    let hooks = endpoint(8, Duration::from_secs(30)).await;
    let bearer = format!("Bearer {SECRET}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];
    let mut held = Vec::new();
    for _ in 0..tagwatch::server::MAX_WEBHOOKS_IN_FLIGHT {
        // Authenticated, then silent: each holds a slot while its body is awaited.
        held.push(hooks.open("/webhooks/generic", auth, 64, b"{").await);
    }
    wait::until("64 requests in flight", Duration::from_secs(10), || async {
        (hooks.in_flight.available_permits() == 0).then_some(())
    })
    .await
    .expect("all slots taken");
    let mut extra = hooks.open("/webhooks/generic", auth, 64, b"{").await;
    let head = response_head(&mut extra, Duration::from_secs(2))
        .await
        .expect("the 65th is answered at once");
    assert_eq!(status(&head), 503, "{head}");
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    assert_eq!(hooks.metric("generic", "busy"), 1.0);
    // The senders go away: their slots come back, and the next webhook is served.
    drop(held);
    wait::until("slots freed", Duration::from_secs(10), || async {
        (hooks.in_flight.available_permits() == tagwatch::server::MAX_WEBHOOKS_IN_FLIGHT)
            .then_some(())
    })
    .await
    .expect("slots freed");
    let response = hooks
        .post("/webhooks/generic", auth, hint_body("reg.example/app"))
        .await;
    assert_eq!(response.status().as_u16(), 202);
}

#[tokio::test]
async fn a_full_hint_queue_answers_503_with_retry_after() {
    let hooks = endpoint(1, Duration::from_secs(5)).await;
    let bearer = format!("Bearer {SECRET}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];
    let first = hooks
        .post("/webhooks/generic", auth, hint_body("reg.example/app"))
        .await;
    assert_eq!(first.status().as_u16(), 202);
    let second = hooks
        .post("/webhooks/generic", auth, hint_body("reg.example/other"))
        .await;
    assert_eq!(second.status().as_u16(), 503);
    let retry_after: u64 = second
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=5).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(hooks.metric("generic", "accepted"), 1.0);
    assert_eq!(hooks.metric("generic", "queue_full"), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Through `tagwatch run`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_waits_for_the_registry_backoff() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let stub = StubRegistry::start().await.expect("stub");
    let host = stub.host();
    stub.set_tags("limited", ["1.0.0"]);
    stub.set_tags("control", ["1.0.0"]);
    // The first listing is rate limited for ten minutes.
    stub.script(
        "limited",
        vec![Reply::TooManyRequests {
            retry_after_secs: 600,
        }],
    );
    for (name, repo) in [("limited", "limited"), ("control", "control")] {
        deployment(name)
            .image(&format!("{host}/{repo}:1.0.0"))
            .policy("minor")
            .create(&cluster, &ns)
            .await;
    }
    let tagwatch = Tagwatch::run(
        &cluster,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            "--interval",
            "10m",
            "--webhook-secret",
            SECRET,
            "--lease-namespace",
            &ns,
        ],
    );
    let listings = |repo: &str| stub.count("GET", &format!("/v2/{repo}/tags/list"));
    wait::until("both listed once", Duration::from_secs(30), || async {
        (listings("limited") == 1 && listings("control") == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    tagwatch.wait_polling().await;

    // A burst of (replayed) hints for the rate-limited repository, then hints for a healthy one.
    let bearer = format!("Bearer {SECRET}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];
    for _ in 0..5 {
        let body = hint_body(&format!("{host}/limited"));
        assert_eq!(tagwatch.post("/webhooks/generic", auth, body).await, 202);
    }
    // The control repository is re-listed twice, one hint after the other: when its third
    // listing arrives, the round that served the hints before it (and any listing it made) is over.
    for expected in [2, 3] {
        let body = hint_body(&format!("{host}/control"));
        assert_eq!(tagwatch.post("/webhooks/generic", auth, body).await, 202);
        wait::until("the control re-listed", Duration::from_secs(10), || async {
            (listings("control") == expected).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    }
    assert_eq!(listings("limited"), 1, "hints do not shorten a Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_interval_is_reported_and_the_others_are_served() {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let stub = StubRegistry::start().await.expect("stub");
    let host = stub.host();
    stub.set_tags("absurd", ["1.0.0", "1.1.0"]);
    stub.set_tags("good", ["1.0.0", "1.1.0"]);
    // Parses as a duration (u64::MAX seconds), and used to overflow the clock on first listing.
    deployment("absurd")
        .image(&format!("{host}/absurd:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/interval", "18446744073709551615s")
        .create(&cluster, &ns)
        .await;
    deployment("good")
        .image(&format!("{host}/good:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let tagwatch = Tagwatch::run(
        &cluster,
        &[
            "-n",
            &ns,
            "--insecure-registry",
            &host,
            "--interval",
            "1s",
            "--lease-namespace",
            &ns,
        ],
    );
    wait::until("good updated", Duration::from_secs(30), || async {
        (image(&cluster, &ns, "good").await == format!("{host}/good:1.1.0")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    let warning = wait::until(
        "a Warning naming the annotation",
        Duration::from_secs(10),
        || async {
            events(&cluster, &ns).await.into_iter().find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("InvalidAnnotation")
                    && e.note
                        .as_deref()
                        .unwrap_or_default()
                        .contains("tagwatch.dev/interval")
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert!(
        warning.note.as_deref().unwrap_or_default().contains("24h"),
        "{warning:?}"
    );
    // Still polling a few rounds later (at 1 s), never having listed the skipped workload.
    let cycles = tagwatch
        .metric("tagwatch_poll_cycles_total")
        .await
        .expect("metrics");
    wait::until("two more rounds", Duration::from_secs(15), || async {
        (tagwatch.metric("tagwatch_poll_cycles_total").await? >= cycles + 2.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert_eq!(tagwatch.get("/healthz").await.map(|(s, _)| s), Some(200));
    assert_eq!(stub.count("GET", "/v2/absurd/tags/list"), 0);
    assert_eq!(
        image(&cluster, &ns, "absurd").await,
        format!("{host}/absurd:1.0.0")
    );
}
