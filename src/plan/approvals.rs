//! Whether an update waits for people to approve it (`tagwatch.dev/approvals: N`). Pure: the
//! workload's approval annotations, the versions the plan would write and the clock come in; a
//! [`Verdict`] goes out. The loop writes what the verdict asks (a proposal, its expiry) and the
//! CLI writes approvals and denials; neither decides anything itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::annotations as keys;

/// At most this many approvers: more is a typo, not a policy.
pub const MAX_APPROVALS: u8 = 10;
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
pub const MIN_DEADLINE: Duration = Duration::from_secs(60);
pub const MAX_DEADLINE: Duration = Duration::from_secs(90 * 24 * 3600);

/// An update waiting for approval, as recorded in `tagwatch.dev/proposal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// container → the version proposed.
    pub versions: BTreeMap<String, String>,
    pub since: Timestamp,
    /// The deadline passed unapproved: it stays as a record (and is not proposed again) until
    /// a newer version supersedes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl Proposal {
    /// What an approver names with `--version`: the version when every container gets the
    /// same one (the common case), else `container=version` pairs.
    pub fn label(&self) -> String {
        let distinct: BTreeSet<&String> = self.versions.values().collect();
        if distinct.len() == 1 {
            return distinct.into_iter().next().cloned().unwrap_or_default();
        }
        self.versions
            .iter()
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One approval in `tagwatch.dev/approvals-given`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Given {
    pub user: String,
    /// The proposal's [`Proposal::label`] approved: approvals never carry over to another version.
    pub version: String,
    pub at: Timestamp,
}

/// A workload's approval settings and state, from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    pub needed: u8,
    pub deadline: Duration,
    pub proposal: Option<Proposal>,
    pub given: Vec<Given>,
}

impl Approvals {
    /// `None` when the workload asks for no approval. An unreadable setting is an error naming
    /// its annotation (the workload is then not updated: going ahead would skip the review its
    /// owner asked for); unreadable state written by tagwatch or the CLI counts as absent.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<Approvals>, (&'static str, String)> {
        let Some(text) = annotations.get(keys::APPROVALS) else {
            return Ok(None);
        };
        let needed = match text.trim().parse::<u64>() {
            Ok(0) | Err(_) => {
                return Err((
                    keys::APPROVALS,
                    format!("{text:?} is not a number of approvals (1 or more)"),
                ))
            }
            Ok(n) => u8::try_from(n.min(u64::from(MAX_APPROVALS))).unwrap_or(MAX_APPROVALS),
        };
        let deadline = match annotations.get(keys::APPROVAL_DEADLINE) {
            None => DEFAULT_DEADLINE,
            Some(text) => match humantime::parse_duration(text.trim()) {
                Ok(d) => d.clamp(MIN_DEADLINE, MAX_DEADLINE),
                Err(e) => {
                    return Err((
                        keys::APPROVAL_DEADLINE,
                        format!("{text:?} is not a duration: {e}"),
                    ))
                }
            },
        };
        let proposal = annotations
            .get(keys::PROPOSAL)
            .and_then(|t| serde_json::from_str(t).ok());
        let given = annotations
            .get(keys::APPROVALS_GIVEN)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        Ok(Some(Approvals {
            needed,
            deadline,
            proposal,
            given,
        }))
    }

    /// Distinct people who approved `label`.
    pub fn approvers(&self, label: &str) -> BTreeSet<&str> {
        self.given
            .iter()
            .filter(|g| g.version == label)
            .map(|g| g.user.as_str())
            .collect()
    }
}

/// What the loop does about an update that needs approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approved by enough people: it goes ahead (gates, holds, canary as usual).
    Released { proposal: Proposal },
    /// No proposal for these versions yet (or a newer version supersedes one): record this.
    Propose(Proposal),
    /// Proposed, waiting for approvals until `expires`.
    Waiting {
        proposal: Proposal,
        given: usize,
        needed: u8,
        expires: Timestamp,
    },
    /// The deadline just passed: record the proposal as expired.
    Expire(Proposal),
    /// Expired before: waits for a newer version.
    Expired(Proposal),
}

