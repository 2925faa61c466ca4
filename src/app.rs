//! Wiring shared by the commands: logging, the kube client, the registry client, shutdown.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tokio::sync::watch;

use crate::cli::{ClusterArgs, LogFormat};
use crate::metrics::Metrics;
use crate::registry::fanout::Fanout;
use crate::registry::{ClientOptions, DockerConfig, RegistryClient};

pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling commands in-process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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

/// The credentials file given with `--registry-credentials`, if any.
pub fn fallback_credentials(cluster: &ClusterArgs) -> anyhow::Result<DockerConfig> {
    match &cluster.registry_credentials {
        None => Ok(DockerConfig::default()),
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading registry credentials {}", path.display()))?;
            DockerConfig::from_config_json(&bytes)
                .with_context(|| format!("registry credentials {}", path.display()))
        }
    }
}

pub fn fanout(cluster: &ClusterArgs, metrics: Metrics) -> anyhow::Result<Fanout> {
    let client = RegistryClient::new(
        ClientOptions {
            insecure_registries: cluster.insecure_registries.clone(),
            timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        },
        metrics,
    )?;
    Ok(Fanout::new(
        client,
        cluster.registry_concurrency,
        Default::default(),
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
