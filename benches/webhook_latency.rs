//! Push-to-patch latency through the webhook path, on loopback. Target: p99 ≤ 1 s.
//!
//! A self-timing harness (`harness = false`) around the real `tagwatch run` binary, an in-process
//! Kubernetes API server and a real docker-registry. Each iteration pushes a new tag (not timed),
//! then times from the `POST /webhooks/generic` to the moment the Deployment's image names that
//! tag. The registry's own notification delivery delay is therefore not included.
//!
//! `ITERATIONS` (default 40) sets how many pushes are timed.

// Bench set-up fails loudly: a missing registry binary or a dead tagwatch should stop the run
// with its reason, not produce figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::Api;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");
const REPO: &str = "bench/app";
const TARGET_P99: Duration = Duration::from_millis(1000);
const ITERATION_TIMEOUT: Duration = Duration::from_secs(10);
const PATCH_POLL: Duration = Duration::from_millis(5);

/// A `tagwatch run` process, killed when dropped (also on panic).
struct Tagwatch {
    child: Child,
    listen: SocketAddr,
    log: PathBuf,
}

impl Drop for Tagwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tagwatch {
    fn base(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Panics with the log tail when the process has exited: nothing else can be measured.
    fn ensure_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("tagwatch exited ({status}); log tail:\n{}", tail.join("\n"));
        }
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app": name},
            "annotations": {"tagwatch.dev/policy": "major"},
        },
        // Releases follow each other: each rollout must complete before the next, and a rollout
        // of zero replicas completes at once, on the test bed and on a real cluster alike.
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }))
    .expect("valid Deployment")
}

fn first_image(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}

