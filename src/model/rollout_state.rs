//! The rollout state tagwatch keeps in a workload's annotations: a canary in progress
//! (`tagwatch.dev/canary-state`) and a rollout being watched (`tagwatch.dev/rollout`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The canary runs and is judged.
    Running,
    /// Passed: the primary runs the new version; the canary goes once that rollout completes.
    Promoting,
}

/// `tagwatch.dev/canary-state` on the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryState {
    pub phase: Phase,
    /// Container → the image under test.
    pub images: BTreeMap<String, String>,
    /// Container → the primary's image when the canary started.
    pub from: BTreeMap<String, String>,
    /// RFC 3339.
    pub started: String,
    /// When every canary pod was first seen Ready (the bake runs from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<String>,
    #[serde(default)]
    pub failed_checks: u32,
    /// A StatefulSet's canary runs on its own rolling-update partition: what the partition was
    /// before, to put back whatever the verdict (absent: a Deployment's canary, which runs in
    /// `<name>-canary` and leaves the primary's spec alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionState>,
}

/// `partition` in a StatefulSet's canary state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionState {
    /// `spec.updateStrategy.rollingUpdate.partition` before the canary; `None`: it was not set.
    /// Written out as `null` rather than left out, so the state says it was absent.
    pub original: Option<i32>,
}

impl CanaryState {
    /// The rollout this canary is, for a workload whose watched rollout was not recorded.
    pub fn as_rollout(&self) -> RolloutState {
        RolloutState {
            from: self.from.clone(),
            to: self.images.clone(),
            started: self.started.clone(),
            generation: None,
        }
    }

    pub fn decode(text: &str) -> Result<CanaryState, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable canary state: {e}"))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `tagwatch.dev/rollout` on a Deployment: what tagwatch changed and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// Container → image before.
    pub from: BTreeMap<String, String>,
    /// Container → image written.
    pub to: BTreeMap<String, String>,
    /// RFC 3339.
    pub started: String,
    /// The Deployment's generation after tagwatch's patch: a later spec change (a person's, or
    /// another tool's) makes this rollout no longer tagwatch's to judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl RolloutState {
    pub fn decode(text: &str) -> Result<RolloutState, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable rollout state: {e}"))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state(partition: Option<PartitionState>) -> CanaryState {
        CanaryState {
            phase: Phase::Running,
            images: BTreeMap::from([("db".into(), "r/db:1.1.0".into())]),
            from: BTreeMap::from([("db".into(), "r/db:1.0.0".into())]),
            started: "2026-12-01T10:00:00Z".into(),
            ready_since: None,
            failed_checks: 0,
            partition,
        }
    }

    #[test]
    fn a_deployment_canary_state_reads_and_writes_as_before() {
        // Written by a release that knew no partition canary.
        let old = r#"{"phase":"running","images":{"db":"r/db:1.1.0"},"from":{"db":"r/db:1.0.0"},"started":"2026-12-01T10:00:00Z","failedChecks":0}"#;
        let decoded = CanaryState::decode(old).unwrap();
        assert_eq!(decoded, state(None));
        assert_eq!(decoded.encode(), old, "no new key for a Deployment");
    }

    #[test]
    fn the_original_partition_round_trips_absent_or_set() {
        let cases = [
            (None, r#""partition":{"original":null}"#),
            (Some(0), r#""partition":{"original":0}"#),
            (Some(4), r#""partition":{"original":4}"#),
        ];
        for (original, json) in cases {
            let written = state(Some(PartitionState { original })).encode();
            assert!(written.contains(json), "{written}");
            assert_eq!(
                CanaryState::decode(&written).unwrap().partition,
                Some(PartitionState { original })
            );
        }
    }
}
