//! Given a workload and the complete tag listings (and digests) read this round: what to write.
//!
//! Manual changes win: when a container's image is no longer what tagwatch applied, a person (or
//! another tool) changed it. An alias or a newer version becomes the new intent; a lower version is
//! a rollback, and the version rolled back from is rejected for good (newer ones still apply).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::digest::{resolve_digest, DigestDecision};
use super::gates::{self, FactsByTag, FirstSeen, Gate, GateEnv, GateResult, GateVerdict, Lookup};
use super::patch::{ImageChange, State};
use super::resolve::{resolve, Decision, Request};
use super::skip::SkipReason;
use crate::model::alias::Alias;
use crate::model::gates::Platform;
use crate::model::image::{ImageRef, Repository};
use crate::model::policy::Policy;
use crate::model::tag::Tag;
use crate::model::workload::{Pin, WatchedContainer, Workload, WorkloadId};

/// What the edges read this round. A repository is present only if its listing was complete.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub tags: HashMap<Repository, Arc<Vec<String>>>,
    /// Registry digests of `(repository, tag)`, read for containers under the `digest` policy.
    pub digests: HashMap<(Repository, String), String>,
    /// What release gates are judged on (used only by containers that ask for gates).
    pub gates: GateInputs,
}

/// Facts read about candidate tags, when tags were first seen, the Nodes' platforms, the clock.
#[derive(Debug, Clone, Default)]
pub struct GateInputs {
    pub facts: Arc<FactsByTag>,
    pub first_seen: Arc<FirstSeen>,
    pub nodes: Option<Arc<BTreeSet<Platform>>>,
    pub now: Timestamp,
}

impl GateInputs {
    pub fn lookup(&self, repo: &Repository, tag: &str) -> Lookup<'_> {
        match self.facts.get(&(repo.clone(), tag.to_string())) {
            None => Lookup::Unknown,
            Some(Ok(facts)) => Lookup::Known(facts),
            Some(Err(why)) => Lookup::Failed(why),
        }
    }
}

/// Candidates the gates held back are at most this many per decision: past it the older ones are
/// not looked at (a repository with hundreds of unfit releases is not walked every decision).
const MAX_GATED: usize = 64;

/// Facts are read for at most this many candidates at once, newest first.
const MAX_READS: usize = 8;

/// One gate's judgement of one candidate, for Events, metrics and `plan`/`resolve --explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub container: String,
    pub tag: String,
    pub gate: Gate,
    pub result: GateResult,
    pub reason: String,
}

/// An update decided, before its digest (if pinned) is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub container: String,
    pub repository: Repository,
    pub image_path: String,
    pub from: String,
    pub from_tag: String,
    pub to_tag: String,
    /// Digest to pin: known already (`digest` policy), or to be read (`pin: digest`).
    pub digest: Digest,
    /// `policy`, `alias` or `digest`: why this update, for logs and metrics.
    pub reason: &'static str,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    None,
    Known(String),
    ToRead,
}

impl Pending {
    /// The image string to write, given the digest when one is pinned.
    pub fn image(&self, digest: Option<&str>) -> String {
        match digest {
            Some(digest) => format!("{}:{}@{digest}", self.name, self.to_tag),
            None => format!("{}:{}", self.name, self.to_tag),
        }
    }
}

/// The outcome for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Update(Pending),
    UpToDate,
    Skip(SkipReason),
    /// No complete listing this round (not due, or failed): no decision at all.
    NotListed,
}

/// A change made by someone else, seen by comparing the image with `tagwatch.dev/applied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualChange {
    pub container: String,
    pub applied: String,
    pub current: String,
    /// The tag rolled back from, now rejected; `None` when the change was not a rollback.
    pub rejected: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    pub id: WorkloadId,
    pub outcomes: Vec<(String, Outcome)>,
    pub manual: Vec<ManualChange>,
    /// State to record with the next write (this plan's updates are added by [`finish`]).
    pub state: State,
    /// Gate judgements made for this plan (held-back candidates, and the chosen one's passes).
    pub judged: Vec<Judged>,
    /// Candidate tags whose facts must be read before the gates can decide.
    pub reads: Vec<(Repository, String)>,
    /// When the youngest candidate held back by `tagwatch.dev/min-age` comes of age.
    pub wake_at: Option<Timestamp>,
}

impl WorkloadPlan {
    pub fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.outcomes.iter().filter_map(|(_, o)| match o {
            Outcome::Update(p) => Some(p),
            _ => None,
        })
    }
}

