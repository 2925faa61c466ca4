//! What an operator sees of a running `tagwatch run`: a scrape promtool accepts and a real
//! Prometheus ingests, JSON logs without credentials, and the health and readiness probes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use serde_json::Value;
use tagwatch_testbed::apiserver::Fault;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::support::{deployment, free_port, image, push, require, Prometheus};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");
/// Distinctive, so any appearance in a scrape is a per-Deployment label leaking.
const WEB: &str = "scrape-canary-web";
/// A Deployment that did not opt in: never counted as watched.
const IDLE: &str = "scrape-canary-idle";
const REPO: &str = "scrape-canary-repo";

/// A child process that is killed when dropped, so a failing assertion never leaks it.
struct KillOnDrop {
    child: Child,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A running `tagwatch run`, its stderr (the logs) going to a file.
struct Tagwatch {
    process: KillOnDrop,
    addr: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Tagwatch {
    fn start(
        cluster: &TestCluster,
        dir: &Path,
        insecure_registry: Option<&str>,
        extra: &[&str],
    ) -> Tagwatch {
        let kubeconfig = cluster.kubeconfig(dir).expect("kubeconfig");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("tagwatch.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", &cluster.namespace, "--listen", &addr])
            .args(["--interval", "1s", "--log-format", "json"]);
        if let Some(host) = insecure_registry {
            command.args(["--insecure-registry", host]);
        }
        let child = command
            .args(extra)
            .env("TAGWATCH_LEASE_NAMESPACE", &cluster.namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start tagwatch run");
        Tagwatch {
            process: KillOnDrop { child },
            addr,
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Status and body, or `None` while nothing answers.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    async fn scrape(&self) -> Option<String> {
        match self.get("/metrics").await? {
            (200, body) => Some(body),
            _ => None,
        }
    }

    /// The first scrape for which `check` holds.
    async fn scrape_until(&self, what: &str, check: impl Fn(&[Sample]) -> bool) -> String {
        let check = &check;
        let waited = wait::until(what, Duration::from_secs(20), || async move {
            let text = self.scrape().await?;
            check(&parse_scrape(&text)).then_some(text)
        })
        .await;
        match waited {
            Ok(text) => text,
            Err(e) => panic!(
                "{e}\nlast scrape:\n{}\nlogs:\n{}",
                self.scrape().await.unwrap_or_default(),
                self.logs()
            ),
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (a clean shutdown flushes every log line).
    async fn terminate(&mut self) -> ExitStatus {
        let pid = self.process.child.id().expect("tagwatch still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "SIGTERM sent");
        tokio::time::timeout(Duration::from_secs(15), self.process.child.wait())
            .await
            .expect("tagwatch exits within 15s of SIGTERM")
            .expect("wait for tagwatch")
    }
}

/// One sample line of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

fn parse_scrape(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let split = line.find(['{', ' '])?;
    let name = line[..split].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[split..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => continue,
                _ => {}
            }
            let key_start = i;
            let key_end = loop {
                let (j, c) = chars.next()?;
                if c == '=' {
                    break j;
                }
            };
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(body[key_start..key_end].to_string(), value);
        };
        rest = &body[end + 1..];
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the first sample named `name` carrying all `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.has(labels))
        .map(|s| s.value)
}

fn applied(samples: &[Sample]) -> f64 {
    value(samples, "tagwatch_updates_total", &[("result", "applied")]).unwrap_or(0.0)
}

/// `REPO:1.0.0` and `REPO:1.1.0` in the registry; `WEB` opted in (minor) at 1.0.0, `IDLE` not.
async fn opted_in_web(cluster: &TestCluster, registry: &Registry, pull_secret: Option<&str>) {
    push(registry, REPO, &["1.0.0", "1.1.0"]).await;
    let mut web = deployment(WEB)
        .image(&format!("{}/{REPO}:1.0.0", registry.host()))
        .policy("minor");
    if let Some(secret) = pull_secret {
        web = web.pull_secret(secret);
    }
    web.create(cluster, &cluster.namespace).await;
    deployment(IDLE)
        .image(&format!("{}/{REPO}:1.0.0", registry.host()))
        .create(cluster, &cluster.namespace)
        .await;
}

/// Waits for `WEB` to be patched to 1.1.0 and for tagwatch to count it.
async fn wait_for_the_update(cluster: &TestCluster, registry: &Registry, tagwatch: &Tagwatch) {
    let want = format!("{}/{REPO}:1.1.0", registry.host());
    let ns = cluster.namespace.clone();
    let patched = wait::until(
        "the deployment to run 1.1.0",
        Duration::from_secs(30),
        || {
            let (want, ns) = (want.clone(), ns.clone());
            async move { (image(cluster, &ns, WEB).await == want).then_some(()) }
        },
    )
    .await;
    if let Err(e) = patched {
        panic!("{e}\nlogs:\n{}", tagwatch.logs());
    }
    // The patch lands in the API server a moment before tagwatch counts it.
    tagwatch
        .scrape_until("the update to be counted", |s| applied(s) >= 1.0)
        .await;
    assert_eq!(
        image(cluster, &ns, IDLE).await,
        format!("{}/{REPO}:1.0.0", registry.host()),
        "a Deployment that did not opt in is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape() {
    let promtool = require("promtool");
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    opted_in_web(&cluster, &registry, None).await;
    let tagwatch = Tagwatch::start(&cluster, dir.path(), Some(&registry.host()), &[]);
    wait_for_the_update(&cluster, &registry, &tagwatch).await;
    let host = registry.host();
    let tags_ok = [
        ("registry", host.as_str()),
        ("operation", "tags"),
        ("status", "2xx"),
    ];
    let text = tagwatch
        .scrape_until("a counted tag listing", |s| {
            value(s, "tagwatch_registry_requests_total", &tags_ok).unwrap_or(0.0) >= 1.0
        })
        .await;

    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start promtool");
    let mut stdin = check.stdin.take().expect("promtool stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed promtool");
    drop(stdin);
    let out = check.wait_with_output().await.expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\nstdout:\n{}\nstderr:\n{}\nscrape:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );

    let samples = parse_scrape(&text);
    assert_eq!(
        value(
            &samples,
            "tagwatch_updates_total",
            &[("result", "applied"), ("reason", "policy")]
        ),
        Some(1.0),
        "one update applied:\n{text}"
    );
    assert!(
        value(&samples, "tagwatch_registry_requests_total", &tags_ok).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "tagwatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "tagwatch_workloads_watched", &[]),
        Some(1.0),
        "only the opted-in Deployment is watched:\n{text}"
    );
    assert_eq!(
        value(&samples, "tagwatch_repositories_watched", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&samples, "tagwatch_poll_cycles_total", &[]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );

    // Per-Deployment detail goes to Events and logs, never into labels.
    for needle in [WEB, IDLE, REPO, cluster.namespace.as_str()] {
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        assert!(
            hits.is_empty(),
            "{needle:?} appears in the scrape: {hits:#?}"
        );
    }
    for sample in &samples {
        for (label, v) in &sample.labels {
            if sample.name == "tagwatch_build_info" && label == "version" {
                continue;
            }
            assert!(
                !v.contains("1.0.0") && !v.contains("1.1.0"),
                "an image tag as a label value: {sample:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_tagwatch_and_answers_a_query() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    opted_in_web(&cluster, &registry, None).await;
    let tagwatch = Tagwatch::start(&cluster, dir.path(), Some(&registry.host()), &[]);
    wait_for_the_update(&cluster, &registry, &tagwatch).await;

    let prometheus = Prometheus::start(dir.path(), "tagwatch", &[&tagwatch.addr]);
    let web = prometheus.addr.clone();
    let http = reqwest::Client::new();
    let api = |path: String| {
        let http = http.clone();
        let url = format!("http://{web}/api/v1/{path}");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.json::<Value>().await.ok()
        }
    };
    let api = &api;
    let prometheus_logs = || prometheus.logs();

    let started = Instant::now();
    let target = wait::until(
        "Prometheus to scrape tagwatch",
        Duration::from_secs(20),
        || async move {
            let targets = api("targets?state=active".into()).await?;
            targets["data"]["activeTargets"]
                .as_array()?
                .iter()
                .find(|t| t["labels"]["job"] == "tagwatch" && t["health"] == "up")
                .cloned()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nprometheus:\n{}", prometheus_logs()));
    eprintln!("target up after {:?}", started.elapsed());
    assert_eq!(target["labels"]["instance"], tagwatch.addr.as_str());
    assert_eq!(target["lastError"], "");

    // The value, not the presence: one opted-in Deployment of the two.
    let query = |q: &str| api(format!("query?query={q}"));
    let last = std::sync::Mutex::new(Value::Null);
    let (query, last_ref) = (&query, &last);
    let watched = wait::until(
        "tagwatch_workloads_watched to be 1 in Prometheus",
        Duration::from_secs(20),
        || async move {
            let answer = query("tagwatch_workloads_watched").await?;
            *last_ref.lock().expect("last answer") = answer.clone();
            let result = answer["data"]["result"].as_array()?.clone();
            (result.len() == 1 && result[0]["value"][1] == "1").then_some(result)
        },
    )
    .await
    .unwrap_or_else(|e| {
        let last = last.lock().expect("last answer").clone();
        panic!(
            "{e}\nlast answer: {last}\nprometheus:\n{}",
            prometheus_logs()
        )
    });
    assert_eq!(watched[0]["metric"]["job"], "tagwatch");
    assert_eq!(watched[0]["metric"]["instance"], tagwatch.addr.as_str());

    let updates = query("sum(tagwatch_updates_total%7Bresult%3D%22applied%22%7D)")
        .await
        .expect("query answer");
    assert_eq!(updates["status"], "success", "{updates}");
    assert_eq!(
        updates["data"]["result"][0]["value"][1], "1",
        "one applied update as Prometheus stored it: {updates}"
    );
}

const USER: &str = "observer-ci";
const PASSWORD: &str = "pw-Obs3rv-7Qx2-never-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_and_never_contain_credentials() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::token(USER, PASSWORD).await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auth = b64(&format!("{USER}:{PASSWORD}"));
    let config_json = format!(
        r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
        registry.host()
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("pull".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(config_json.clone().into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create pull secret");
    opted_in_web(&cluster, &registry, Some("pull")).await;
    let issuer = registry.token_issuer().expect("token registry");
    let before = issuer.token_requests();

    let mut tagwatch = Tagwatch::start(
        &cluster,
        dir.path(),
        Some(&registry.host()),
        &["--log-level", "debug,tagwatch=trace"],
    );
    wait_for_the_update(&cluster, &registry, &tagwatch).await;
    // One or two more cycles, with the token in use.
    let cycles = value(
        &parse_scrape(&tagwatch.scrape().await.expect("scrape")),
        "tagwatch_poll_cycles_total",
        &[],
    )
    .unwrap_or(0.0);
    tagwatch
        .scrape_until("two more poll cycles", |s| {
            value(s, "tagwatch_poll_cycles_total", &[]).unwrap_or(0.0) >= cycles + 2.0
        })
        .await;
    let exit = tagwatch.terminate().await;
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let logs = tagwatch.logs();

    // The credentials really went through tagwatch: it fetched tokens as the secret's user.
    let fetched: Vec<_> = issuer.requests()[before..]
        .iter()
        .filter(|r| r.username.as_deref() == Some(USER) && r.status == 200)
        .cloned()
        .collect();
    assert!(!fetched.is_empty(), "tagwatch fetched a token\n{logs}");

    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "some logs:\n{logs}");
    let mut parsed = Vec::new();
    for line in &lines {
        let json: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(json.is_object(), "not an object: {line}");
        assert!(json["level"].is_string(), "no level: {line}");
        assert!(json["timestamp"].is_string(), "no timestamp: {line}");
        parsed.push(json);
    }
    // `debug,tagwatch=trace` was accepted (an invalid filter falls back to info).
    assert!(
        parsed
            .iter()
            .any(|j| j["level"] == "DEBUG"
                && j["target"].as_str().unwrap_or("").starts_with("tagwatch")),
        "tagwatch's own debug lines are logged:\n{logs}"
    );
    let update: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(WEB) && l.contains("1.1.0"))
        .collect();
    assert!(!update.is_empty(), "the update is logged:\n{logs}");

    let forbidden = [
        ("the password", PASSWORD.to_string()),
        ("user:password", format!("{USER}:{PASSWORD}")),
        ("the docker config `auth` (base64 of user:password)", auth),
        (
            "the pull secret's data as the API carries it",
            b64(&config_json),
        ),
        // Every bearer token and the base64 of any JSON object (a JWT header or the secret) start so.
        ("a JWT (`eyJ`)", "eyJ".to_string()),
    ];
    let leaks: Vec<String> = forbidden
        .iter()
        .flat_map(|(what, secret)| {
            lines
                .iter()
                .filter(move |l| l.contains(secret.as_str()))
                .map(move |l| format!("{what}: {l}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "credentials in the logs:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_healthz() {
    let cluster = TestCluster::start().await.expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    // Two failed Deployment lists hold discovery back for the watcher's backoff (about 2 s, at
    // least 0.8 s): alive, not ready. Only the in-process API server can inject this.
    let held_back = cluster.server().map(|server| {
        server.inject_fault(
            "GET",
            &format!("/apis/apps/v1/namespaces/{}/deployments", cluster.namespace),
            Fault::Status(500),
            2,
        )
    });
    let started = Instant::now();
    let tagwatch = Tagwatch::start(&cluster, dir.path(), None, &[]);

    // /healthz answers as soon as the port listens.
    let tw = &tagwatch;
    let health = wait::until("/healthz to answer", Duration::from_secs(20), || {
        tw.get("/healthz")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", tagwatch.logs()));
    assert_eq!(health, (200, "ok".to_string()));
    if held_back.is_some() {
        assert_eq!(
            tagwatch.get("/readyz").await,
            Some((503, "not ready".to_string())),
            "not ready before the first complete discovery ({:?} after start)",
            started.elapsed()
        );
    }

    // Readiness: the first complete Deployment list, and leadership known (leader or follower):
    // leader election is on by default, with the Lease in TAGWATCH_LEASE_NAMESPACE.
    let ready = wait::until(
        "/readyz to turn 200",
        Duration::from_secs(20),
        || async move { tw.get("/readyz").await.filter(|(status, _)| *status == 200) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", tagwatch.logs()));
    assert_eq!(ready.1, "ready");
    // The only replica takes the Lease: ready means it knows it leads.
    let text = tw.scrape().await.expect("scrape once ready");
    assert_eq!(
        value(&parse_scrape(&text), "tagwatch_leader", &[]),
        Some(1.0),
        "ready only once leadership is known:\n{text}"
    );
    if held_back.is_some() {
        // Faults fire in order: the list that made it ready came after both failures.
        let failed = cluster
            .server()
            .expect("server")
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/deployments") && r.status == 500)
            .count();
        assert_eq!(failed, 2, "both injected failures were met");
    }
    assert_eq!(
        tagwatch.get("/healthz").await,
        Some((200, "ok".to_string()))
    );
}
