//! The poll loop's bookkeeping for release gates: facts read per candidate tag (kept while the
//! tag is listed, so a steady cycle reads nothing), reads in flight, first-seen times, the
//! Nodes' platforms, when a workload waiting for `tagwatch.dev/min-age` is due again, and which
//! judgements were already reported. No I/O: the loop starts the reads this asks for.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::act::gates::{encode_first_seen, MAX_STATE_BYTES};
use crate::model::gates::Platform;
use crate::model::image::Repository;
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::gates::{Facts, FactsByTag, FirstSeen, Gate, GateResult, SignatureCheck};
use crate::plan::update::{GateInputs, WorkloadPlan};

/// The Nodes' platforms are read again after this (a new arm64 pool counts).
const NODES_TTL: Duration = Duration::from_secs(300);

/// A version whose signatures did not pass is checked again after this, doubling up to
/// [`SIGNATURE_RECHECK_MAX`]: CI often signs moments after it pushes, and a version signed
/// late must not stay blocked while it is listed.
const SIGNATURE_RECHECK: Duration = Duration::from_secs(30);
const SIGNATURE_RECHECK_MAX: Duration = Duration::from_secs(30 * 60);

/// A judgement to report: counted once, and (unless it passed) one Normal Event.
pub struct Report {
    pub gate: Gate,
    pub result: GateResult,
    pub note: Option<String>,
}

#[derive(Default)]
pub struct Gatekeeper {
    facts: Arc<FactsByTag>,
    reading: HashSet<(Repository, String)>,
    first_seen: Arc<FirstSeen>,
    /// Repositories a container with `tagwatch.dev/min-age` uses: only theirs are kept.
    aged: BTreeSet<Repository>,
    /// The verification policies each repository's users ask for, judged when its facts are
    /// read.
    policies: HashMap<Repository, BTreeSet<String>>,
    wants_nodes: bool,
    nodes: Option<Arc<BTreeSet<Platform>>>,
    nodes_read: Option<Instant>,
    reading_nodes: bool,
    wakeups: super::wakeups::Wakeups,
    reported: HashMap<WorkloadId, BTreeSet<(String, String, Gate, GateResult)>>,
    /// Workloads whose last decision met a gate that could not decide (or a signature that did
    /// not pass yet): decided again at each listing, even one that brought nothing new.
    retry: HashSet<WorkloadId>,
    /// Tags whose signatures did not pass: when to check again, and how often they were.
    unsigned: HashMap<(Repository, String), (Instant, u32)>,
    /// Where first-seen times are saved (`None`: kept in memory only, as `tagwatch plan` does).
    pub store: Option<String>,
    unsaved: bool,
    saving: bool,
}

impl Gatekeeper {
    /// Starts from saved first-seen times, saving changes to `namespace`.
    pub fn restore(&mut self, namespace: String, first_seen: FirstSeen) {
        self.store = Some(namespace);
        self.first_seen = Arc::new(first_seen);
    }

    /// The turn's workloads: what to keep, and whether Nodes must be read.
    pub fn sync(&mut self, workloads: &[Arc<Workload>]) {
        let mut watched = BTreeSet::new();
        self.aged.clear();
        self.policies.clear();
        self.wants_nodes = false;
        for workload in workloads {
            for container in &workload.containers {
                if container.gates.is_empty() {
                    continue;
                }
                watched.insert(container.image.repository.clone());
                if !container.gates.verify.is_empty() {
                    self.policies
                        .entry(container.image.repository.clone())
                        .or_default()
                        .extend(container.gates.verify.iter().cloned());
                }
                if container.gates.min_age.is_some() {
                    self.aged.insert(container.image.repository.clone());
                }
                self.wants_nodes |= container.gates.wants_nodes();
            }
        }
        self.unsigned.retain(|(repo, _), _| watched.contains(repo));
        if self.facts.keys().any(|(repo, _)| !watched.contains(repo)) {
            Arc::make_mut(&mut self.facts).retain(|(repo, _), _| watched.contains(repo));
        }
        let aged: BTreeSet<&Repository> = self.aged.iter().collect();
        let pruned = self.first_seen.tags.keys().any(|r| !aged.contains(r));
        if pruned {
            Arc::make_mut(&mut self.first_seen).retain(&aged);
            self.unsaved = true;
        }
        let present: HashSet<&WorkloadId> = workloads.iter().map(|w| &w.id).collect();
        self.wakeups.retain(&present);
        self.reported.retain(|id, _| present.contains(id));
        self.retry.retain(|id| present.contains(id));
    }

