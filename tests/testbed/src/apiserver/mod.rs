//! An in-process Kubernetes API server speaking the real REST protocol over plain HTTP, for a
//! real, unmodified `kube::Client`. It answers like the kube-apiserver recordings in
//! `../shared/apiserver-wire` (status codes, `Status` bodies, list and watch shapes).
//!
//! Served: Deployments (with `/status`), Pods, Secrets, ServiceAccounts, core and
//! `events.k8s.io` Events, Leases, Namespaces, and `/version`. Anything else is 404.
//! Every write records `managedFields`, and server-side apply works (see `managed`).
//! Rollouts complete only when their pods are Ready, and pods are Ready only for images a test
//! declared runnable (`set_image_health`, `set_default_image_health`), as on a real cluster where
//! the test images cannot run.
//!
//! Known differences from a real server: strategic merge patch is applied as a merge patch
//! (lists are replaced, not merged by key); server-side apply treats only name-keyed lists as
//! associative and ignores managedFields a client sends; core and `events.k8s.io` Events are
//! stored separately; continue tokens resume on the current state, not a snapshot; a rollout of
//! never-ready pods passes its progress deadline at once; no RBAC, admission or authentication.

mod controller;
mod defaults;
mod faults;
mod kubelet;
mod managed;
mod patch;
mod request_log;
mod resources;
mod routes;
mod selectors;
mod status;
mod store;
mod validation;
mod verbs;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use controller::{ControllerMode, ImageHealth};
pub use faults::Fault;
pub use request_log::RecordedRequest;

use resources::{Resource, Target, DEPLOYMENTS, PODS};
use verbs::{Owner, Scope};

/// Everything behind the single lock: objects and the controller's memory.
pub(crate) struct Cluster {
    store: store::Store,
    controller: controller::Controller,
}

impl Cluster {
    fn forget_namespace(&mut self, namespace: &str) {
        self.controller.forget_namespace(namespace);
    }
}

pub(crate) struct Shared {
    cluster: Mutex<Cluster>,
    log: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<faults::FaultRule>>,
}

