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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::config::LeaderSettings;
use crate::metrics::Metrics;

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
}

impl Leadership {
    /// Leadership without election (a single replica, or election turned off).
    pub fn always() -> Leadership {
        let (tx, role) = watch::channel(Role::Leader);
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Leadership {
            role,
            valid_until: Arc::new(Mutex::new(None)),
        }
    }

    pub fn role(&self) -> Role {
        let role = *self.role.borrow();
        match role {
            Role::Leader if self.expired() => Role::Follower,
            role => role,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    fn expired(&self) -> bool {
        lock(&self.valid_until).is_some_and(|until| Instant::now() >= until)
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
        let (tx, role) = watch::channel(Role::Follower);
        drop(tx);
        Leadership {
            role,
            valid_until: Arc::new(Mutex::new(Some(Instant::now()))),
        }
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

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    settings: LeaderSettings,
    metrics: Metrics,
    role: watch::Sender<Role>,
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// The Lease record as last seen, and when it was first seen that way.
    observed: Option<(Observed, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<String>,
    duration_seconds: Option<i32>,
}

enum Attempt {
    /// The lease is ours; `sent` is when the write that took or renewed it was sent.
    Leader {
        sent: Instant,
    },
    Follower {
        holder: Option<String>,
    },
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        identity: String,
        settings: LeaderSettings,
        metrics: Metrics,
    ) -> (Elector, Leadership) {
        let (role_tx, role_rx) = watch::channel(Role::Unknown);
        let valid_until = Arc::new(Mutex::new(Some(Instant::now())));
        let elector = Elector {
            api: Api::namespaced(client, namespace),
            name: settings.lease_name.clone(),
            identity,
            settings,
            metrics,
            role: role_tx,
            valid_until: valid_until.clone(),
            observed: None,
        };
        (
            elector,
            Leadership {
                role: role_rx,
                valid_until,
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
            // An attempt may not outlive the time leadership has left.
            let budget = match renewed {
                Some(at) => self.settings.renew_deadline.saturating_sub(at.elapsed()),
                None => self.settings.renew_deadline,
            };
            let attempt = tokio::select! {
                a = tokio::time::timeout(budget.max(Duration::from_millis(100)), self.attempt()) => a,
                _ = &mut stop => break,
            };
            match attempt {
                Ok(Ok(Attempt::Leader { sent })) => {
                    // Counted from the send, not the answer: a slow answer must not stretch the
                    // term past what a follower, counting from when it saw the change, allows.
                    let until = sent
                        .checked_add(self.settings.renew_deadline)
                        .unwrap_or(sent);
                    renewed = Some(sent);
                    *lock(&self.valid_until) = Some(until);
                    if Instant::now() < until {
                        self.set(Role::Leader, None);
                    } else {
                        self.failed(
                            &mut renewed,
                            "the renewal was answered after the renew deadline",
                        );
                    }
                }
                Ok(Ok(Attempt::Follower { holder })) => {
                    renewed = None;
                    *lock(&self.valid_until) = Some(Instant::now());
                    self.set(Role::Follower, holder.as_deref());
                }
                Ok(Err(e)) => self.failed(&mut renewed, &e.to_string()),
                Err(_) => self.failed(&mut renewed, "the lease request timed out"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry_period) => {}
                _ = &mut stop => break,
            }
        }
        if self.is_leader_now() {
            self.release().await;
        }
        *lock(&self.valid_until) = Some(Instant::now());
        // A planned stop, not a lost lease: no warning.
        self.role.send_replace(Role::Follower);
        self.metrics.leader.set(0);
    }

    fn is_leader_now(&self) -> bool {
        *self.role.borrow() == Role::Leader
            && lock(&self.valid_until).is_some_and(|until| Instant::now() < until)
    }

    fn failed(&mut self, renewed: &mut Option<Instant>, error: &str) {
        let lapsed = renewed.is_none_or(|at| at.elapsed() >= self.settings.renew_deadline);
        tracing::warn!(lease = %self.name, error, "leader election: cannot reach the lease");
        if lapsed {
            *renewed = None;
            // Unknown stays unknown until an answer; a leader past its deadline steps down.
            if *self.role.borrow() == Role::Leader {
                self.set(Role::Follower, None);
            }
        }
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

    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let seen = Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            duration_seconds: spec.lease_duration_seconds,
        };
        // Unlike our own renewals, another holder's is counted from when the answer came back:
        // the change happened before that, so waiting from here errs towards waiting longer.
        let seen_at = match &self.observed {
            Some((previous, at)) if *previous == seen => *at,
            _ => {
                let now = Instant::now();
                self.observed = Some((seen, now));
                now
            }
        };
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let lease_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.settings.lease_duration);
        if !mine && holder.is_some() && seen_at.elapsed() < lease_duration {
            return Ok(Attempt::Follower { holder });
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut next = spec.clone();
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(self.duration_seconds());
        next.renew_time = Some(now.clone());
        if !mine {
            next.acquire_time = Some(now);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        // resourceVersion from the get makes this a compare-and-swap: two replicas taking an
        // expired lease at once get one 200 and one 409.
        let updated = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(next),
        };
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Leader { sent }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower { holder }),
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self) -> Result<Attempt, kube::Error> {
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
        let sent = Instant::now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leader { sent }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower { holder: None }),
            Err(e) => Err(e),
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
