//! The poll loop's bookkeeping for updates that must wait: the freezes (the operator's and the
//! incident freeze read from tagwatch's state ConfigMap), the queue for rollout slots (first
//! come, first served), when each waiting workload is due again, and what waits and why (for the
//! metric and `tagwatch pending`). No I/O: the loop reads the freeze this asks for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::model::workload::{Workload, WorkloadId};
use crate::plan::approvals::{self, Verdict};
use crate::plan::holds::{self, Freeze, Hold, HoldEnv, Limits};

/// The incident freeze is read again after this: `tagwatch freeze` takes effect within it.
pub const FREEZE_TTL: Duration = Duration::from_secs(10);

/// What the operator configured.
#[derive(Debug, Clone, Default)]
pub struct HoldSettings {
    pub freezes: Vec<Freeze>,
    pub limits: Limits,
}

#[derive(Default)]
pub struct Holds {
    settings: HoldSettings,
    /// The incident freeze (`tagwatch freeze`), as last read.
    live: Option<Freeze>,
    live_read: Option<Instant>,
    reading: bool,
    /// Where the incident freeze is read from (`None`: not read).
    pub store: Option<String>,
    /// Waiting for a rollout slot: the order they came in.
    queue: HashMap<WorkloadId, u64>,
    next_seq: u64,
    wakeups: super::wakeups::Wakeups,
    held: HashMap<WorkloadId, Hold>,
}

impl Holds {
    pub fn new(settings: HoldSettings) -> Holds {
        Holds {
            settings,
            ..Holds::default()
        }
    }

    /// Drops what belongs to workloads that are gone.
    pub fn sync(&mut self, workloads: &[std::sync::Arc<Workload>]) {
        let present: HashSet<&WorkloadId> = workloads.iter().map(|w| &w.id).collect();
        self.queue.retain(|id, _| present.contains(id));
        self.wakeups.retain(&present);
        self.held.retain(|id, _| present.contains(id));
    }

    pub fn reads_in_flight(&self) -> usize {
        usize::from(self.reading)
    }

    pub fn limited(&self) -> bool {
        self.settings.limits.any()
    }

    /// Every freeze in force or scheduled: the operator's and the incident one.
    pub fn freezes(&self) -> Vec<Freeze> {
        let mut all = self.settings.freezes.clone();
        all.extend(self.live.clone());
        all
    }

    /// Whether `workload`'s update waits now; `running` are the workloads rolling out (this
    /// one excluded by the count). Remembers the hold, queues it for a slot, and schedules the
    /// moment it ends by the clock.
    pub fn check(
        &mut self,
        workload: &Workload,
        running: &HashSet<WorkloadId>,
        now: Timestamp,
    ) -> Option<Hold> {
        let id = &workload.id;
        let namespace = id.namespace.as_str();
        let freezes = self.freezes();
        let seq = self.queue.get(id).copied();
        let before =
            |other: &(&WorkloadId, &u64)| seq.is_none_or(|mine| *other.1 < mine) && other.0 != id;
        let ahead = self.queue.iter().filter(before).count();
        let ahead_here = self
            .queue
            .iter()
            .filter(before)
            .filter(|(other, _)| other.namespace == namespace)
            .count();
        let others = running.iter().filter(|r| *r != id);
        let env = HoldEnv {
            now,
            freezes: &freezes,
            limits: self.settings.limits,
            running: others.clone().count(),
            running_here: others.filter(|r| r.namespace == namespace).count(),
            ahead,
            ahead_here,
        };
        let hold = holds::hold(namespace, workload.window.as_deref(), env);
        match &hold {
            None => {
                self.queue.remove(id);
                self.wakeups.remove(id);
                self.held.remove(id);
            }
            Some(hold) => {
                if !matches!(hold, Hold::Limit { .. }) {
                    // Held by the clock, it does not keep a slot's place from the others.
                    self.queue.remove(id);
                } else if !self.queue.contains_key(id) {
                    self.queue.insert(id.clone(), self.next_seq);
                    self.next_seq += 1;
                }
                self.wakeups.set(id, hold.until(), now);
                self.held.insert(id.clone(), hold.clone());
            }
        }
        hold
    }

