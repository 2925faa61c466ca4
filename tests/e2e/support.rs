//! tagwatch-specific test helpers: Deployment builders, a poller wired to a test cluster, reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use serde_json::json;
use tagwatch::act::runner::Writer;
use tagwatch::act::Context;
use tagwatch::control::Poller;
use tagwatch::discover::{Cached, Object};
use tagwatch::leader::Leadership;
use tagwatch::metrics::Metrics;
use tagwatch::notify::Notifier;
use tagwatch::registry::fanout::Fanout;
use tagwatch::registry::pull_secrets::PullSecrets;
use tagwatch::registry::{ClientOptions, DockerConfig, RegistryClient};
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::wait;

/// A chainable Deployment builder: `deployment("web").image("..").annotate("tagwatch.dev/policy", "minor")`.
pub struct DeploymentBuilder {
    name: String,
    containers: Vec<serde_json::Value>,
    annotations: BTreeMap<String, String>,
    pull_secrets: Vec<String>,
    service_account: Option<String>,
    replicas: u32,
}

pub fn deployment(name: &str) -> DeploymentBuilder {
    DeploymentBuilder {
        name: name.to_string(),
        containers: Vec::new(),
        annotations: BTreeMap::new(),
        pull_secrets: Vec::new(),
        service_account: None,
        replicas: 1,
    }
}

impl DeploymentBuilder {
    /// Adds a container named like the deployment (first) or `c<N>`.
    pub fn image(mut self, image: &str) -> Self {
        let name = if self.containers.is_empty() {
            self.name.clone()
        } else {
            format!("c{}", self.containers.len())
        };
        self.containers.push(json!({"name": name, "image": image}));
        self
    }

    /// Sets a variable on the first container: something tagwatch never reads, to check that
    /// what it copies (a canary) is the whole pod template.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        if let Some(first) = self.containers.first_mut() {
            first["env"] = json!([{"name": name, "value": value}]);
        }
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn policy(self, policy: &str) -> Self {
        self.annotate("tagwatch.dev/policy", policy)
    }

    pub fn pull_secret(mut self, name: &str) -> Self {
        self.pull_secrets.push(name.into());
        self
    }

    /// `0` for a test that chains updates without needing pods: a rollout of zero replicas
    /// completes at once on a real cluster too, where the test images never run.
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn service_account(mut self, name: &str) -> Self {
        self.service_account = Some(name.into());
        self
    }

    pub fn build(self) -> Deployment {
        let mut pod_spec = json!({"containers": self.containers});
        if !self.pull_secrets.is_empty() {
            pod_spec["imagePullSecrets"] = json!(self
                .pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>());
        }
        if let Some(sa) = self.service_account {
            pod_spec["serviceAccountName"] = json!(sa);
        }
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "annotations": self.annotations, "labels": {"app": self.name}},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {"metadata": {"labels": {"app": self.name}}, "spec": pod_spec}
            }
        });
        serde_json::from_value(deployment).expect("builder makes valid Deployments")
    }

    /// Creates it through the API (works on the test server and on a real cluster).
    pub async fn create(self, cluster: &TestCluster, namespace: &str) -> Deployment {
        let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
        api.create(&PostParams::default(), &self.build())
            .await
            .expect("create deployment")
    }
}

pub async fn get(cluster: &TestCluster, namespace: &str, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    api.get(name).await.expect("get deployment")
}

pub async fn image(cluster: &TestCluster, namespace: &str, name: &str) -> String {
    images(&get(cluster, namespace, name).await)[0].clone()
}

pub fn images(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub fn annotation(d: &Deployment, key: &str) -> Option<String> {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

/// What "nothing changed" means on a cluster whose controllers write status at any time: the
/// spec, the annotations and the generation are the same; the resourceVersion may have moved.
pub fn assert_unchanged(before: &Deployment, after: &Deployment) {
    assert_eq!(after.spec, before.spec, "spec changed");
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "generation changed"
    );
    let ours = |d: &Deployment| {
        let mut annotations = d.metadata.annotations.clone().unwrap_or_default();
        // The Deployment controller's own bookkeeping, written whenever it gets to it.
        annotations.remove("deployment.kubernetes.io/revision");
        annotations
    };
    assert_eq!(ours(after), ours(before), "annotations changed");
}

/// A person changes the image by hand (a merge patch, like `kubectl set image`).
pub async fn set_image(cluster: &TestCluster, namespace: &str, name: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("set image");
}

/// Every workload of every kind in `namespaces`, as the reflectors would hold them.
/// Every object of kind `K` in `ns`, as the watch would hold it.
async fn listed<K>(client: &kube::Client, ns: &str) -> Vec<Object>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
    Object: From<K>,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(Object::from)
        .collect()
}

