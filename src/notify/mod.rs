//! Notifications: the Events worth telling people about, sent to Slack, Microsoft Teams, a
//! generic webhook or a CloudEvents receiver.
//!
//! Every Event tagwatch publishes passes [`crate::act::runner::Writer::publish`], which offers
//! it to the [`Notifier`] as a [`Notice`]. Which sinks hear of it is pure ([`Rule`]: the sink's
//! event and namespace filters, and the workload's `tagwatch.dev/notify` or the default sinks);
//! the bodies are pure ([`slack`], [`teams`], [`webhook`], [`cloudevents`]); only [`deliver`]
//! does I/O, in one task per sink behind a bounded queue, so a slow or dead receiver never
//! delays the control loop.

pub mod cloudevents;
pub mod deliver;
pub mod settings;
pub mod slack;
pub mod sources;
pub mod teams;
pub mod webhook;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;

use crate::metrics::{Metrics, NotificationResult};
use crate::model::workload::Workload;
pub use deliver::{DeliveryOptions, Sink};
pub use settings::{NotificationSection, SinkKind};

/// An event worth telling, by the Kubernetes Event reason tagwatch publishes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    UpdateApplied,
    CanaryStarted,
    CanaryPromoted,
    CanaryFailed,
    Rollback,
    RolloutStuck,
    UpdateRefused,
    GateBlocked,
    ApprovalRequired,
    ApprovalGranted,
    ApprovalExpired,
}

impl Event {
    pub const ALL: [Event; 11] = [
        Event::UpdateApplied,
        Event::CanaryStarted,
        Event::CanaryPromoted,
        Event::CanaryFailed,
        Event::Rollback,
        Event::RolloutStuck,
        Event::UpdateRefused,
        Event::GateBlocked,
        Event::ApprovalRequired,
        Event::ApprovalGranted,
        Event::ApprovalExpired,
    ];

    /// The name sinks filter on and receivers see (`update.applied`).
    pub fn name(self) -> &'static str {
        match self {
            Event::UpdateApplied => "update.applied",
            Event::CanaryStarted => "canary.started",
            Event::CanaryPromoted => "canary.promoted",
            Event::CanaryFailed => "canary.failed",
            Event::Rollback => "rollback",
            Event::RolloutStuck => "rollout.stuck",
            Event::UpdateRefused => "update.refused",
            Event::GateBlocked => "gate.blocked",
            Event::ApprovalRequired => "approval.required",
            Event::ApprovalGranted => "approval.granted",
            Event::ApprovalExpired => "approval.expired",
        }
    }

    /// The Kubernetes Event reason that carries it.
    pub fn reason(self) -> &'static str {
        match self {
            Event::UpdateApplied => "ImageUpdated",
            Event::CanaryStarted => "CanaryStarted",
            Event::CanaryPromoted => "CanaryPromoted",
            Event::CanaryFailed => "CanaryFailed",
            Event::Rollback => "RolledBack",
            Event::RolloutStuck => "RolloutStuck",
            Event::UpdateRefused => "UpdateRefused",
            Event::GateBlocked => "GateBlocked",
            Event::ApprovalRequired => "ApprovalRequired",
            Event::ApprovalGranted => "ApprovalGranted",
            Event::ApprovalExpired => "ApprovalExpired",
        }
    }

    /// A headline for chat messages.
    pub fn title(self) -> &'static str {
        match self {
            Event::UpdateApplied => "Image updated",
            Event::CanaryStarted => "Canary started",
            Event::CanaryPromoted => "Canary promoted",
            Event::CanaryFailed => "Canary failed",
            Event::Rollback => "Rolled back",
            Event::RolloutStuck => "Rollout stuck",
            Event::UpdateRefused => "Update refused",
            Event::GateBlocked => "Update held by a release gate",
            Event::ApprovalRequired => "Approval required",
            Event::ApprovalGranted => "Approval granted",
            Event::ApprovalExpired => "Approval expired",
        }
    }

    pub fn from_reason(reason: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.reason() == reason)
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name.trim())
    }
}