pub fn plan(workload: &Workload, inputs: &Inputs) -> WorkloadPlan {
    let mut state = State::default();
    let mut outcomes = Vec::new();
    let mut manual = Vec::new();
    let mut gated = GateReport::default();
    for container in &workload.containers {
        let seen = manual_change(container);
        let mut rejected = container.rejected.clone();
        if let Some(tag) = seen.as_ref().and_then(|m| m.rejected.clone()) {
            rejected.insert(tag);
        }
        // A person's change replaces the remembered intent (an alias they set is read from the tag).
        let track = if seen.is_some() {
            None
        } else {
            container.track
        };
        state
            .applied
            .insert(container.name.clone(), container.image_text.clone());
        if !rejected.is_empty() {
            state
                .rejected
                .insert(container.name.clone(), rejected.clone());
        }
        if let Some(track) = track {
            state.track.insert(container.name.clone(), track);
        }
        if let Some(seen) = seen {
            manual.push(seen);
        }
        let (outcome, decided) = decide(container, track, &rejected, inputs, &mut gated);
        // The resolver's track (set or cleared) replaces the stored one; a skip keeps it.
        match decided {
            Some(Some(alias)) => {
                state.track.insert(container.name.clone(), alias);
            }
            Some(None) => {
                state.track.remove(&container.name);
            }
            None => {}
        }
        outcomes.push((container.name.clone(), outcome));
    }
    WorkloadPlan {
        id: workload.id.clone(),
        outcomes,
        manual,
        state,
        judged: gated.judged,
        reads: gated.reads,
        wake_at: gated.wake_at,
    }
}

/// What a gated choice judged, must read first, and waits for.
#[derive(Debug, Default)]
pub struct GateReport {
    pub judged: Vec<Judged>,
    pub reads: Vec<(Repository, String)>,
    pub wake_at: Option<Timestamp>,
}

/// Final changes and state once the pinned digests are known (`digests` by container).
pub fn finish(
    plan: &WorkloadPlan,
    digests: &BTreeMap<String, String>,
) -> (Vec<ImageChange>, State) {
    let mut state = plan.state.clone();
    let mut changes = Vec::new();
    for pending in plan.pending() {
        let digest = match &pending.digest {
            Digest::None => None,
            Digest::Known(d) => Some(d.as_str()),
            Digest::ToRead => match digests.get(&pending.container) {
                Some(d) => Some(d.as_str()),
                // Pinning was asked for and the digest could not be read: no partial write.
                None => continue,
            },
        };
        let to = pending.image(digest);
        state.applied.insert(pending.container.clone(), to.clone());
        changes.push(ImageChange {
            container: pending.container.clone(),
            image_path: pending.image_path.clone(),
            from: pending.from.clone(),
            to,
            from_tag: pending.from_tag.clone(),
            to_tag: pending.to_tag.clone(),
        });
    }
    (changes, state)
}

fn manual_change(container: &WatchedContainer) -> Option<ManualChange> {
    let applied = container.applied.as_ref()?;
    if applied == &container.image_text {
        return None;
    }
    let applied_tag = ImageRef::parse(applied).ok().and_then(|i| i.tag);
    let rejected = match (&applied_tag, &container.image.tag) {
        (Some(before), Some(now)) => match (Tag::parse(before), Tag::parse(now)) {
            (Tag::Version(b), Tag::Version(n))
                if n.version().cmp_precedence(b.version()).is_lt() =>
            {
                Some(before.clone())
            }
            _ => None,
        },
        _ => None,
    };
    Some(ManualChange {
        container: container.name.clone(),
        applied: applied.clone(),
        current: container.image_text.clone(),
        rejected,
    })
}

fn request<'a>(
    container: &'a WatchedContainer,
    current: &'a str,
    track: Option<Alias>,
    rejected: &'a BTreeSet<String>,
) -> Request<'a> {
    Request::new(current, &container.policy)
        .channels(&container.channels)
        .filter(container.filter.as_ref())
        .track(track)
        .rejected(rejected)
}

