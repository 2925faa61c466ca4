//! An in-process Kubernetes API server speaking the real REST protocol over plain HTTP, for a
//! real, unmodified `kube::Client`. It answers like the kube-apiserver recordings in
//! `../shared/apiserver-wire` (status codes, `Status` bodies, list and watch shapes).
//!
//! Served: Deployments, StatefulSets, DaemonSets, CronJobs and Jobs (each with `/status`), Pods,
//! Nodes, ConfigMaps, Secrets, ServiceAccounts, core and `events.k8s.io` Events, Leases,
//! Namespaces, CustomResourceDefinitions and the kinds they define (with `/status` where the CRD
//! declares it), discovery (`/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`)
//! and `/version`. An unknown resource of a served built-in group/version is a JSON 404 `Status`;
//! any other path (an absent group, version or CRD) is a plain-text `404 page not found` (26).
//! Every write records `managedFields`, and server-side apply works (see `managed`).
//! Controllers (Deployment, StatefulSet, DaemonSet) act at once or not at all
//! ([`ControllerMode`]); CronJobs run only when a test says so ([`ApiServer::run_cronjob`]).
//! Rollouts complete only when their pods are Ready, and pods are Ready only for images a test
//! declared runnable (`set_image_health`, `set_default_image_health`), as on a real cluster where
//! the test images cannot run.
//!
//! Known differences from a real server: strategic merge patch is applied as a merge patch
//! (lists are replaced, not merged by key); server-side apply treats only name-keyed lists as
//! associative and ignores managedFields a client sends; core and `events.k8s.io` Events are
//! stored separately; continue tokens resume on the current state, not a snapshot; a rollout of
//! never-ready pods passes its progress deadline at once; no RBAC, admission or authentication;
//! discovery ignores the aggregated-discovery `Accept` header; ReplicaSets and
//! ControllerRevisions are not served; `minReadySeconds`, `maxSurge` and the DaemonSet and Job
//! pod selectors the real server generates are not modelled; a CRD with several versions does
//! not convert objects between them.

mod controller;
mod crd;
mod cronjob;
mod daemonset;
mod defaults;
mod discovery;
mod faults;
mod kubelet;
mod managed;
mod patch;
mod request_log;
mod resources;
mod routes;
mod selectors;
mod statefulset;
mod status;
mod store;
mod validation;
mod verbs;
mod watch;
mod workloads;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::apps::v1::{
    DaemonSetStatus, Deployment, DeploymentStatus, StatefulSetStatus,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use controller::{ControllerMode, ImageHealth};
pub use crd::{CustomKind, MANAGED_BY};
pub use cronjob::JobOutcome;
pub use faults::Fault;
pub use request_log::RecordedRequest;

use resources::{Resource, Target, DAEMONSETS, DEPLOYMENTS, PODS, STATEFULSETS};
use verbs::{Owner, Scope};

/// Everything behind the single lock: objects, what is served, and the controllers' memory.
pub(crate) struct Cluster {
    store: store::Store,
    catalog: resources::Catalog,
    controller: controller::Controller,
    statefulsets: statefulset::Revisions,
    /// `pause_garbage_collector(true)`: deletions leave what they owned, like a collector behind.
    gc_paused: bool,
}

impl Cluster {
    fn forget_namespace(&mut self, namespace: &str) {
        self.controller.forget_namespace(namespace);
        self.statefulsets.forget_namespace(namespace);
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
                catalog: resources::Catalog::default(),
                controller: controller::Controller::default(),
                statefulsets: statefulset::Revisions::default(),
                gc_paused: false,
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
        self.write_kubeconfig_as(path, None)
    }