    /// Whether `workload`'s update (container → version in `pending`) waits for approval;
    /// `None` when the workload asks for none. A verdict that holds is remembered like any
    /// hold, with a wake-up at the proposal's deadline (its expiry is decided by the clock).
    pub fn check_approval(
        &mut self,
        workload: &Workload,
        pending: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Option<Verdict> {
        let spec = workload.approvals.as_ref()?;
        let verdict = approvals::judge(spec, pending, now);
        let id = &workload.id;
        let hold = match &verdict {
            Verdict::Released { .. } => {
                self.held.remove(id);
                self.wakeups.remove(id);
                return Some(verdict);
            }
            Verdict::Propose(proposal) => Hold::Approval {
                version: proposal.label(),
                given: 0,
                needed: spec.needed,
                expires: jiff::SignedDuration::try_from(spec.deadline)
                    .ok()
                    .and_then(|d| proposal.since.checked_add(d).ok()),
            },
            Verdict::Waiting {
                proposal,
                given,
                needed,
                expires,
            } => Hold::Approval {
                version: proposal.label(),
                given: *given,
                needed: *needed,
                expires: Some(*expires),
            },
            Verdict::Expire(proposal) | Verdict::Expired(proposal) => Hold::Approval {
                version: proposal.label(),
                given: spec.approvers(&proposal.label()).len(),
                needed: spec.needed,
                expires: None,
            },
        };
        // Waiting for people, it keeps no place in the queue for a rollout slot.
        self.queue.remove(id);
        self.wakeups.set(id, hold.until(), now);
        self.held.insert(id.clone(), hold);
        Some(verdict)
    }

    /// What holds `id` now, as last checked.
    pub fn hold_of(&self, id: &WorkloadId) -> Option<&Hold> {
        self.held.get(id)
    }

    /// The update of `id` started (or was dropped): it no longer waits. True when it did.
    pub fn started(&mut self, id: &WorkloadId) -> bool {
        self.queue.remove(id);
        self.wakeups.remove(id);
        self.held.remove(id).is_some()
    }

    /// Workloads whose hold ends by the clock now.
    pub fn due(&mut self, now: Instant) -> Vec<WorkloadId> {
        self.wakeups.due(now)
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        let freeze = self
            .store
            .as_ref()
            .and(self.live_read)
            .map(|at| at + FREEZE_TTL);
        self.wakeups.next().into_iter().chain(freeze).min()
    }

    pub fn is_queued(&self, id: &WorkloadId) -> bool {
        self.queue.contains_key(id)
    }

    /// Workloads waiting for a slot, first come first.
    pub fn queued(&self) -> Vec<WorkloadId> {
        let mut queued: Vec<(&u64, &WorkloadId)> =
            self.queue.iter().map(|(id, s)| (s, id)).collect();
        queued.sort();
        queued.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Workloads held by anything (decided again when a freeze lifts).
    pub fn held_ids(&self) -> Vec<WorkloadId> {
        self.held.keys().cloned().collect()
    }

    /// How many updates wait, per reason (`tagwatch_updates_waiting{reason}`).
    pub fn waiting_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts =
            BTreeMap::from([("freeze", 0), ("window", 0), ("limit", 0), ("approval", 0)]);
        for hold in self.held.values() {
            *counts.entry(hold.kind()).or_default() += 1;
        }
        counts
    }

    /// Whether the incident freeze must be read now (marked as under way when so).
    pub fn freeze_due(&mut self, now: Instant) -> bool {
        let stale = self
            .live_read
            .is_none_or(|at| now.duration_since(at) >= FREEZE_TTL);
        if self.store.is_some() && stale && !self.reading {
            self.reading = true;
            return true;
        }
        false
    }

    /// The incident freeze as read; true when it changed. A failed read keeps the last known
    /// one: a freeze must not lift because the API server hiccupped.
    pub fn freeze_read(&mut self, result: Result<Option<Freeze>, String>) -> bool {
        self.reading = false;
        self.live_read = Some(Instant::now());
        match result {
            Ok(live) if live != self.live => {
                self.live = live;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    fn workload(ns: &str, name: &str) -> Workload {
        let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app", "image": "reg.io/app:1.0.0"}]}}}
        }))
        .unwrap();
        crate::discover::workload(&deployment).unwrap()
    }

    /// Rollout slots go first come, first served: a later workload does not overtake one that
    /// waits, and a freed slot goes to the one that waited longest.
    #[test]
    fn slots_are_served_in_arrival_order() {
        let mut holds = Holds::new(HoldSettings {
            freezes: Vec::new(),
            limits: Limits {
                total: Some(1),
                per_namespace: None,
            },
        });
        let (a, b, c) = (workload("x", "a"), workload("x", "b"), workload("y", "c"));
        let now = Timestamp::now();
        let mut running = HashSet::from([a.id.clone()]);
        assert!(
            holds.check(&a, &running, now).is_none(),
            "its own rollout does not count"
        );
        assert!(holds.check(&b, &running, now).is_some());
        assert!(holds.check(&c, &running, now).is_some());
        assert_eq!(holds.queued(), vec![b.id.clone(), c.id.clone()]);
        assert_eq!(holds.waiting_counts()["limit"], 2);

        running.clear();
        // c asks first once the slot is free, but b waited longer.
        assert!(holds.check(&c, &running, now).is_some());
        assert!(holds.check(&b, &running, now).is_none());
        holds.started(&b.id);
        running.insert(b.id.clone());
        assert!(holds.check(&c, &running, now).is_some());
        running.clear();
        assert!(holds.check(&c, &running, now).is_none());
        holds.sync(&[Arc::new(a)]);
        assert!(holds.queued().is_empty());
    }

    /// An update waiting for people is a hold like any other: remembered with its count, woken
    /// at its deadline, out of the queue for a rollout slot, and let go once released.
    #[test]
    fn an_approval_holds_until_released_and_wakes_at_its_deadline() {
        use crate::plan::approvals::{Approvals, Given, Proposal, DEFAULT_DEADLINE};
        let mut holds = Holds::new(HoldSettings {
            freezes: Vec::new(),
            limits: Limits {
                total: Some(1),
                per_namespace: None,
            },
        });
        let mut w = workload("x", "a");
        let now = Timestamp::now();
        let pending = BTreeMap::from([("app".to_string(), "1.1.0".to_string())]);
        assert_eq!(
            holds.check_approval(&w, &pending, now),
            None,
            "asks for none"
        );
        assert!(holds.hold_of(&w.id).is_none());

        // Waiting for a rollout slot first, then proposed: it keeps no place in the queue.
        let busy = HashSet::from([workload("x", "other").id]);
        assert!(holds.check(&w, &busy, now).is_some());
        assert_eq!(holds.queued(), vec![w.id.clone()]);
        w.approvals = Some(Box::new(Approvals {
            needed: 2,
            deadline: DEFAULT_DEADLINE,
            proposal: None,
            given: Vec::new(),
        }));
        let Some(Verdict::Propose(proposal)) = holds.check_approval(&w, &pending, now) else {
            panic!("a first proposal");
        };
        assert!(holds.queued().is_empty());
        let deadline = now
            .checked_add(jiff::SignedDuration::try_from(DEFAULT_DEADLINE).unwrap())
            .unwrap();
        assert_eq!(
            holds.hold_of(&w.id),
            Some(&Hold::Approval {
                version: "1.1.0".into(),
                given: 0,
                needed: 2,
                expires: Some(deadline),
            })
        );
        assert_eq!(holds.waiting_counts()["approval"], 1);
        let wakeup = holds.next_wakeup().unwrap();
        let week = wakeup.saturating_duration_since(Instant::now());
        assert!(
            week > DEFAULT_DEADLINE - Duration::from_secs(60),
            "{week:?}"
        );

        // One of two approvals: still held, counted.
        let approval = |user: &str| Given {
            user: user.into(),
            version: "1.1.0".into(),
            at: now,
        };
        let mut spec = w.approvals.clone().unwrap();
        spec.proposal = Some(Proposal { ..proposal });
        spec.given = vec![approval("alice"), approval("alice")];
        w.approvals = Some(spec.clone());
        assert!(matches!(
            holds.check_approval(&w, &pending, now),
            Some(Verdict::Waiting { given: 1, .. })
        ));
        assert!(matches!(
            holds.hold_of(&w.id),
            Some(Hold::Approval { given: 1, .. })
        ));

        // Past its deadline: expired, with no wake-up left for it.
        let later = deadline
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap();
        assert!(matches!(
            holds.check_approval(&w, &pending, later),
            Some(Verdict::Expire(_))
        ));
        assert!(matches!(
            holds.hold_of(&w.id),
            Some(Hold::Approval { expires: None, .. })
        ));

        // Two people: released, and nothing holds it any more.
        spec.given.push(approval("bob"));
        w.approvals = Some(spec);
        assert!(matches!(
            holds.check_approval(&w, &pending, now),
            Some(Verdict::Released { .. })
        ));
        assert!(holds.hold_of(&w.id).is_none());
        assert_eq!(holds.next_wakeup(), None);
        assert_eq!(
            holds.waiting_counts().get("approval").copied().unwrap_or(0),
            0
        );
    }

    #[test]
    fn the_incident_freeze_holds_until_lifted_and_a_failed_read_keeps_it() {
        let mut holds = Holds::new(HoldSettings::default());
        holds.store = Some("tagwatch".into());
        assert!(holds.freeze_due(Instant::now()));
        assert!(!holds.freeze_due(Instant::now()), "one read at a time");
        let freeze = Freeze {
            from: None,
            to: None,
            reason: "incident".into(),
            namespaces: Vec::new(),
            by: None,
        };
        assert!(holds.freeze_read(Ok(Some(freeze))));
        let w = workload("x", "a");
        let now = Timestamp::now();
        assert_eq!(
            holds.check(&w, &HashSet::new(), now).map(|h| h.kind()),
            Some("freeze")
        );
        assert!(!holds.freeze_read(Err("timeout".into())));
        assert!(holds.check(&w, &HashSet::new(), now).is_some());
        assert!(holds.freeze_read(Ok(None)));
        assert!(holds.check(&w, &HashSet::new(), now).is_none());
    }
}
