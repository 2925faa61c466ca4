//! `tagwatch run`: the service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::app;
use crate::cli::RunArgs;
use crate::config::{self, FileConfig, LeaderSettings, Settings};
use crate::cycle::{Context, Poller};
use crate::http::{self, HttpState};
use crate::leader::{self, Elector, Leadership};
use crate::metrics::Metrics;
use crate::pull_secrets::PullSecrets;
use crate::watch::Deployments;

/// Bursts of watch events (a rollout updates status several times) become one round.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub async fn run(args: RunArgs, file: FileConfig) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args.cluster, &file);
    let leader_settings = LeaderSettings::resolve(&args.leader, &file.leader_election)?;
    let listen = config::listen(args.listen, &file);
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = app::shutdown_signal();

    let (addr, http_task) = http::serve(
        listen,
        HttpState {
            registry: registry.clone(),
            ready: ready.clone(),
        },
        app::stopped(shutdown.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");

    let client = app::kube_client(settings.kubeconfig.as_deref()).await?;
    let credentials = app::registry_credentials(&settings.registries, Some(&client)).await?;
    let (mut leadership, elector) = if leader_settings.enabled {
        let namespace = leader::lease_namespace(&leader_settings, &client);
        let (elector, leadership) = Elector::new(
            client.clone(),
            &namespace,
            leader::identity(),
            leader_settings.clone(),
            metrics.clone(),
        );
        tracing::info!(lease = %leader_settings.lease_name, %namespace, identity = elector.identity(),
            "leader election on");
        let task = tokio::spawn(elector.run(app::stopped(shutdown.clone())));
        (leadership, Some(task))
    } else {
        metrics.leader.set(1);
        (Leadership::always(), None)
    };
    let reporter = Reporter {
        controller: "tagwatch".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        fanout: app::fanout(&settings.registries, metrics.clone())?,
        secrets: PullSecrets::new(client.clone(), credentials),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        default_interval: settings.interval,
        leadership: leadership.clone(),
        aliases: settings.aliases.clone(),
    });

    let deployments =
        Deployments::start(&client, &settings.namespaces, settings.selector.as_deref());
    tokio::select! {
        _ = async { tokio::join!(deployments.ready(), leadership.known()) } => {}
        _ = app::stopped(shutdown.clone()) => return Ok(()),
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        deployments = deployments.snapshot().len(),
        leader = leadership.is_leader(),
        "discovery synced"
    );

    let mut poller = Poller::new(ctx);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let wake = if leadership.is_leader() {
            // A round runs to completion: a patch in flight is never cut half-way by shutdown.
            let report = poller.round(&deployments.snapshot()).await;
            tracing::debug!(?report, "round done");
            let next = poller.next_wakeup();
            // Wake when leadership would lapse too, so a lapsed leader notices it promptly.
            match (next, leadership.valid_until()) {
                (Some(a), Some(b)) => Some(a.min(b.max(std::time::Instant::now()))),
                (a, b) => a.or(b),
            }
        } else {
            None
        };
        let wake = wake
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = deployments.changed() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep_until(wake) => {}
            _ = leadership.changed() => {}
            _ = app::stopped(shutdown.clone()) => {}
        }
    }
    ready.store(false, Ordering::Relaxed);
    drop(deployments);
    if let Some(task) = elector {
        let _ = task.await;
    }
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}
