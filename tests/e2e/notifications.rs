//! Notifications end to end: a real HTTP receiver (axum on a loopback port) records what each
//! sink format sends for an update the poller applies; routing by `tagwatch.dev/notify`, default
//! sinks and filters; sinks that are down or hang do not hold the update back and end counted
//! `failed`; the service reads its sinks from the config file and never logs their URLs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use serde_json::Value;
use sha2::Sha256;
use tagwatch::config::FileConfig;
use tagwatch::metrics::Metrics;
use tagwatch::notify::{sources, DeliveryOptions, Notifier};
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;

use crate::support::{
    deployment, free_port, image, poller_notifying, push, snapshot, Harness, Tagwatch,
};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answers: a receiver that hangs.
    Hang,
}

/// An HTTP server on 127.0.0.1 recording every request, answering each with `reply`.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(reply: Reply) -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = seen.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(Received {
                        method,
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    match reply {
                        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
                        Reply::Hang => std::future::pending().await,
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        wait::until(
            &format!("{n} request(s) at {path}"),
            Duration::from_secs(20),
            || async {
                let found = self.at(path);
                (found.len() >= n).then_some(found)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; seen {:?}", self.seen.lock().unwrap()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn create_secret(cluster: &TestCluster, ns: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// A poller whose Writer notifies the sinks of `notifications` (YAML, as under the config file's
/// `notifications:` key), URLs and keys read from `ns`.
async fn harness(
    cluster: &TestCluster,
    registry: &Registry,
    notifications: &str,
    options: DeliveryOptions,
) -> Harness {
    let file = FileConfig::parse(&format!("notifications:\n{notifications}"))
        .unwrap_or_else(|e| panic!("{e}\n{notifications}"));
    let prometheus = prometheus::Registry::new();
    let metrics = Metrics::new(&prometheus).expect("metrics");
    let notifier: Notifier = sources::start(
        &file.notifications,
        &cluster.client,
        &cluster.namespace,
        metrics.clone(),
        &options,
    )
    .await
    .expect("sinks resolve")
    .expect("sinks configured");
    poller_notifying(
        cluster,
        &[registry.host()],
        DockerConfig::default(),
        prometheus,
        metrics,
        notifier,
    )
}

fn sample(sink: &str, result: &str) -> String {
    format!(r#"tagwatch_notifications_total{{result="{result}",sink="{sink}"}}"#)
}

async fn wait_metric(h: &Harness, sink: &str, result: &str, want: f64) {
    let line = sample(sink, result);
    wait::until(&line, Duration::from_secs(30), || async {
        (h.metric(&line) == want).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", h.metrics()));
}

#[tokio::test]
async fn every_format_tells_of_an_applied_update() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let receiver = Receiver::start(Reply::Status(200)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    // Files and Secrets often end in a newline: it is not part of the URL.
    let teams_url = file("teams-url", &format!("{}\n", receiver.url("/teams")));
    let events_url = file("events-url", &receiver.url("/events"));
    let events_key = file("events-key", "file-held key\n");
    create_secret(
        &cluster,
        &ns,
        "notify",
        &[
            ("slack", &receiver.url("/slack")),
            ("hook", &receiver.url("/hook")),
            ("hmac", "secret-held key"),
        ],
    )
    .await;
    let mut h = harness(
        &cluster,
        &registry,
        &format!(
            "  sinks:
    - {{name: chat, type: slack, url: {{secret: notify, key: slack}}, default: true}}
    - {{name: teams, type: teams, url: {{file: '{teams_url}'}}, default: true}}
    - name: hook
      type: webhook
      url: {{secret: notify, key: hook}}
      secret: {{secret: notify, key: hmac}}
      default: true
    - name: events
      type: cloudevents
      url: {{file: '{events_url}'}}
      secret: {{file: '{events_key}'}}
      default: true
"
        ),
        DeliveryOptions::default(),
    )
    .await;
    for sink in ["chat", "teams", "hook", "events"] {
        for result in ["sent", "failed", "dropped"] {
            assert!(
                h.metrics().contains(&format!("{} 0", sample(sink, result))),
                "{sink} {result} starts at 0: {}",
                h.metrics()
            );
        }
    }
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .create(&cluster, &ns)
        .await;

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    let workload = format!("{ns}/Deployment/web");

    let slack = &receiver.wait_for("/slack", 1).await[0];
    assert_eq!(slack.method, Method::POST);
    assert_eq!(slack.header("content-type"), Some("application/json"));
    assert_eq!(slack.header("x-tagwatch-signature"), None);
    let body = slack.json();
    assert_eq!(
        body["text"],
        format!("Image updated: {workload}: tagwatch: web 1.0.0 → 1.1.0")
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        format!("Image updated: {workload}")
    );
    assert_eq!(
        body["blocks"][1]["text"]["text"],
        "tagwatch: web 1.0.0 → 1.1.0"
    );
    assert_eq!(
        body["blocks"][2]["fields"][0]["text"],
        format!("*Workload*\n`{workload}`")
    );
    assert_eq!(
        body["blocks"][2]["fields"][1]["text"],
        "*Event*\n`update.applied`"
    );

    let teams = &receiver.wait_for("/teams", 1).await[0];
    assert_eq!(teams.header("content-type"), Some("application/json"));
    let body = teams.json();
    assert_eq!(body["type"], "message");
    let card = &body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["version"], "1.4");
    assert_eq!(
        card["content"]["body"][0]["text"],
        format!("Image updated: {workload}")
    );
    assert_eq!(
        card["content"]["body"][1]["text"],
        "tagwatch: web 1.0.0 → 1.1.0"
    );

    let hook = &receiver.wait_for("/hook", 1).await[0];
    assert_eq!(hook.header("content-type"), Some("application/json"));
    // The signature is over the exact bytes received, under the key held in the Secret.
    assert_eq!(
        hook.header("x-tagwatch-signature"),
        Some(hmac_hex(b"secret-held key", &hook.body).as_str())
    );
    let body = hook.json();
    assert_eq!(body["event"], "update.applied");
    assert_eq!(body["reason"], "ImageUpdated");
    assert_eq!(body["type"], "Normal");
    assert_eq!(
        body["workload"],
        serde_json::json!({"namespace": ns, "kind": "Deployment", "name": "web"})
    );
    assert_eq!(body["message"], "tagwatch: web 1.0.0 → 1.1.0");
    let time: k8s_openapi::jiff::Timestamp = body["time"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");
    assert!(
        time.duration_until(k8s_openapi::jiff::Timestamp::now())
            .as_secs()
            < 600
    );

    let event = &receiver.wait_for("/events", 1).await[0];
    assert_eq!(
        event.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(
        event.header("x-tagwatch-signature"),
        Some(hmac_hex(b"file-held key", &event.body).as_str())
    );
    let body = event.json();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], "dev.tagwatch.update.applied");
    assert_eq!(body["source"], format!("tagwatch/{ns}/Deployment/web"));
    assert_eq!(body["subject"], workload);
    assert_eq!(body["datacontenttype"], "application/json");
    assert!(
        body["id"].as_str().is_some_and(|id| id.len() == 32),
        "{body}"
    );
    assert!(body["time"]
        .as_str()
        .is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()));
    assert_eq!(body["data"]["reason"], "ImageUpdated");
    assert_eq!(body["data"]["workload"]["name"], "web");
    assert_eq!(body["data"]["message"], "tagwatch: web 1.0.0 → 1.1.0");

    for sink in ["chat", "teams", "hook", "events"] {
        wait_metric(&h, sink, "sent", 1.0).await;
        assert_eq!(h.metric(&sample(sink, "failed")), 0.0);
    }
    assert_eq!(receiver.count(), 4, "one request per sink");
}

#[tokio::test]
async fn the_annotation_default_sinks_and_filters_pick_who_hears() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let receiver = Receiver::start(Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sinks = String::from("  sinks:\n");
    // ops: a default sink; audit: only for who names it; elsewhere: default, but for another
    // namespace; rollbacks: default, but only rollbacks.
    for (name, extra) in [
        ("ops", "default: true"),
        ("audit", "default: false"),
        ("elsewhere", "default: true, namespaces: [not-this-one]"),
        ("rollbacks", "default: true, events: [rollback]"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, receiver.url(&format!("/{name}"))).expect("write");
        sinks.push_str(&format!(
            "    - {{name: {name}, type: webhook, url: {{file: '{}'}}, {extra}}}\n",
            path.display()
        ));
    }
    let mut h = harness(&cluster, &registry, &sinks, DeliveryOptions::default()).await;
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    for (name, notify) in [
        ("plain", None),
        ("picky", Some("audit, no-such-sink")),
        ("quiet", Some("")),
    ] {
        let mut builder = deployment(name)
            .image(&format!("{app}:1.0.0"))
            .policy("minor")
            .replicas(0);
        if let Some(notify) = notify {
            builder = builder.annotate("tagwatch.dev/notify", notify);
        }
        builder.create(&cluster, &ns).await;
    }

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 3);
    let ops = receiver.wait_for("/ops", 1).await;
    let audit = receiver.wait_for("/audit", 1).await;
    wait_metric(&h, "ops", "sent", 1.0).await;
    wait_metric(&h, "audit", "sent", 1.0).await;
    // No annotation: the default sink that takes the event and the namespace.
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].json()["workload"]["name"], "plain");
    // Named: that sink only, the unknown name ignored.
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].json()["workload"]["name"], "picky");
    // `quiet` chose no sink; the filtered sinks heard nothing.
    for sink in ["elsewhere", "rollbacks"] {
        assert!(receiver.at(&format!("/{sink}")).is_empty(), "{sink}");
        assert_eq!(h.metric(&sample(sink, "sent")), 0.0, "{sink}");
    }
    assert_eq!(receiver.count(), 2);
}

