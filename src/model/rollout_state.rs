//! The rollout state tagwatch keeps in a Deployment's annotations: a canary in progress
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
}

impl CanaryState {
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
