//! The real CNCF distribution server (`docker-registry` 2.8) on a free loopback port, with anonymous,
//! basic or token auth, real images pushed through oci-client, and a record of every request it served.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tagwatch_testbed::registry::{ImageKind, Registry};
//! let registry = Registry::anonymous().await?;
//! let digest = registry.push_image("app", "1.0.0", ImageKind::OciManifest).await?;
//! assert_eq!(registry.manifest_digest("app", "1.0.0").await?, Some(digest));
//! # Ok(()) }
//! ```

mod config;
pub(crate) mod images;
mod layer;
mod log;
mod manage;
mod process;
mod push;
mod signatures;
mod token;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::Child;

pub use config::{Auth, Notifications, RegistryOptions};
pub use images::{
    sha256_digest, ImageKind, ALL_MANIFEST_TYPES, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};
pub use log::{SeenRequest, HARNESS_USER_AGENT, OCI_USER_AGENT};
pub use process::missing_binary_message;
pub use token::{Access, TokenIssuer, TokenRequest, ISSUER, SERVICE};

use config::AuthConfig;
use log::RequestLog;

const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
const LOG_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// A running registry; the process is killed and its storage removed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    auth: Auth,
    log: RequestLog,
    issuer: Option<TokenIssuer>,
    oci: oci_client::Client,
    http: reqwest::Client,
    log_syncs: AtomicU64,
    storage: PathBuf,
    // Last: removed after the process is gone.
    _dir: TempDir,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("port", &self.port)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Starts a registry; fails (never skips) when `docker-registry` is not installed.
    pub async fn start(opts: RegistryOptions) -> anyhow::Result<Registry> {
        Self::start_with_binary(Path::new(process::BINARY), opts).await
    }

    /// A registry anyone can push to and pull from.
    pub async fn anonymous() -> anyhow::Result<Registry> {
        Self::start(RegistryOptions::default()).await
    }

    /// A registry behind HTTP Basic auth (htpasswd, bcrypt).
    pub async fn basic(username: &str, password: &str) -> anyhow::Result<Registry> {
        let auth = Auth::Basic {
            username: username.into(),
            password: password.into(),
        };
        Self::start(RegistryOptions {
            auth,
            ..Default::default()
        })
        .await
    }

    /// A registry behind Bearer tokens from an in-process issuer.
    pub async fn token(username: &str, password: &str) -> anyhow::Result<Registry> {
        let auth = Auth::Token {
            username: username.into(),
            password: password.into(),
        };
        Self::start(RegistryOptions {
            auth,
            ..Default::default()
        })
        .await
    }

    async fn start_with_binary(binary: &Path, opts: RegistryOptions) -> anyhow::Result<Registry> {
        if !binary.exists() {
            anyhow::bail!(missing_binary_message(binary));
        }
        let dir = tempfile::Builder::new()
            .prefix("tagwatch-registry-")
            .tempdir()?;
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)?;
        let config_path = dir.path().join("config.yml");

        let mut issuer = None;
        let running = match &opts.auth {
            Auth::Anonymous => {
                process::start(binary, &config_path, |port| {
                    config::render(
                        port,
                        &storage,
                        &AuthConfig::Anonymous,
                        opts.notifications.as_ref(),
                    )
                })
                .await?
            }
            Auth::Basic { username, password } => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, config::htpasswd_line(username, password)?)?;
                let auth = AuthConfig::Htpasswd { path: &path };
                process::start(binary, &config_path, |port| {
                    config::render(port, &storage, &auth, opts.notifications.as_ref())
                })
                .await?
            }
            Auth::Token { username, password } => {
                let lifetime = opts.token_expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME);
                let started = TokenIssuer::start(username, password, lifetime).await?;
                let bundle = dir.path().join("token-issuer.pem");
                std::fs::write(&bundle, started.cert_pem())?;
                let realm = started.realm();
                let auth = AuthConfig::Token {
                    realm: &realm,
                    service: SERVICE,
                    issuer: ISSUER,
                    root_cert_bundle: &bundle,
                };
                let running = process::start(binary, &config_path, |port| {
                    config::render(port, &storage, &auth, opts.notifications.as_ref())
                })
                .await?;
                issuer = Some(started);
                running
            }
        };

        let oci = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            use_monolithic_push: true,
            user_agent: OCI_USER_AGENT,
            ..Default::default()
        });
        Ok(Registry {
            child: running.child,
            port: running.port,
            auth: opts.auth,
            log: running.log,
            issuer,
            oci,
            http: process::harness_client()?,
            log_syncs: AtomicU64::new(0),
            storage,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The username and password clients must present, if any.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.auth.credentials()
    }

    /// The issuer of a token-auth registry.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The oci-client `Client` this handle pushes and lists with (one per handle: oci-client keeps one
    /// auth per registry host and caches tokens per repository and operation).
    pub fn oci_client(&self) -> &oci_client::Client {
        &self.oci
    }

    /// The credentials as oci-client takes them.
    pub fn oci_auth(&self) -> oci_client::secrets::RegistryAuth {
        match self.auth.credentials() {
            Some((username, password)) => {
                oci_client::secrets::RegistryAuth::Basic(username, password)
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        }
    }

    /// `repo:tag` on this registry, as oci-client takes it.
    pub fn reference(&self, repo: &str, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(self.host(), repo.to_string(), tag.to_string())
    }

    /// Where the registry stores its data (`<root>/docker/registry/v2/...`).
    pub fn storage_root(&self) -> &Path {
        &self.storage
    }

    /// Every request the registry served so far, from its access log. Left out: the harness's own
    /// plain-HTTP requests (readiness, log sync, `manifest_digest`, `delete_manifest`). Included: the
    /// handle's oci-client requests (`push_image`, `tag`, `list_tags`; user agent [`OCI_USER_AGENT`])
    /// and every other client's. A request shows up once the registry has logged it: call
    /// [`Registry::sync_log`] first when counting.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.log.requests()
    }

    /// The requests of [`Registry::requests`] after the first `from`, in the order they were logged.
    pub fn requests_since(&self, from: usize) -> Vec<SeenRequest> {
        self.log.requests_since(from)
    }

    /// How many served requests had `method` and a path ending in `path_suffix`.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.ends_with(path_suffix))
            .count()
    }

    /// Waits until every request answered before this call is in `requests()`.
    ///
    /// The registry writes its access log line just before the response is flushed, and a reader
    /// task picks it up: a marker request sent now is logged after all earlier ones.
    pub async fn sync_log(&self) -> anyhow::Result<()> {
        let n = self.log_syncs.fetch_add(1, Ordering::Relaxed);
        let query = format!("tagwatch-log-sync={n}");
        self.http
            .get(format!("{}/v2/?{query}", self.url()))
            .send()
            .await?;
        crate::wait::until(
            "the registry to log a marker request",
            LOG_SYNC_TIMEOUT,
            || {
                let seen = self.log.saw_harness_request(&query);
                async move { seen.then_some(()) }
            },
        )
        .await
    }

    /// The tail of the registry's JSON application log, for failure messages.
    pub fn app_log_tail(&self, lines: usize) -> String {
        self.log.app_tail(lines)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_fails_with_the_install_command() {
        let error = Registry::start_with_binary(
            Path::new("/nonexistent/docker-registry"),
            RegistryOptions::default(),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            error.contains("apt-get update && apt-get install -y docker-registry"),
            "{error}"
        );
    }
}