/// The objects of `namespaces`, cached as the reflectors cache them.
pub async fn snapshot(cluster: &TestCluster, namespaces: &[&str]) -> Vec<Cached> {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    use k8s_openapi::api::batch::v1::CronJob;
    let mut all = Vec::new();
    for ns in namespaces {
        let client = cluster.client.clone();
        let params = ListParams::default();
        all.extend(listed::<Deployment>(&client, ns).await);
        all.extend(listed::<StatefulSet>(&client, ns).await);
        all.extend(listed::<DaemonSet>(&client, ns).await);
        all.extend(listed::<CronJob>(&client, ns).await);
        // Argo Rollouts only where their CRD is installed.
        let resource =
            tagwatch::discover::object::api_resource(tagwatch::model::kind::Kind::Rollout);
        let rollouts = Api::<kube::api::DynamicObject>::namespaced_with(client, ns, &resource);
        if let Ok(list) = rollouts.list(&params).await {
            all.extend(list.items.into_iter().map(|r| Object::Rollout(Arc::new(r))));
        }
    }
    all.iter()
        .map(|o| Cached::new(o).expect("a listed object caches"))
        .collect()
}

pub async fn events(cluster: &TestCluster, namespace: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
}

pub struct Harness {
    pub poller: Poller,
    pub registry: prometheus::Registry,
}

impl Harness {
    pub fn metrics(&self) -> String {
        tagwatch::metrics::render(&self.registry)
    }

    /// The value of one sample line, e.g. `tagwatch_patch_conflicts_total`.
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// A poller as `tagwatch run` builds it, with the given registries reached over plain HTTP.
pub fn poller(cluster: &TestCluster, insecure: &[String], fallback: DockerConfig) -> Harness {
    poller_with(cluster, insecure, fallback, |_| {})
}

/// As [`poller`], with the context adjusted first (an allow-list, aliases, ...).
pub fn poller_with(
    cluster: &TestCluster,
    insecure: &[String],
    fallback: DockerConfig,
    adjust: impl FnOnce(&mut Context),
) -> Harness {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).expect("metrics");
    assemble(cluster, insecure, fallback, registry, metrics, adjust, None)
}

/// As [`poller`], its metrics in `registry` (`metrics` registered there), every Event offered
/// to `notifier` (built on the same metrics).
pub fn poller_notifying(
    cluster: &TestCluster,
    insecure: &[String],
    fallback: DockerConfig,
    registry: prometheus::Registry,
    metrics: Metrics,
    notifier: Notifier,
) -> Harness {
    assemble(
        cluster,
        insecure,
        fallback,
        registry,
        metrics,
        |_| {},
        Some(notifier),
    )
}