#[tokio::test]
async fn sinks_that_are_down_or_hang_do_not_hold_the_update_back() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let hanging = Receiver::start(Reply::Hang).await;
    // Bound and released: connections are refused.
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    create_secret(
        &cluster,
        &ns,
        "notify",
        &[("down", &down), ("slow", &hanging.url("/slow"))],
    )
    .await;
    // Waits of 1 s then 2 s (jitter: at least half), answers given up on after 500 ms: each
    // sink is still trying well after the update.
    let options = DeliveryOptions {
        timeout: Duration::from_millis(500),
        attempts: 3,
        backoff: Duration::from_secs(2),
        ..DeliveryOptions::default()
    };
    let mut h = harness(
        &cluster,
        &registry,
        "  sinks:
    - {name: down, type: webhook, url: {secret: notify, key: down}, default: true}
    - {name: slow, type: slack, url: {secret: notify, key: slow}, default: true}
",
        options,
    )
    .await;
    let app = format!("{}/app", registry.host());
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .replicas(0)
        .create(&cluster, &ns)
        .await;

    let started = Instant::now();
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    let took = started.elapsed();
    assert_eq!(report.applied, 1);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.1.0"));
    // The round did not wait for either sink: both are still trying.
    for sink in ["down", "slow"] {
        assert_eq!(
            h.metric(&sample(sink, "failed")),
            0.0,
            "{sink} after {took:?}"
        );
        assert_eq!(h.metric(&sample(sink, "sent")), 0.0, "{sink}");
    }
    wait_metric(&h, "down", "failed", 1.0).await;
    wait_metric(&h, "slow", "failed", 1.0).await;
    // Every try reached the hanging receiver, each abandoned at the timeout.
    assert_eq!(hanging.at("/slow").len(), 3);
    for sink in ["down", "slow"] {
        assert_eq!(h.metric(&sample(sink, "sent")), 0.0, "{sink}");
        assert_eq!(h.metric(&sample(sink, "dropped")), 0.0, "{sink}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_notifies_from_its_config_and_never_logs_a_url() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let chat = Receiver::start(Reply::Status(200)).await;
    // A revoked webhook: 404 is given up on at once, and logged.
    let revoked = Receiver::start(Reply::Status(404)).await;
    let secret_path = "/services/T0001/B0002/revokedTOKENrevoked";
    create_secret(
        &cluster,
        &ns,
        "notify",
        &[
            ("chat", &chat.url("/services/T0001/B0001/chatTOKENchat")),
            ("revoked", &revoked.url(secret_path)),
        ],
    )
    .await;
    push(&registry, "app", &["1.0.0", "1.0.1"]).await;
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("patch")
        .replicas(0)
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tagwatch.yaml");
    std::fs::write(
        &config,
        "notifications:\n  sinks:\n    \
         - {name: chat, type: slack, url: {secret: notify, key: chat}, default: true}\n    \
         - {name: revoked, type: webhook, url: {secret: notify, key: revoked}, default: true}\n",
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let tagwatch = Tagwatch::watching(
        &cluster,
        &registry,
        &["--config", &config, "--log-level", "info,tagwatch=debug"],
    );
    tagwatch.wait_polling().await;
    let sent = chat
        .wait_for("/services/T0001/B0001/chatTOKENchat", 1)
        .await;
    assert_eq!(
        sent[0].json()["blocks"][0]["text"]["text"],
        format!("Image updated: {ns}/Deployment/web")
    );
    tagwatch.wait_metric(&sample("chat", "sent"), 1.0).await;
    tagwatch
        .wait_metric(&sample("revoked", "failed"), 1.0)
        .await;
    assert_eq!(revoked.count(), 1, "a 404 is not retried");
    let given_up = wait::until("the give-up logged", Duration::from_secs(10), || async {
        let lines = tagwatch.log_events("notification not delivered; given up");
        (!lines.is_empty()).then_some(lines)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    assert_eq!(given_up[0]["sink"], "revoked");
    assert_eq!(given_up[0]["answer"], "HTTP 404");
    let logs = tagwatch.logs();
    for secret in ["chatTOKENchat", "revokedTOKENrevoked", "/services/"] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
}