/// The object an Event regards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Regarding {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl Regarding {
    pub fn of(reference: &ObjectReference) -> Regarding {
        Regarding {
            namespace: reference.namespace.clone().unwrap_or_default(),
            kind: reference.kind.clone().unwrap_or_default(),
            name: reference.name.clone().unwrap_or_default(),
        }
    }

    pub fn of_workload(workload: &Workload) -> Regarding {
        Regarding {
            namespace: workload.id.namespace.clone(),
            kind: workload.id.kind.name().to_string(),
            name: workload.id.name.clone(),
        }
    }
}

impl std::fmt::Display for Regarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// What happened, as every format renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: Event,
    /// `Normal` or `Warning`, as on the Kubernetes Event.
    pub type_: String,
    pub reason: String,
    pub regarding: Regarding,
    pub message: String,
    pub time: Timestamp,
    /// Unique per notice (a retried delivery keeps it): receivers can drop duplicates.
    pub id: String,
    /// `approval.required`: the proposal's [`crate::plan::approvals::Proposal::label`], which a
    /// Slack button names so that a click approves exactly what was shown.
    pub proposal: Option<String>,
}

impl Notice {
    /// The notice for a published Event, if its reason is one worth telling.
    pub fn of_event(
        reason: &str,
        type_: &str,
        regarding: Regarding,
        message: String,
        time: Timestamp,
        id: String,
    ) -> Option<Notice> {
        Some(Notice {
            event: Event::from_reason(reason)?,
            type_: type_.to_string(),
            reason: reason.to_string(),
            regarding,
            message,
            time,
            id,
            proposal: None,
        })
    }
}

/// Which notices a sink takes (the config's filters, and whether it is a default sink).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// `None`: every event.
    pub events: Option<BTreeSet<Event>>,
    /// `None`: every namespace.
    pub namespaces: Option<BTreeSet<String>>,
    pub default: bool,
}

impl Rule {
    /// Whether sink `name` takes `notice`, given the sinks its workload chose (`None`: the
    /// workload chose none, so the default sinks).
    pub fn takes(&self, name: &str, chosen: Option<&BTreeSet<String>>, notice: &Notice) -> bool {
        let picked = match chosen {
            Some(chosen) => chosen.contains(name),
            None => self.default,
        };
        picked
            && self
                .events
                .as_ref()
                .is_none_or(|e| e.contains(&notice.event))
            && self
                .namespaces
                .as_ref()
                .is_none_or(|n| n.contains(&notice.regarding.namespace))
    }
}

/// Hands notices to the sinks that take them. Cloning shares the sinks and their queues.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Vec<Sink>,
    /// The sinks each workload chose with `tagwatch.dev/notify` (known names only); a workload
    /// absent here uses the default sinks.
    routes: RwLock<HashMap<Regarding, BTreeSet<String>>>,
    /// Unknown sink names already logged, per workload: logged once, not every turn.
    warned: Mutex<HashSet<(Regarding, String)>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sinks", &self.inner.sinks)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier over `sinks` whose delivery tasks are already running (see
    /// [`deliver::start`]); counters start at zero for every sink.
    pub fn new(sinks: Vec<Sink>, metrics: Metrics) -> Notifier {
        for sink in &sinks {
            metrics.know_sink(sink.name());
        }
        Notifier {
            inner: Arc::new(Inner {
                sinks,
                routes: RwLock::new(HashMap::new()),
                warned: Mutex::new(HashSet::new()),
                metrics,
            }),
        }
    }

    pub fn sink_names(&self) -> Vec<&str> {
        self.inner.sinks.iter().map(Sink::name).collect()
    }

    /// The sinks each workload chose, from this turn's discovery. An unknown name is logged once
    /// per workload and left out.
    pub fn route(&self, workloads: &[Arc<Workload>]) {
        let known: BTreeSet<&str> = self.sink_names().into_iter().collect();
        let mut routes = HashMap::new();
        for workload in workloads {
            let Some(chosen) = &workload.notify else {
                continue;
            };
            let regarding = Regarding::of_workload(workload);
            let mut names = BTreeSet::new();
            for name in chosen {
                if known.contains(name.as_str()) {
                    names.insert(name.clone());
                    continue;
                }
                let mut warned = self.inner.warned.lock().unwrap_or_else(|p| p.into_inner());
                if warned.insert((regarding.clone(), name.clone())) {
                    tracing::warn!(workload = %regarding, sink = %name,
                        "tagwatch.dev/notify names a sink that is not configured; ignored");
                }
            }
            routes.insert(regarding, names);
        }
        *self.inner.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// Queues `notice` for every sink that takes it; never waits. A full queue drops the notice
    /// for that sink and counts it.
    pub fn offer(&self, notice: Notice) {
        let notice = Arc::new(notice);
        let routes = self.inner.routes.read().unwrap_or_else(|p| p.into_inner());
        let chosen = routes.get(&notice.regarding);
        for sink in &self.inner.sinks {
            if !sink.rule().takes(sink.name(), chosen, &notice) {
                continue;
            }
            if !sink.try_queue(notice.clone()) {
                self.inner
                    .metrics
                    .notification(sink.name(), NotificationResult::Dropped);
                tracing::warn!(sink = sink.name(), event = notice.event.name(),
                    workload = %notice.regarding, "notification queue full; notice dropped");
            }
        }
    }
}