    pub fn inputs(&self) -> GateInputs {
        GateInputs {
            facts: self.facts.clone(),
            first_seen: self.first_seen.clone(),
            nodes: self.nodes.clone(),
            now: Timestamp::now(),
        }
    }

    /// A complete listing: new tags are stamped, facts of tags gone (or that failed to read, to
    /// be read again) are dropped.
    pub fn listed(&mut self, repo: &Repository, tags: &[String], now: Timestamp) {
        if self.aged.contains(repo) {
            let mut next = (*self.first_seen).clone();
            if next.listed(repo, tags, now) {
                self.first_seen = Arc::new(next);
                self.unsaved = true;
            }
        }
        let listed: HashSet<&String> = tags.iter().collect();
        let instant = Instant::now();
        self.unsigned
            .retain(|(r, tag), _| r != repo || listed.contains(tag));
        let recheck = |r: &Repository, tag: &String| {
            self.unsigned
                .get(&(r.clone(), tag.clone()))
                .is_some_and(|(at, _)| *at <= instant)
        };
        let stale = self.facts.iter().any(|((r, tag), facts)| {
            r == repo && (facts.is_err() || !listed.contains(tag) || recheck(r, tag))
        });
        if stale {
            let keep: HashSet<(Repository, String)> = self
                .facts
                .iter()
                .filter(|((r, tag), facts)| {
                    r != repo || (facts.is_ok() && listed.contains(tag) && !recheck(r, tag))
                })
                .map(|(key, _)| key.clone())
                .collect();
            Arc::make_mut(&mut self.facts).retain(|key, _| keep.contains(key));
        }
    }

    /// The policies a read of `repo`'s facts judges.
    pub fn policies_for(&self, repo: &Repository) -> BTreeSet<String> {
        self.policies.get(repo).cloned().unwrap_or_default()
    }

    pub fn must_retry(&self, id: &WorkloadId) -> bool {
        self.retry.contains(id)
    }

    /// The reads a plan asks for that are not under way yet (now marked as under way).
    pub fn reads(&mut self, plan: &WorkloadPlan) -> Vec<(Repository, String)> {
        plan.reads
            .iter()
            .filter(|read| self.reading.insert((*read).clone()))
            .cloned()
            .collect()
    }

    pub fn facts_read(&mut self, repo: Repository, tag: String, result: Result<Facts, String>) {
        self.reading.remove(&(repo.clone(), tag.clone()));
        let key = (repo.clone(), tag.clone());
        let unsigned = result.as_ref().is_ok_and(|facts| {
            facts
                .signatures
                .values()
                .any(|check| !matches!(check, SignatureCheck::Verified(_)))
        });
        let undecided = result.as_ref().is_ok_and(|facts| {
            facts
                .signatures
                .values()
                .any(|check| matches!(check, SignatureCheck::Undecided(_)))
        });
        if unsigned {
            let attempts = self.unsigned.get(&key).map_or(0, |(_, n)| *n);
            // A check that could not decide is made again at the next listing, like a failed
            // read; one that decided "not signed" waits longer each time.
            let wait = if undecided {
                Duration::ZERO
            } else {
                SIGNATURE_RECHECK
                    .saturating_mul(1 << attempts.min(10))
                    .min(SIGNATURE_RECHECK_MAX)
            };
            self.unsigned
                .insert(key, (Instant::now() + wait, attempts.saturating_add(1)));
        } else {
            self.unsigned.remove(&key);
        }
        Arc::make_mut(&mut self.facts).insert((repo, tag), result);
    }

    pub fn reads_in_flight(&self) -> usize {
        self.reading.len() + usize::from(self.reading_nodes)
    }

    /// What a plan's judgements add to report, its wake-up, and whether it must be retried.
    pub fn planned(
        &mut self,
        workload: &Workload,
        plan: &WorkloadPlan,
        now: Timestamp,
    ) -> Vec<Report> {
        let id = &workload.id;
        self.wakeups.set(id, plan.wake_at, now);
        let unsettled = plan.judged.iter().any(|j| {
            j.result == GateResult::Error
                || (j.gate == Gate::Signature && j.result == GateResult::Blocked)
        });
        if unsettled {
            self.retry.insert(id.clone());
        } else {
            self.retry.remove(id);
        }
        let reported = self.reported.entry(id.clone()).or_default();
        let mut reports = Vec::new();
        for judged in &plan.judged {
            let key = (
                judged.container.clone(),
                judged.tag.clone(),
                judged.gate,
                judged.result,
            );
            if !reported.insert(key) {
                continue;
            }
            let note = (judged.result != GateResult::Passed).then(|| {
                format!(
                    "container {}: {} held back by {}: {}",
                    judged.container, judged.tag, judged.gate, judged.reason
                )
            });
            reports.push(Report {
                gate: judged.gate,
                result: judged.result,
                note,
            });
        }
        reports
    }

