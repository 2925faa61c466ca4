//! The cluster view: kube-runtime reflectors over Deployments (all namespaces or the ones asked
//! for), so reading the current state costs no API request. Every change wakes the poller.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub struct Deployments {
    stores: Vec<Store<Deployment>>,
    tasks: Vec<JoinHandle<()>>,
    changed: Arc<Notify>,
}

impl Deployments {
    /// Starts one reflector per namespace (one cluster-wide when `namespaces` is empty).
    pub fn start(client: &Client, namespaces: &[String], selector: Option<&str>) -> Deployments {
        let changed = Arc::new(Notify::new());
        let apis: Vec<Api<Deployment>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for api in apis {
            let mut config = watcher::Config::default();
            if let Some(selector) = selector {
                config = config.labels(selector);
            }
            let (store, writer) = reflector::store();
            let changed = changed.clone();
            let stream = reflector::reflector(writer, watcher(api, config))
                .default_backoff()
                .touched_objects();
            tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(_) => changed.notify_one(),
                        // The watcher retries with backoff by itself; say why it had to.
                        Err(e) => tracing::warn!(error = %e, "deployment watch failed; retrying"),
                    }
                }
            }));
            stores.push(store);
        }
        Deployments {
            stores,
            tasks,
            changed,
        }
    }

    /// Waits for the first complete list of every reflector.
    pub async fn ready(&self) {
        for store in &self.stores {
            // Only fails if the writer is gone, which means the task ended: nothing to wait for.
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<Deployment>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }

    /// Resolves at the next change seen by any reflector.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

impl Drop for Deployments {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
