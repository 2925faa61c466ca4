//! Slack interactive approvals end to end: the `approval.required` message (received by a real
//! HTTP receiver) carries Approve / Deny buttons naming the workload and the proposal; clicks,
//! signed as Slack signs them, are posted to tagwatch's `POST /slack/interactions` (the real
//! router on a loopback port) and recorded on the workload in the test bed: an approval under
//! `slack:<team>/<user>` that releases the update, a denial that rejects the version, stale
//! buttons, wrong and stale signatures, and the allow-list (users, and groups asked of a stub of
//! Slack's Web API).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing;
use axum::Router;
use kube::runtime::events::Reporter;
use serde_json::{json, Value};
use tagwatch::config::FileConfig;
use tagwatch::metrics::Metrics;
use tagwatch::notify::deliver::SigningKey;
use tagwatch::notify::sources::{self, InteractionConfig};
use tagwatch::notify::{DeliveryOptions, Notifier};
use tagwatch::registry::DockerConfig;
use tagwatch::server::slack::{verify, SlackInteractions};
use tagwatch::server::HttpState;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;

use crate::support::{
    annotation, deployment, events, get, image, poller_notifying, poller_with, push, snapshot,
    Harness,
};

const SECRET: &str = "slack-signing-secret-for-tests";
const TEAM: &str = "T0TEAM";

/// Everything a stub of Slack saw: incoming-webhook messages, group look-ups, click answers.
#[derive(Default)]
struct Seen {
    messages: Vec<Value>,
    lookups: Vec<(String, Option<String>)>,
    answers: Vec<Value>,
}