    /// As [`ApiServer::write_kubeconfig`], authenticating as `user` (a bearer token the server
    /// takes as the user's name, e.g. in `SelfSubjectReview`); `None`: the administrator
    /// `testbed-admin`.
    pub fn write_kubeconfig_as(&self, path: &Path, user: Option<&str>) -> anyhow::Result<()> {
        let credentials = match user {
            Some(user) => format!("{{token: {}}}", serde_json::to_string(user)?),
            None => "{}".to_string(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n\
             contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed\n    \
             namespace: default\ncurrent-context: testbed\nusers:\n- name: testbed\n  user: {credentials}\n",
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
            workloads::reconcile_all(cluster, true);
        }
    }

    /// A garbage collector that is behind: while paused, deleting an object leaves the objects
    /// it owned in place (a real collector works in the background and may lag). Deletions made
    /// while paused are not caught up on resuming.
    pub fn pause_garbage_collector(&self, paused: bool) {
        lock(&self.shared.cluster).gc_paused = paused;
    }

    /// Deployments' rollouts written in the controller-manager's steps (see
    /// `Controller::status_steps`), as the benchmarks want; tests keep one status write.
    pub fn set_status_steps(&self, steps: bool) {
        lock(&self.shared.cluster).controller.status_steps = steps;
    }

    /// Switching to `Instant` rolls out every Deployment, StatefulSet and DaemonSet at once.
    pub fn set_controller(&self, mode: ControllerMode) {
        let mut cluster = lock(&self.shared.cluster);
        cluster.controller.mode = mode;
        if mode == ControllerMode::Instant {
            workloads::reconcile_all(&mut cluster, false);
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
        self.set_status(&target, serde_json::to_value(status)?)
    }

    /// Writes a StatefulSet's status as its controller would; for `Manual` mode tests.
    pub fn set_statefulset_status(
        &self,
        namespace: &str,
        name: &str,
        status: StatefulSetStatus,
    ) -> anyhow::Result<()> {
        let target = target(&STATEFULSETS, namespace, name);
        self.set_status(&target, serde_json::to_value(status)?)
    }

    /// Writes a DaemonSet's status as its controller would; for `Manual` mode tests.
    pub fn set_daemonset_status(
        &self,
        namespace: &str,
        name: &str,
        status: DaemonSetStatus,
    ) -> anyhow::Result<()> {
        let target = target(&DAEMONSETS, namespace, name);
        self.set_status(&target, serde_json::to_value(status)?)
    }

    /// Writes a custom resource's status as its operator would (Argo's controller for a
    /// Rollout); `namespace` is ignored for cluster-scoped kinds.
    pub fn set_custom_status(
        &self,
        kind: &CustomKind,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> anyhow::Result<()> {
        let path = if kind.namespaced {
            format!(
                "/apis/{}/namespaces/{namespace}/{}/{name}",
                kind.api_version(),
                kind.plural
            )
        } else {
            format!("/apis/{}/{}/{name}", kind.api_version(), kind.plural)
        };
        let resources::Route::Resource(target) =
            resources::parse_path(&path, &lock(&self.shared.cluster).catalog)
        else {
            anyhow::bail!("the test API server does not serve {}", kind.crd_name());
        };
        self.set_status(&target, status)
    }

    fn set_status(&self, target: &Target, status: Value) -> anyhow::Result<()> {
        let name = target.name.as_deref().unwrap_or_default();
        let mut cluster = lock(&self.shared.cluster);
        let mut object = verbs::get(&cluster, target, name)?;
        object["status"] = status;
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let scope = if target.resource.has_status() {
            Scope::Status
        } else {
            Scope::Main
        };
        let writer = managed::Writer::new("kube-controller-manager");
        verbs::update(
            &mut cluster,
            target,
            name,
            scope,
            object,
            Owner::Writer(&writer),
        )?;
        Ok(())
    }

    /// Installs a CustomResourceDefinition for `kind` (as a create through the API would); its
    /// kind is served at once.
    pub fn install_custom_kind(
        &self,
        kind: &CustomKind,
    ) -> anyhow::Result<CustomResourceDefinition> {
        self.put(&kind.definition()?)
    }

    /// Installs a namespaced or cluster-scoped kind with a `/status` subresource.
    pub fn install_crd(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> anyhow::Result<CustomKind> {
        let kind = CustomKind::new(group, version, kind, plural, namespaced);
        self.install_custom_kind(&kind)?;
        Ok(kind)
    }

    /// Installs Argo Rollouts' `argoproj.io/v1alpha1` Rollout (short name `ro`, `/status`).
    pub fn install_argo_rollouts(&self) -> anyhow::Result<CustomKind> {
        let kind = CustomKind::argo_rollouts();
        self.install_custom_kind(&kind)?;
        Ok(kind)
    }

    /// Adds a Ready Node, so DaemonSets have somewhere to run.
    pub fn add_node(&self, name: &str) -> anyhow::Result<Node> {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))?;
        self.put(&node)
    }

    /// Adds a Ready Node of one platform, labelled as a kubelet labels it
    /// (`kubernetes.io/os`, `kubernetes.io/arch`) and with the same in its node info.
    pub fn add_node_on(&self, name: &str, os: &str, arch: &str) -> anyhow::Result<Node> {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": os, "kubernetes.io/arch": arch}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"operatingSystem": os, "architecture": arch, "bootID": "", "containerRuntimeVersion": "",
                    "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
                    "osImage": "", "systemUUID": ""}
            }
        }))?;
        self.put(&node)
    }

    /// Makes a CronJob run now, whatever its schedule: creates the Job its controller would
    /// (`<cronjob>-<n>`, owned by the CronJob, the job template's spec), finished with `outcome`
    /// (or active, never starting a pod: [`JobOutcome::Pending`]), and records
    /// `lastScheduleTime` (and `lastSuccessfulTime`, or the active Job) on the CronJob.
    pub fn run_cronjob(
        &self,
        namespace: &str,
        name: &str,
        outcome: JobOutcome,
    ) -> anyhow::Result<Job> {
        let mut cluster = lock(&self.shared.cluster);
        let job = cronjob::run(&mut cluster, namespace, name, outcome)?;
        Ok(serde_json::from_value(job)?)
    }

    /// Ends every open watch with an `ERROR` 410 Expired event, and makes every resourceVersion
    /// up to now too old to watch from, so clients must relist.
    pub fn expire_watches(&self) {
        lock(&self.shared.cluster).store.expire();
    }

    /// Forgets every injected fault not yet used up.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
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
        let pod = cluster.store.update(&PODS, pod);
        workloads::pod_changed(&mut cluster, &pod);
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
