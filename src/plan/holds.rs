//! Whether an update may start now: freezes (the operator's scheduled ones and an incident
//! freeze set with `tagwatch freeze`), the workload's update window, and the limit on rollouts
//! running at once. Pure: the clock, the freezes and the counts come in, a [`Hold`] (or none)
//! goes out. Only starting an update waits: rollbacks and a person's own changes never do.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::window::Window;

/// A freeze: no update starts between `from` and `to` (either open-ended) in `namespaces`
/// (empty: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Freeze {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Who set it (`tagwatch freeze` records the person), for `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Freeze {
    pub fn covers(&self, namespace: &str, at: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= at)
            && self.to.is_none_or(|to| at < to)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
    }
}

/// `maxConcurrentRollouts` and its per-namespace form; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub total: Option<usize>,
    pub per_namespace: Option<usize>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.total.is_some() || self.per_namespace.is_some()
    }
}

/// Why an update waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    Freeze {
        reason: String,
        until: Option<Timestamp>,
    },
    Window {
        window: String,
        opens: Option<Timestamp>,
    },
    Limit {
        scope: String,
        limit: usize,
        /// How many wait before this one.
        ahead: usize,
    },
    /// Proposed, waiting for people to approve (`tagwatch.dev/approvals`).
    Approval {
        /// What `tagwatch approve --version` names.
        version: String,
        given: usize,
        needed: u8,
        /// When the proposal expires; `None`: it has.
        expires: Option<Timestamp>,
    },
}

impl Hold {
    /// The label of `tagwatch_updates_waiting{reason}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Hold::Freeze { .. } => "freeze",
            Hold::Window { .. } => "window",
            Hold::Limit { .. } => "limit",
            Hold::Approval { .. } => "approval",
        }
    }

    /// The reason as an Event says it: stable while the hold lasts (no changing counts), so it
    /// is reported once.
    pub fn note(&self) -> String {
        match self {
            Hold::Limit { scope, limit, .. } => format!(
                "waits for a rollout slot: {limit} rollouts at most {scope} (maxConcurrentRollouts)"
            ),
            other => other.to_string(),
        }
    }

    /// When the hold ends by the clock alone (a limit ends when rollouts finish).
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            Hold::Freeze { until, .. } => *until,
            Hold::Window { opens, .. } => *opens,
            Hold::Limit { .. } => None,
            Hold::Approval { expires, .. } => *expires,
        }
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Freeze { reason, until } => {
                write!(f, "updates are frozen")?;
                if !reason.is_empty() {
                    write!(f, " ({reason})")?;
                }
                match until {
                    Some(until) => write!(f, " until {until}"),
                    None => write!(f, " until `tagwatch unfreeze`"),
                }
            }
            Hold::Window { window, opens } => {
                write!(f, "outside the update window {window}")?;
                match opens {
                    Some(opens) => write!(f, "; it opens at {opens}"),
                    None => Ok(()),
                }
            }
            Hold::Approval {
                version,
                given,
                needed,
                expires,
            } => match expires {
                Some(expires) => write!(
                    f,
                    "proposed {version}: {given} of {needed} approvals given; expires at {expires}"
                ),
                None => write!(
                    f,
                    "the proposal of {version} expired unapproved; a newer version proposes again"
                ),
            },
            Hold::Limit {
                scope,
                limit,
                ahead,
            } => write!(
                f,
                "{limit} rollouts already run {scope} (maxConcurrentRollouts); {ahead} waiting ahead of this one"
            ),
        }
    }
}

/// What [`hold`] judges an update on besides its workload.
#[derive(Debug, Clone, Copy)]
pub struct HoldEnv<'a> {
    pub now: Timestamp,
    pub freezes: &'a [Freeze],
    pub limits: Limits,
    /// Rollouts running (patched and not complete, or in canary), in all and in the
    /// workload's namespace, not counting this workload.
    pub running: usize,
    pub running_here: usize,
    /// Updates waiting for a slot ahead of this one (fair order: first come, first served).
    pub ahead: usize,
    pub ahead_here: usize,
}

