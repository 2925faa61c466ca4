//! The cluster view: kube-runtime reflectors over every workload kind (all namespaces or the ones
//! asked for), so reading the current state costs no API request. Every change wakes the loop.
//!
//! A kind tagwatch may not list (no RBAC for it, or a cluster without it) is reported once, by
//! name, and the other kinds are served; it keeps being retried in the background. Argo Rollouts
//! are watched only once their CRD is served: discovery is asked at start and every
//! [`CRD_RECHECK`] (`--crd-recheck`) until it is, so installing Argo later needs no restart.
//! Objects are trimmed ([`super::trim`]) and cached compact ([`super::compact`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::DynamicObject;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{watch as signal, Notify};
use tokio::task::JoinHandle;

use serde::Serialize;

use super::compact::{Arriving, Cached, Compact};
use super::object::api_resource;
use super::store::{Applied, Store};
use super::trim::Trim;
use crate::model::kind::Kind;

/// Objects per page of the initial list: a page is held as it arrived while its objects are
/// decoded one by one into their compact form (kube's default is 500).
pub const LIST_PAGE: u32 = 500;

/// How often discovery is asked whether Argo Rollouts' CRD appeared, unless configured.
pub const CRD_RECHECK: Duration = Duration::from_secs(30);

/// Where each kind's watch stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Not listed yet.
    Starting,
    /// Listed: its objects are in the snapshot.
    Synced,
    /// Cannot be listed (forbidden, not served); the watch keeps retrying.
    Unavailable(String),
    /// The CRD is absent (Argo Rollouts): looked for again every `crd_recheck`.
    Absent,
}

type Snapshotter = Box<dyn Fn() -> Vec<Cached> + Send + Sync>;

/// One reflector: how to read its store, whether it has listed.
struct Reflected {
    snapshot: Snapshotter,
}

pub struct Workloads {
    reflected: Arc<Mutex<Vec<Reflected>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    changed: Arc<Notify>,
    availability: signal::Receiver<BTreeMap<Kind, Availability>>,
}

