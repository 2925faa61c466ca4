//! Wiring shared by the commands: logging, the kube client, the registry client, shutdown.

use std::path::Path;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tokio::sync::watch;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::Api;

use crate::cli::LogFormat;
use crate::config::{CredentialSource, RegistrySettings, SecretRef};
use crate::metrics::Metrics;
use crate::registry::fanout::Fanout;
use crate::registry::pull_secrets;
use crate::registry::{DockerConfig, RegistryClient};

pub fn init_tracing(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("log level `{level}` is not a level or filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling commands in-process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// Where glibc's malloc would keep freed memory that tagwatch no longer uses. Called before any
/// thread starts.
///
/// - Every thread that allocates gets an arena of its own (up to eight per core), and each keeps
///   the memory freed in it: the watch caches, filled from both worker threads, would leave their
///   start-up garbage in three heaps. One arena costs nothing measurable at tagwatch's allocation
///   rate and holds 10,000 workloads in about 5 MB less.
/// - A block above the mmap threshold is mapped on its own and unmapped when freed, but glibc
///   raises the threshold to the size of every such block freed (up to 32 MB). After the first
///   list page of a few MB, a per-turn table or listing of that size came from the heap, and each
///   one left a hole there: 2.4 MB more heap a minute at 10,000 workloads. A fixed threshold (the
///   default's starting value) keeps big, short-lived blocks out of the heap.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tunables, and no other thread exists yet to race with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// kube's and reqwest's TLS stacks both use aws-lc-rs; installing it explicitly avoids rustls'
/// "cannot determine the process-level CryptoProvider" panic if another provider sneaks in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a cluster",
        )?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// The credentials tagwatch uses after the workloads' own pull secrets: the file given for every
/// registry, then the per-registry entries of the config file. A missing or unusable source
/// refuses start-up rather than polling without it.
pub async fn registry_credentials(
    settings: &RegistrySettings,
    client: Option<&Client>,
) -> anyhow::Result<DockerConfig> {
    let mut config = match &settings.credentials_file {
        None => DockerConfig::default(),
        Some(path) => read_docker_config(path)?,
    };
    for (host, source) in &settings.credentials {
        let found = match source {
            CredentialSource::File(path) => read_docker_config(path)?,
            CredentialSource::Secret(SecretRef { namespace, name }) => {
                let client = client.context("registry credentials from a Secret need a cluster")?;
                let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
                let secret = api.get(name).await.with_context(|| {
                    format!("reading Secret {namespace}/{name} for registry {host}")
                })?;
                pull_secrets::docker_config(&secret).map_err(|e| {
                    anyhow::anyhow!("Secret {namespace}/{name} for registry {host} {e}")
                })?
            }
        };
        let credentials = found.lookup(host).cloned().with_context(|| {
            format!("the credentials configured for registry {host} have no entry for {host}")
        })?;
        config.insert(host, credentials);
    }
    Ok(config)
}

fn read_docker_config(path: &Path) -> anyhow::Result<DockerConfig> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading registry credentials {}", path.display()))?;
    DockerConfig::from_config_json(&bytes)
        .with_context(|| format!("registry credentials {}", path.display()))
}

pub fn fanout(settings: &RegistrySettings, metrics: Metrics) -> anyhow::Result<Fanout> {
    metrics.know_registries(&settings.hosts);
    let client = RegistryClient::new(settings.client_options(), metrics)?;
    Ok(Fanout::new(
        client,
        settings.concurrency,
        settings.limits.iter().cloned().collect(),
    ))
}

/// A channel that turns true on SIGTERM or SIGINT.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing the current round");
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once `rx` turns true.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