/// Judges the update that would write `pending` (container → version) at `now`.
pub fn judge(approvals: &Approvals, pending: &BTreeMap<String, String>, now: Timestamp) -> Verdict {
    let current = approvals
        .proposal
        .as_ref()
        .filter(|p| &p.versions == pending);
    let Some(proposal) = current else {
        return Verdict::Propose(Proposal {
            versions: pending.clone(),
            since: now,
            expired: false,
        });
    };
    let proposal = proposal.clone();
    if proposal.expired {
        return Verdict::Expired(proposal);
    }
    let given = approvals.approvers(&proposal.label()).len();
    if given >= usize::from(approvals.needed) {
        return Verdict::Released { proposal };
    }
    let expires = jiff::SignedDuration::try_from(approvals.deadline)
        .ok()
        .and_then(|d| proposal.since.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX);
    if now >= expires {
        return Verdict::Expire(Proposal {
            expired: true,
            ..proposal
        });
    }
    Verdict::Waiting {
        proposal,
        given,
        needed: approvals.needed,
        expires,
    }
}

/// The command that approves `proposal` on the workload `target` (`ns/[kind/]name`).
pub fn approve_command(target: &str, proposal: &Proposal) -> String {
    format!("tagwatch approve {target} --version {}", proposal.label())
}

/// What `tagwatch approve` records for `user`: the new `approvals-given` list, or `None` when
/// this person already approved this version (one person counts once). An error says why there
/// is nothing to approve.
pub fn approve(
    approvals: &Approvals,
    version: Option<&str>,
    user: &str,
    at: Timestamp,
) -> Result<Option<Vec<Given>>, String> {
    let proposal = open_proposal(approvals, version)?;
    let label = proposal.label();
    if approvals.approvers(&label).contains(user) {
        return Ok(None);
    }
    released(approvals, &label)?;
    let mut given = approvals.given.clone();
    // Approvals of versions no longer proposed are history: kept short, never counted.
    given.retain(|g| g.version == label);
    given.push(Given {
        user: user.to_string(),
        version: label,
        at,
    });
    Ok(Some(given))
}

/// The proposal a person approves or denies: the open one, checked against `version` when named
/// (so nobody approves a version they did not review because a newer one superseded it).
pub fn open_proposal<'a>(
    approvals: &'a Approvals,
    version: Option<&str>,
) -> Result<&'a Proposal, String> {
    let Some(proposal) = &approvals.proposal else {
        return Err("no update waits for approval".into());
    };
    let label = proposal.label();
    if let Some(version) = version {
        let names_it = version == label || proposal.versions.values().all(|v| v == version);
        if !names_it {
            return Err(format!(
                "{version} is not proposed: the proposal is {label}"
            ));
        }
    }
    if proposal.expired {
        return Err(format!(
            "the proposal of {label} expired; a newer version proposes again"
        ));
    }
    Ok(proposal)
}

/// The proposal a person may still deny: open (see [`open_proposal`]) and not released yet.
/// Once enough people approved, the update goes ahead: rejecting its version then would mark
/// what is being rolled out as never to apply, which is `tagwatch rollback`'s job, not a review's.
pub fn undecided<'a>(
    approvals: &'a Approvals,
    version: Option<&str>,
) -> Result<&'a Proposal, String> {
    let proposal = open_proposal(approvals, version)?;
    released(approvals, &proposal.label())?;
    Ok(proposal)
}

/// An error when `label` already has the approvals it needs: another one changes nothing.
fn released(approvals: &Approvals, label: &str) -> Result<(), String> {
    let given = approvals.approvers(label).len();
    if given >= usize::from(approvals.needed) {
        return Err(format!(
            "{label} already has its {given} of {} approval(s) and goes ahead",
            approvals.needed
        ));
    }
    Ok(())
}

