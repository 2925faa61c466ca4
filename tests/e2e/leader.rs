//! Leader election: one writer among replicas, takeover after a crash, immediate handover on a
//! clean stop, and a leader cut off from the API server stops writing before anyone takes over.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use tagwatch::act::rollouts::{Rollouts, Step};
use tagwatch::act::runner::Writer;
use tagwatch::act::Context;
use tagwatch::config::LeaderSettings;
use tagwatch::leader::{Elector, Leadership, Role};
use tagwatch::metrics::Metrics;
use tagwatch::model::annotations as keys;
use tagwatch::model::rollout_state::{CanaryState, Phase};
use tagwatch::registry::fanout::Fanout;
use tagwatch::registry::pull_secrets::PullSecrets;
use tagwatch::registry::{ClientOptions, DockerConfig, RegistryClient};
use tagwatch_testbed::apiserver::Fault;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::test_server_or_skip;
use tagwatch_testbed::wait;
use tokio::sync::oneshot;

use crate::support::{deployment, get, image, push, Tagwatch};

const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(200);

fn settings(name: &str) -> LeaderSettings {
    LeaderSettings {
        enabled: true,
        lease_name: name.into(),
        lease_namespace: None,
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
    }
}

struct Candidate {
    leadership: Leadership,
    metrics: prometheus::Registry,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Candidate {
    fn start(cluster: &TestCluster, lease: &str, identity: &str) -> Candidate {
        Candidate::start_with(cluster, identity, settings(lease))
    }

    fn start_with(cluster: &TestCluster, identity: &str, settings: LeaderSettings) -> Candidate {
        let metrics = prometheus::Registry::new();
        let (elector, leadership) = Elector::new(
            cluster.client.clone(),
            &cluster.namespace,
            identity.into(),
            settings,
            Metrics::new(&metrics).expect("metrics"),
        );
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(elector.run(async {
            let _ = stopped.await;
        }));
        Candidate {
            leadership,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    fn leader_gauge(&self) -> i64 {
        tagwatch::metrics::render(&self.metrics)
            .lines()
            .find_map(|l| l.strip_prefix("tagwatch_leader "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    }
}

async fn holder(cluster: &TestCluster, lease: &str) -> (Option<String>, i32) {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let spec = api
        .get(lease)
        .await
        .expect("lease")
        .spec
        .unwrap_or_default();
    (spec.holder_identity, spec.lease_transitions.unwrap_or(0))
}

async fn one_leader(a: &Candidate, b: &Candidate) -> usize {
    wait::until("exactly one leader", Duration::from_secs(10), || async {
        match (a.leadership.role(), b.leadership.role()) {
            (Role::Leader, Role::Follower) => Some(0),
            (Role::Follower, Role::Leader) => Some(1),
            _ => None,
        }
    })
    .await
    .expect("election")
}

#[tokio::test]
async fn exactly_one_leader_and_a_crashed_one_is_replaced_after_the_lease_runs_out() {
    let cluster = TestCluster::start().await.expect("cluster");
    let candidates = [
        Candidate::start(&cluster, "crash", "a"),
        Candidate::start(&cluster, "crash", "b"),
    ];
    let leader = one_leader(&candidates[0], &candidates[1]).await;
    let follower = 1 - leader;
    // Stable: renewals keep it, the follower never claims it.
    let until = Instant::now() + LEASE * 2;
    while Instant::now() < until {
        assert!(candidates[leader].leadership.is_leader());
        assert!(!candidates[follower].leadership.is_leader());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(candidates[leader].leader_gauge(), 1);
    assert_eq!(candidates[follower].leader_gauge(), 0);
    let names = ["a", "b"];
    assert_eq!(
        holder(&cluster, "crash").await.0.as_deref(),
        Some(names[leader])
    );

    // A crash: the task is gone without releasing anything.
    candidates[leader].task.abort();
    let crashed = Instant::now();
    let mut lapsed_at = None;
    loop {
        let now = Instant::now();
        if lapsed_at.is_none() && !candidates[leader].leadership.is_leader() {
            lapsed_at = Some(now);
        }
        if candidates[follower].leadership.is_leader() {
            // The crashed leader's own view lapsed first: two writers never overlap.
            let lapsed = lapsed_at.expect("the old leader still thought it led");
            assert!(lapsed <= now);
            break;
        }
        assert!(
            crashed.elapsed() < LEASE + RETRY * 3,
            "no takeover within the lease duration"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let takeover = crashed.elapsed();
    assert!(
        takeover >= RENEW - RETRY,
        "took over after {takeover:?}: before the old leader's renew deadline"
    );
    let (now_holding, transitions) = holder(&cluster, "crash").await;
    assert_eq!(now_holding.as_deref(), Some(names[follower]));
    assert!(transitions >= 1, "transitions {transitions}");
}

#[tokio::test]
async fn a_leader_that_stops_hands_the_lease_over_at_once() {
    let cluster = TestCluster::start().await.expect("cluster");
    let mut candidates = [
        Candidate::start(&cluster, "handover", "a"),
        Candidate::start(&cluster, "handover", "b"),
    ];
    let leader = one_leader(&candidates[0], &candidates[1]).await;
    let follower = 1 - leader;
    let stopped = Instant::now();
    if let Some(stop) = candidates[leader].stop.take() {
        let _ = stop.send(());
    }
    (&mut candidates[leader].task).await.expect("elector ends");
    assert!(!candidates[leader].leadership.is_leader());
    assert_eq!(candidates[leader].leader_gauge(), 0);
    wait::until("the follower takes over", LEASE, || async {
        candidates[follower].leadership.is_leader().then_some(())
    })
    .await
    .expect("handover");
    // Released, not expired: well inside one lease duration.
    assert!(
        stopped.elapsed() < LEASE,
        "handover took {:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_writing_within_the_renew_deadline() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "cutting a real cluster's API server is not something a test can do");
    let candidate = Candidate::start(&cluster, "cutoff", "a");
    wait::until("leader", Duration::from_secs(5), || async {
        candidate.leadership.is_leader().then_some(())
    })
    .await
    .expect("leader");
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        cluster.namespace
    );
    server.inject_fault("*", &path, Fault::Status(500), 1_000);
    let cut = Instant::now();
    wait::until("stepped down", RENEW + RETRY * 2, || async {
        (!candidate.leadership.is_leader()).then_some(())
    })
    .await
    .expect("a leader without renewals must stop writing");
    // It gave up before a follower watching the lease could have taken over.
    assert!(
        cut.elapsed() < LEASE,
        "stepped down after {:?}",
        cut.elapsed()
    );
    // The gauge follows at the elector's next attempt.
    wait::until("leader gauge 0", RETRY * 3, || async {
        (candidate.leader_gauge() == 0).then_some(())
    })
    .await
    .expect("the leader gauge reports the step-down");
}

/// Two `tagwatch run` replicas: exactly one patches; kill it and the other takes over within the
/// lease duration and applies the next release, and nothing is patched twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_patch_once_and_the_survivor_takes_over() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "ha", &["1.0.0", "1.1.0"]).await;
    deployment("ha-web")
        .replicas(0)
        .image(&format!("{}/ha:1.0.0", registry.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    let host = registry.host();
    let args = [
        "--lease-name",
        "tagwatch-ha",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "2s",
        "--retry-period",
        "500ms",
    ];
    let mut replicas = vec![
        Tagwatch::watching(&cluster, &registry, &args),
        Tagwatch::watching(&cluster, &registry, &args),
    ];
    wait::until(
        "the first release applied",
        Duration::from_secs(30),
        || async {
            (image(&cluster, &ns, "ha-web").await == format!("{host}/ha:1.1.0")).then_some(())
        },
    )
    .await
    .expect("update");
    for replica in &replicas {
        wait::until("ready", Duration::from_secs(10), || async {
            (replica.get("/readyz").await?.0 == 200).then_some(())
        })
        .await
        .expect("every replica is ready, leader or not");
    }
    let mut gauges = Vec::new();
    for replica in &replicas {
        gauges.push(replica.metric("tagwatch_leader").await.expect("gauge"));
    }
    let leader = match gauges.as_slice() {
        [a, b] if *a == 1.0 && *b == 0.0 => 0,
        [a, b] if *a == 0.0 && *b == 1.0 => 1,
        other => panic!("leader gauges {other:?}"),
    };
    let updated = |r: &Tagwatch| r.log_events("image updated").len();
    // The log line follows the write: wait for it rather than race it.
    wait::until("the update logged", Duration::from_secs(10), || async {
        (updated(&replicas[leader]) > 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", replicas[leader].logs()));
    assert_eq!(updated(&replicas[leader]), 1, "{}", replicas[leader].logs());
    assert_eq!(updated(&replicas[1 - leader]), 0);

    replicas[leader].kill();
    let killed = Instant::now();
    push(&registry, "ha", &["1.2.0"]).await;
    let survivor = &replicas[1 - leader];
    wait::until("the survivor leads", Duration::from_secs(10), || async {
        (survivor.metric("tagwatch_leader").await? == 1.0).then_some(())
    })
    .await
    .expect("takeover");
    let takeover = killed.elapsed();
    // The lease duration, plus one retry period for the survivor to notice, plus scrape slack.
    assert!(
        takeover < Duration::from_millis(3_000 + 500 + 1_000),
        "takeover took {takeover:?}"
    );
    wait::until(
        "the next release applied",
        Duration::from_secs(30),
        || async {
            (image(&cluster, &ns, "ha-web").await == format!("{host}/ha:1.2.0")).then_some(())
        },
    )
    .await
    .expect("update after takeover");
    wait::until(
        "the takeover update logged",
        Duration::from_secs(10),
        || async { (updated(survivor) > 0).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", survivor.logs()));
    assert_eq!(updated(survivor), 1, "{}", survivor.logs());
    assert_eq!(updated(&replicas[leader]), 1);
    if let Some(server) = cluster.server() {
        let patches = server
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/deployments/ha-web"))
            .count();
        assert_eq!(patches, 2, "one patch per release, never two writers");
    }
}

/// A renewal answered late still counts from when it was sent: a leader must not keep writing
/// past `renewDeadline` after the send, which is all a follower can know of.
#[tokio::test]
async fn a_slow_renewal_counts_from_when_it_was_sent_not_from_its_answer() {
    const DEADLINE: Duration = Duration::from_secs(2);
    const DELAY: Duration = Duration::from_millis(1500);
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "delaying a real API server's answers is not something a test can do");
    let candidate = Candidate::start_with(
        &cluster,
        "a",
        LeaderSettings {
            lease_duration: Duration::from_secs(3),
            renew_deadline: DEADLINE,
            ..settings("slow")
        },
    );
    wait::until("leader", Duration::from_secs(5), || async {
        candidate.leadership.is_leader().then_some(())
    })
    .await
    .expect("leader");
    let leases = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        cluster.namespace
    );

    // The next renewal arriving is held for DELAY. A renewal already answered meanwhile changes
    // the deadline before DELAY is up; the delayed one can only change it after.
    let injected = Instant::now();
    server.inject_fault("PUT", &leases, Fault::Delay(DELAY), 1);
    let last = Cell::new(candidate.leadership.valid_until());
    let (answered, until) = wait::until("the delayed renewal answered", DELAY + DEADLINE, || {
        let now = Instant::now();
        let current = candidate.leadership.valid_until();
        let changed = current != last.replace(current);
        async move { (changed && now >= injected + DELAY).then_some((now, current)) }
    })
    .await
    .expect("a late renewal is still a renewal");
    let until = until.expect("a deadline");
    // The API server held the request DELAY after it arrived, so it was sent before this.
    let sent_by = answered.checked_sub(DELAY).expect("instant");
    assert!(
        until <= sent_by + DEADLINE,
        "leadership lasts until at least {:?} after the renewal was sent; the deadline is {DEADLINE:?}",
        until.saturating_duration_since(sent_by),
    );
    assert!(until > answered, "the renewal did count");

    // With no further renewal, writing stops by then.
    server.inject_fault("*", &leases, Fault::Status(500), 1_000);
    let (stopped, lapsed) = wait::until("stepped down", DEADLINE, || async {
        (!candidate.leadership.is_leader()).then(Instant::now)
    })
    .await
    .map(|at| (at, at.saturating_duration_since(sent_by)))
    .expect("a leader without renewals must stop writing");
    assert!(
        stopped <= sent_by + DEADLINE + Duration::from_millis(100),
        "stopped writing {lapsed:?} after the last renewal was sent"
    );
}

/// A `Context` and `Writer` as `tagwatch run` builds them, `leadership` deciding whether it may
/// write.
fn context(
    cluster: &TestCluster,
    leadership: Leadership,
    metrics: &prometheus::Registry,
) -> (Context, Writer) {
    let metrics = Metrics::new(metrics).expect("metrics");
    let registry_client =
        RegistryClient::new(ClientOptions::default(), metrics.clone()).expect("registry client");
    let writer = Writer::new(
        cluster.client.clone(),
        Recorder::new(
            cluster.client.clone(),
            Reporter {
                controller: "tagwatch".into(),
                instance: None,
            },
        ),
        leadership,
        metrics.clone(),
    );
    let ctx = Context {
        client: cluster.client.clone(),
        fanout: Fanout::new(registry_client, 1, Default::default()),
        secrets: PullSecrets::new(cluster.client.clone(), DockerConfig::default()),
        metrics,
        default_interval: Duration::from_secs(60),
        aliases: Vec::new(),
        prometheus: None,
        allowed_registries: None,
        taken_names: Default::default(),
        confirmed: Default::default(),
        verification: Default::default(),
        holds: Default::default(),
    };
    (ctx, writer)
}

/// A primary with a running canary recorded in its state; `on` keeps its canary annotation.
async fn canary_primary(cluster: &TestCluster, name: &str, on: bool) {
    let state = CanaryState {
        phase: Phase::Running,
        images: BTreeMap::from([(name.to_string(), "registry.test/app:1.1.0".to_string())]),
        from: BTreeMap::from([(name.to_string(), "registry.test/app:1.0.0".to_string())]),
        started: k8s_openapi::jiff::Timestamp::now().to_string(),
        ready_since: None,
        failed_checks: 0,
        partition: None,
    };
    let mut primary = deployment(name)
        .replicas(0)
        .image("registry.test/app:1.0.0")
        .policy("minor")
        .annotate(keys::CANARY_STATE, &state.encode());
    if on {
        primary = primary.annotate(keys::CANARY, "true");
    }
    primary.create(cluster, &cluster.namespace).await;
}

async fn canary_of(cluster: &TestCluster, name: &str) -> Option<Deployment> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.get_opt(&format!("{name}-canary")).await.expect("get")
}

/// Looks once at each workload's canary, as the poller's rollout check does.
async fn check_canaries(cluster: &TestCluster, (ctx, writer): &(Context, Writer)) -> Vec<Step> {
    let mut steps = Vec::new();
    for name in ["starting", "stopping"] {
        let primary = get(cluster, &cluster.namespace, name).await;
        let workload = tagwatch::discover::workload(&primary).expect("opted in");
        let object = tagwatch::discover::Object::from(primary);
        let rollouts = Rollouts { ctx, writer };
        steps.push(rollouts.check(&workload, &object, None).await);
    }
    steps
}

/// A replica whose lease lapsed during a round neither creates nor deletes a canary; the leader,
/// given the same workloads, does both.
#[tokio::test]
async fn a_replica_that_does_not_lead_neither_creates_nor_deletes_a_canary() {
    let cluster = TestCluster::start().await.expect("cluster");
    // Its state is written; its canary Deployment not yet (the write a crash can interrupt).
    canary_primary(&cluster, "starting", true).await;
    // Its canary annotation was removed while the canary ran: the canary is to go.
    canary_primary(&cluster, "stopping", false).await;
    // tagwatch's own canary of it (marker and owner reference), as tagwatch built it.
    let stopping = get(&cluster, &cluster.namespace, "stopping").await;
    let images = BTreeMap::from([(
        "stopping".to_string(),
        "registry.test/app:1.1.0".to_string(),
    )]);
    let canary = tagwatch::plan::canary::canary_deployment(&stopping, &images, 0).expect("canary");
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.create(&Default::default(), &canary)
        .await
        .expect("create the canary");
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    // Writes to Deployments in the API server's log (none to read on a real cluster).
    let writes = |cluster: &TestCluster| -> Vec<String> {
        cluster.server().map_or_else(Vec::new, |server| {
            server
                .requests()
                .iter()
                .filter(|r| r.method != "GET" && r.path.contains("/deployments"))
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        })
    };

    let metrics = prometheus::Registry::new();
    let steps = check_canaries(
        &cluster,
        &context(&cluster, Leadership::follower(), &metrics),
    )
    .await;
    assert_eq!(writes(&cluster), Vec::<String>::new(), "a follower wrote");
    assert!(
        canary_of(&cluster, "starting").await.is_none(),
        "a follower created a canary"
    );
    assert!(
        canary_of(&cluster, "stopping").await.is_some(),
        "a follower deleted a canary"
    );
    assert_eq!(steps, [Step::Waiting, Step::Waiting], "both left for later");
    let skipped = tagwatch::metrics::render(&metrics)
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"tagwatch_canaries_total{reason="not_leader",result="skipped"} "#)
                .map(str::to_string)
        })
        .unwrap_or_default();
    assert_eq!(skipped, "2");

    let steps = check_canaries(
        &cluster,
        &context(&cluster, Leadership::always(), &prometheus::Registry::new()),
    )
    .await;
    assert_eq!(
        steps,
        [Step::Waiting, Step::Done],
        "the canary runs; the other is over"
    );
    assert!(
        canary_of(&cluster, "starting").await.is_some(),
        "the leader creates it"
    );
    assert!(
        canary_of(&cluster, "stopping").await.is_none(),
        "the leader deletes it"
    );
    if cluster.server().is_some() {
        let ns = &cluster.namespace;
        let sent = writes(&cluster);
        let count = |write: String| sent.iter().filter(|w| **w == write).count();
        assert_eq!(
            count(format!("POST /apis/apps/v1/namespaces/{ns}/deployments")),
            1,
            "{sent:?}"
        );
        assert_eq!(
            count(format!(
                "DELETE /apis/apps/v1/namespaces/{ns}/deployments/stopping-canary"
            )),
            1,
            "{sent:?}"
        );
    }
}
