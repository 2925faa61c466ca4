//! Push → patch latency and convergence while polling (no webhooks), at scale (issue 16).
//!
//! A self-timing harness (`harness = false`) around the real `tagwatch run` binary, the test bed's
//! Kubernetes API server (or the real cluster named by `TAGWATCH_E2E_KUBECONFIG`) and a real
//! docker-registry. `DEPLOYMENTS` (1000) opted-in `replicas: 0` Deployments, policy `minor`, shaped
//! like kubectl-applied ones, use `REPOSITORIES` (100) repositories round-robin, all on `1.0.0`.
//! tagwatch polls every `INTERVAL` (10s).
//!
//! 1. Start-up: until `/readyz` answers 200, until `tagwatch_workloads_watched` reaches the count.
//! 2. Polling: `ROUNDS` (20) times, after a random pause of 0 to one interval, a new patch tag is
//!    pushed to one random repository whose previous push is fully rolled out; for every Deployment
//!    on it, the time from the push's completion to the watch event that shows the new image.
//!    Target: every one within one interval + 2 s.
//! 3. Convergence: a new tag pushed to every repository at once (8 pushes in flight); the time until
//!    every Deployment runs it, and per repository from its listing to its last user's patch.
//!    Target: within 10 s of the listing.
//!
//! Patches are observed through a kube-runtime watcher on Deployments, timestamped as each event
//! arrives. A listing's moment is when the registry's access log shows tagwatch's first
//! `tags/list` of the repository after the push's tagged manifest (read every 20 ms), so "push →
//! listing" is the wait for the next poll and "listing → patch" tagwatch's own work.
//!
//! Prints a markdown table. A missed target is reported; with `STRICT=1` it also exits 1.

// Bench set-up fails loudly: a missing registry binary or a dead tagwatch should stop the run
// with its reason, not produce figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use kube::Api;
use rand::Rng as _;
use support::{first_image, metric_sum, metrics, percentiles, wait_for, Percentiles, Tagwatch};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry, SeenRequest, OCI_USER_AGENT};
use tagwatch_testbed::seed::kubectl_deployment;

/// Pushes in flight at once: the registry's disk and the 2 cores are the limit.
const PUSH_CONCURRENCY: usize = 8;
/// Deployments created at once through the API on a real cluster.
const CREATE_CONCURRENCY: usize = 16;
const POLL_SLACK: Duration = Duration::from_secs(2);
const CONVERGENCE_TARGET: Duration = Duration::from_secs(10);
/// The issue's start-up target is at 10,000 workloads; smaller runs must meet it too.
const STARTUP_TARGET: Duration = Duration::from_secs(5);
const LOG_FOLLOW_EVERY: Duration = Duration::from_millis(20);
const CHECK_EVERY: Duration = Duration::from_millis(20);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How many of the slowest patches are listed under the table.
const WORST_SHOWN: usize = 5;

struct Settings {
    deployments: usize,
    repositories: usize,
    interval: Duration,
    interval_flag: String,
    rounds: usize,
    strict: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let count = |name: &str, default: usize| match std::env::var(name) {
            Ok(value) => {
                let n: usize = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} is a positive integer, not {value:?}"));
                assert!(n > 0, "{name} must be at least 1");
                n
            }
            Err(_) => default,
        };
        let interval_flag = std::env::var("INTERVAL").unwrap_or_else(|_| "10s".to_string());
        let interval = humantime::parse_duration(&interval_flag)
            .unwrap_or_else(|e| panic!("INTERVAL {interval_flag:?}: {e}"));
        let settings = Settings {
            deployments: count("DEPLOYMENTS", 1000),
            repositories: count("REPOSITORIES", 100),
            interval,
            interval_flag,
            rounds: count("ROUNDS", 20),
            strict: std::env::var("STRICT").is_ok_and(|v| v == "1"),
        };
        assert!(
            settings.repositories <= settings.deployments,
            "REPOSITORIES ({}) must not exceed DEPLOYMENTS ({}): every repository needs a user",
            settings.repositories,
            settings.deployments
        );
        settings
    }

    /// The Deployments on repository `r` (round-robin).
    fn users(&self, r: usize) -> Vec<usize> {
        (r..self.deployments).step_by(self.repositories).collect()
    }
}