/// Records `proposal`, guarded by the resourceVersion it was decided on (a proposal decided on
/// a stale read must not overwrite a newer one, or approvals given meanwhile).
pub fn proposal_patch(proposal: &Proposal, resource_version: Option<&str>) -> json_patch::Patch {
    let value = serde_json::to_string(proposal).unwrap_or_default();
    let mut ops = Vec::new();
    if let Some(rv) = resource_version {
        ops.push(
            serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        );
    }
    ops.push(serde_json::json!({
        "op": "add",
        "path": format!("/metadata/annotations/{}", super::patch::escape(keys::PROPOSAL)),
        "value": value,
    }));
    serde_json::from_value(serde_json::Value::Array(ops))
        .unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

/// Records `given`. Guarded by the list as read when there is one (another approver's write in
/// between fails the `test`: the CLI reads again and adds to theirs, so both count), else by
/// the resourceVersion (JSON Patch cannot test that a key is absent).
pub fn given_patch(
    existing: Option<&str>,
    given: &[Given],
    resource_version: Option<&str>,
) -> json_patch::Patch {
    let path = format!(
        "/metadata/annotations/{}",
        super::patch::escape(keys::APPROVALS_GIVEN)
    );
    let mut ops = Vec::new();
    match (existing, resource_version) {
        (Some(existing), _) => {
            ops.push(serde_json::json!({"op": "test", "path": path, "value": existing}))
        }
        (None, Some(rv)) => ops.push(
            serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        ),
        (None, None) => {}
    }
    let value = serde_json::to_string(given).unwrap_or_default();
    ops.push(serde_json::json!({"op": "add", "path": path, "value": value}));
    serde_json::from_value(serde_json::Value::Array(ops))
        .unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect()
    }

    fn given(user: &str, version: &str) -> Given {
        Given {
            user: user.into(),
            version: version.into(),
            at: ts("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn annotations_parse_and_clamp() {
        let cases: [(&[(&str, &str)], Result<Option<(u8, u64)>, &str>); 7] = [
            (&[], Ok(None)),
            (&[(keys::APPROVALS, "2")], Ok(Some((2, 7 * 24 * 3600)))),
            (&[(keys::APPROVALS, "50")], Ok(Some((10, 7 * 24 * 3600)))),
            (&[(keys::APPROVALS, "0")], Err(keys::APPROVALS)),
            (&[(keys::APPROVALS, "two")], Err(keys::APPROVALS)),
            (
                &[(keys::APPROVALS, "1"), (keys::APPROVAL_DEADLINE, "2s")],
                Ok(Some((1, 60))),
            ),
            (
                &[(keys::APPROVALS, "1"), (keys::APPROVAL_DEADLINE, "soon")],
                Err(keys::APPROVAL_DEADLINE),
            ),
        ];
        for (annotations, want) in cases {
            let map: BTreeMap<String, String> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = Approvals::from_annotations(&map)
                .map(|a| a.map(|a| (a.needed, a.deadline.as_secs())))
                .map_err(|(field, _)| field);
            assert_eq!(got, want, "{annotations:?}");
        }
    }

    #[test]
    fn verdicts() {
        let since = ts("2026-01-01T00:00:00Z");
        let proposal = Proposal {
            versions: versions(&[("app", "1.1.0")]),
            since,
            expired: false,
        };
        let base = Approvals {
            needed: 2,
            deadline: Duration::from_secs(3600),
            proposal: Some(proposal.clone()),
            given: Vec::new(),
        };
        let pending = versions(&[("app", "1.1.0")]);
        let soon = ts("2026-01-01T00:10:00Z");
        let late = ts("2026-01-01T01:00:00Z");
        let with = |given: Vec<Given>| Approvals {
            given,
            ..base.clone()
        };
        let cases: Vec<(
            &str,
            Approvals,
            BTreeMap<String, String>,
            Timestamp,
            Verdict,
        )> = vec![
            (
                "no proposal yet",
                Approvals {
                    proposal: None,
                    ..base.clone()
                },
                pending.clone(),
                soon,
                Verdict::Propose(Proposal {
                    since: soon,
                    ..proposal.clone()
                }),
            ),
            (
                "a newer version supersedes, its approvals do not carry over",
                with(vec![given("a", "1.1.0"), given("b", "1.1.0")]),
                versions(&[("app", "1.2.0")]),
                soon,
                Verdict::Propose(Proposal {
                    versions: versions(&[("app", "1.2.0")]),
                    since: soon,
                    expired: false,
                }),
            ),
            (
                "one of two",
                with(vec![given("a", "1.1.0")]),
                pending.clone(),
                soon,
                Verdict::Waiting {
                    proposal: proposal.clone(),
                    given: 1,
                    needed: 2,
                    expires: late,
                },
            ),
            (
                "the same person twice counts once",
                with(vec![given("a", "1.1.0"), given("a", "1.1.0")]),
                pending.clone(),
                soon,
                Verdict::Waiting {
                    proposal: proposal.clone(),
                    given: 1,
                    needed: 2,
                    expires: late,
                },
            ),
            (
                "an approval of another version does not count",
                with(vec![given("a", "1.1.0"), given("b", "1.0.9")]),
                pending.clone(),
                soon,
                Verdict::Waiting {
                    proposal: proposal.clone(),
                    given: 1,
                    needed: 2,
                    expires: late,
                },
            ),
            (
                "two people release it",
                with(vec![given("a", "1.1.0"), given("b", "1.1.0")]),
                pending.clone(),
                late,
                Verdict::Released {
                    proposal: proposal.clone(),
                },
            ),
            (
                "the deadline passes",
                with(vec![given("a", "1.1.0")]),
                pending.clone(),
                late,
                Verdict::Expire(Proposal {
                    expired: true,
                    ..proposal.clone()
                }),
            ),
            (
                "expired stays expired",
                Approvals {
                    proposal: Some(Proposal {
                        expired: true,
                        ..proposal.clone()
                    }),
                    ..with(vec![given("a", "1.1.0"), given("b", "1.1.0")])
                },
                pending.clone(),
                late,
                Verdict::Expired(Proposal {
                    expired: true,
                    ..proposal.clone()
                }),
            ),
        ];
        for (name, approvals, pending, now, want) in cases {
            assert_eq!(judge(&approvals, &pending, now), want, "{name}");
        }
    }

    #[test]
    fn approving_counts_a_person_once_and_only_the_open_version() {
        let now = ts("2026-01-02T00:00:00Z");
        let approvals = Approvals {
            needed: 2,
            deadline: DEFAULT_DEADLINE,
            proposal: Some(Proposal {
                versions: versions(&[("app", "1.2.0")]),
                since: ts("2026-01-01T00:00:00Z"),
                expired: false,
            }),
            given: vec![given("old", "1.1.0"), given("a", "1.2.0")],
        };
        let users = |r: Result<Option<Vec<Given>>, String>| {
            r.map(|g| g.map(|g| g.iter().map(|g| g.user.clone()).collect::<Vec<_>>()))
        };
        let cases: [(Option<&str>, &str, Result<Option<Vec<String>>, ()>); 5] = [
            (None, "b", Ok(Some(vec!["a".into(), "b".into()]))),
            (Some("1.2.0"), "b", Ok(Some(vec!["a".into(), "b".into()]))),
            (Some("1.2.0"), "a", Ok(None)),
            (Some("1.1.0"), "b", Err(())),
            // One version for every container is named plainly.
            (Some("app=1.2.0"), "b", Err(())),
        ];
        for (version, user, want) in cases {
            let got = users(approve(&approvals, version, user, now)).map_err(|_| ());
            assert_eq!(got, want, "{version:?} {user}");
        }
        let expired = Approvals {
            proposal: approvals
                .proposal
                .clone()
                .map(|p| Proposal { expired: true, ..p }),
            ..approvals.clone()
        };
        assert!(approve(&expired, None, "b", now).is_err());
        // Released (enough approvals): nothing more to approve or deny; the ones who approved
        // still hear that they did.
        let released = Approvals {
            given: vec![given("a", "1.2.0"), given("c", "1.2.0")],
            ..approvals.clone()
        };
        assert!(approve(&released, None, "b", now).is_err());
        assert_eq!(approve(&released, None, "a", now), Ok(None));
        assert!(undecided(&released, None).is_err());
        assert!(undecided(&approvals, Some("1.2.0")).is_ok());
        assert!(undecided(&approvals, Some("1.1.0")).is_err());
        let none = Approvals {
            proposal: None,
            ..approvals
        };
        assert!(approve(&none, None, "b", now).is_err());
    }

    #[test]
    fn patches_are_guarded() {
        let list = vec![given("a", "1.2.0")];
        let cases = [
            (
                Some("[]"),
                Some("7"),
                "/metadata/annotations/tagwatch.dev~1approvals-given",
            ),
            (None, Some("7"), "/metadata/resourceVersion"),
        ];
        for (existing, rv, tested) in cases {
            let patch = serde_json::to_value(given_patch(existing, &list, rv)).unwrap();
            assert_eq!(patch[0]["op"], "test");
            assert_eq!(patch[0]["path"], tested);
            assert_eq!(patch[1]["op"], "add");
        }
        let proposal = Proposal {
            versions: versions(&[("app", "1.2.0")]),
            since: ts("2026-01-01T00:00:00Z"),
            expired: false,
        };
        let patch = serde_json::to_value(proposal_patch(&proposal, Some("7"))).unwrap();
        assert_eq!(patch[0]["value"], "7");
        let written: Proposal = serde_json::from_str(patch[1]["value"].as_str().unwrap()).unwrap();
        assert_eq!(written, proposal);
    }

    #[test]
    fn labels_name_one_version_or_each_container() {
        let one = Proposal {
            versions: versions(&[("app", "1.1.0"), ("side", "1.1.0")]),
            since: ts("2026-01-01T00:00:00Z"),
            expired: false,
        };
        assert_eq!(one.label(), "1.1.0");
        assert_eq!(
            approve_command("shop/web", &one),
            "tagwatch approve shop/web --version 1.1.0"
        );
        let two = Proposal {
            versions: versions(&[("app", "1.1.0"), ("side", "2.0.0")]),
            ..one
        };
        assert_eq!(two.label(), "app=1.1.0,side=2.0.0");
    }
}