    /// Workloads whose youngest waiting candidate came of age.
    pub fn due(&mut self, now: Instant) -> Vec<WorkloadId> {
        self.wakeups.due(now)
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        self.wakeups.next()
    }

    /// Whether the Nodes must be read now (marked as under way when so).
    pub fn nodes_due(&mut self, now: Instant) -> bool {
        let stale = self
            .nodes_read
            .is_none_or(|at| now.duration_since(at) >= NODES_TTL);
        if self.wants_nodes && stale && !self.reading_nodes {
            self.reading_nodes = true;
            return true;
        }
        false
    }

    pub fn nodes_read(&mut self, result: Result<BTreeSet<Platform>, String>) {
        self.reading_nodes = false;
        self.nodes_read = Some(Instant::now());
        // A failed read keeps the last known platforms; with none, `auto` blocks (fail closed).
        if let Ok(nodes) = result {
            self.nodes = Some(Arc::new(nodes));
        }
    }

    /// The first-seen times to save now, if they changed and no save is under way.
    pub fn save_due(&mut self) -> Option<(String, String)> {
        let namespace = self.store.clone()?;
        if !self.unsaved || self.saving {
            return None;
        }
        let data = encode_first_seen(&self.first_seen);
        self.unsaved = false;
        if data.len() > MAX_STATE_BYTES {
            tracing::warn!(
                bytes = data.len(),
                "first-seen times too large for a ConfigMap: kept in memory only"
            );
            return None;
        }
        self.saving = true;
        Some((namespace, data))
    }

    pub fn saved(&mut self, ok: bool) {
        self.saving = false;
        if !ok {
            self.unsaved = true;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plan::gates::SignatureCheck;

    fn facts(check: SignatureCheck) -> Facts {
        Facts {
            digest: "sha256:d".into(),
            platforms: BTreeSet::new(),
            index: false,
            created: None,
            signatures: [("release".to_string(), check)].into(),
        }
    }

    /// A version whose signature did not pass is read again once its recheck is due (30 s,
    /// doubling), so a signature pushed after the image counts; a verified one never is.
    #[test]
    fn unsigned_versions_are_checked_again_with_backoff() {
        let repo: Repository = "reg.io/app".parse().unwrap();
        let tags = vec!["1.0.0".to_string(), "1.1.0".to_string()];
        let mut keeper = Gatekeeper::default();
        let unsigned = SignatureCheck::Unverified("no cosign signature found".into());
        keeper.facts_read(repo.clone(), "1.1.0".into(), Ok(facts(unsigned.clone())));
        keeper.facts_read(
            repo.clone(),
            "1.0.0".into(),
            Ok(facts(SignatureCheck::Verified("key".into()))),
        );
        let key = (repo.clone(), "1.1.0".to_string());
        let (due, attempts) = keeper.unsigned[&key];
        assert_eq!(attempts, 1);
        let wait = due - Instant::now();
        assert!(
            wait > Duration::from_secs(25) && wait <= SIGNATURE_RECHECK,
            "{wait:?}"
        );

        // Not due yet: a listing keeps what was read.
        keeper.listed(&repo, &tags, Timestamp::now());
        assert_eq!(keeper.facts.len(), 2);

        // Due: dropped, so the next decision reads it again; the verified one stays.
        keeper.unsigned.get_mut(&key).unwrap().0 = Instant::now();
        keeper.listed(&repo, &tags, Timestamp::now());
        assert!(!keeper.facts.contains_key(&key));
        assert!(keeper
            .facts
            .contains_key(&(repo.clone(), "1.0.0".to_string())));

        // Still unsigned: the next wait doubles; signed at last: forgotten.
        keeper.facts_read(repo.clone(), "1.1.0".into(), Ok(facts(unsigned)));
        let wait = keeper.unsigned[&key].0 - Instant::now();
        assert!(
            wait > SIGNATURE_RECHECK && wait <= SIGNATURE_RECHECK * 2,
            "{wait:?}"
        );
        keeper.facts_read(
            repo.clone(),
            "1.1.0".into(),
            Ok(facts(SignatureCheck::Verified("key".into()))),
        );
        assert!(!keeper.unsigned.contains_key(&key));

        // A tag no longer listed is forgotten.
        keeper.facts_read(
            repo.clone(),
            "1.1.0".into(),
            Ok(facts(SignatureCheck::Undecided("500".into()))),
        );
        keeper.listed(&repo, &tags[..1], Timestamp::now());
        assert!(!keeper.unsigned.contains_key(&key));
    }
}