/// Whether an update of a workload in `namespace` with `window` waits, and why. Freezes first
/// (they name the incident), then the window, then the limit.
pub fn hold(namespace: &str, window: Option<&Window>, env: HoldEnv<'_>) -> Option<Hold> {
    if let Some(freeze) = env.freezes.iter().find(|f| f.covers(namespace, env.now)) {
        return Some(Hold::Freeze {
            reason: freeze.reason.clone(),
            until: freeze.to,
        });
    }
    if let Some(window) = window {
        if !window.is_open(env.now) {
            return Some(Hold::Window {
                window: window.to_string(),
                opens: window.next_opening(env.now),
            });
        }
    }
    if let Some(limit) = env.limits.total {
        if env.running + env.ahead >= limit {
            return Some(Hold::Limit {
                scope: "in the cluster".into(),
                limit,
                ahead: env.ahead,
            });
        }
    }
    if let Some(limit) = env.limits.per_namespace {
        if env.running_here + env.ahead_here >= limit {
            return Some(Hold::Limit {
                scope: format!("in namespace {namespace}"),
                limit,
                ahead: env.ahead_here,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A case: name, namespace, window, what else is going on, the hold expected.
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<&'a Window>,
        HoldEnv<'a>,
        Option<&'a str>,
    );

    #[test]
    fn holds_table() {
        let now = ts("2026-01-05T10:00:00Z"); // Monday
        let office = Window::parse("Mon-Fri 09:00-16:00", None).unwrap();
        let night = Window::parse("22:00-06:00", None).unwrap();
        let freeze = Freeze {
            from: Some(ts("2026-01-05T00:00:00Z")),
            to: Some(ts("2026-01-06T00:00:00Z")),
            reason: "release week".into(),
            namespaces: vec!["shop".into()],
            by: None,
        };
        let incident = Freeze {
            from: None,
            to: None,
            reason: "incident 42".into(),
            namespaces: Vec::new(),
            by: Some("alice".into()),
        };
        let env = |freezes: &'static [Freeze],
                   total,
                   per_ns,
                   running,
                   running_here,
                   ahead,
                   ahead_here| HoldEnv {
            now,
            freezes,
            limits: Limits {
                total,
                per_namespace: per_ns,
            },
            running,
            running_here,
            ahead,
            ahead_here,
        };
        let freezes: &'static [Freeze] = Box::leak(vec![freeze].into_boxed_slice());
        let incidents: &'static [Freeze] = Box::leak(vec![incident].into_boxed_slice());
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("nothing", "shop", None, env(&[], None, None, 9, 9, 9, 9), None),
            ("inside the window", "shop", Some(&office), env(&[], None, None, 0, 0, 0, 0), None),
            ("outside the window", "shop", Some(&night), env(&[], None, None, 0, 0, 0, 0), Some("window")),
            ("scheduled freeze here", "shop", None, env(freezes, None, None, 0, 0, 0, 0), Some("freeze")),
            ("scheduled freeze elsewhere", "web", None, env(freezes, None, None, 0, 0, 0, 0), None),
            ("incident freeze, open window", "web", Some(&office), env(incidents, None, None, 0, 0, 0, 0), Some("freeze")),
            ("a slot free", "web", None, env(&[], Some(3), None, 2, 0, 0, 0), None),
            ("no slot", "web", None, env(&[], Some(3), None, 3, 0, 0, 0), Some("limit")),
            ("a slot, but others wait first", "web", None, env(&[], Some(3), None, 2, 0, 1, 0), Some("limit")),
            ("namespace full", "web", None, env(&[], Some(10), Some(1), 1, 1, 0, 0), Some("limit")),
            ("another namespace's rollouts", "web", None, env(&[], None, Some(1), 5, 0, 3, 0), None),
        ];
        for (name, namespace, window, env, expected) in rows {
            let got = hold(namespace, window, env);
            assert_eq!(got.as_ref().map(Hold::kind), expected, "{name}: {got:?}");
        }
        let held = hold("shop", Some(&night), env(&[], None, None, 0, 0, 0, 0)).unwrap();
        assert_eq!(held.until(), Some(ts("2026-01-05T22:00:00Z")));
        assert!(
            held.to_string().contains("opens at 2026-01-05T22:00:00Z"),
            "{held}"
        );
        let frozen = hold("web", None, env(incidents, None, None, 0, 0, 0, 0)).unwrap();
        assert_eq!(
            frozen.to_string(),
            "updates are frozen (incident 42) until `tagwatch unfreeze`"
        );
    }
}