/// The sum of every sample of `family` whose labels contain all of `labels` (`k="v"` pieces).
fn metric_sum(body: &str, family: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let matches = name == family
                || (name.starts_with(family)
                    && name[family.len()..].starts_with('{')
                    && labels.iter().all(|l| name.contains(l)));
            if matches {
                value.trim().parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

async fn metrics(http: &reqwest::Client, base: &str) -> Option<String> {
    let response = http.get(format!("{base}/metrics")).send().await.ok()?;
    response.text().await.ok()
}

/// Polls `check` every 50 ms until it holds; panics after `timeout` naming `what`.
async fn wait_for<F, Fut>(tagwatch: &mut Tagwatch, what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        tagwatch.ensure_alive();
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One timed webhook: 202 expected (503 "not the leader" is retried inside the timed window).
enum Outcome {
    Patched(Duration),
    TimedOut,
    Refused(u16, String),
}

struct Percentiles {
    min: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

fn percentiles(samples: &mut [Duration]) -> Option<Percentiles> {
    samples.sort_unstable();
    let last = samples.len().checked_sub(1)?;
    // Nearest rank: the smallest sample with at least q of them at or below it.
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, last + 1) - 1];
    Some(Percentiles {
        min: samples[0],
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples[last],
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let iterations: usize = match std::env::var("ITERATIONS") {
        Ok(value) => value.parse().expect("ITERATIONS is a positive integer"),
        Err(_) => 40,
    };
    assert!(iterations > 0, "ITERATIONS must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(bench(iterations));
    drop(runtime);
    if !passed {
        std::process::exit(1);
    }
}

async fn bench(iterations: usize) -> bool {
    let cluster = TestCluster::start().await.expect("test cluster");
    let registry = Registry::anonymous()
        .await
        .expect("docker-registry (install the `docker-registry` package)");
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let image = |tag: &str| format!("{host}/{REPO}:{tag}");

    registry
        .push_image(REPO, "1.0.0", ImageKind::OciManifest)
        .await
        .expect("push 1.0.0");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment("web", &image("1.0.0")))
        .await
        .expect("create Deployment web");

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let listen = free_port();
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let log = dir.path().join("tagwatch.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let child = Command::new(BIN)
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", &ns])
        .args(["--listen", &listen.to_string()])
        .args(["--insecure-registry", &host])
        .args(["--interval", "10m"])
        .args(["--webhook-secret", &secret])
        .args(["--lease-namespace", &ns])
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn tagwatch");
    let mut tagwatch = Tagwatch { child, listen, log };
    let http = reqwest::Client::new();
    let base = tagwatch.base();

    let started = Instant::now();
    wait_for(
        &mut tagwatch,
        "/readyz = 200",
        Duration::from_secs(30),
        || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        },
    )
    .await;
    wait_for(
        &mut tagwatch,
        "tagwatch_poll_cycles_total >= 1",
        Duration::from_secs(30),
        || async {
            metrics(&http, &base)
                .await
                .is_some_and(|b| metric_sum(&b, "tagwatch_poll_cycles_total", &[]) >= 1.0)
        },
    )
    .await;
    let startup = started.elapsed();
    let before = metrics(&http, &base).await.unwrap_or_default();
    let listings_before = metric_sum(
        &before,
        "tagwatch_registry_requests_total",
        &[r#"operation="tags""#],
    );

    let webhook = format!("{base}/webhooks/generic");
    let mut samples = Vec::with_capacity(iterations);
    let mut failures = Vec::new();
    let mut not_leader_retries = 0usize;
    let mut nothing_to_do = 0usize;
    for i in 1..=iterations {
        let tag = format!("1.0.{i}");
        registry
            .push_image(REPO, &tag, ImageKind::OciManifest)
            .await
            .expect("push");
        let want = image(&tag);
        let body = json!({"image": format!("{host}/{REPO}"), "tag": tag});

        let t0 = Instant::now();
        let deadline = t0 + ITERATION_TIMEOUT;
        let outcome = 'iteration: {
            loop {
                let response = http
                    .post(&webhook)
                    .bearer_auth(&secret)
                    .json(&body)
                    .send()
                    .await
                    .expect("POST webhook");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                match status {
                    202 => {
                        if text.contains("nothing to do") {
                            nothing_to_do += 1;
                        }
                        break;
                    }
                    503 if Instant::now() < deadline => {
                        not_leader_retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => break 'iteration Outcome::Refused(status, text.trim().to_owned()),
                }
            }
            loop {
                let current = deployments.get("web").await.expect("GET Deployment web");
                if first_image(&current) == Some(want.as_str()) {
                    break 'iteration Outcome::Patched(t0.elapsed());
                }
                if Instant::now() >= deadline {
                    break 'iteration Outcome::TimedOut;
                }
                tokio::time::sleep(PATCH_POLL).await;
            }
        };
        match outcome {
            Outcome::Patched(latency) => samples.push(latency),
            Outcome::TimedOut => {
                failures.push(format!("{tag}: no patch within {ITERATION_TIMEOUT:?}"));
            }
            Outcome::Refused(status, text) => {
                failures.push(format!("{tag}: webhook answered {status} ({text})"));
            }
        }
        tagwatch.ensure_alive();
    }

    // Let any listing a patch might trigger (watch event → round) land before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = metrics(&http, &base).await.unwrap_or_default();
    let listings = metric_sum(
        &after,
        "tagwatch_registry_requests_total",
        &[r#"operation="tags""#],
    );
    let webhooks_accepted =
        metric_sum(&after, "tagwatch_webhooks_total", &[r#"result="accepted""#]);

    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("webhook push-to-patch latency (loopback, tagwatch {profile} build)");
    println!(
        "  set-up: tagwatch ready and first poll cycle done in {} ms",
        ms(startup)
    );
    println!("  debounce: as configured in tagwatch");
    println!(
        "  iterations: {iterations} ({} patched, {} failed)",
        samples.len(),
        failures.len()
    );
    let timed = samples.len();
    let summary = percentiles(&mut samples);
    match &summary {
        Some(p) => {
            println!(
                "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "N", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            println!(
                "{timed:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                ms(p.min),
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.max)
            );
        }
        None => println!("  no iteration was patched"),
    }
    for failure in &failures {
        println!("  FAILED {failure}");
    }
    if not_leader_retries > 0 {
        println!("  503 not-leader answers retried: {not_leader_retries}");
    }
    if nothing_to_do > 0 {
        println!("  202 \"nothing to do\" answers: {nothing_to_do}");
    }
    println!(
        "  tag listings: {listings} total ({listings_before} before the first webhook), expected about {} (one per webhook + the start-up listing); webhooks accepted: {webhooks_accepted}",
        iterations + 1
    );
    let passed = failures.is_empty() && summary.as_ref().is_some_and(|p| p.p99 <= TARGET_P99);
    println!(
        "{} p99 ≤ {} ms{}",
        if passed { "PASS" } else { "FAIL" },
        TARGET_P99.as_millis(),
        summary
            .map(|p| format!(" (p99 {} ms)", ms(p.p99)))
            .unwrap_or_default()
    );
    drop(tagwatch);
    passed
}
