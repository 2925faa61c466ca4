//! Judging one candidate version against a workload's release gates. Pure: the facts about the
//! image (read once per manifest digest by the edges and cached, since a digest never changes),
//! the time tagwatch first saw the tag, and the clock come in; a [`GateVerdict`] goes out.
//!
//! Gates fail closed: a candidate whose facts could not be read is blocked (and read again
//! later), never let through.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::model::gates::{GateSpec, Platform, Platforms};
use crate::model::image::Repository;

/// One gate, as named in Events and in `tagwatch_gate_results_total{gate}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gate {
    Signature,
    Platforms,
    MinAge,
}

impl Gate {
    pub const ALL: [Gate; 3] = [Gate::Signature, Gate::Platforms, Gate::MinAge];

    pub fn label(self) -> &'static str {
        match self {
            Gate::Signature => "signature",
            Gate::Platforms => "platforms",
            Gate::MinAge => "min-age",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The `result` of one gate's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GateResult {
    Passed,
    Blocked,
    /// Too young for `tagwatch.dev/min-age` yet.
    Waiting,
    /// The gate could not decide (registry error): blocked, retried later.
    Error,
}

impl GateResult {
    pub fn label(self) -> &'static str {
        match self {
            GateResult::Passed => "passed",
            GateResult::Blocked => "blocked",
            GateResult::Waiting => "waiting",
            GateResult::Error => "error",
        }
    }
}

/// What one manifest digest is, read from the registry once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The digest of the manifest the tag names (an index's own digest, never a child's).
    pub digest: String,
    /// The platforms an index lists, or the one platform of a single image (from its config).
    pub platforms: BTreeSet<Platform>,
    pub index: bool,
    /// The image config's `created` (for an index: its `org.opencontainers.image.created`
    /// annotation, if any). Untrusted: it can only make a release younger, never older.
    pub created: Option<Timestamp>,
    /// Each verification policy asked for when the facts were read, judged on `digest`.
    pub signatures: BTreeMap<String, SignatureCheck>,
}

/// One verification policy's judgement of a digest's cosign signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Who signed it.
    Verified(String),
    /// No signature passes the policy.
    Unverified(String),
    /// The signatures or the policy's keys could not be read: blocked, read again later.
    Undecided(String),
}

/// What is known about a candidate tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Never read: the edges must read it before the candidate can be judged.
    Unknown,
    /// Reading failed (registry error, unreadable manifest): blocked until read again.
    Failed(&'a str),
    Known(&'a Facts),
}

/// The outcome of the gates for one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    Pass,
    Blocked {
        gate: Gate,
        reason: String,
    },
    /// The facts could not be read: blocked (fail closed) and read again later.
    Undecided {
        gate: Gate,
        reason: String,
    },
    /// Too young: eligible at `until`.
    Waiting {
        until: Timestamp,
        reason: String,
    },
    /// Facts needed first.
    Unknown,
}

impl GateVerdict {
    /// The gate that held the candidate back, its result and why; `None` for a pass or while
    /// nothing was judged.
    pub fn held(&self) -> Option<(Gate, GateResult, &str)> {
        match self {
            GateVerdict::Pass | GateVerdict::Unknown => None,
            GateVerdict::Blocked { gate, reason } => Some((*gate, GateResult::Blocked, reason)),
            GateVerdict::Undecided { gate, reason } => Some((*gate, GateResult::Error, reason)),
            GateVerdict::Waiting { reason, .. } => {
                Some((Gate::MinAge, GateResult::Waiting, reason))
            }
        }
    }
}

/// The required platforms once `auto` is replaced by the Nodes' platforms.
pub fn required_platforms(
    platforms: &Platforms,
    nodes: Option<&BTreeSet<Platform>>,
) -> Result<BTreeSet<Platform>, String> {
    match platforms {
        Platforms::Listed(listed) => Ok(listed.clone()),
        Platforms::Auto => match nodes {
            Some(nodes) if !nodes.is_empty() => Ok(nodes.clone()),
            Some(_) => Err("platforms `auto`: the cluster's Nodes report no platform".into()),
            None => Err("platforms `auto`: the cluster's Nodes could not be read".into()),
        },
    }
}

