//! Many registry reads at once, bounded per registry host so one cycle never floods a registry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::client::RegistryClient;
use super::credentials::Credentials;
use super::error::RegistryError;
use crate::model::image::Repository;

/// Concurrent requests per registry unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Clone)]
pub struct Fanout {
    client: RegistryClient,
    default_limit: usize,
    limits: HashMap<String, usize>,
    semaphores: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Fanout {
    pub fn new(
        client: RegistryClient,
        default_limit: usize,
        limits: HashMap<String, usize>,
    ) -> Self {
        Fanout {
            client,
            default_limit: default_limit.max(1),
            limits,
            semaphores: Arc::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    fn semaphore(&self, registry: &str) -> Arc<Semaphore> {
        let mut map = self.semaphores.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(registry.to_string())
            .or_insert_with(|| {
                let limit = self
                    .limits
                    .get(registry)
                    .copied()
                    .unwrap_or(self.default_limit);
                Arc::new(Semaphore::new(limit.max(1)))
            })
            .clone()
    }

    /// Runs `work` once the registry has a free slot. The work is made only once its turn came,
    /// and on the heap: a task waiting its turn holds a few bytes, not the whole request's state
    /// (about 10 KB for a listing), so a cycle of a thousand listings waiting behind four costs
    /// no 10 MB peak.
    pub async fn bounded<T, F>(&self, registry: &str, work: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T>,
    {
        let semaphore = self.semaphore(registry);
        // The semaphore is never closed, so acquiring only waits.
        let _permit = semaphore.acquire_owned().await.ok();
        Box::pin(work()).await
    }

    /// One complete listing, waiting its turn behind the registry's other requests.
    pub async fn list_one(
        &self,
        repo: &Repository,
        credentials: &Credentials,
    ) -> Result<Vec<String>, RegistryError> {
        self.bounded(&repo.registry, || self.client.list_tags(repo, credentials))
            .await
    }

    /// One digest read (a HEAD), waiting its turn behind the registry's other requests.
    pub async fn digest_one(
        &self,
        repo: &Repository,
        tag: &str,
        credentials: &Credentials,
    ) -> Result<Option<String>, RegistryError> {
        self.bounded(&repo.registry, || {
            self.client.manifest_digest(repo, tag, credentials)
        })
        .await
    }

    /// Lists every repository once.
    pub async fn list_tags(
        &self,
        jobs: Vec<(Repository, Credentials)>,
    ) -> Vec<(Repository, Result<Vec<String>, RegistryError>)> {
        let futures = jobs.into_iter().map(|(repo, credentials)| async move {
            let result = self
                .bounded(&repo.registry, || {
                    self.client.list_tags(&repo, &credentials)
                })
                .await;
            (repo, result)
        });
        futures::future::join_all(futures).await
    }

    /// Reads the digest of each `(repository, tag)` with one HEAD request each.
    pub async fn digests(
        &self,
        jobs: Vec<(Repository, String, Credentials)>,
    ) -> Vec<((Repository, String), Result<Option<String>, RegistryError>)> {
        let futures = jobs.into_iter().map(|(repo, tag, credentials)| async move {
            let result = self
                .bounded(&repo.registry, || {
                    self.client.manifest_digest(&repo, &tag, &credentials)
                })
                .await;
            ((repo, tag), result)
        });
        futures::future::join_all(futures).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::image::ImageRef;
    use crate::registry::client::ClientOptions;

    #[test]
    fn a_read_waiting_its_turn_holds_no_request_state() {
        let client =
            RegistryClient::new(ClientOptions::default(), Metrics::unregistered().unwrap())
                .unwrap();
        let fanout = Fanout::new(client, 1, HashMap::new());
        let repo = ImageRef::parse("registry.example/app:1")
            .unwrap()
            .repository;
        let anonymous = Credentials::Anonymous;
        // What a spawned listing task holds while a thousand wait behind a registry's four.
        let listing = std::mem::size_of_val(&fanout.list_one(&repo, &anonymous));
        let digest = std::mem::size_of_val(&fanout.digest_one(&repo, "1", &anonymous));
        let whole = std::mem::size_of_val(&fanout.client.list_tags(&repo, &anonymous));
        assert!(listing <= 512, "a waiting listing holds {listing} B");
        assert!(digest <= 512, "a waiting digest read holds {digest} B");
        assert!(
            whole > 4 * listing,
            "the request itself holds {whole} B, waiting {listing} B"
        );
    }
}
