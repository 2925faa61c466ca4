//! Registry credentials for a workload, in the kubelet's order: the pod template's
//! `imagePullSecrets`, then its ServiceAccount's, then the config file's, then anonymous.
//!
//! Secrets and ServiceAccounts are read with `get` only (tagwatch may not list or watch Secrets)
//! and cached, so a steady poll cycle costs no API request. Each is read once however many
//! workloads ask for it at the same moment: a thousand workloads sharing a namespace's service
//! account at start-up cost one read, not a thousand connections. A registry that refuses the
//! credentials makes the cache forget the namespace, so rotated secrets are picked up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use k8s_openapi::api::core::v1::{Secret as KubeSecret, ServiceAccount};
use kube::{Api, Client};

use crate::model::workload::Workload;
use crate::registry::{Credentials, DockerConfig};

/// How long a secret read stays trusted without any failure to suggest it changed.
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// `(namespace, name)` → when first asked for, and the read (under way, or done): every asker
/// awaits the same one.
type Cache<T> = Mutex<HashMap<(String, String), (Instant, Arc<OnceCell<T>>)>>;

/// The cached value of `key`, or the one read already under way, or a new read (`read`). A read
/// given up half-way (its asker timed out) is taken over by the next asker.
async fn cached<T, F>(cache: &Cache<T>, key: (String, String), read: impl FnOnce() -> F) -> T
where
    T: Clone,
    F: Future<Output = T>,
{
    let cell = {
        let mut cache = lock(cache);
        match cache.get(&key) {
            Some((at, cell)) if at.elapsed() < CACHE_TTL => cell.clone(),
            _ => {
                let cell = Arc::new(OnceCell::new());
                cache.insert(key, (Instant::now(), cell.clone()));
                cell
            }
        }
    };
    cell.get_or_init(read).await.clone()
}

pub struct PullSecrets {
    client: Client,
    /// Credentials from the config file and `--registry-credentials`, after pull secrets.
    fallback: DockerConfig,
    secrets: Cache<Option<DockerConfig>>,
    accounts: Cache<Vec<String>>,
}

impl PullSecrets {
    pub fn new(client: Client, fallback: DockerConfig) -> PullSecrets {
        PullSecrets {
            client,
            fallback,
            secrets: Mutex::default(),
            accounts: Mutex::default(),
        }
    }

    /// tagwatch's own credentials for `registry` (config file, `--registry-credentials`): what
    /// alias maintenance pushes with, since workloads' pull secrets rarely carry push rights.
    pub fn own(&self, registry: &str) -> Credentials {
        self.fallback.lookup(registry).cloned().unwrap_or_default()
    }

    /// The credentials `workload` would pull `registry` with.
    pub async fn credentials(&self, workload: &Workload, registry: &str) -> Credentials {
        let namespace = &workload.id.namespace;
        for name in &workload.pull_secrets {
            if let Some(creds) = self.secret_credentials(namespace, name, registry).await {
                return creds;
            }
        }
        for name in self
            .account_secrets(namespace, &workload.service_account)
            .await
        {
            if let Some(creds) = self.secret_credentials(namespace, &name, registry).await {
                return creds;
            }
        }
        self.fallback.lookup(registry).cloned().unwrap_or_default()
    }

    /// The registry refused what we sent: read this namespace's secrets again next time.
    pub fn forget_namespace(&self, namespace: &str) {
        lock(&self.secrets).retain(|(ns, _), _| ns != namespace);
        lock(&self.accounts).retain(|(ns, _), _| ns != namespace);
    }

    async fn secret_credentials(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
    ) -> Option<Credentials> {
        let key = (namespace.to_string(), name.to_string());
        let config = cached(&self.secrets, key, || self.read_secret(namespace, name)).await;
        config.and_then(|c| c.lookup(registry).cloned())
    }

    async fn read_secret(&self, namespace: &str, name: &str) -> Option<DockerConfig> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), namespace);
        let secret = match api.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(namespace, secret = name, "image pull secret not found");
                return None;
            }
            Err(e) => {
                tracing::warn!(namespace, secret = name, error = %e, "cannot read image pull secret");
                return None;
            }
        };
        match docker_config(&secret) {
            Ok(config) => Some(config),
            Err(e) => {
                // The error never carries secret material.
                tracing::warn!(namespace, secret = name, error = %e, "image pull secret unusable");
                None
            }
        }
    }

    async fn account_secrets(&self, namespace: &str, account: &str) -> Vec<String> {
        let key = (namespace.to_string(), account.to_string());
        cached(&self.accounts, key, || {
            self.read_account(namespace, account)
        })
        .await
    }

    async fn read_account(&self, namespace: &str, account: &str) -> Vec<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(account).await {
            Ok(Some(sa)) => sa
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(namespace, service_account = account, error = %e, "cannot read service account");
                Vec::new()
            }
        }
    }
}

/// The registry credentials in a `kubernetes.io/dockerconfigjson` or `dockercfg` Secret.
pub fn docker_config(secret: &KubeSecret) -> Result<DockerConfig, String> {
    let data = secret.data.as_ref();
    let get = |key: &str| data.and_then(|d| d.get(key));
    let parsed = match (get(".dockerconfigjson"), get(".dockercfg")) {
        (Some(json), _) => DockerConfig::from_config_json(&json.0),
        (None, Some(cfg)) => DockerConfig::from_dockercfg(&cfg.0),
        (None, None) => return Err("has neither .dockerconfigjson nor .dockercfg".into()),
    };
    parsed.map_err(|e| format!("does not parse: {e}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(key: &str, value: &str) -> KubeSecret {
        KubeSecret {
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..KubeSecret::default()
        }
    }

    #[test]
    fn a_malformed_pull_secret_is_reported_by_json_path_without_its_values() {
        const MARKER: &str = "s3cret-MARKER-pw";
        for (key, value, path) in [
            (
                ".dockerconfigjson",
                r#"{"auths":{"registry.example:5000":{"username":"u","password":"s3cret-MARKER-pw","auth":7}}}"#,
                "auths.registry.example:5000.auth",
            ),
            (
                ".dockerconfigjson",
                r#"{"auths":{"registry.example:5000":"s3cret-MARKER-pw"}}"#,
                "auths.registry.example:5000",
            ),
            (
                ".dockercfg",
                r#"{"registry.example:5000":{"password":["s3cret-MARKER-pw"]}}"#,
                "registry.example:5000.password",
            ),
        ] {
            let message = docker_config(&secret(key, value)).unwrap_err();
            assert!(!message.contains(MARKER), "{value}: {message}");
            assert!(message.contains(&format!("`{path}`")), "{value}: {message}");
        }
        assert_eq!(
            docker_config(&secret("other", "x")).unwrap_err(),
            "has neither .dockerconfigjson nor .dockercfg"
        );
    }
}
