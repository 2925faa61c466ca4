//! `tagwatch run`: the service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::app;
use crate::cli::RunArgs;
use crate::cycle::{Context, Poller};
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::pull_secrets::PullSecrets;
use crate::watch::Deployments;

/// Bursts of watch events (a rollout updates status several times) become one round.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = app::shutdown_signal();

    let (addr, http_task) = http::serve(
        args.listen,
        HttpState {
            registry: registry.clone(),
            ready: ready.clone(),
        },
        app::stopped(shutdown.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");

    let client = app::kube_client(args.cluster.kubeconfig.as_deref()).await?;
    let reporter = Reporter {
        controller: "tagwatch".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        fanout: app::fanout(&args.cluster, metrics.clone())?,
        secrets: PullSecrets::new(client.clone(), app::fallback_credentials(&args.cluster)?),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        default_interval: args.cluster.interval,
    });

    let deployments = Deployments::start(
        &client,
        &args.cluster.namespaces,
        args.cluster.selector.as_deref(),
    );
    tokio::select! {
        _ = deployments.ready() => {}
        _ = app::stopped(shutdown.clone()) => return Ok(()),
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        deployments = deployments.snapshot().len(),
        "discovery synced; polling"
    );

    let mut poller = Poller::new(ctx);
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A round runs to completion: a patch in flight is never cut half-way by shutdown.
        let report = poller.round(&deployments.snapshot()).await;
        tracing::debug!(?report, "round done");
        let wake = poller
            .next_wakeup()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = deployments.changed() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep_until(wake) => {}
            _ = app::stopped(shutdown.clone()) => {}
        }
    }
    ready.store(false, Ordering::Relaxed);
    drop(deployments);
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}