/// The newest candidate every gate passes: candidates are taken newest first, and one a gate
/// holds back is set aside and the choice made again without it. A candidate whose facts are
/// not read yet stops the walk at the end (nothing is written while a newer one may pass).
///
/// Returns the decision and, when it is an update, the digest the gates judged.
pub fn choose_gated<S: AsRef<str>>(
    candidate: Candidate<'_>,
    request: Request<'_>,
    tags: &[S],
    gates: &GateInputs,
    report: &mut GateReport,
) -> (Decision, Option<String>) {
    let Candidate {
        container,
        repository,
        spec,
    } = candidate;
    let env = GateEnv {
        nodes: gates.nodes.as_deref(),
        now: gates.now,
    };
    let mut held = BTreeSet::new();
    let mut reads = Vec::new();
    loop {
        let decision = resolve(&request.gated(&held), tags);
        let Decision::Update { tag, .. } = &decision else {
            report.reads.extend(reads);
            return (decision, None);
        };
        if held.len() >= MAX_GATED {
            report.reads.extend(reads);
            return (decision_without_update(decision), None);
        }
        let lookup = gates.lookup(repository, tag);
        let first_seen = gates.first_seen.get(repository, tag);
        let verdict = gates::judge(spec, &lookup, first_seen, env);
        match verdict {
            GateVerdict::Pass if reads.is_empty() => {
                for gate in spec.gates() {
                    report.judged.push(Judged {
                        container: container.to_string(),
                        tag: tag.clone(),
                        gate,
                        result: GateResult::Passed,
                        reason: String::new(),
                    });
                }
                let digest = match lookup {
                    Lookup::Known(facts) => Some(facts.digest.clone()),
                    _ => None,
                };
                return (decision, digest);
            }
            GateVerdict::Pass => {
                // Older than a candidate not read yet: wait for that one first.
                report.reads.extend(reads);
                return (decision_without_update(decision), None);
            }
            GateVerdict::Unknown => {
                reads.push((repository.clone(), tag.clone()));
                if reads.len() >= MAX_READS {
                    report.reads.extend(reads);
                    return (decision_without_update(decision), None);
                }
            }
            held_back => {
                if let GateVerdict::Waiting { until, .. } = &held_back {
                    report.wake_at = Some(report.wake_at.map_or(*until, |w| w.min(*until)));
                }
                if let Some((gate, result, reason)) = held_back.held() {
                    report.judged.push(Judged {
                        container: container.to_string(),
                        tag: tag.clone(),
                        gate,
                        result,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        held.insert(tag.clone());
    }
}

/// Whose candidates [`choose_gated`] judges.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub container: &'a str,
    pub repository: &'a Repository,
    pub spec: &'a crate::model::gates::GateSpec,
}

/// The decision with its update taken back: nothing is written this time.
fn decision_without_update(decision: Decision) -> Decision {
    match decision {
        Decision::Update {
            track, explanation, ..
        } => Decision::UpToDate { track, explanation },
        other => other,
    }
}

fn decide(
    container: &WatchedContainer,
    track: Option<Alias>,
    rejected: &BTreeSet<String>,
    inputs: &Inputs,
    report: &mut GateReport,
) -> (Outcome, Option<Option<Alias>>) {
    let repository = &container.image.repository;
    let Some(tags) = inputs.tags.get(repository) else {
        return (Outcome::NotListed, None);
    };
    let current = container.image.tag.as_deref().unwrap_or("");
    let request = request(container, current, track, rejected);
    if container.policy == Policy::Digest && !container.gates.verify.is_empty() {
        return (Outcome::Skip(SkipReason::VerifyWithDigestPolicy), None);
    }
    let (decision, gated_digest) =
        if container.gates.is_empty() || container.policy == Policy::Digest {
            (resolve(&request, tags), None)
        } else {
            let reads_before = report.reads.len();
            let candidate = Candidate {
                container: &container.name,
                repository,
                spec: &container.gates,
            };
            let decided = choose_gated(candidate, request, tags, &inputs.gates, report);
            if report.reads.len() > reads_before {
                // Facts are being read: decided again once they are in.
                return (Outcome::NotListed, None);
            }
            decided
        };
    let decided = match &decision {
        Decision::Skip { .. } => None,
        decision => Some(decision.track()),
    };
    let pending = |to_tag: String, digest: Digest, reason| Pending {
        container: container.name.clone(),
        repository: repository.clone(),
        image_path: container.image_path.clone(),
        from: container.image_text.clone(),
        from_tag: current.to_string(),
        to_tag,
        digest,
        reason,
        name: container.image.name.clone(),
    };
    let outcome = match decision {
        Decision::Skip { reason } => Outcome::Skip(reason),
        Decision::Update { tag, .. } => {
            // The gates judged this digest: pinning writes exactly it (an index's own digest).
            // A verified signature covers one digest: exactly that one is written.
            let pin = if container.gates.verify.is_empty() {
                container.pin
            } else {
                Pin::Digest
            };
            let digest = match (pin, gated_digest) {
                (Pin::Digest, Some(digest)) => Digest::Known(digest),
                (Pin::Digest, None) => Digest::ToRead,
                (Pin::Tag, _) => Digest::None,
            };
            let reason = if matches!(Tag::parse(current), Tag::Alias(_)) || track.is_some() {
                "alias"
            } else {
                "policy"
            };
            Outcome::Update(pending(tag, digest, reason))
        }
        Decision::UpToDate { .. } if container.policy == Policy::Digest => {
            let key = (repository.clone(), current.to_string());
            let Some(registry_digest) = inputs.digests.get(&key) else {
                return (Outcome::NotListed, decided);
            };
            match resolve_digest(container.image.digest.as_deref(), registry_digest) {
                DigestDecision::Unchanged => Outcome::UpToDate,
                DigestDecision::Changed { digest } => Outcome::Update(pending(
                    current.to_string(),
                    Digest::Known(digest),
                    "digest",
                )),
                DigestDecision::Skip { reason } => Outcome::Skip(reason),
            }
        }
        Decision::UpToDate { .. } => Outcome::UpToDate,
    };
    (outcome, decided)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::{Reason, Why};
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn workload(policy: &str, image: &str) -> Workload {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop",
                "annotations": {"tagwatch.dev/policy": policy}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}}
            }
        }))
        .unwrap();
        crate::discover::workload(&deployment).unwrap()
    }

    /// Every reason an update carries is one of tagwatch's own [`Why`]s: the metric label stays in
    /// its fixed set when the call sites count `metrics.update(Applied, pending)`.
    #[test]
    fn update_reasons_are_whys() {
        let old = format!("sha256:{}", "a".repeat(64));
        let new = format!("sha256:{}", "b".repeat(64));
        let pinned = format!("reg.io/app:stable@{old}");
        #[rustfmt::skip]
        let rows: &[(&str, &str, &str, &[&str], Why)] = &[
            // name, policy, image, tags in the registry, reason
            ("a newer version", "minor", "reg.io/app:1.0.0", &["1.0.0", "1.1.0"], Why::Policy),
            ("inside an alias", "minor", "reg.io/app:1", &["1.0.0", "1.2.0"], Why::Alias),
            ("a moved digest", "digest", &pinned, &["stable"], Why::Digest),
        ];
        for (name, policy, image, tags, expected) in rows {
            let workload = workload(policy, image);
            let repository = workload.containers[0].image.repository.clone();
            let inputs = Inputs {
                tags: HashMap::from([(
                    repository.clone(),
                    Arc::new(tags.iter().map(|t| t.to_string()).collect()),
                )]),
                digests: HashMap::from([((repository, "stable".to_string()), new.clone())]),
                ..Inputs::default()
            };
            let plan = plan(&workload, &inputs);
            let pending: Vec<&Pending> = plan.pending().collect();
            assert_eq!(pending.len(), 1, "{name}: {:?}", plan.outcomes);
            assert_eq!(
                Why::from_label(pending[0].reason),
                Some(*expected),
                "{name}"
            );
            assert_eq!(pending[0].label(), expected.label(), "{name}");
        }
    }

    fn gated_workload(annotations: serde_json::Value) -> Workload {
        let mut meta = json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/pin": "digest"});
        for (k, v) in annotations.as_object().unwrap() {
            meta[k] = v.clone();
        }
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": meta},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "reg.io/app:1.0.0"}]}}
            }
        }))
        .unwrap();
        crate::discover::workload(&deployment).unwrap()
    }

    fn facts(tag: &str, platforms: &[&str]) -> gates::Facts {
        gates::Facts {
            digest: format!("sha256:{}", tag.replace('.', "").repeat(20)),
            platforms: platforms
                .iter()
                .map(|p| Platform::parse(p).unwrap())
                .collect(),
            index: platforms.len() > 1,
            created: None,
            signatures: Default::default(),
        }
    }

    /// The walk over candidates, newest first: (facts per tag, `None` = not read; `Err` = the
    /// read failed) → what is written, what must be read first, what was held back.
    #[test]
    fn gated_walk_picks_the_newest_passing_candidate() {
        let both = ["linux/amd64", "linux/arm64"];
        let amd = ["linux/amd64"];
        type Row<'a> = (
            &'a str,
            Vec<(&'a str, Option<Result<&'a [&'a str], &'a str>>)>,
            Option<&'a str>,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            // name, tags with facts, written tag, tags to read, tags held back
            ("newest passes", vec![("1.2.0", Some(Ok(&both))), ("1.1.0", Some(Ok(&both)))], Some("1.2.0"), vec![], vec![]),
            ("newer misses a platform", vec![("1.2.0", Some(Ok(&amd))), ("1.1.0", Some(Ok(&both)))], Some("1.1.0"), vec![], vec!["1.2.0"]),
            ("all miss", vec![("1.2.0", Some(Ok(&amd))), ("1.1.0", Some(Ok(&amd)))], None, vec![], vec!["1.2.0", "1.1.0"]),
            ("unread newest waits", vec![("1.2.0", None), ("1.1.0", Some(Ok(&both)))], None, vec!["1.2.0"], vec![]),
            ("unread after a blocked one", vec![("1.2.0", Some(Ok(&amd))), ("1.1.0", None)], None, vec!["1.1.0"], vec!["1.2.0"]),
            ("a failed read blocks", vec![("1.2.0", Some(Err("HTTP 500"))), ("1.1.0", Some(Ok(&both)))], Some("1.1.0"), vec![], vec!["1.2.0"]),
            ("nothing newer", vec![("1.0.0", None)], None, vec![], vec![]),
        ];
        for (name, listed, written, reads, held) in rows {
            let workload =
                gated_workload(json!({"tagwatch.dev/platforms": "linux/amd64,linux/arm64"}));
            let repository = workload.containers[0].image.repository.clone();
            let mut by_tag = FactsByTag::new();
            for (tag, known) in &listed {
                match known {
                    Some(Ok(platforms)) => {
                        by_tag.insert(
                            (repository.clone(), tag.to_string()),
                            Ok(facts(tag, platforms)),
                        );
                    }
                    Some(Err(why)) => {
                        by_tag.insert((repository.clone(), tag.to_string()), Err(why.to_string()));
                    }
                    None => {}
                }
            }
            let mut tags: Vec<String> = listed.iter().map(|(t, _)| t.to_string()).collect();
            tags.push("1.0.0".into());
            let inputs = Inputs {
                tags: HashMap::from([(repository.clone(), Arc::new(tags))]),
                gates: GateInputs {
                    facts: Arc::new(by_tag),
                    ..GateInputs::default()
                },
                ..Inputs::default()
            };
            let plan = plan(&workload, &inputs);
            let pending: Vec<&Pending> = plan.pending().collect();
            assert_eq!(
                pending.first().map(|p| p.to_tag.as_str()),
                written,
                "{name}"
            );
            if let Some(pending) = pending.first() {
                // The digest the gates judged is the one pinned.
                let expected = facts(&pending.to_tag, &both).digest;
                assert_eq!(pending.digest, Digest::Known(expected), "{name}");
            }
            let read: Vec<&str> = plan.reads.iter().map(|(_, t)| t.as_str()).collect();
            assert_eq!(read, reads, "{name}");
            let held_back: Vec<&str> = plan
                .judged
                .iter()
                .filter(|j| j.result != GateResult::Passed)
                .map(|j| j.tag.as_str())
                .collect();
            assert_eq!(held_back, held, "{name}");
        }
    }

    #[test]
    fn min_age_wakes_at_the_youngest_waiting_candidate() {
        let workload = gated_workload(json!({"tagwatch.dev/min-age": "1h"}));
        let repository = workload.containers[0].image.repository.clone();
        let now: Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
        let mut first_seen = FirstSeen::default();
        first_seen.listed(
            &repository,
            &["1.0.0".into(), "1.1.0".into()],
            "2026-01-10T10:00:00Z".parse().unwrap(),
        );
        first_seen.listed(
            &repository,
            &["1.0.0".into(), "1.1.0".into(), "1.2.0".into()],
            "2026-01-10T11:30:00Z".parse().unwrap(),
        );
        let by_tag: FactsByTag = ["1.1.0", "1.2.0"]
            .iter()
            .map(|t| {
                (
                    (repository.clone(), t.to_string()),
                    Ok(facts(t, &["linux/amd64"])),
                )
            })
            .collect();
        let inputs = Inputs {
            tags: HashMap::from([(
                repository.clone(),
                Arc::new(vec!["1.0.0".into(), "1.1.0".into(), "1.2.0".into()]),
            )]),
            gates: GateInputs {
                facts: Arc::new(by_tag),
                first_seen: Arc::new(first_seen),
                nodes: None,
                now,
            },
            ..Inputs::default()
        };
        let plan = plan(&workload, &inputs);
        let pending: Vec<&Pending> = plan.pending().collect();
        assert_eq!(pending[0].to_tag, "1.1.0");
        assert_eq!(plan.wake_at, Some("2026-01-10T12:30:00Z".parse().unwrap()));
    }
}