/// A stub of Slack on 127.0.0.1: `POST /hook` (an incoming webhook), `GET
/// /api/usergroups.users.list` (the group `SGROUP` holds `UGROUPED`), `POST /respond` (a click's
/// `response_url`).
struct SlackStub {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlackStub {
    async fn start() -> SlackStub {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (hook, lookup, respond) = (seen.clone(), seen.clone(), seen.clone());
        let app = Router::new()
            .route(
                "/hook",
                routing::post(move |body: Bytes| async move {
                    let value = serde_json::from_slice(&body).expect("a JSON message");
                    hook.lock().unwrap().messages.push(value);
                    "ok"
                }),
            )
            .route(
                "/api/usergroups.users.list",
                routing::get(
                    move |Query(q): Query<std::collections::HashMap<String, String>>,
                          headers: HeaderMap| async move {
                        let group = q.get("usergroup").cloned().unwrap_or_default();
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        lookup.lock().unwrap().lookups.push((group.clone(), auth));
                        axum::Json(match group.as_str() {
                            "SGROUP" => json!({"ok": true, "users": ["UGROUPED", "UALSO"]}),
                            _ => json!({"ok": false, "error": "no_such_subteam"}),
                        })
                    },
                ),
            )
            .route(
                "/respond",
                routing::post(move |body: Bytes| async move {
                    let value = serde_json::from_slice(&body).expect("a JSON answer");
                    respond.lock().unwrap().answers.push(value);
                    "ok"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackStub { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for SlackStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// tagwatch's HTTP routes with Slack interactions on (no webhooks, no poller).
struct Endpoint {
    addr: SocketAddr,
    registry: prometheus::Registry,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Endpoint {
    async fn start(cluster: &TestCluster, config: InteractionConfig) -> Endpoint {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).expect("metrics");
        let slack = SlackInteractions::new(
            config,
            cluster.client.clone(),
            Reporter {
                controller: "tagwatch".into(),
                instance: None,
            },
            metrics,
        )
        .expect("slack interactions");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, _task) = tagwatch::server::serve(
            "127.0.0.1:0".parse().expect("address"),
            HttpState {
                registry: registry.clone(),
                ready: Default::default(),
                liveness: None,
                webhooks: None,
                slack: Some(slack),
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
            _stop: stop,
        }
    }

    /// Posts `body` with Slack's headers; `signature: None` signs it with [`SECRET`].
    async fn post(&self, body: &[u8], timestamp: i64, signature: Option<&str>) -> (u16, String) {
        let timestamp = timestamp.to_string();
        let signed = verify::sign(SECRET.as_bytes(), &timestamp, body);
        let response = reqwest::Client::new()
            .post(format!("http://{}/slack/interactions", self.addr))
            .timeout(Duration::from_secs(10))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(verify::TIMESTAMP, &timestamp)
            .header(verify::SIGNATURE, signature.unwrap_or(&signed))
            .body(body.to_vec())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// A click signed now; the answer's `text` (the route answers 200 with JSON).
    async fn click(&self, body: &[u8]) -> String {
        let (status, text) = self.post(body, now(), None).await;
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).expect("a JSON answer");
        assert_eq!(answer["response_type"], "ephemeral", "{answer}");
        answer["text"].as_str().unwrap_or_default().to_string()
    }

    fn metric(&self, result: &str) -> f64 {
        let sample = format!(r#"tagwatch_slack_interactions_total{{result="{result}"}} "#);
        tagwatch::metrics::render(&self.registry)
            .lines()
            .find_map(|l| l.strip_prefix(&sample))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn config(api: &str) -> InteractionConfig {
    InteractionConfig {
        signing_secret: SigningKey(SECRET.as_bytes().to_vec()),
        bot_token: None,
        allowed_users: BTreeSet::new(),
        allowed_groups: Vec::new(),
        api_url: reqwest::Url::parse(api).expect("url"),
    }
}

/// The form body Slack posts for a click on `action` whose button carries `value`.
fn click_body(user: &str, action: &str, value: &str, response_url: Option<&str>) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "acme"},
        "api_app_id": "A0APP",
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0CHAN"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action, "block_id": "tagwatch_approval",
                     "value": value, "action_ts": "1.3"}],
    });
    format!(
        "payload={}",
        form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    )
    .into_bytes()
}

fn value(ns: &str, version: &str) -> String {
    json!({"workload": format!("{ns}/Deployment/web"), "version": version}).to_string()
}

async fn given(cluster: &TestCluster, ns: &str) -> Vec<Value> {
    annotation(
        &get(cluster, ns, "web").await,
        "tagwatch.dev/approvals-given",
    )
    .map(|t| serde_json::from_str(&t).expect("json"))
    .unwrap_or_default()
}

/// A Deployment at 1.0.0 asking for `approvals`, 1.1.0 in the registry, and the proposal of
/// 1.1.0 recorded by a poller round.
async fn proposed(
    cluster: &TestCluster,
    registry: &Registry,
    approvals: &str,
    h: Option<Harness>,
) -> Harness {
    let ns = &cluster.namespace;
    push(registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .replicas(0)
        .annotate("tagwatch.dev/approvals", approvals)
        .create(cluster, ns)
        .await;
    let mut h = h.unwrap_or_else(|| {
        poller_with(cluster, &[registry.host()], DockerConfig::default(), |_| {})
    });
    h.poller.round_all(&snapshot(cluster, &[ns]).await).await;
    wait::until("a proposal of 1.1.0", Duration::from_secs(10), || async {
        annotation(&get(cluster, ns, "web").await, "tagwatch.dev/proposal")
            .filter(|p| p.contains("1.1.0"))
    })
    .await
    .expect("proposal");
    h
}

#[tokio::test]
async fn the_message_has_buttons_and_a_signed_approve_click_releases_the_update() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let stub = SlackStub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = dir.path().join("hook");
    let signing = dir.path().join("signing");
    std::fs::write(&hook, stub.url("/hook")).expect("write");
    std::fs::write(&signing, format!("{SECRET}\n")).expect("write");
    // The service's own reading of the config: an interactive sink, the secret from a file.
    let file = FileConfig::parse(&format!(
        "notifications:
  slack:
    interactions:
      signingSecret: {{file: '{}'}}
  sinks:
    - {{name: chat, type: slack, url: {{file: '{}'}}, default: true, interactive: true}}
",
        signing.display(),
        hook.display()
    ))
    .expect("config");
    let prometheus = prometheus::Registry::new();
    let metrics = Metrics::new(&prometheus).expect("metrics");
    let notifier: Notifier = sources::start(
        &file.notifications,
        &cluster.client,
        &ns,
        metrics.clone(),
        &DeliveryOptions::default(),
    )
    .await
    .expect("sinks")
    .expect("a sink");
    let interactions = sources::interactions(&file.notifications, &cluster.client, &ns)
        .await
        .expect("secret read")
        .expect("configured");
    assert!(
        !format!("{interactions:?}").contains(SECRET),
        "the secret never prints"
    );
    let h = poller_notifying(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        prometheus,
        metrics,
        notifier,
    );
    let mut h = proposed(&cluster, &registry, "1", Some(h)).await;

    // The message, as the incoming webhook received it.
    let message = wait::until(
        "the approval.required message",
        Duration::from_secs(20),
        || async {
            let seen = stub.seen.lock().unwrap();
            seen.messages.first().cloned()
        },
    )
    .await
    .expect("message");
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap_or_else(|| panic!("no actions block: {message}"));
    let buttons = actions["elements"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = buttons
        .iter()
        .filter_map(|b| b["action_id"].as_str())
        .collect();
    assert_eq!(ids, ["tagwatch_approve", "tagwatch_deny"], "{actions}");
    let approve = &buttons[0];
    assert_eq!(approve["text"]["text"], "Approve");
    let button_value = approve["value"].as_str().expect("a value").to_string();
    assert_eq!(
        serde_json::from_str::<Value>(&button_value).expect("JSON value"),
        json!({"workload": format!("{ns}/Deployment/web"), "version": "1.1.0"})
    );
    assert_eq!(buttons[1]["value"], approve["value"]);

    // The click on that very button, signed with the secret the service read.
    let endpoint = Endpoint::start(&cluster, interactions).await;
    let text = endpoint
        .click(&click_body(
            "U0ALICE",
            "tagwatch_approve",
            &button_value,
            None,
        ))
        .await;
    assert!(
        text.contains("Approved `1.1.0`") && text.contains("1 of 1"),
        "{text}"
    );
    let approvals = given(&cluster, &ns).await;
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["user"], format!("slack:{TEAM}/U0ALICE"));
    assert_eq!(approvals[0]["version"], "1.1.0");
    assert_eq!(endpoint.metric("approved"), 1.0);

    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.1.0", registry.host())
    );
    // Decided: another click changes nothing and says why.
    let again = endpoint
        .click(&click_body(
            "U0BOB",
            "tagwatch_approve",
            &button_value,
            None,
        ))
        .await;
    assert!(again.contains("out of date"), "{again}");
    assert_eq!(given(&cluster, &ns).await.len(), 1);
    assert_eq!(endpoint.metric("stale"), 1.0);
}

#[tokio::test]
async fn wrong_or_stale_signatures_are_refused_and_record_nothing() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    proposed(&cluster, &registry, "1", None).await;
    let endpoint = Endpoint::start(&cluster, config("https://slack.com/api")).await;
    let body = click_body("U0ALICE", "tagwatch_approve", &value(&ns, "1.1.0"), None);

    let wrong = verify::sign(b"another app's secret", &now().to_string(), &body);
    assert_eq!(endpoint.post(&body, now(), Some(&wrong)).await.0, 401);
    // Signed correctly, but six minutes old (a replay), or as far ahead.
    assert_eq!(endpoint.post(&body, now() - 360, None).await.0, 401);
    assert_eq!(endpoint.post(&body, now() + 360, None).await.0, 401);
    // A body changed after signing.
    let signed = verify::sign(SECRET.as_bytes(), &now().to_string(), &body);
    let tampered = click_body("U0MALLORY", "tagwatch_approve", &value(&ns, "1.1.0"), None);
    assert_eq!(endpoint.post(&tampered, now(), Some(&signed)).await.0, 401);
    assert_eq!(endpoint.metric("unauthorized"), 4.0);
    assert_eq!(given(&cluster, &ns).await, Vec::<Value>::new());
    assert_eq!(endpoint.metric("approved"), 0.0);

    // Signed garbage is answered 400 with the reason, nothing recorded.
    let (status, text) = endpoint.post(b"payload=%7Bnope", now(), None).await;
    assert_eq!(status, 400);
    assert!(text.contains("not JSON"), "{text}");
    assert_eq!(endpoint.metric("bad_request"), 1.0);
    assert_eq!(given(&cluster, &ns).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_deny_click_rejects_the_version_and_a_second_click_is_stale() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let mut h = proposed(&cluster, &registry, "1", None).await;
    let endpoint = Endpoint::start(&cluster, config("https://slack.com/api")).await;

    // A button for a version not proposed (an older message) changes nothing.
    let old = endpoint
        .click(&click_body(
            "U0ALICE",
            "tagwatch_deny",
            &value(&ns, "1.0.5"),
            None,
        ))
        .await;
    assert!(
        old.contains("out of date") && old.contains("1.0.5"),
        "{old}"
    );
    assert_eq!(
        annotation(&get(&cluster, &ns, "web").await, "tagwatch.dev/rejected"),
        None
    );

    let text = endpoint
        .click(&click_body(
            "U0ALICE",
            "tagwatch_deny",
            &value(&ns, "1.1.0"),
            None,
        ))
        .await;
    assert!(text.contains("Denied `1.1.0`"), "{text}");
    let web = get(&cluster, &ns, "web").await;
    let rejected = annotation(&web, "tagwatch.dev/rejected").expect("rejected");
    assert!(rejected.contains("1.1.0"), "{rejected}");
    assert_eq!(annotation(&web, "tagwatch.dev/proposal"), None);
    let denied = wait::until(
        "an ApprovalDenied Event",
        Duration::from_secs(10),
        || async {
            events(&cluster, &ns)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ApprovalDenied"))
        },
    )
    .await
    .expect("event");
    let note = denied.note.unwrap_or_default();
    assert!(
        note.contains(&format!("slack:{TEAM}/U0ALICE (@u0alice)")),
        "{note}"
    );
    assert_eq!(endpoint.metric("denied"), 1.0);

    // Decided already: the same button again is stale.
    let again = endpoint
        .click(&click_body(
            "U0BOB",
            "tagwatch_approve",
            &value(&ns, "1.1.0"),
            None,
        ))
        .await;
    assert!(again.contains("no update waits for approval"), "{again}");
    assert_eq!(endpoint.metric("stale"), 2.0);
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.0.0", registry.host())
    );
}

#[tokio::test]
async fn the_allow_list_admits_listed_users_and_group_members_only() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let stub = SlackStub::start().await;
    let mut h = proposed(&cluster, &registry, "2", None).await;
    let endpoint = Endpoint::start(
        &cluster,
        InteractionConfig {
            allowed_users: BTreeSet::from(["U0LISTED".to_string()]),
            allowed_groups: vec!["SGROUP".into()],
            bot_token: Some(SigningKey(b"xoxb-test-token".to_vec())),
            ..config(&stub.url("/api"))
        },
    )
    .await;
    let respond = stub.url("/respond");
    let button = value(&ns, "1.1.0");