fn assemble(
    cluster: &TestCluster,
    insecure: &[String],
    fallback: DockerConfig,
    registry: prometheus::Registry,
    metrics: Metrics,
    adjust: impl FnOnce(&mut Context),
    notifier: Option<Notifier>,
) -> Harness {
    let client = RegistryClient::new(
        ClientOptions {
            insecure_registries: insecure.to_vec(),
            timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
        metrics.clone(),
    )
    .expect("registry client");
    let mut ctx = Context {
        client: cluster.client.clone(),
        fanout: Fanout::new(client, 4, Default::default()),
        secrets: PullSecrets::new(cluster.client.clone(), fallback),
        metrics: metrics.clone(),
        default_interval: Duration::from_secs(60),
        aliases: Vec::new(),
        prometheus: None,
        allowed_registries: None,
        taken_names: Default::default(),
        confirmed: Default::default(),
        verification: Default::default(),
        holds: Default::default(),
    };
    adjust(&mut ctx);
    let writer = Writer::new(
        cluster.client.clone(),
        Recorder::new(
            cluster.client.clone(),
            Reporter {
                controller: "tagwatch".into(),
                instance: None,
            },
        ),
        Leadership::always(),
        metrics,
    );
    let writer = match notifier {
        Some(notifier) => writer.with_notifier(notifier),
        None => writer,
    };
    Harness {
        poller: Poller::new(Arc::new(ctx), Arc::new(writer)),
        registry,
    }
}

/// Pushes a real single-platform image per tag.
pub async fn push(registry: &Registry, repo: &str, tags: &[&str]) {
    for tag in tags {
        registry
            .push_image(repo, tag, ImageKind::OciManifest)
            .await
            .expect("push");
    }
}

/// A free loopback address (bound and released: good enough for tests).
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

pub fn free_port() -> u16 {
    free_address().port()
}

/// A `tagwatch run` process with JSON logs in a file, killed when dropped (also on panic).
pub struct Tagwatch {
    child: Option<std::process::Child>,
    pub listen: std::net::SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tagwatch {
    /// `tagwatch run --kubeconfig <cluster's> --listen 127.0.0.1:<free> --log-format json <args>`.
    pub fn run(cluster: &TestCluster, args: &[&str]) -> Tagwatch {
        Tagwatch::run_on(cluster, free_address(), args)
    }

    /// The usual test service: the cluster's namespace, `registry` over plain HTTP, a 1 s poll
    /// interval, the Lease in the test namespace, then `extra`.
    pub fn watching(cluster: &TestCluster, registry: &Registry, extra: &[&str]) -> Tagwatch {
        let host = registry.host();
        let ns = cluster.namespace.as_str();
        let mut args = vec![
            "-n",
            ns,
            "--insecure-registry",
            &host,
            "--interval",
            "1s",
            "--lease-namespace",
            ns,
        ];
        args.extend_from_slice(extra);
        Tagwatch::run(cluster, &args)
    }

    /// As `run`, on an address chosen beforehand (a registry must know where to notify).
    pub fn run_on(cluster: &TestCluster, listen: std::net::SocketAddr, args: &[&str]) -> Tagwatch {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
        let log = dir.path().join("tagwatch.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--listen", &listen.to_string(), "--log-format", "json"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tagwatch");
        Tagwatch {
            child: Some(child),
            listen,
            log,
            _dir: dir,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines (JSON objects) whose message is `message`.
    pub fn log_events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// SIGKILL: no clean-up, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// POSTs a webhook body with extra headers; the status code.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}{path}", self.listen))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("POST").status().as_u16()
    }

    /// Waits for `/readyz` and a first poll cycle.
    pub async fn wait_polling(&self) {
        wait::until("ready and polled once", Duration::from_secs(30), || async {
            (self.get("/readyz").await?.0 == 200
                && self.metric("tagwatch_poll_cycles_total").await? >= 1.0)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("http://{}{path}", self.listen))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// Waits until a sample reads `want` (a metric is counted a moment after the write it counts).
    pub async fn wait_metric(&self, sample: &str, want: f64) {
        let found = wait::until(sample, Duration::from_secs(10), || async {
            (self.metric(sample).await == Some(want)).then_some(())
        })
        .await;
        if let Err(e) = found {
            let last = self.metric(sample).await;
            panic!("{e}: last {last:?}, want {want}\n{}", self.logs());
        }
    }

    /// One sample's value from `/metrics` (`tagwatch_leader`), if served.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Tagwatch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A binary from Debian's `prometheus` package, or a panic saying how to install it (CI does;
/// a silent skip would hide a missing dependency).
pub fn require(binary: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{binary}` is not on PATH: install it with \
                 `apt-get update && apt-get install -y --no-install-recommends prometheus`"
            )
        })
}

/// A real `prometheus` scraping `targets` every second, killed when dropped.
pub struct Prometheus {
    _child: tokio::process::Child,
    pub addr: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    pub fn start(dir: &std::path::Path, job: &str, targets: &[&str]) -> Prometheus {
        let binary = require("prometheus");
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      \
                 - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("prometheus config");
        let addr = free_address().to_string();
        let log = dir.join("prometheus.log");
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            _child: child,
            addr,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
