//! `tagwatch run`: the service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::act::prometheus::PrometheusClient;
use crate::act::runner::Writer;
use crate::act::verify::Verification;
use crate::act::Context;
use crate::app;
use crate::cli::RunArgs;
use crate::config::{self, FileConfig};
use crate::control::holds::HoldSettings;
use crate::control::Poller;
use crate::discover::watch::{Workloads, CRD_RECHECK};
use crate::leader::{self, Elector, Leadership};
use crate::metrics::Metrics;
use crate::model::kind::Kind;
use crate::notify;
use crate::plan::holds::Limits;
use crate::registry::pull_secrets::PullSecrets;
use crate::server::webhooks::Hint;
use crate::server::{self, HttpState, Liveness, Webhooks};
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::act::tasks;

/// Bursts of watch events (a rollout updates status several times) become one round.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Webhooks arriving within this window after the first become one re-listing round: a push of
/// a multi-arch image notifies once per manifest and once for the index.
const WEBHOOK_DEBOUNCE: Duration = Duration::from_millis(100);

/// The loop turns at least this often, however quiet: its heartbeat for `/healthz`.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A full turn at least this often even when nothing woke one: logins past their time are read
/// again, and anything a missed event would have brought is seen. Heartbeats in between only
/// beat: a turn looks at every workload, and at ten thousand that is not free.
const RESYNC: Duration = Duration::from_secs(60);

/// `/healthz` fails after this long without a turn (twelve missed heartbeats).
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(60);