/// What the gates need besides the candidate's facts.
#[derive(Debug, Clone, Copy)]
pub struct GateEnv<'a> {
    /// The Nodes' `os/architecture`s (`None`: not read, or could not be).
    pub nodes: Option<&'a BTreeSet<Platform>>,
    pub now: Timestamp,
}

/// Judges one candidate: platforms first (a missing platform never becomes acceptable by
/// waiting), then age, counted from the later of `created` and `first_seen`.
pub fn judge(
    spec: &GateSpec,
    lookup: &Lookup<'_>,
    first_seen: Option<Timestamp>,
    env: GateEnv<'_>,
) -> GateVerdict {
    if spec.is_empty() {
        return GateVerdict::Pass;
    }
    let facts = match lookup {
        Lookup::Unknown => return GateVerdict::Unknown,
        Lookup::Failed(why) => {
            let gate = spec.gates().next().unwrap_or(Gate::Platforms);
            return GateVerdict::Undecided {
                gate,
                reason: format!("cannot be checked ({why}); blocked until it can"),
            };
        }
        Lookup::Known(facts) => *facts,
    };
    // Signatures first: nothing else about an untrusted release matters.
    for policy in &spec.verify {
        match facts.signatures.get(policy) {
            None => return GateVerdict::Unknown,
            Some(SignatureCheck::Verified(_)) => {}
            Some(SignatureCheck::Unverified(why)) => {
                return GateVerdict::Blocked {
                    gate: Gate::Signature,
                    reason: format!("policy {policy}: {why}"),
                }
            }
            Some(SignatureCheck::Undecided(why)) => {
                return GateVerdict::Undecided {
                    gate: Gate::Signature,
                    reason: format!(
                        "policy {policy}: cannot be checked ({why}); blocked until it can"
                    ),
                }
            }
        }
    }
    if let Some(platforms) = &spec.platforms {
        let required = match required_platforms(platforms, env.nodes) {
            Ok(required) => required,
            Err(reason) => {
                return GateVerdict::Blocked {
                    gate: Gate::Platforms,
                    reason,
                }
            }
        };
        let missing: Vec<String> = required
            .iter()
            .filter(|p| !facts.platforms.contains(p))
            .map(Platform::to_string)
            .collect();
        if !missing.is_empty() {
            let has: Vec<String> = facts.platforms.iter().map(Platform::to_string).collect();
            let what = if facts.index { "index" } else { "image" };
            return GateVerdict::Blocked {
                gate: Gate::Platforms,
                reason: format!(
                    "the {what} has no {} (it has {})",
                    missing.join(", "),
                    if has.is_empty() {
                        "none".to_string()
                    } else {
                        has.join(", ")
                    }
                ),
            };
        }
    }
    if let Some(min_age) = spec.min_age {
        // A release tagwatch has not seen listed yet is as young as it gets.
        let seen = first_seen.unwrap_or(env.now);
        let born = facts.created.map_or(seen, |created| created.max(seen));
        let until = add(born, min_age);
        if until > env.now {
            return GateVerdict::Waiting {
                until,
                reason: format!(
                    "younger than {} (eligible at {until})",
                    humantime::format_duration(min_age)
                ),
            };
        }
    }
    GateVerdict::Pass
}

fn add(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// When each tag of each watched repository was first seen in a complete listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstSeen {
    pub tags: BTreeMap<Repository, BTreeMap<String, Timestamp>>,
}

impl FirstSeen {
    pub fn get(&self, repo: &Repository, tag: &str) -> Option<Timestamp> {
        self.tags.get(repo)?.get(tag).copied()
    }

    /// Records a complete listing: new tags are stamped `now`, tags no longer listed are
    /// forgotten (a deleted tag pushed again is a new release). True when anything changed.
    pub fn listed(&mut self, repo: &Repository, listing: &[String], now: Timestamp) -> bool {
        let known = self.tags.entry(repo.clone()).or_default();
        let before = known.len();
        let listed: std::collections::HashSet<&str> = listing.iter().map(String::as_str).collect();
        known.retain(|tag, _| listed.contains(tag.as_str()));
        let mut changed = known.len() != before;
        for tag in listing {
            if !known.contains_key(tag) {
                known.insert(tag.clone(), now);
                changed = true;
            }
        }
        changed
    }