/// A random id for a notice: 128 bits as hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn notice(event: Event, namespace: &str) -> Notice {
        Notice {
            event,
            type_: "Normal".into(),
            reason: event.reason().into(),
            regarding: Regarding {
                namespace: namespace.into(),
                kind: "Deployment".into(),
                name: "web".into(),
            },
            message: "web: r.io/app:1.0.0 → r.io/app:1.1.0".into(),
            time: "2025-03-04T05:06:07Z".parse().unwrap(),
            id: "0123".into(),
            proposal: None,
        }
    }

    #[test]
    fn reasons_and_names_map_both_ways() {
        for event in Event::ALL {
            assert_eq!(Event::from_reason(event.reason()), Some(event));
            assert_eq!(Event::from_name(event.name()), Some(event));
        }
        assert_eq!(Event::from_reason("CanaryRemoved"), None);
        assert_eq!(
            Event::from_reason("ImageUpdated"),
            Some(Event::UpdateApplied)
        );
        assert_eq!(Event::from_reason("RolledBack").unwrap().name(), "rollback");
    }

    #[test]
    fn a_sink_takes_what_its_filters_and_the_workload_choose() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let all = Rule::default();
        let default = Rule {
            default: true,
            ..Rule::default()
        };
        let rollbacks = Rule {
            events: Some(BTreeSet::from([Event::Rollback])),
            default: true,
            ..Rule::default()
        };
        let shop = Rule {
            namespaces: Some(BTreeSet::from(["shop".to_string()])),
            default: true,
            ..Rule::default()
        };
        let applied = notice(Event::UpdateApplied, "shop");
        let rolled = notice(Event::Rollback, "web");
        let ab = set(&["a", "b"]);
        let none = set(&[]);
        type Case<'a> = (
            &'a Rule,
            &'a str,
            Option<&'a BTreeSet<String>>,
            &'a Notice,
            bool,
        );
        let cases: &[Case] = &[
            // No annotation: default sinks only.
            (&all, "a", None, &applied, false),
            (&default, "a", None, &applied, true),
            // An annotation names the sinks, default or not.
            (&all, "a", Some(&ab), &applied, true),
            (&default, "c", Some(&ab), &applied, false),
            (&default, "a", Some(&none), &applied, false),
            // Filters apply whoever chose the sink.
            (&rollbacks, "a", None, &applied, false),
            (&rollbacks, "a", None, &rolled, true),
            (&rollbacks, "a", Some(&ab), &applied, false),
            (&shop, "a", None, &applied, true),
            (&shop, "a", None, &rolled, false),
        ];
        for (i, (rule, name, chosen, notice, want)) in cases.iter().enumerate() {
            assert_eq!(rule.takes(name, *chosen, notice), *want, "case {i}");
        }
    }
}
