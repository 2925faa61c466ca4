//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol client-go's leaderelection
//! speaks, so tagwatch replicas interoperate with the usual tooling (`kubectl get lease`).
//!
//! Every replica discovers and serves metrics; only the leader polls and patches. Expiry is
//! judged on the local clock from when a replica last saw the Lease record change, never by
//! comparing another node's `renewTime` with ours, so clock skew between nodes cannot cause two
//! leaders. A leader stops writing once `renewDeadline` has passed since it sent its last
//! successful renewal; the others wait a full `leaseDuration` after the last change they saw, and
//! `renewDeadline < leaseDuration` keeps the two windows apart.
//!
//! The two clocks start at different ends on purpose. The leader counts from the instant its
//! renewal left, which is no later than the instant the API server stored it, so no follower can
//! have started counting earlier. A follower counts from when an answer showing the change
//! arrived, which is no earlier than the change. A slow answer then shortens a leader's term and
//! lengthens a follower's wait, never the other way round.
//!
//! The decisions are pure functions of the record seen, the instants and the settings
//! (`decide`, `settle`, `first_seen`, `budget`); the [`Elector`] only reads and writes the
//! Lease around them, and reads the time from a [`Clock`] so tests can move it by hand.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::config::LeaderSettings;
use crate::error::Result;
use crate::metrics::Metrics;

/// The shortest time one election round may take, however little of the term is left.
const MIN_ROUND: Duration = Duration::from_millis(100);

/// Where the elector and its [`Leadership`] read the time: the system's monotonic clock in the
/// product, a hand-moved one in tests. Only decisions read it; the waits between rounds are
/// tokio's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// [`Instant::now`].
    pub fn system() -> Clock {
        Clock(Arc::new(Instant::now))
    }

    /// A clock that asks `now`.
    pub fn from_fn(now: impl Fn() -> Instant + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// What this replica knows about leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No answer from the API server yet.
    Unknown,
    Leader,
    Follower,
}

/// A shared view of this replica's leadership, checked before every write.
#[derive(Clone)]
pub struct Leadership {
    role: watch::Receiver<Role>,
    /// A leader may write until this instant unless it renews: a stalled elector task or a hung
    /// API request cannot stretch leadership past the renew deadline.
    valid_until: Arc<Mutex<Option<Instant>>>,
    clock: Clock,
}

impl Leadership {
    /// Leadership without election (a single replica, or election turned off).
    pub fn always() -> Leadership {
        Leadership::fixed(Role::Leader, None, Clock::system())
    }

    /// A role no elector changes: the receiver keeps the last value after the sender is gone.
    fn fixed(role: Role, valid_until: Option<Instant>, clock: Clock) -> Leadership {
        let (tx, role) = watch::channel(role);
        drop(tx);
        Leadership {
            role,
            valid_until: Arc::new(Mutex::new(valid_until)),
            clock,
        }
    }

    pub fn role(&self) -> Role {
        let role = *self.role.borrow();
        current_role(role, self.valid_until(), self.clock.now())
    }

    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    /// Resolves once the first election attempt has an answer.
    pub async fn known(&mut self) {
        let _ = self.role.wait_for(|r| *r != Role::Unknown).await;
    }