    /// Keeps only the watched repositories: the state stays bounded by what is watched.
    pub fn retain(&mut self, watched: &BTreeSet<&Repository>) -> bool {
        let before = self.tags.len();
        self.tags.retain(|repo, _| watched.contains(repo));
        self.tags.len() != before
    }
}

/// Facts by `(repository, tag)`, as the control loop caches them: a tag's digest is read once,
/// and the facts once per digest.
pub type FactsByTag = HashMap<(Repository, String), Result<Facts, String>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn facts(index: bool, platforms: &[&str], created: Option<&str>) -> Facts {
        Facts {
            digest: "sha256:x".into(),
            platforms: platforms
                .iter()
                .map(|p| Platform::parse(p).unwrap())
                .collect(),
            index,
            created: created.map(ts),
            signatures: Default::default(),
        }
    }

    #[test]
    fn gates_table() {
        let now = ts("2026-01-10T12:00:00Z");
        let nodes: BTreeSet<Platform> = [
            Platform::new("linux", "amd64"),
            Platform::new("linux", "arm64"),
        ]
        .into();
        let both = Some(Platforms::Listed(nodes.clone()));
        let spec = |platforms: Option<Platforms>, min_age: Option<u64>| GateSpec {
            verify: Default::default(),
            platforms,
            min_age: min_age.map(Duration::from_secs),
        };
        let multi = facts(true, &["linux/amd64", "linux/arm64"], None);
        let amd_index = facts(true, &["linux/amd64"], None);
        let single_amd = facts(false, &["linux/amd64"], Some("2026-01-01T00:00:00Z"));
        let forged = facts(false, &["linux/amd64"], Some("2001-01-01T00:00:00Z"));
        let future = facts(false, &["linux/amd64"], Some("2026-01-10T11:59:00Z"));
        let hour = 3600;
        #[rustfmt::skip]
        type Row<'a> = (&'a str, GateSpec, Lookup<'a>, Option<&'a str>, Option<&'a BTreeSet<Platform>>, &'a str);
        let rows: Vec<Row> = vec![
            // name, gates, facts, first seen, nodes, expected (pass / blocked:GATE / waiting / unknown)
            (
                "no gates, unknown facts",
                GateSpec::default(),
                Lookup::Unknown,
                None,
                None,
                "pass",
            ),
            (
                "unknown facts",
                spec(both.clone(), None),
                Lookup::Unknown,
                None,
                None,
                "unknown",
            ),
            (
                "registry error fails closed",
                spec(both.clone(), None),
                Lookup::Failed("500"),
                None,
                None,
                "undecided:platforms",
            ),
            (
                "registry error, min-age only",
                spec(None, Some(hour)),
                Lookup::Failed("500"),
                None,
                None,
                "undecided:min-age",
            ),
            (
                "index with both",
                spec(both.clone(), None),
                Lookup::Known(&multi),
                None,
                None,
                "pass",
            ),
            (
                "index missing arm64",
                spec(both.clone(), None),
                Lookup::Known(&amd_index),
                None,
                None,
                "blocked:platforms",
            ),
            (
                "single image for two",
                spec(both.clone(), None),
                Lookup::Known(&single_amd),
                None,
                None,
                "blocked:platforms",
            ),
            (
                "single image of the one",
                spec(Some(Platforms::parse("linux/amd64").unwrap()), None),
                Lookup::Known(&single_amd),
                None,
                None,
                "pass",
            ),
            (
                "single arm image for amd",
                spec(Some(Platforms::parse("linux/arm64").unwrap()), None),
                Lookup::Known(&single_amd),
                None,
                None,
                "blocked:platforms",
            ),
            (
                "auto from nodes",
                spec(Some(Platforms::Auto), None),
                Lookup::Known(&multi),
                None,
                Some(&nodes),
                "pass",
            ),
            (
                "auto, amd only",
                spec(Some(Platforms::Auto), None),
                Lookup::Known(&amd_index),
                None,
                Some(&nodes),
                "blocked:platforms",
            ),
            (
                "auto, nodes unread",
                spec(Some(Platforms::Auto), None),
                Lookup::Known(&multi),
                None,
                None,
                "blocked:platforms",
            ),
            (
                "old enough",
                spec(None, Some(hour)),
                Lookup::Known(&single_amd),
                Some("2026-01-10T10:00:00Z"),
                None,
                "pass",
            ),
            (
                "seen too recently",
                spec(None, Some(hour)),
                Lookup::Known(&single_amd),
                Some("2026-01-10T11:30:00Z"),
                None,
                "waiting",
            ),
            (
                "forged old created",
                spec(None, Some(hour)),
                Lookup::Known(&forged),
                Some("2026-01-10T11:30:00Z"),
                None,
                "waiting",
            ),
            (
                "created after first seen",
                spec(None, Some(hour)),
                Lookup::Known(&future),
                Some("2026-01-09T00:00:00Z"),
                None,
                "waiting",
            ),
            (
                "never seen yet",
                spec(None, Some(hour)),
                Lookup::Known(&forged),
                None,
                None,
                "waiting",
            ),
            (
                "exactly of age",
                spec(None, Some(hour)),
                Lookup::Known(&single_amd),
                Some("2026-01-10T11:00:00Z"),
                None,
                "pass",
            ),
            (
                "platform before age",
                spec(both.clone(), Some(hour)),
                Lookup::Known(&amd_index),
                Some("2026-01-10T11:30:00Z"),
                None,
                "blocked:platforms",
            ),
        ];
        for (name, spec, lookup, seen, nodes, expected) in rows {
            let verdict = judge(&spec, &lookup, seen.map(ts), GateEnv { nodes, now });
            let got = match &verdict {
                GateVerdict::Pass => "pass".to_string(),
                GateVerdict::Blocked { gate, .. } => format!("blocked:{gate}"),
                GateVerdict::Undecided { gate, .. } => format!("undecided:{gate}"),
                GateVerdict::Waiting { .. } => "waiting".to_string(),
                GateVerdict::Unknown => "unknown".to_string(),
            };
            assert_eq!(got, expected, "{name}: {verdict:?}");
        }
    }

    #[test]
    fn waiting_names_the_moment() {
        let now = ts("2026-01-10T12:00:00Z");
        let spec = GateSpec {
            verify: Default::default(),
            platforms: None,
            min_age: Some(Duration::from_secs(7200)),
        };
        let facts = facts(false, &["linux/amd64"], Some("2026-01-10T11:00:00Z"));
        let verdict = judge(
            &spec,
            &Lookup::Known(&facts),
            Some(ts("2026-01-10T10:30:00Z")),
            GateEnv { nodes: None, now },
        );
        // created (11:00) is later than first seen (10:30): it counts.
        assert!(
            matches!(verdict, GateVerdict::Waiting { until, .. } if until == ts("2026-01-10T13:00:00Z"))
        );
    }

    #[test]
    fn first_seen_is_bounded_by_the_listing() {
        let repo = crate::model::image::ImageRef::parse("reg.io/app:1")
            .unwrap()
            .repository;
        let mut seen = FirstSeen::default();
        let t1 = ts("2026-01-01T00:00:00Z");
        let t2 = ts("2026-01-02T00:00:00Z");
        assert!(seen.listed(&repo, &["1".into(), "2".into()], t1));
        assert!(!seen.listed(&repo, &["2".into(), "1".into()], t2));
        assert_eq!(seen.get(&repo, "1"), Some(t1));
        assert!(seen.listed(&repo, &["2".into(), "3".into()], t2));
        assert_eq!(seen.get(&repo, "1"), None);
        assert_eq!(seen.get(&repo, "3"), Some(t2));
        assert!(seen.retain(&BTreeSet::new()));
        assert!(seen.tags.is_empty());
    }
}