fn repository(r: usize) -> String {
    format!("bench/app-{r}")
}

fn tag(patch: usize) -> String {
    format!("1.0.{patch}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When each Deployment (by index) was first seen naming each image, from a watch.
#[derive(Default)]
struct Sightings {
    by_image: HashMap<String, HashMap<usize, Instant>>,
    synced: bool,
}

impl Sightings {
    fn seen(&self, image: &str, deployment: usize) -> Option<Instant> {
        self.by_image.get(image)?.get(&deployment).copied()
    }

    fn all_seen(&self, image: &str, deployments: &[usize]) -> bool {
        self.by_image
            .get(image)
            .is_some_and(|seen| deployments.iter().all(|d| seen.contains_key(d)))
    }
}

fn watch_deployments(api: Api<Deployment>, sightings: Arc<Mutex<Sightings>>) {
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            let now = Instant::now();
            match event {
                Ok(Event::Apply(d) | Event::InitApply(d)) => {
                    let index = d
                        .metadata
                        .name
                        .as_deref()
                        .and_then(|n| n.strip_prefix("app-"))
                        .and_then(|n| n.parse::<usize>().ok());
                    if let (Some(index), Some(image)) = (index, first_image(&d)) {
                        lock(&sightings)
                            .by_image
                            .entry(image.to_string())
                            .or_default()
                            .entry(index)
                            .or_insert(now);
                    }
                }
                Ok(Event::InitDone) => lock(&sightings).synced = true,
                Ok(Event::Init | Event::Delete(_)) => {}
                Err(e) => eprintln!("Deployment watch: {e}"),
            }
        }
    });
}

/// When tagwatch first listed each repository after each tag was pushed to it.
#[derive(Default)]
struct Listings {
    /// Repository → the tag pushed last, until tagwatch lists the repository.
    awaiting: HashMap<String, String>,
    /// (repository, tag) → when the listing showed up in the access log.
    listed: HashMap<(String, String), Instant>,
}

impl Listings {
    fn record(&mut self, requests: Vec<SeenRequest>, now: Instant) {
        for request in requests {
            let Some(path) = request.path.strip_prefix("/v2/") else {
                continue;
            };
            if request.method == "PUT" && request.user_agent == OCI_USER_AGENT {
                // The tagged manifest comes last in a push; the platform ones go by digest.
                if let Some((repo, reference)) = path.rsplit_once("/manifests/") {
                    if !reference.starts_with("sha256:") {
                        self.awaiting
                            .insert(repo.to_string(), reference.to_string());
                    }
                }
            } else if request.method == "GET" && request.user_agent != OCI_USER_AGENT {
                if let Some(repo) = path.strip_suffix("/tags/list") {
                    if let Some(tag) = self.awaiting.remove(repo) {
                        self.listed.insert((repo.to_string(), tag), now);
                    }
                }
            }
        }
    }
}

fn follow_listings(registry: Arc<Registry>, listings: Arc<Mutex<Listings>>) {
    tokio::spawn(async move {
        let mut read = 0;
        loop {
            let new = registry.requests_since(read);
            let now = Instant::now();
            read += new.len();
            lock(&listings).record(new, now);
            tokio::time::sleep(LOG_FOLLOW_EVERY).await;
        }
    });
}

/// One push and what became of it.
struct Push {
    repo: usize,
    tag: String,
    image: String,
    done: Instant,
}

/// One Deployment's patch to a pushed tag.
struct Patch {
    deployment: usize,
    push: usize,
    patched: Option<Instant>,
}

/// CPU seconds (utime + stime) of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15; the state (field 3) is the first after the name.
    (field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0)) / ticks_per_second
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn spread(p: &Option<Percentiles>) -> String {
    match p {
        Some(p) => format!("{} / {} / {}", secs(p.p50), secs(p.p99), secs(p.max)),
        None => "none".to_string(),
    }
}

fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Pushes `tag` to repository `r` and returns when the push completed.
async fn push(registry: &Registry, r: usize, tag: &str) -> Instant {
    registry
        .push_image(&repository(r), tag, ImageKind::OciManifest)
        .await
        .unwrap_or_else(|e| panic!("pushing {}:{tag}: {e:#}", repository(r)));
    Instant::now()
}