/// At shutdown, writes and checks in flight get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(args: RunArgs, file: FileConfig) -> anyhow::Result<()> {
    let settings = args.cluster.resolve(&file);
    let leader_settings = args.leader.resolve(&file.leader_election)?;
    let listen = config::listen(args.listen, &file);
    let secret = config::webhook_secret(args.webhook_secret.as_deref(), &file, None)?;
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let liveness = Liveness::new(args.liveness_timeout.unwrap_or(LIVENESS_TIMEOUT));
    let shutdown = app::shutdown_signal();

    let client = app::kube_client(settings.kubeconfig.as_deref()).await?;
    let credentials = app::registry_credentials(&settings.registries, Some(&client)).await?;
    // Sink URLs and keys held in Secrets are read from tagwatch's namespace, beside the Lease.
    let notifier = notify::sources::start(
        &file.notifications,
        &client,
        &leader::lease_namespace(&leader_settings, args.pod_namespace.as_deref(), &client),
        metrics.clone(),
        &notify::DeliveryOptions::default(),
    )
    .await?;
    let reporter = Reporter {
        controller: "tagwatch".into(),
        instance: args.pod_name.clone(),
    };
    // The signing secret beside the sinks' URLs, in tagwatch's namespace.
    let slack = match notify::sources::interactions(
        &file.notifications,
        &client,
        &leader::lease_namespace(&leader_settings, args.pod_namespace.as_deref(), &client),
    )
    .await?
    {
        Some(config) => {
            let allow_list = !config.allowed_users.is_empty() || !config.allowed_groups.is_empty();
            let slack = server::slack::SlackInteractions::new(
                config,
                client.clone(),
                reporter.clone(),
                metrics.clone(),
            )
            .map_err(|e| anyhow::anyhow!("notifications.slack.interactions: {e}"))?;
            tracing::info!(
                allow_list,
                "slack interactions on: POST /slack/interactions"
            );
            Some(slack)
        }
        None => None,
    };
    let (mut leadership, elector) = if leader_settings.enabled {
        let namespace =
            leader::lease_namespace(&leader_settings, args.pod_namespace.as_deref(), &client);
        let (elector, leadership) = Elector::new(
            client.clone(),
            &namespace,
            leader::identity(args.pod_name.as_deref()),
            leader_settings.clone(),
            metrics.clone(),
        );
        tracing::info!(lease = %leader_settings.lease_name, %namespace, identity = elector.identity(),
            "leader election on");
        (leadership, Some(elector))
    } else {
        metrics.leader.set(1);
        (Leadership::always(), None)
    };
    if secret.is_none() {
        tracing::warn!("no webhook secret configured: every webhook will be refused (401)");
    }
    let (hints_tx, mut hints) = mpsc::channel::<Vec<Hint>>(64);
    let debounce = file.webhooks.debounce.unwrap_or(WEBHOOK_DEBOUNCE);
    let (addr, http_task) = server::serve(
        listen,
        HttpState {
            registry: registry.clone(),
            ready: ready.clone(),
            liveness: Some(liveness.clone()),
            webhooks: Some(Webhooks::new(
                secret.map(Arc::from),
                hints_tx,
                leadership.clone(),
                metrics.clone(),
            )),
            slack,
        },
        app::stopped(shutdown.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz and /webhooks");
    // Campaign only once serving: a replica that cannot bind never holds the lease.
    let elector = elector.map(|e| tokio::spawn(e.run(app::stopped(shutdown.clone()))));

    let ctx = Arc::new(Context {
        client: client.clone(),
        fanout: app::fanout(&settings.registries, metrics.clone())?,
        secrets: PullSecrets::new(client.clone(), credentials),
        metrics: metrics.clone(),
        default_interval: settings.interval,
        aliases: settings.aliases.clone(),
        prometheus: settings
            .prometheus_url
            .as_deref()
            .map(|url| PrometheusClient::new(url, Duration::from_secs(10)))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--prometheus-url: {e}"))?,
        allowed_registries: settings.registries.allowed_registries.clone(),
        confirmed: Default::default(),
        taken_names: Default::default(),
        holds: HoldSettings {
            freezes: file.freezes.clone(),
            limits: Limits {
                total: file.max_concurrent_rollouts,
                per_namespace: file.max_concurrent_rollouts_per_namespace,
            },
        },
        verification: Arc::new(Verification {
            policies: file.verification.policies()?,
            aliases: file.alias_policies(),
            // Secret-held keys live beside the Lease, in tagwatch's namespace.
            namespace: Some(leader::lease_namespace(
                &leader_settings,
                args.pod_namespace.as_deref(),
                &client,
            )),
        }),
    });

    let deployments = Workloads::start_with(
        &client,
        &settings.namespaces,
        settings.selector.as_deref(),
        &Kind::ALL,
        args.crd_recheck.unwrap_or(CRD_RECHECK),
    );
    tokio::select! {
        _ = async { tokio::join!(deployments.ready(), leadership.known()) } => {}
        _ = app::stopped(shutdown.clone()) => return Ok(()),
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        workloads = deployments.snapshot().len(),
        leader = leadership.is_leader(),
        "discovery synced"
    );

    // First-seen times (tagwatch.dev/min-age) live beside the Lease, in tagwatch's namespace.
    let state_namespace =
        leader::lease_namespace(&leader_settings, args.pod_namespace.as_deref(), &client);
    let mut writer = Writer::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        leadership.clone(),
        metrics.clone(),
    );
    if let Some(notifier) = notifier {
        tracing::info!(sinks = ?notifier.sink_names(), "notifications on");
        writer = writer.with_notifier(notifier);
    }
    let mut poller = Poller::new(ctx, Arc::new(writer));
    poller.watch_freezes(state_namespace.clone());
    let mut was_leader = false;
    let Some(mut finished) = poller.take_events() else {
        anyhow::bail!("the poller's task channel is taken twice");
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A turn looks at every workload; it runs when something may have changed that only a turn
    // notices (a watch event, a due listing or check, leadership, a heartbeat), not after each
    // finished task: a finished listing decides its own users, so steady cost follows changes.
    let mut snapshot = Vec::new();
    let mut turn = true;
    let mut woken = false;
    let mut last_turn = std::time::Instant::now();
    // Debounced turns: for a burst of watch events, and (listing what they name) for a burst of
    // webhooks. The loop waits for them in its select, not in a sleep of its own, so a listing or
    // write that finishes meanwhile is served at once instead of after the debounce.
    let mut turn_at: Option<tokio::time::Instant> = None;
    let mut relist_at: Option<tokio::time::Instant> = None;
    let mut hinted: Vec<Hint> = Vec::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if turn && leadership.is_leader() {
            if !was_leader {
                // The times the last leader saved, not those read when this replica started.
                poller.keep_first_seen(
                    state_namespace.clone(),
                    saved_first_seen(&client, &state_namespace).await,
                );
                // A freeze set while no replica led holds from the first decision on.
                poller.freeze_read(crate::act::holds::load(&client, &state_namespace).await);
                was_leader = true;
            }
            snapshot = deployments.snapshot();
            guarded(&metrics, poller.turn(&snapshot)).await;
            last_turn = std::time::Instant::now();
            // This turn saw every watch event so far.
            turn_at = None;
        } else if woken && leadership.is_leader() {
            guarded(&metrics, poller.wake(&snapshot)).await;
        }
        liveness.beat();
        turn = true;
        woken = false;
        was_leader &= leadership.is_leader();
        let next = if leadership.is_leader() {
            poller.next_wakeup()
        } else {
            None
        };
        // Wake when leadership would lapse too, so a lapsed leader notices it promptly.
        let wake = match (next, leadership.valid_until()) {
            (Some(a), Some(b)) => Some(a.min(b.max(std::time::Instant::now()))),
            (a, b) => a.or(b),
        };
        let wake = wake
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some(done) = finished.recv() => {
                // The snapshot of the last turn: anything newer has woken a turn of its own.
                guarded(&metrics, poller.finished(done, &snapshot)).await;
                // Everything else already finished is handled before the next turn.
                while let Ok(done) = finished.try_recv() {
                    guarded(&metrics, poller.finished(done, &snapshot)).await;
                }
                turn = false;
            }
            _ = deployments.changed() => {
                // One turn for a burst, DEBOUNCE after its first event.
                turn_at = Some(earliest(turn_at, DEBOUNCE));
                turn = false;
            }
            Some(batch) = hints.recv() => {
                // Webhooks gathered for `debounce` after the first, then listed together.
                hinted.extend(batch);
                relist_at = Some(earliest(relist_at, debounce));
                turn = false;
            }
            _ = sleep_until_first(turn_at, relist_at), if turn_at.is_some() || relist_at.is_some() => {
                // Watch events bring a full turn. Webhooks alone need none: the repositories
                // they name are due now, and a wake starts what is due.
                let now = tokio::time::Instant::now();
                let watched = turn_at.is_some_and(|at| at <= now);
                if watched {
                    turn_at = None;
                }
                if relist_at.is_some_and(|at| at <= now) {
                    relist_at = None;
                    trigger(&mut poller, hinted.drain(..));
                    if !watched {
                        turn = false;
                        woken = true;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                // Due listings and checks only; watch events and heartbeats bring full turns.
                turn = false;
                woken = true;
            }
            _ = heartbeat.tick() => {
                if last_turn.elapsed() < RESYNC && !poller.wants_turn() {
                    turn = false;
                    woken = true;
                }
            }
            _ = leadership.changed() => {}
            _ = app::stopped(shutdown.clone()) => {}
        }
    }
    ready.store(false, Ordering::Relaxed);
    // A write in flight is never cut half-way by shutdown: wait for the tasks, up to a limit.
    let snapshot = deployments.snapshot();
    while poller.in_flight() > 0 {
        match tokio::time::timeout(SHUTDOWN_GRACE, finished.recv()).await {
            Ok(Some(done)) => guarded(&metrics, poller.finished(done, &snapshot)).await,
            _ => break,
        }
    }
    drop(deployments);
    if let Some(task) = elector {
        let _ = task.await;
    }
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The first-seen times the last leader saved (`tagwatch.dev/min-age`).
async fn saved_first_seen(client: &kube::Client, namespace: &str) -> crate::plan::gates::FirstSeen {
    match crate::act::gates::load_first_seen(client, namespace).await {
        Ok(seen) => seen,
        Err(error) => {
            // Only later, never earlier: a release may wait longer, none is let through sooner.
            tracing::warn!(%namespace, %error,
                "cannot read saved first-seen times: tags are counted as first seen now");
            Default::default()
        }
    }
}

/// Runs one step of the loop; a panic in it is logged and counted, and the loop goes on.
async fn guarded(metrics: &Metrics, step: impl std::future::Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(step).catch_unwind().await {
        metrics.panic(crate::metrics::Task::Loop);
        tracing::error!(panic = %tasks::panic_message(panic.as_ref()), "control loop step panicked: counted, going on");
    }
}

/// Webhook hints: marks each named repository due now (or when its backoff ends). Only a hint:
/// the repository is listed again and what it really holds decides. A repository no workload or
/// alias uses is ignored.
fn trigger(poller: &mut Poller, hints: impl Iterator<Item = Hint>) {
    for hint in hints {
        if !poller.trigger(&hint.repository) {
            tracing::debug!(repository = %hint.repository, "webhook for an unwatched repository ignored");
        }
    }
}

/// Resolves at the sooner of two optional moments (never, if neither is set).
async fn sleep_until_first(a: Option<tokio::time::Instant>, b: Option<tokio::time::Instant>) {
    match a.into_iter().chain(b).min() {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `now + wait`, or `at` if that is sooner: a burst is served `wait` after its first arrival.
fn earliest(at: Option<tokio::time::Instant>, wait: Duration) -> tokio::time::Instant {
    let then = tokio::time::Instant::now() + wait;
    at.map_or(then, |at| at.min(then))
}
