//! What the benchmarks that drive the real `tagwatch run` binary share: the process, its metrics,
//! waiting on a condition, and percentiles.

// Each bench binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;

pub const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

/// A `tagwatch run` process, killed when dropped (also on panic).
pub struct Tagwatch {
    child: Child,
    pub listen: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Tagwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tagwatch {
    /// Starts `tagwatch run` on the namespace `namespace` (also the Lease's), over plain HTTP to
    /// `registry_host`, logging JSON to `log`; `extra` flags go last.
    pub fn spawn(
        kubeconfig: &Path,
        namespace: &str,
        registry_host: &str,
        interval: &str,
        extra: &[&str],
        log: PathBuf,
    ) -> Tagwatch {
        let listen = free_port();
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["-n", namespace])
            .args(["--listen", &listen.to_string()])
            .args(["--insecure-registry", registry_host])
            .args(["--interval", interval])
            .args(["--lease-namespace", namespace])
            .args(["--log-format", "json"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tagwatch");
        Tagwatch { child, listen, log }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log tail when the process has exited: nothing else can be measured.
    pub fn ensure_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "tagwatch exited ({status}); log tail:\n{}",
                self.log_tail(20)
            );
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        tail.join("\n")
    }
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

pub fn first_image(deployment: &Deployment) -> Option<&str> {
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
pub fn metric_sum(body: &str, family: &str, labels: &[&str]) -> f64 {
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

pub async fn metrics(http: &reqwest::Client, base: &str) -> Option<String> {
    let response = http.get(format!("{base}/metrics")).send().await.ok()?;
    response.text().await.ok()
}

/// Polls `check` every `every` until it holds; panics after `timeout` naming `what`.
pub async fn wait_for<F, Fut>(
    tagwatch: &mut Tagwatch,
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) where
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
        tokio::time::sleep(every).await;
    }
}

pub struct Percentiles {
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn percentiles(samples: &mut [Duration]) -> Option<Percentiles> {
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

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Stores `objects` in the cluster: straight into the test bed's API server, or created through the
/// API (`concurrency` at once) on a real cluster.
pub async fn store_deployments(
    cluster: &tagwatch_testbed::cluster::TestCluster,
    deployments: &kube::Api<Deployment>,
    objects: &[Deployment],
    concurrency: usize,
) {
    use futures::StreamExt as _;
    match cluster.server() {
        Some(server) => {
            for object in objects {
                server.put_deployment(object).expect("store Deployment");
            }
        }
        None => {
            futures::stream::iter(objects)
                .map(|object| async move {
                    deployments
                        .create(&kube::api::PostParams::default(), object)
                        .await
                        .expect("create Deployment")
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await;
        }
    }
}