/// The patches of `pushes[from..]`, with when each was seen.
fn patches(settings: &Settings, pushes: &[Push], from: usize, sightings: &Sightings) -> Vec<Patch> {
    pushes
        .iter()
        .enumerate()
        .skip(from)
        .flat_map(|(i, p)| {
            settings.users(p.repo).into_iter().map(move |d| Patch {
                deployment: d,
                push: i,
                patched: sightings.seen(&p.image, d),
            })
        })
        .collect()
}

fn listed_at(listings: &Listings, push: &Push) -> Option<Instant> {
    listings
        .listed
        .get(&(repository(push.repo), push.tag.clone()))
        .copied()
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(bench(&settings));
    drop(runtime);
    if !passed && settings.strict {
        std::process::exit(1);
    }
}

async fn bench(settings: &Settings) -> bool {
    let n = settings.deployments;
    let m = settings.repositories;
    let interval = settings.interval;
    let hz = clock_ticks();

    let cluster = TestCluster::start().await.expect("test cluster");
    if let Some(server) = cluster.server() {
        // The controller-manager's watch traffic: three status writes per rollout, not one.
        server.set_status_steps(true);
    }
    let registry = Arc::new(
        Registry::anonymous()
            .await
            .expect("docker-registry (install the `docker-registry` package)"),
    );
    let ns = cluster.namespace.clone();
    let host = registry.host();
    let image = |r: usize, tag: &str| format!("{host}/{}:{tag}", repository(r));

    let seeding = Instant::now();
    futures::stream::iter(0..m)
        .map(|r| {
            let registry = &registry;
            async move { push(registry, r, &tag(0)).await }
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let seeded = seeding.elapsed();

    let creating = Instant::now();
    let objects: Vec<Deployment> = (0..n)
        .map(|d| {
            kubectl_deployment(&ns, &format!("app-{d}"), &image(d % m, &tag(0)))
                .expect("valid Deployment")
        })
        .collect();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns);
    support::store_deployments(&cluster, &deployments, &objects, CREATE_CONCURRENCY).await;
    drop(objects);
    let created = creating.elapsed();

    let sightings = Arc::new(Mutex::new(Sightings::default()));
    watch_deployments(deployments.clone(), sightings.clone());
    let listings = Arc::new(Mutex::new(Listings::default()));
    follow_listings(registry.clone(), listings.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let http = reqwest::Client::new();

    // --- 1. start-up ------------------------------------------------------------------------
    let started = Instant::now();
    let mut tagwatch = Tagwatch::spawn(
        &kubeconfig,
        &ns,
        &host,
        &settings.interval_flag,
        &[],
        dir.path().join("tagwatch.log"),
    );
    let pid = tagwatch.pid();
    let base = tagwatch.base();
    wait_for(
        &mut tagwatch,
        "/readyz = 200",
        STARTUP_TIMEOUT,
        CHECK_EVERY,
        || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        },
    )
    .await;
    let ready = started.elapsed();
    wait_for(
        &mut tagwatch,
        "every workload watched",
        STARTUP_TIMEOUT,
        CHECK_EVERY,
        || async {
            metrics(&http, &base)
                .await
                .is_some_and(|b| metric_sum(&b, "tagwatch_workloads_watched", &[]) >= n as f64)
        },
    )
    .await;
    let watched = started.elapsed();
    wait_for(
        &mut tagwatch,
        "the first poll cycle, as the leader",
        STARTUP_TIMEOUT,
        CHECK_EVERY,
        || async {
            metrics(&http, &base).await.is_some_and(|b| {
                metric_sum(&b, "tagwatch_poll_cycles_total", &[]) >= 1.0
                    && metric_sum(&b, "tagwatch_leader", &[]) >= 1.0
            })
        },
    )
    .await;
    let first_cycle = started.elapsed();
    let cpu_startup = cpu_seconds(pid, hz);
    let rss_startup = status_kib(pid, "VmRSS");
    let sync_deadline = Instant::now() + STARTUP_TIMEOUT;
    while !lock(&sightings).synced {
        assert!(
            Instant::now() < sync_deadline,
            "the bench's own Deployment watch never synced"
        );
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let before = metrics(&http, &base).await.unwrap_or_default();

    // --- 2. one push at a time, while polling -------------------------------------------------
    let mut pushes: Vec<Push> = Vec::new();
    let mut next_patch = vec![1usize; m];
    let polling = Instant::now();
    let cpu_polling_start = cpu_seconds(pid, hz);
    for _ in 0..settings.rounds {
        let pause = rand::rng().random_range(Duration::ZERO..=interval);
        tokio::time::sleep(pause).await;
        // A repository whose last push is not rolled out yet would skip that tag: leave it be.
        let r = loop {
            let idle: Vec<usize> = {
                let sightings = lock(&sightings);
                (0..m)
                    .filter(|&r| {
                        pushes
                            .iter()
                            .filter(|p| p.repo == r)
                            .all(|p| sightings.all_seen(&p.image, &settings.users(r)))
                    })
                    .collect()
            };
            if !idle.is_empty() {
                break idle[rand::rng().random_range(0..idle.len())];
            }
            tagwatch.ensure_alive();
            tokio::time::sleep(CHECK_EVERY).await;
        };
        let t = tag(next_patch[r]);
        next_patch[r] += 1;
        let done = push(&registry, r, &t).await;
        pushes.push(Push {
            repo: r,
            image: image(r, &t),
            tag: t,
            done,
        });
        tagwatch.ensure_alive();
    }
    let polling_deadline =
        pushes.last().map_or(Instant::now(), |p| p.done) + 2 * interval + Duration::from_secs(10);
    loop {
        let all = {
            let sightings = lock(&sightings);
            pushes
                .iter()
                .all(|p| sightings.all_seen(&p.image, &settings.users(p.repo)))
        };
        if all || Instant::now() >= polling_deadline {
            break;
        }
        tagwatch.ensure_alive();
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let polling_elapsed = polling.elapsed();
    let cpu_polling = cpu_seconds(pid, hz) - cpu_polling_start;
    let round_pushes = pushes.len();
    let round_patches = patches(settings, &pushes, 0, &lock(&sightings));

    // --- 3. every repository at once ------------------------------------------------------------
    let cpu_convergence_start = cpu_seconds(pid, hz);
    let burst = Instant::now();
    let tags: Vec<String> = (0..m).map(|r| tag(next_patch[r])).collect();
    let done: Vec<(usize, Instant)> = futures::stream::iter(0..m)
        .map(|r| {
            let registry = &registry;
            let tag = &tags[r];
            async move { (r, push(registry, r, tag).await) }
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .collect()
        .await;
    let pushed_all = burst.elapsed();
    let last_push = done.iter().map(|(_, at)| *at).max().unwrap_or(burst);
    let convergence_from = pushes.len();
    for (r, at) in done {
        pushes.push(Push {
            repo: r,
            tag: tags[r].clone(),
            image: image(r, &tags[r]),
            done: at,
        });
    }
    let convergence_deadline = last_push + 2 * interval + Duration::from_secs(30);
    loop {
        let all = {
            let sightings = lock(&sightings);
            pushes[convergence_from..]
                .iter()
                .all(|p| sightings.all_seen(&p.image, &settings.users(p.repo)))
        };
        if all || Instant::now() >= convergence_deadline {
            break;
        }
        tagwatch.ensure_alive();
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let cpu_convergence = cpu_seconds(pid, hz) - cpu_convergence_start;
    let burst_patches = patches(settings, &pushes, convergence_from, &lock(&sightings));

    // Let the last listings reach the access log before reading them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = metrics(&http, &base).await.unwrap_or_default();
    let cpu_total = cpu_seconds(pid, hz);
    let rss_end = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    let runtime_total = started.elapsed();
    tagwatch.ensure_alive();
    let listings = lock(&listings);

    // --- figures --------------------------------------------------------------------------------
    let since =
        |p: &Patch, from: Option<Instant>| Some(p.patched?.saturating_duration_since(from?));
    let mut push_to_patch: Vec<Duration> = round_patches
        .iter()
        .filter_map(|p| since(p, Some(pushes[p.push].done)))
        .collect();
    let mut listing_to_patch: Vec<Duration> = round_patches
        .iter()
        .filter_map(|p| since(p, listed_at(&listings, &pushes[p.push])))
        .collect();
    let mut push_to_listing: Vec<Duration> = pushes[..round_pushes]
        .iter()
        .filter_map(|p| Some(listed_at(&listings, p)?.saturating_duration_since(p.done)))
        .collect();
    let round_missing = round_patches.iter().filter(|p| p.patched.is_none()).count();
    let mut worst: Vec<&Patch> = round_patches
        .iter()
        .filter(|p| p.patched.is_some())
        .collect();
    worst.sort_by_key(|p| std::cmp::Reverse(since(p, Some(pushes[p.push].done))));
    let push_to_patch = percentiles(&mut push_to_patch);
    let listing_to_patch = percentiles(&mut listing_to_patch);
    let push_to_listing = percentiles(&mut push_to_listing);

    let burst_missing = burst_patches.iter().filter(|p| p.patched.is_none()).count();
    let last_patched = burst_patches.iter().filter_map(|p| p.patched).max();
    // Per repository: its last user's patch.
    let mut last_of_repo: HashMap<usize, Option<Instant>> = HashMap::new();
    for p in &burst_patches {
        let slot = last_of_repo.entry(p.push).or_insert(p.patched);
        *slot = match (*slot, p.patched) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let mut repo_push_to_last: Vec<Duration> = last_of_repo
        .iter()
        .filter_map(|(&i, last)| Some(last.as_ref()?.saturating_duration_since(pushes[i].done)))
        .collect();
    let mut repo_listing_to_last: Vec<Duration> = last_of_repo
        .iter()
        .filter_map(|(&i, last)| {
            Some(
                last.as_ref()?
                    .saturating_duration_since(listed_at(&listings, &pushes[i])?),
            )
        })
        .collect();
    let repos_listed_and_patched = repo_listing_to_last.len();
    let repo_push_to_last = percentiles(&mut repo_push_to_last);
    let repo_listing_to_last = percentiles(&mut repo_listing_to_last);

    let (api_requests, deployment_patches) = match cluster.server() {
        Some(server) => {
            let requests = server.requests();
            let patches = requests
                .iter()
                .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/"))
                .count();
            (requests.len().to_string(), patches.to_string())
        }
        None => ("n/a (real cluster)".to_string(), "n/a".to_string()),
    };
    let delta = |family: &str, labels: &[&str]| {
        metric_sum(&after, family, labels) - metric_sum(&before, family, labels)
    };
    let listings_metric = delta("tagwatch_registry_requests_total", &[r#"operation="tags""#]);
    let applied = delta("tagwatch_updates_total", &[r#"result="applied""#]);
    let failed = delta("tagwatch_updates_total", &[r#"result="failed""#]);
    let conflicts = delta("tagwatch_patch_conflicts_total", &[]);
    let cycles = delta("tagwatch_poll_cycles_total", &[]);

    let poll_target = interval + POLL_SLACK;
    let poll_passed =
        round_missing == 0 && push_to_patch.as_ref().is_some_and(|p| p.max <= poll_target);
    let convergence_passed = burst_missing == 0
        && repo_listing_to_last
            .as_ref()
            .is_some_and(|p| p.max <= CONVERGENCE_TARGET)
        && repos_listed_and_patched == m;
    let startup_passed = ready <= STARTUP_TARGET;

    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### tagwatch poll latency: {n} deployments, {m} repositories, interval {} ({profile} build, {})\n",
        settings.interval_flag,
        if cluster.server().is_some() { "test bed" } else { "real cluster" }
    );
    let _ = writeln!(out, "| measure | value | target |");
    let _ = writeln!(out, "|---|---|---|");
    let mut row = |measure: &str, value: String, target: String| {
        let _ = writeln!(out, "| {measure} | {value} | {target} |");
    };
    row(
        "set-up: registry seeding / Deployments stored",
        format!("{} ({m} pushes) / {} ({n})", secs(seeded), secs(created)),
        String::new(),
    );
    row(
        "start-up: /readyz 200 after",
        secs(ready),
        format!("≤ {} {}", secs(STARTUP_TARGET), verdict(startup_passed)),
    );
    row(
        &format!("start-up: {n} workloads watched after"),
        secs(watched),
        String::new(),
    );
    row(
        "start-up: first poll cycle done (as leader) after",
        secs(first_cycle),
        String::new(),
    );
    row(
        &format!(
            "polling: push → patch, median / p99 / max ({round_pushes} pushes, {} patches)",
            round_patches.len() - round_missing
        ),
        spread(&push_to_patch),
        format!("max ≤ {} {}", secs(poll_target), verdict(poll_passed)),
    );
    row(
        "polling: push → listing (waiting for the poll), median / p99 / max",
        spread(&push_to_listing),
        String::new(),
    );
    row(
        "polling: listing → patch, median / p99 / max",
        spread(&listing_to_patch),
        String::new(),
    );
    row(
        "polling: patches not seen by the deadline",
        round_missing.to_string(),
        "0".to_string(),
    );
    row(
        &format!("convergence: {m} pushes (8 at a time) took"),
        secs(pushed_all),
        String::new(),
    );
    row(
        &format!("convergence: all {n} patched, after the first push / the last push done"),
        match last_patched {
            Some(last) if burst_missing == 0 => format!(
                "{} / {}",
                secs(last.saturating_duration_since(burst)),
                secs(last.saturating_duration_since(last_push))
            ),
            _ => format!("{burst_missing} not patched by the deadline"),
        },
        String::new(),
    );
    row(
        "convergence: per repository, push → last user patched, median / p99 / max",
        spread(&repo_push_to_last),
        String::new(),
    );
    row(
        "convergence: per repository, listing → last user patched, median / p99 / max",
        spread(&repo_listing_to_last),
        format!(
            "max ≤ {} {}",
            secs(CONVERGENCE_TARGET),
            verdict(convergence_passed)
        ),
    );
    row(
        "CPU: start-up / polling phase / convergence / whole run",
        format!(
            "{cpu_startup:.2} s / {cpu_polling:.2} s ({:.2} s per minute over {:.0} s) / {cpu_convergence:.2} s / {cpu_total:.2} s",
            cpu_polling * 60.0 / polling_elapsed.as_secs_f64().max(1.0),
            polling_elapsed.as_secs_f64()
        ),
        String::new(),
    );
    row(
        "RSS after start-up / at the end / peak (VmHWM)",
        format!(
            "{:.1} / {:.1} / {:.1} MiB",
            rss_startup as f64 / 1024.0,
            rss_end as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        String::new(),
    );
    row(
        "tag listings / poll cycles after start-up (tagwatch metrics)",
        format!("{listings_metric:.0} / {cycles:.0}"),
        String::new(),
    );
    row(
        "updates applied / failed, patch conflicts (after start-up)",
        format!("{applied:.0} / {failed:.0}, {conflicts:.0}"),
        String::new(),
    );
    row(
        "API server requests / Deployment PATCHes (whole run)",
        format!("{api_requests} / {deployment_patches}"),
        String::new(),
    );
    let _ = writeln!(out, "\nwhole run: {}", secs(runtime_total));
    let _ = writeln!(out, "slowest push → patch while polling:");
    for p in worst.iter().take(WORST_SHOWN) {
        let push = &pushes[p.push];
        let listed = listed_at(&listings, push);
        let _ = writeln!(
            out,
            "  app-{} {}: push → patch {}, push → listing {}, listing → patch {}",
            p.deployment,
            push.image.rsplit('/').next().unwrap_or_default(),
            since(p, Some(push.done)).map_or("-".into(), secs),
            listed.map_or("-".into(), |l| secs(l.saturating_duration_since(push.done))),
            since(p, listed).map_or("-".into(), secs),
        );
    }
    let passed = poll_passed && convergence_passed && startup_passed;
    if !passed {
        let kept = dir.keep();
        let _ = writeln!(
            out,
            "a target was missed; tagwatch's log is kept in {}",
            kept.join("tagwatch.log").display()
        );
    }
    print!("{out}");
    drop(tagwatch);
    passed
}