    let text = endpoint
        .click(&click_body(
            "U0OUTSIDER",
            "tagwatch_approve",
            &button,
            Some(&respond),
        ))
        .await;
    assert!(
        text.contains("not on tagwatch's list of approvers"),
        "{text}"
    );
    let text = endpoint
        .click(&click_body("U0OUTSIDER", "tagwatch_deny", &button, None))
        .await;
    assert!(text.contains("not on tagwatch's list"), "{text}");
    assert_eq!(endpoint.metric("refused"), 2.0);
    assert_eq!(given(&cluster, &ns).await, Vec::<Value>::new());
    assert_eq!(
        annotation(&get(&cluster, &ns, "web").await, "tagwatch.dev/rejected"),
        None
    );

    // Listed by ID: no group is asked.
    let text = endpoint
        .click(&click_body("U0LISTED", "tagwatch_approve", &button, None))
        .await;
    assert!(text.contains("1 of 2"), "{text}");
    // A member of an allowed group, asked of Slack's API with the bot token.
    let text = endpoint
        .click(&click_body(
            "UGROUPED",
            "tagwatch_approve",
            &button,
            Some(&respond),
        ))
        .await;
    assert!(text.contains("2 of 2"), "{text}");
    let users: Vec<Value> = given(&cluster, &ns)
        .await
        .into_iter()
        .map(|g| g["user"].clone())
        .collect();
    assert_eq!(
        users,
        [
            json!(format!("slack:{TEAM}/U0LISTED")),
            json!(format!("slack:{TEAM}/UGROUPED"))
        ]
    );
    // Slack's API was asked once, with the bot token: the outsider's look-up is reused for a
    // minute.
    assert_eq!(
        stub.seen.lock().unwrap().lookups,
        [(
            "SGROUP".to_string(),
            Some("Bearer xoxb-test-token".to_string())
        )]
    );
    assert_eq!(endpoint.metric("approved"), 2.0);
    // The answers also went to the clicks' response_url (Slack shows those, not the HTTP body).
    let answers = wait::until(
        "two answers at response_url",
        Duration::from_secs(10),
        || async {
            let seen = stub.seen.lock().unwrap();
            (seen.answers.len() >= 2).then(|| seen.answers.clone())
        },
    )
    .await
    .expect("answers");
    assert!(answers.iter().all(|a| a["response_type"] == "ephemeral"));
    assert!(answers
        .iter()
        .any(|a| a["text"].as_str().is_some_and(|t| t.contains("2 of 2"))));

    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.1.0", registry.host())
    );
}