/// A panicking test thread must not take the server down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running test API server; it stops (and ends open watches) when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Starts on a free loopback port; ready to serve when this returns.
    pub async fn start() -> anyhow::Result<ApiServer> {
        let shared = Arc::new(Shared {
            cluster: Mutex::new(Cluster {
                store: store::Store::new(),
                controller: controller::Controller::default(),
            }),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = routes::router(shared.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted on Drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(ApiServer { shared, addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A real `kube::Client` for this server, with `default` as its default namespace.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let config = kube::Config::new(self.url().parse()?);
        Ok(kube::Client::try_from(config)?)
    }

    /// Writes a kubeconfig pointing at this server, for running binaries as subprocesses.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n\
             contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed\n    \
             namespace: default\ncurrent-context: testbed\nusers:\n- name: testbed\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Every HTTP request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// How pods of `image` (the exact image string) behave from now on, pods already running
    /// included: a test says when a version's pods become Ready, or ships a broken version.
    pub fn set_image_health(&self, image: &str, health: ImageHealth) {
        let mut cluster = lock(&self.shared.cluster);
        cluster.controller.images.insert(image.to_string(), health);
        self.react(&mut cluster);
    }

    /// How pods of every image without its own `set_image_health` behave. Starts as
    /// [`ImageHealth::Pending`]: like the test images on a real cluster, nothing runs until a
    /// test says so, and rollouts stay in progress.
    pub fn set_default_image_health(&self, health: ImageHealth) {
        let mut cluster = lock(&self.shared.cluster);
        cluster.controller.default_health = health;
        self.react(&mut cluster);
    }

    /// In `Instant` mode the controller and kubelet act on a health change at once.
    fn react(&self, cluster: &mut Cluster) {
        if cluster.controller.mode == ControllerMode::Instant {
            controller::reconcile_all(cluster, true);
        }
    }

    /// Switching to `Instant` acts on every Deployment at once.
    pub fn set_controller(&self, mode: ControllerMode) {
        let mut cluster = lock(&self.shared.cluster);
        cluster.controller.mode = mode;
        if mode == ControllerMode::Instant {
            controller::reconcile_all(&mut cluster, false);
        }
    }

    /// Writes a Deployment's status as the controller would (new resourceVersion, MODIFIED event,
    /// generation unchanged).
    pub fn set_deployment_status(
        &self,
        namespace: &str,
        name: &str,
        status: DeploymentStatus,
    ) -> anyhow::Result<()> {
        let target = target(&DEPLOYMENTS, namespace, name);
        let mut cluster = lock(&self.shared.cluster);
        let mut object = verbs::get(&cluster, &target, name)?;
        object["status"] = serde_json::to_value(status)?;
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let writer = managed::Writer::new("kube-controller-manager");
        verbs::update(
            &mut cluster,
            &target,
            name,
            Scope::Status,
            object,
            Owner::Writer(&writer),
        )?;
        Ok(())
    }

    /// Ends every open watch with an `ERROR` 410 Expired event, and makes every resourceVersion
    /// up to now too old to watch from, so clients must relist.
    pub fn expire_watches(&self) {
        lock(&self.shared.cluster).store.expire();
    }

    /// Fails the next `times` requests whose method (or `*`) and path prefix match.
    pub fn inject_fault(&self, method: &str, path_prefix: &str, fault: Fault, times: usize) {
        let rule = faults::FaultRule::new(method, path_prefix, fault, times);
        lock(&self.shared.faults).push(rule);
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.cluster).store.resource_version()
    }

    /// Creates or replaces any served object directly (not logged, no faults), with the same
    /// defaulting, validation and events as an HTTP write.
    pub fn put<K>(&self, object: &K) -> anyhow::Result<K>
    where
        K: k8s_openapi::Resource + Serialize + DeserializeOwned,
    {
        let resource = resource_of::<K>()?;
        let mut value = serde_json::to_value(object)?;
        let meta = &value["metadata"];
        let namespace = meta["namespace"].as_str().unwrap_or("default").to_string();
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let target = Target {
            resource,
            namespace: resource.namespaced.then(|| namespace.clone()),
            name: None,
            subresource: None,
        };
        let seeder = managed::Writer::new("testbed");
        let mut cluster = lock(&self.shared.cluster);
        let exists = verbs::get(&cluster, &target, &name).is_ok();
        let stored = if exists {
            if let Some(meta) = value["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            let updated = verbs::update(
                &mut cluster,
                &target,
                &name,
                Scope::Main,
                value,
                Owner::Writer(&seeder),
            )?;
            if resource.same(&PODS) {
                // Pod status is the kubelet's: seeding sets it directly.
                let mut pod = updated;
                pod["status"] = serde_json::to_value(object)?["status"].clone();
                cluster.store.update(resource, pod)
            } else {
                updated
            }
        } else {
            verbs::create(&mut cluster, &target, value, Owner::Writer(&seeder))?
        };
        Ok(serde_json::from_value(stored)?)
    }

    /// Reads any served object directly (not logged).
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let resource = resource_of::<K>().ok()?;
        let cluster = lock(&self.shared.cluster);
        let value = cluster
            .store
            .get(resource, scoped(resource, namespace), name)?;
        serde_json::from_value(value.clone()).ok()
    }

    /// Every object of a kind in one namespace (or all with `None`), read directly.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        let Ok(resource) = resource_of::<K>() else {
            return Vec::new();
        };
        let cluster = lock(&self.shared.cluster);
        cluster
            .store
            .list(resource, namespace)
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    pub fn put_secret(&self, secret: &Secret) -> anyhow::Result<Secret> {
        self.put(secret)
    }

    pub fn put_service_account(&self, account: &ServiceAccount) -> anyhow::Result<ServiceAccount> {
        self.put(account)
    }

    /// Seeds a Pod, status included (the kubelet's part is not simulated for seeded pods).
    pub fn put_pod(&self, pod: &Pod) -> anyhow::Result<Pod> {
        self.put(pod)
    }

    pub fn put_deployment(&self, deployment: &Deployment) -> anyhow::Result<Deployment> {
        self.put(deployment)
    }

    pub fn get_deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.get(namespace, name)
    }

    pub fn pods(&self, namespace: &str) -> Vec<Pod> {
        self.list(Some(namespace))
    }

    /// Marks a pod (un)ready, as a kubelet would report a failing readiness probe.
    pub fn set_pod_ready(&self, namespace: &str, name: &str, ready: bool) -> anyhow::Result<()> {
        self.edit_pod(namespace, name, |pod| kubelet::set_ready(pod, ready))
    }

    /// Sets every container's restartCount, as for a crash-looping pod.
    pub fn set_pod_restarts(
        &self,
        namespace: &str,
        name: &str,
        restarts: i32,
    ) -> anyhow::Result<()> {
        self.edit_pod(namespace, name, |pod| {
            kubelet::set_restarts(pod, i64::from(restarts))
        })
    }

    fn edit_pod(
        &self,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> anyhow::Result<()> {
        let mut cluster = lock(&self.shared.cluster);
        let mut pod = cluster
            .store
            .get(&PODS, namespace, name)
            .cloned()
            .ok_or_else(|| status::ApiError::not_found(&PODS, name))?;
        edit(&mut pod);
        cluster.store.update(&PODS, pod);
        Ok(())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        lock(&self.shared.cluster).store.shutdown();
        self.task.abort();
    }
}

impl std::fmt::Display for status::ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.body["message"].as_str().unwrap_or_default();
        write!(f, "{} {}", self.code, message)
    }
}

impl std::error::Error for status::ApiError {}

fn resource_of<K: k8s_openapi::Resource>() -> anyhow::Result<&'static Resource> {
    Resource::lookup(K::GROUP, K::URL_PATH_SEGMENT)
        .ok_or_else(|| anyhow::anyhow!("the test API server does not serve {}", K::KIND))
}

fn scoped<'a>(resource: &Resource, namespace: &'a str) -> &'a str {
    if resource.namespaced {
        namespace
    } else {
        ""
    }
}

fn target(resource: &'static Resource, namespace: &str, name: &str) -> Target {
    Target {
        resource,
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        subresource: None,
    }
}