struct Starter {
    client: Client,
    namespaces: Vec<String>,
    selector: Option<String>,
    reflected: Arc<Mutex<Vec<Reflected>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    changed: Arc<Notify>,
    availability: Arc<signal::Sender<BTreeMap<Kind, Availability>>>,
    crd_recheck: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Workloads {
    /// Starts the reflectors of `kinds`, one per namespace (one cluster-wide when `namespaces` is
    /// empty); an absent Rollout CRD is looked for again every [`CRD_RECHECK`].
    pub fn start(
        client: &Client,
        namespaces: &[String],
        selector: Option<&str>,
        kinds: &[Kind],
    ) -> Workloads {
        Workloads::start_with(client, namespaces, selector, kinds, CRD_RECHECK)
    }

    /// As [`Workloads::start`], looking for an absent Rollout CRD every `crd_recheck`.
    pub fn start_with(
        client: &Client,
        namespaces: &[String],
        selector: Option<&str>,
        kinds: &[Kind],
        crd_recheck: Duration,
    ) -> Workloads {
        let initial: BTreeMap<Kind, Availability> =
            kinds.iter().map(|k| (*k, Availability::Starting)).collect();
        let (tx, rx) = signal::channel(initial);
        let starter = Arc::new(Starter {
            client: client.clone(),
            namespaces: namespaces.to_vec(),
            selector: selector.map(str::to_string),
            reflected: Arc::default(),
            tasks: Arc::default(),
            changed: Arc::new(Notify::new()),
            availability: Arc::new(tx),
            crd_recheck,
        });
        for kind in kinds {
            match kind {
                Kind::Deployment => {
                    starter.reflect(api_for::<Arriving<Deployment>>, Cached::Deployment)
                }
                Kind::StatefulSet => {
                    starter.reflect(api_for::<Arriving<StatefulSet>>, Cached::StatefulSet)
                }
                Kind::DaemonSet => {
                    starter.reflect(api_for::<Arriving<DaemonSet>>, Cached::DaemonSet)
                }
                Kind::CronJob => starter.reflect(api_for::<Arriving<CronJob>>, Cached::CronJob),
                Kind::Rollout => starter.clone().wait_for_crd(),
            }
        }
        Workloads {
            reflected: starter.reflected.clone(),
            tasks: starter.tasks.clone(),
            changed: starter.changed.clone(),
            availability: rx,
        }
    }

    /// Waits until every kind has listed or is known unavailable or absent: a kind tagwatch may
    /// not read must not keep the others from being served.
    pub async fn ready(&self) {
        let mut availability = self.availability.clone();
        let _ = availability
            .wait_for(|kinds| kinds.values().all(|a| *a != Availability::Starting))
            .await;
    }

    pub fn availability(&self) -> BTreeMap<Kind, Availability> {
        self.availability.borrow().clone()
    }

    pub fn snapshot(&self) -> Vec<Cached> {
        lock(&self.reflected)
            .iter()
            .flat_map(|r| (r.snapshot)())
            .collect()
    }

    /// Resolves at the next change seen by any reflector.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

impl Drop for Workloads {
    fn drop(&mut self) {
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }
}

fn api_for<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

impl Starter {
    fn set(&self, kind: Kind, state: Availability) {
        self.availability.send_modify(|kinds| {
            kinds.insert(kind, state);
        });
    }

    fn scopes(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    fn reflect<K, A, W>(&self, api: A, wrap: W)
    where
        K: Resource + Trim + Serialize + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
        A: Fn(Client, Option<&str>) -> Api<Arriving<K>>,
        W: Fn(Arc<Compact<K>>) -> Cached + Send + Sync + Copy + 'static,
    {
        let kind = kind_of::<K>();
        let scopes = self.scopes();
        let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let wanted = scopes.len();
        for scope in scopes {
            let api = api(self.client.clone(), scope.as_deref());
            self.spawn(kind, api, wrap, synced.clone(), wanted);
        }
    }

    fn spawn<K, W>(
        &self,
        kind: Kind,
        api: Api<Arriving<K>>,
        wrap: W,
        synced: Arc<std::sync::atomic::AtomicUsize>,
        wanted: usize,
    ) where
        K: Resource + Trim + Serialize + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
        W: Fn(Arc<Compact<K>>) -> Cached + Send + Sync + Copy + 'static,
    {
        let mut config = watcher::Config::default().page_size(LIST_PAGE);
        if let Some(selector) = &self.selector {
            config = config.labels(selector);
        }
        let store = Store::<K>::default();
        let changed = self.changed.clone();
        let availability = self.availability.clone();
        let reader = store.clone();
        lock(&self.reflected).push(Reflected {
            snapshot: Box::new(move || reader.state().into_iter().map(wrap).collect()),
        });
        let stream = watcher(api, config).default_backoff();
        let task = tokio::spawn(async move {
            let mut reported = false;
            let mut stream = std::pin::pin!(stream);
            let mut counted = false;
            loop {
                match stream.next().await {
                    Some(Ok(event)) => match store.apply(event) {
                        Applied::Changed => changed.notify_one(),
                        Applied::Gathering => {}
                        Applied::Listed => {
                            changed.notify_one();
                            if !counted {
                                counted = true;
                                let now =
                                    synced.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                if now >= wanted {
                                    availability.send_modify(|kinds| {
                                        kinds.insert(kind, Availability::Synced);
                                    });
                                    if reported {
                                        tracing::info!(
                                            kind = kind.name(),
                                            "now watching {}",
                                            kind.plural()
                                        );
                                    }
                                }
                            }
                        }
                    },
                    Some(Err(e)) => {
                        // Forbidden or not served: this kind is out of reach, say so once and
                        // serve the others. Anything else is a passing failure: the watcher
                        // retries with backoff by itself, and readiness waits for the list.
                        let out_of_reach = match &e {
                            watcher::Error::InitialListFailed(kube::Error::Api(status)) => {
                                status.code == 403 || status.code == 404
                            }
                            _ => false,
                        };
                        if out_of_reach && !reported {
                            tracing::warn!(kind = kind.name(), error = %e,
                                "cannot list {}; the other kinds are served, this one is retried",
                                kind.plural());
                            reported = true;
                            availability.send_modify(|kinds| {
                                if kinds.get(&kind) == Some(&Availability::Starting) {
                                    kinds.insert(kind, Availability::Unavailable(e.to_string()));
                                }
                            });
                        } else if !out_of_reach {
                            tracing::warn!(kind = kind.name(), error = %e, "workload watch failed; retrying");
                        }
                    }
                    None => return,
                }
            }
        });
        lock(&self.tasks).push(task);
    }

    /// Watches Argo Rollouts once discovery says their CRD is served.
    fn wait_for_crd(self: Arc<Self>) {
        let starter = self.clone();
        let task = tokio::spawn(async move {
            let kind = Kind::Rollout;
            let mut said_absent = false;
            loop {
                match served(&starter.client, kind).await {
                    Ok(true) => {
                        tracing::info!(
                            "Argo Rollouts' CRD is served: watching rollouts.argoproj.io"
                        );
                        let resource = api_resource(kind);
                        let scopes = starter.scopes();
                        let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                        let wanted = scopes.len();
                        for scope in scopes {
                            let api: Api<Arriving<DynamicObject>> = match scope.as_deref() {
                                Some(ns) => {
                                    Api::namespaced_with(starter.client.clone(), ns, &resource)
                                }
                                None => Api::all_with(starter.client.clone(), &resource),
                            };
                            starter.spawn(kind, api, Cached::Rollout, synced.clone(), wanted);
                        }
                        return;
                    }
                    Ok(false) => {
                        if !said_absent {
                            tracing::info!("Argo Rollouts' CRD is not installed: rollouts are not watched (looked for again every {})",
                                humantime::format_duration(starter.crd_recheck));
                            said_absent = true;
                        }
                        starter.set(kind, Availability::Absent);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask discovery whether Argo Rollouts is installed; asking again later");
                        starter.set(kind, Availability::Unavailable(e.to_string()));
                    }
                }
                tokio::time::sleep(starter.crd_recheck).await;
            }
        });
        lock(&self.tasks).push(task);
    }
}

/// Whether the API server serves `kind` (its group/version lists its plural).
async fn served(client: &Client, kind: Kind) -> Result<bool, kube::Error> {
    let group_version = kind.api_version();
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural())),
        // An absent group answers a plain-text 404 (not a Status): kube reports it as an API
        // error with code 404, or as a decoding failure of that text.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(kube::Error::SerdeError(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn kind_of<K: Resource>() -> Kind
where
    K::DynamicType: Default,
{
    let dynamic = Default::default();
    let name = K::kind(&dynamic);
    Kind::parse(&name).unwrap_or_default()
}
