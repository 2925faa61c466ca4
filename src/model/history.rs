//! The rollout history tagwatch keeps on each Deployment (`tagwatch.dev/history`): the last ten
//! image changes it made or saw, newest last, so `tagwatch history` needs nothing but the cluster.

use serde::{Deserialize, Serialize};

/// Entries kept; older ones drop off.
pub const LIMIT: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339.
    pub time: String,
    pub container: String,
    pub from: String,
    pub to: String,
    pub how: How,
    /// Why, for canary failures and rollbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Entry {
    pub fn new(time: &str, container: &str, from: &str, to: &str, how: How) -> Entry {
        Entry {
            time: time.to_string(),
            container: container.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            how,
            reason: None,
        }
    }

    pub fn because(mut self, reason: Option<String>) -> Entry {
        self.reason = reason;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// A policy or alias update applied directly.
    Update,
    /// Promoted after its canary passed.
    CanaryPass,
    /// Its canary failed; the primary was left as it was (`from` = `to`'s would-be predecessor).
    CanaryFail,
    /// Rolled back automatically: the rollout passed its progress deadline.
    Rollback,
    /// Rolled back by `tagwatch rollback`.
    ManualRollback,
    /// A change tagwatch did not make, seen afterwards.
    Manual,
    /// An update whose rollout was still in progress when a newer version replaced it.
    Superseded,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Update => "update",
            How::CanaryPass => "canary-pass",
            How::CanaryFail => "canary-fail",
            How::Rollback => "rollback",
            How::ManualRollback => "manual-rollback",
            How::Manual => "manual",
            How::Superseded => "superseded",
        }
    }
}

/// The history in the annotation; an unreadable one (edited by hand) starts afresh rather than
/// blocking updates.
pub fn decode(text: Option<&str>) -> Vec<Entry> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// `history` with `entries` appended, bounded to the last [`LIMIT`].
pub fn append(mut history: Vec<Entry>, entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
    history.extend(entries);
    let excess = history.len().saturating_sub(LIMIT);
    history.drain(..excess);
    history
}

pub fn encode(history: &[Entry]) -> String {
    serde_json::to_string(history).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            time: format!("2026-11-22T00:00:{i:02}Z"),
            container: "web".into(),
            from: format!("app:1.0.{i}"),
            to: format!("app:1.0.{}", i + 1),
            how: How::Update,
            reason: None,
        }
    }

    #[test]
    fn keeps_the_last_ten_newest_last() {
        let history = append(Vec::new(), (0..13).map(entry));
        assert_eq!(history.len(), LIMIT);
        assert_eq!(history[0], entry(3));
        assert_eq!(history[9], entry(12));
    }

    #[test]
    fn round_trips_and_tolerates_garbage() {
        let history = vec![entry(1)];
        assert_eq!(decode(Some(&encode(&history))), history);
        assert!(encode(&history).contains("\"how\":\"update\""));
        assert!(decode(Some("not json")).is_empty());
        assert!(decode(None).is_empty());
    }
}
