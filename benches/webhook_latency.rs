//! Push-to-patch latency through the webhook path, on loopback. Target: p99 ≤ 1 s.
//!
//! A self-timing harness (`harness = false`) around the real `tagwatch run` binary, an in-process
//! Kubernetes API server and a real docker-registry. Each iteration pushes a new tag (not timed),
//! then times from the `POST /webhooks/generic` to the moment the Deployment's image names that
//! tag. The registry's own notification delivery delay is therefore not included.
//!
//! `ITERATIONS` (default 40) sets how many pushes are timed. `WATCHED` (default 1000) Deployments
//! are watched in all: besides the timed one, up-to-date ones over `REPOSITORIES` (default 100)
//! other repositories of the registry, so a webhook is served while tagwatch holds a realistic
//! number of workloads (issue 16: p99 ≤ 120 ms at 1,000 workloads watched).

// Bench set-up fails loudly: a missing registry binary or a dead tagwatch should stop the run
// with its reason, not produce figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::Api;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use support::{first_image, metric_sum, metrics, ms, percentiles, wait_for, Tagwatch};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};

const REPO: &str = "bench/app";
const TARGET_P99: Duration = Duration::from_millis(120);
const PUSH_CONCURRENCY: usize = 8;
const CREATE_CONCURRENCY: usize = 16;
const ITERATION_TIMEOUT: Duration = Duration::from_secs(10);
const PATCH_POLL: Duration = Duration::from_millis(5);

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

/// One timed webhook: 202 expected (503 "not the leader" is retried inside the timed window).
enum Outcome {
    Patched(Duration),
    TimedOut,
    Refused(u16, String),
}

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a positive integer")),
        Err(_) => default,
    }
}

fn main() {
    let iterations = setting("ITERATIONS", 40);
    assert!(iterations > 0, "ITERATIONS must be at least 1");
    let watched = setting("WATCHED", 1000);
    assert!(watched > 0, "WATCHED must be at least 1");
    let repositories = setting("REPOSITORIES", 100).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(bench(iterations, watched, repositories));
    drop(runtime);
    if !passed {
        std::process::exit(1);
    }
}

async fn bench(iterations: usize, watched: usize, repositories: usize) -> bool {
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

    // The others, up to date: watched and listed at start-up, never patched.
    let others = watched - 1;
    let repositories = repositories.min(others.max(1));
    let other_repo = |r: usize| format!("bench/other-{r}");
    futures::stream::iter(0..repositories.min(others))
        .map(|r| {
            let registry = &registry;
            let repo = other_repo(r);
            async move {
                registry
                    .push_image(&repo, "1.0.0", ImageKind::OciManifest)
                    .await
                    .expect("push another repository")
            }
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let objects: Vec<Deployment> = (0..others)
        .map(|d| {
            let image = format!("{host}/{}:1.0.0", other_repo(d % repositories));
            let mut object = deployment(&format!("other-{d}"), &image);
            object.metadata.namespace = Some(ns.clone());
            object
        })
        .collect();
    support::store_deployments(&cluster, &deployments, &objects, CREATE_CONCURRENCY).await;
    drop(objects);

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let mut tagwatch = Tagwatch::spawn(
        &kubeconfig,
        &ns,
        &host,
        "10m",
        &["--webhook-secret", &secret],
        dir.path().join("tagwatch.log"),
    );
    let http = reqwest::Client::new();
    let base = tagwatch.base();

    let started = Instant::now();
    let watching = watched as f64;
    wait_for(
        &mut tagwatch,
        "tagwatch_workloads_watched = WATCHED",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            metrics(&http, &base)
                .await
                .is_some_and(|b| metric_sum(&b, "tagwatch_workloads_watched", &[]) >= watching)
        },
    )
    .await;
    wait_for(
        &mut tagwatch,
        "/readyz = 200",
        Duration::from_secs(30),
        Duration::from_millis(50),
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
        Duration::from_millis(50),
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
    println!("  workloads watched: {watched} (the timed one and {} up to date over {repositories} other repositories)", watched - 1);
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
        "  tag listings since the first webhook: {}, expected {iterations} (one per webhook; {listings_before} at start-up); webhooks accepted: {webhooks_accepted}",
        listings - listings_before
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
    if let Ok(keep) = std::env::var("KEEP_LOG") {
        // The log lives in a temporary directory: copied out to read where the time went.
        let _ = std::fs::copy(&tagwatch.log, &keep);
    }
    drop(tagwatch);
    passed
}