    /// Resolves when the role changes (never, without election).
    pub async fn changed(&mut self) {
        if self.role.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The instant leadership lapses unless renewed, for a caller's wake-up.
    pub fn valid_until(&self) -> Option<Instant> {
        *lock(&self.valid_until)
    }

    /// A replica that does not lead, for tests of the write fences; the product gets its
    /// `Leadership` from [`Elector::new`] or [`Leadership::always`].
    #[doc(hidden)]
    pub fn follower() -> Leadership {
        let clock = Clock::system();
        Leadership::fixed(Role::Follower, Some(clock.now()), clock)
    }
}

/// The role a [`Leadership`] reports at `now`: a leader whose term ran out is a follower even
/// before its elector says so (the elector may be stalled).
fn current_role(role: Role, valid_until: Option<Instant>, now: Instant) -> Role {
    match role {
        Role::Leader if valid_until.is_some_and(|until| now >= until) => Role::Follower,
        role => role,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A unique identity: the pod name (stable, readable in the Lease) plus a random suffix so two
/// processes on one host, or a restarted container, never share one.
pub fn identity(pod_name: Option<&str>) -> String {
    let base = pod_name
        .map(str::to_string)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "tagwatch".into());
    format!("{base}_{:08x}", rand::random::<u32>())
}

/// The Lease's namespace: configured, else the pod's own, else the kubeconfig's.
pub fn lease_namespace(
    settings: &LeaderSettings,
    pod_namespace: Option<&str>,
    client: &Client,
) -> String {
    settings
        .lease_namespace
        .clone()
        .or_else(|| pod_namespace.map(str::to_string).filter(|n| !n.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// The part of the Lease record that tells whether its holder is alive: any change to it is a
/// sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    /// `None` when nobody holds the lease (never taken, or released).
    holder: Option<String>,
    renew_time: Option<String>,
    duration_seconds: Option<i32>,
}

impl Observed {
    fn of(spec: &LeaseSpec) -> Observed {
        Observed {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            duration_seconds: spec.lease_duration_seconds,
        }
    }

    /// The record's own `leaseDurationSeconds` when it has a usable one, else ours.
    fn lease_duration(&self, settings: &LeaderSettings) -> Duration {
        self.duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(settings.lease_duration)
    }
}

/// When `seen` was first seen as it is now: the earlier instant while the record is unchanged,
/// `now` when it changed. Another holder's renewal is counted from when the answer came back:
/// the change happened before that, so waiting from here errs towards waiting longer.
fn first_seen(previous: Option<&(Observed, Instant)>, seen: &Observed, now: Instant) -> Instant {
    match previous {
        Some((before, at)) if before == seen => *at,
        _ => now,
    }
}

/// What to do with the Lease record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Another replica holds it and, on our clock, has renewed within its lease duration.
    Follow { holder: String },
    /// It is ours: renew it.
    Renew,
    /// Nobody holds it (released, or never held), or its holder let it expire: take it over.
    Take,
}

/// Pure: what to do about `seen`, unchanged since `seen_at`, at `now`.
fn decide(
    seen: &Observed,
    seen_at: Instant,
    now: Instant,
    settings: &LeaderSettings,
    identity: &str,
) -> Decision {
    match &seen.holder {
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) if now.saturating_duration_since(seen_at) < seen.lease_duration(settings) => {
            Decision::Follow {
                holder: holder.clone(),
            }
        }
        Some(_) | None => Decision::Take,
    }
}

/// Pure: the spec to write over the one read, for [`Decision::Renew`] (`take: false`) or
/// [`Decision::Take`] (`take: true`): a takeover also sets `acquireTime` and counts a transition,
/// as client-go does.
fn next_spec(
    read: &LeaseSpec,
    identity: &str,
    duration_seconds: i32,
    now: MicroTime,
    take: bool,
) -> LeaseSpec {
    let mut next = read.clone();
    next.holder_identity = Some(identity.to_string());
    next.lease_duration_seconds = Some(duration_seconds);
    next.renew_time = Some(now.clone());
    if take {
        next.acquire_time = Some(now);
        next.lease_transitions = Some(read.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    next
}

/// What one election round came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// The write that took or renewed the lease succeeded; `sent` is when it was sent.
    Leader { sent: Instant },
    /// Another replica holds the lease, or won the race for it.
    Follower { holder: Option<String> },
    /// An error, or no answer within the round's budget.
    Failed,
}

/// This replica's standing between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    role: Role,
    /// When the last successful renewal was sent; `None` unless leading.
    renewed: Option<Instant>,
    /// Writes stop at this instant unless renewed ([`Leadership::valid_until`]).
    valid_until: Option<Instant>,
}

/// The end of a term whose renewal was sent at `sent`. Counted from the send, not the answer: a
/// slow answer must not stretch the term past what a follower, counting from when it saw the
/// change, allows.
fn term_end(sent: Instant, settings: &LeaderSettings) -> Instant {
    sent.checked_add(settings.renew_deadline).unwrap_or(sent)
}

/// Pure: the standing after `attempt`, answered at `now`.
fn settle(term: Term, attempt: &Attempt, now: Instant, settings: &LeaderSettings) -> Term {
    match attempt {
        Attempt::Leader { sent } => {
            let renewed = Term {
                role: Role::Leader,
                renewed: Some(*sent),
                valid_until: Some(term_end(*sent, settings)),
            };
            if now < term_end(*sent, settings) {
                renewed
            } else {
                // Answered after the renew deadline: as good as no answer.
                lapse(
                    Term {
                        role: term.role,
                        ..renewed
                    },
                    now,
                    settings,
                )
            }
        }
        Attempt::Follower { .. } => Term {
            role: Role::Follower,
            renewed: None,
            valid_until: Some(now),
        },
        Attempt::Failed => lapse(term, now, settings),
    }
}

/// A round without a timely renewal. A leader keeps its term until `renewDeadline` has passed
/// since its last renewal was sent, then steps down; an unknown role stays unknown until an
/// answer.
fn lapse(term: Term, now: Instant, settings: &LeaderSettings) -> Term {
    let lapsed = term
        .renewed
        .is_none_or(|at| now.saturating_duration_since(at) >= settings.renew_deadline);
    if !lapsed {
        return term;
    }
    Term {
        role: match term.role {
            Role::Leader => Role::Follower,
            role => role,
        },
        renewed: None,
        valid_until: term.valid_until,
    }
}

/// Pure: how long the next round may take. A round may not outlive the time leadership has left.
fn budget(renewed: Option<Instant>, now: Instant, settings: &LeaderSettings) -> Duration {
    let left = match renewed {
        Some(at) => settings
            .renew_deadline
            .saturating_sub(now.saturating_duration_since(at)),
        None => settings.renew_deadline,
    };
    left.max(MIN_ROUND)
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    settings: LeaderSettings,
    metrics: Metrics,
    clock: Clock,
    role: watch::Sender<Role>,
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// The Lease record as last seen, and when it was first seen that way.
    observed: Option<(Observed, Instant)>,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        identity: String,
        settings: LeaderSettings,
        metrics: Metrics,
    ) -> (Elector, Leadership) {
        Elector::with_clock(
            client,
            namespace,
            identity,
            settings,
            metrics,
            Clock::system(),
        )
    }

    /// [`Elector::new`] reading the time from `clock`; the `Leadership` reads the same clock.
    pub fn with_clock(
        client: Client,
        namespace: &str,
        identity: String,
        settings: LeaderSettings,
        metrics: Metrics,
        clock: Clock,
    ) -> (Elector, Leadership) {
        let (role_tx, role_rx) = watch::channel(Role::Unknown);
        let valid_until = Arc::new(Mutex::new(Some(clock.now())));
        let elector = Elector {
            api: Api::namespaced(client, namespace),
            name: settings.lease_name.clone(),
            identity,
            settings,
            metrics,
            clock: clock.clone(),
            role: role_tx,
            valid_until: valid_until.clone(),
            observed: None,
        };
        (
            elector,
            Leadership {
                role: role_rx,
                valid_until,
                clock,
            },
        )
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Campaigns and renews until `stop` resolves, then hands the lease back if held, so another
    /// replica takes over at once instead of after `leaseDuration`.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut renewed: Option<Instant> = None;
        loop {
            let budget = budget(renewed, self.clock.now(), &self.settings);
            let answer = tokio::select! {
                a = tokio::time::timeout(budget, self.attempt()) => a,
                _ = &mut stop => break,
            };
            let now = self.clock.now();
            let (attempt, error) = match answer {
                Ok(Ok(attempt)) => (attempt, None),
                Ok(Err(e)) => (Attempt::Failed, Some(e.to_string())),
                Err(_) => (Attempt::Failed, Some("the lease request timed out".into())),
            };
            let error = match &attempt {
                Attempt::Leader { sent } if now >= term_end(*sent, &self.settings) => {
                    Some("the renewal was answered after the renew deadline".into())
                }
                _ => error,
            };
            if let Some(error) = error {
                tracing::warn!(lease = %self.name, error, "leader election: cannot reach the lease");
            }
            let role = *self.role.borrow();
            let before = Term {
                role,
                renewed,
                valid_until: *lock(&self.valid_until),
            };
            let after = settle(before, &attempt, now, &self.settings);
            renewed = after.renewed;
            *lock(&self.valid_until) = after.valid_until;
            let holder = match &attempt {
                Attempt::Follower { holder } => holder.as_deref(),
                _ => None,
            };
            self.set(after.role, holder);
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry_period) => {}
                _ = &mut stop => break,
            }
        }
        if self.is_leader_now() {
            self.release().await;
        }
        *lock(&self.valid_until) = Some(self.clock.now());
        // A planned stop, not a lost lease: no warning.
        self.role.send_replace(Role::Follower);
        self.metrics.leader.set(0);
    }

    fn is_leader_now(&self) -> bool {
        *self.role.borrow() == Role::Leader
            && lock(&self.valid_until).is_some_and(|until| self.clock.now() < until)
    }

    fn set(&self, role: Role, holder: Option<&str>) {
        let previous = *self.role.borrow();
        if previous != role {
            match role {
                Role::Leader => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader")
                }
                Role::Follower if previous == Role::Leader => {
                    tracing::warn!(lease = %self.name, identity = %self.identity, "lost leadership: writes stopped")
                }
                _ => {
                    tracing::info!(lease = %self.name, leader = holder.unwrap_or("none"), "following")
                }
            }
            self.role.send_replace(role);
        }
        self.metrics.leader.set(i64::from(role == Role::Leader));
    }

    async fn attempt(&mut self) -> Result<Attempt> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = Observed::of(&spec);
        let now = self.clock.now();
        let seen_at = first_seen(self.observed.as_ref(), &seen, now);
        let decision = decide(&seen, seen_at, now, &self.settings, &self.identity);
        let holder = seen.holder.clone();
        self.observed = Some((seen, seen_at));
        let take = match decision {
            Decision::Follow { holder } => {
                return Ok(Attempt::Follower {
                    holder: Some(holder),
                })
            }
            Decision::Renew => false,
            Decision::Take => true,
        };
        // resourceVersion from the get makes this a compare-and-swap: two replicas taking an
        // expired lease at once get one 200 and one 409.
        let updated = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(next_spec(
                &spec,
                &self.identity,
                self.duration_seconds(),
                MicroTime(k8s_openapi::jiff::Timestamp::now()),
                take,
            )),
        };
        let sent = self.clock.now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Leader { sent }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower { holder }),
            Err(e) => Err(e.into()),
        }
    }

    async fn create(&mut self) -> Result<Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let sent = self.clock.now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leader { sent }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower { holder: None }),
            Err(e) => Err(e.into()),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Empties the holder (what client-go's ReleaseOnCancel does) if we still hold the lease.
    async fn release(&mut self) {
        let result = async {
            let Some(lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            let released = Lease {
                metadata: lease.metadata.clone(),
                spec: Some(spec),
            };
            self.api
                .replace(&self.name, &PostParams::default(), &released)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(lease = %self.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const LEASE: Duration = Duration::from_millis(2000);
    const RENEW: Duration = Duration::from_millis(1500);

    fn settings() -> LeaderSettings {
        LeaderSettings {
            enabled: true,
            lease_name: "tagwatch".into(),
            lease_namespace: None,
            lease_duration: LEASE,
            renew_deadline: RENEW,
            retry_period: Duration::from_millis(200),
        }
    }

    /// A clock moved by hand: every instant in these tests is `T0 + n ms`.
    #[derive(Clone)]
    struct Hand {
        origin: Instant,
        now: Arc<Mutex<Instant>>,
    }

    impl Hand {
        fn new() -> Hand {
            let origin = Instant::now();
            Hand {
                origin,
                now: Arc::new(Mutex::new(origin)),
            }
        }

        fn clock(&self) -> Clock {
            let now = self.now.clone();
            Clock::from_fn(move || *lock(&now))
        }

        fn set(&self, ms: u64) {
            *lock(&self.now) = self.at(ms);
        }

        fn at(&self, ms: u64) -> Instant {
            self.origin + Duration::from_millis(ms)
        }
    }

    fn record(holder: Option<&str>, renew_time: &str, duration_seconds: Option<i32>) -> Observed {
        Observed {
            holder: holder.map(str::to_string),
            renew_time: Some(renew_time.into()),
            duration_seconds,
        }
    }

    #[test]
    fn the_clock_is_injected() {
        let hand = Hand::new();
        let clock = hand.clock();
        assert_eq!(clock.now(), hand.at(0));
        hand.set(1234);
        assert_eq!(clock.now(), hand.at(1234));
        let system = Clock::default();
        assert!(system.now() >= hand.origin);
    }

    #[test]
    fn first_seen_moves_only_when_the_record_changes() {
        let hand = Hand::new();
        let before = record(Some("other"), "t1", Some(2));
        #[rustfmt::skip]
        let rows: &[(&str, Option<Observed>, Observed, u64)] = &[
            // name, record seen before (at 100 ms), record seen now (at 900 ms), expected first seen
            ("nothing seen before", None, before.clone(), 900),
            ("unchanged record keeps its first sighting", Some(before.clone()), before.clone(), 100),
            ("a renewal is a change", Some(before.clone()), record(Some("other"), "t2", Some(2)), 900),
            ("a new holder is a change", Some(before.clone()), record(Some("third"), "t1", Some(2)), 900),
            ("a released lease is a change", Some(before.clone()), record(None, "t1", Some(1)), 900),
            ("a new duration is a change", Some(before.clone()), record(Some("other"), "t1", Some(9)), 900),
        ];
        for (name, previous, seen, expected) in rows {
            let previous = previous.clone().map(|p| (p, hand.at(100)));
            assert_eq!(
                first_seen(previous.as_ref(), seen, hand.at(900)),
                hand.at(*expected),
                "{name}"
            );
        }
    }

    #[test]
    fn decisions_on_the_record_seen() {
        let hand = Hand::new();
        let follow = |h: &str| Decision::Follow { holder: h.into() };
        #[rustfmt::skip]
        let rows: Vec<(&str, Observed, u64, u64, Decision)> = vec![
            // name, record, first seen (ms), now (ms), decision
            ("another holder, just seen", record(Some("other"), "t", Some(2)), 0, 0, follow("other")),
            ("another holder, 1 ms short of its lease", record(Some("other"), "t", Some(2)), 0, 1999, follow("other")),
            ("an expired lease is taken over", record(Some("other"), "t", Some(2)), 0, 2000, Decision::Take),
            ("expiry counts from the last change seen", record(Some("other"), "t", Some(2)), 5000, 6999, follow("other")),
            ("the record's duration wins over ours", record(Some("other"), "t", Some(10)), 0, 9999, follow("other")),
            ("... and expires on it", record(Some("other"), "t", Some(10)), 0, 10_000, Decision::Take),
            ("a negative duration falls back to ours", record(Some("other"), "t", Some(-5)), 0, 1999, follow("other")),
            ("no duration falls back to ours", record(Some("other"), "t", None), 0, 2000, Decision::Take),
            ("a released lease is taken at once", record(None, "t", Some(1)), 0, 0, Decision::Take),
            ("our own lease is renewed", record(Some("me"), "t", Some(2)), 0, 100, Decision::Renew),
            ("our own lease is renewed even when expired", record(Some("me"), "t", Some(2)), 0, 60_000, Decision::Renew),
            ("a sighting after now waits (saturating)", record(Some("other"), "t", Some(2)), 500, 0, follow("other")),
        ];
        for (name, seen, seen_at, now, expected) in rows {
            let decision = decide(&seen, hand.at(seen_at), hand.at(now), &settings(), "me");
            assert_eq!(decision, expected, "{name}");
        }
    }

    #[test]
    fn an_empty_holder_is_a_released_lease() {
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            ..LeaseSpec::default()
        };
        let seen = Observed::of(&spec);
        assert_eq!(seen.holder, None);
        let hand = Hand::new();
        assert_eq!(
            decide(&seen, hand.at(0), hand.at(0), &settings(), "me"),
            Decision::Take
        );
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let read = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let taken = next_spec(&read, "me", 2, now.clone(), true);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_duration_seconds, Some(2));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(now.clone()));
        assert_eq!(taken.renew_time, Some(now.clone()));
        let renewed = next_spec(&taken, "me", 2, now.clone(), false);
        assert_eq!(renewed.lease_transitions, Some(4));
        let never = next_spec(&LeaseSpec::default(), "me", 2, now, true);
        assert_eq!(never.lease_transitions, Some(1));
    }

    #[test]
    fn each_outcome_moves_the_term() {
        let hand = Hand::new();
        let t = |ms: u64| Some(hand.at(ms));
        let term = |role, renewed, valid_until| Term {
            role,
            renewed,
            valid_until,
        };
        use Role::{Follower, Leader, Unknown};
        #[rustfmt::skip]
        let rows: Vec<(&str, Term, Attempt, u64, Term)> = vec![
            // name, before, attempt, answered at (ms), after
            ("the first answer makes a leader, counted from the send",
                term(Unknown, None, t(0)), Attempt::Leader { sent: hand.at(100) }, 400,
                term(Leader, t(100), t(1600))),
            ("a renewal moves the term from its send, not its answer",
                term(Leader, t(0), t(1500)), Attempt::Leader { sent: hand.at(1000) }, 1400,
                term(Leader, t(1000), t(2500))),
            ("a renewal answered after its deadline steps the leader down",
                term(Leader, t(0), t(1500)), Attempt::Leader { sent: hand.at(1000) }, 2500,
                term(Follower, None, t(2500))),
            ("a first answer after its deadline leaves the role unknown",
                term(Unknown, None, t(0)), Attempt::Leader { sent: hand.at(0) }, 1500,
                term(Unknown, None, t(1500))),
            ("another holder makes a follower, valid until now",
                term(Unknown, None, t(0)), Attempt::Follower { holder: Some("other".into()) }, 300,
                term(Follower, None, t(300))),
            ("a leader losing the race steps down at once",
                term(Leader, t(0), t(1500)), Attempt::Follower { holder: Some("other".into()) }, 300,
                term(Follower, None, t(300))),
            ("a failure before the renew deadline keeps the term",
                term(Leader, t(0), t(1500)), Attempt::Failed, 1499,
                term(Leader, t(0), t(1500))),
            ("a failure at the renew deadline steps the leader down",
                term(Leader, t(0), t(1500)), Attempt::Failed, 1500,
                term(Follower, None, t(1500))),
            ("a failure long after steps the leader down",
                term(Leader, t(0), t(1500)), Attempt::Failed, 60_000,
                term(Follower, None, t(1500))),
            ("a failure before any answer leaves the role unknown",
                term(Unknown, None, t(0)), Attempt::Failed, 5000,
                term(Unknown, None, t(0))),
            ("a failure as follower stays follower",
                term(Follower, None, t(300)), Attempt::Failed, 5000,
                term(Follower, None, t(300))),
            ("a released lease taken over makes a leader",
                term(Follower, None, t(300)), Attempt::Leader { sent: hand.at(400) }, 450,
                term(Leader, t(400), t(1900))),
        ];
        for (name, before, attempt, now, expected) in rows {
            let after = settle(before, &attempt, hand.at(now), &settings());
            assert_eq!(after, expected, "{name}");
        }
    }

    #[test]
    fn a_round_never_outlives_the_term() {
        let hand = Hand::new();
        #[rustfmt::skip]
        let rows: &[(&str, Option<u64>, u64, Duration)] = &[
            // name, renewal sent at (ms), now (ms), budget
            ("not leading: the whole renew deadline", None, 9000, RENEW),
            ("just renewed", Some(1000), 1000, RENEW),
            ("what is left of the term", Some(1000), 2000, Duration::from_millis(500)),
            ("never less than the floor", Some(1000), 2450, MIN_ROUND),
            ("past the term: the floor", Some(1000), 9000, MIN_ROUND),
        ];
        for (name, renewed, now, expected) in rows {
            let renewed = renewed.map(|ms| hand.at(ms));
            assert_eq!(
                budget(renewed, hand.at(*now), &settings()),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn leadership_lapses_on_its_own_clock() {
        let hand = Hand::new();
        #[rustfmt::skip]
        let rows: &[(&str, Role, Option<u64>, u64, Role)] = &[
            // name, role sent by the elector, valid until (ms), now (ms), role seen by writers
            ("a leader inside its term", Role::Leader, Some(1500), 1499, Role::Leader),
            ("a leader at the end of its term", Role::Leader, Some(1500), 1500, Role::Follower),
            ("a stalled elector cannot stretch the term", Role::Leader, Some(1500), 90_000, Role::Follower),
            ("leadership without election never lapses", Role::Leader, None, 90_000, Role::Leader),
            ("a follower stays a follower", Role::Follower, Some(0), 10, Role::Follower),
            ("unknown stays unknown", Role::Unknown, Some(0), 10, Role::Unknown),
        ];
        for (name, role, valid_until, now, expected) in rows {
            let leadership =
                Leadership::fixed(*role, valid_until.map(|ms| hand.at(ms)), hand.clock());
            hand.set(*now);
            assert_eq!(leadership.role(), *expected, "{name}");
            assert_eq!(leadership.is_leader(), *expected == Role::Leader, "{name}");
        }
    }

    #[test]
    fn the_public_constructors_keep_their_meaning() {
        assert!(Leadership::always().is_leader());
        assert_eq!(Leadership::always().valid_until(), None);
        assert_eq!(Leadership::follower().role(), Role::Follower);
        assert!(Leadership::follower().valid_until().is_some());
    }

    /// A leader and a follower, step by step on one hand-moved clock: the leader renews, then
    /// is cut off; it stops writing before the follower takes over.
    #[test]
    fn a_cut_off_leader_stops_before_a_follower_takes_over() {
        let hand = Hand::new();
        let settings = settings();
        let mut leader = Term {
            role: Role::Unknown,
            renewed: None,
            valid_until: Some(hand.at(0)),
        };
        // The leader's renewal leaves at 1000 ms and is stored; the answer comes at 1100 ms.
        leader = settle(
            leader,
            &Attempt::Leader {
                sent: hand.at(1000),
            },
            hand.at(1100),
            &settings,
        );
        // The follower reads the renewed record at 1050 ms (between the store and our answer).
        let seen = record(Some("leader"), "renewed-at-1000", Some(2));
        let seen_at = first_seen(None, &seen, hand.at(1050));
        // Every later round of the leader fails; the follower keeps reading the same record.
        let mut stopped_writing = None;
        let mut took_over = None;
        for ms in (1100..6000).step_by(100) {
            leader = settle(leader, &Attempt::Failed, hand.at(ms), &settings);
            let writes = current_role(leader.role, leader.valid_until, hand.at(ms)) == Role::Leader;
            if !writes && stopped_writing.is_none() {
                stopped_writing = Some(ms);
            }
            let again = first_seen(Some(&(seen.clone(), seen_at)), &seen, hand.at(ms));
            if decide(&seen, again, hand.at(ms), &settings, "follower") == Decision::Take
                && took_over.is_none()
            {
                took_over = Some(ms);
            }
        }
        assert_eq!(stopped_writing, Some(2500), "renew deadline after the send");
        assert_eq!(took_over, Some(3100), "lease duration after the sighting");
        assert_eq!(leader.role, Role::Follower);
    }

    proptest! {
        /// Whatever the delays, the leader's last write instant comes before the follower may
        /// take over: send ≤ store ≤ sighting, and renewDeadline < leaseDuration.
        #[test]
        fn no_two_leaders(
            sent in 0u64..10_000,
            to_store in 0u64..3000,
            to_answer in 0u64..3000,
            to_sighting in 0u64..3000,
        ) {
            let hand = Hand::new();
            let settings = settings();
            let leader = settle(
                Term { role: Role::Unknown, renewed: None, valid_until: None },
                &Attempt::Leader { sent: hand.at(sent) },
                hand.at(sent + to_store + to_answer),
                &settings,
            );
            let seen = record(Some("leader"), "r", None);
            let seen_at = hand.at(sent + to_store + to_sighting);
            for ms in (sent..sent + 10_000).step_by(50) {
                let now = hand.at(ms);
                let writes = current_role(leader.role, leader.valid_until, now) == Role::Leader;
                let takes = decide(&seen, seen_at, now, &settings, "follower") == Decision::Take;
                prop_assert!(!(writes && takes), "both lead at {ms} ms");
            }
        }
    }
}
