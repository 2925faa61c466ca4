//! Given a workload and the complete tag listings (and digests) read this round: what to write.
//!
//! Manual changes win: when a container's image is no longer what tagwatch applied, a person (or
//! another tool) changed it. An alias or a newer version becomes the new intent; a lower version is
//! a rollback, and the version rolled back from is rejected for good (newer ones still apply).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::digest::{resolve_digest, DigestDecision};
use super::patch::{ImageChange, State};
use super::resolve::{resolve, Decision, Request};
use super::skip::SkipReason;
use crate::model::alias::Alias;
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
        let (outcome, decided) = decide(container, track, &rejected, inputs);
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
    }
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

fn decide(
    container: &WatchedContainer,
    track: Option<Alias>,
    rejected: &BTreeSet<String>,
    inputs: &Inputs,
) -> (Outcome, Option<Option<Alias>>) {
    let repository = &container.image.repository;
    let Some(tags) = inputs.tags.get(repository) else {
        return (Outcome::NotListed, None);
    };
    let current = container.image.tag.as_deref().unwrap_or("");
    let decision = resolve(&request(container, current, track, rejected), tags);
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
            let digest = match container.pin {
                Pin::Digest => Digest::ToRead,
                Pin::Tag => Digest::None,
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
}
