//! The incident freeze (`tagwatch freeze`): one key of tagwatch's state ConfigMap, written by a
//! person's CLI and read by the service every few seconds.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::gates::{save, STATE_CONFIGMAP};
use super::tasks::Finished;
use crate::plan::holds::Freeze;

/// The state ConfigMap's key holding the incident freeze (JSON; absent: none).
pub const FREEZE_KEY: &str = "freeze.json";

/// Reads the incident freeze for the loop.
pub async fn read_freeze(client: Client, namespace: String) -> Finished {
    let result = load(&client, &namespace).await;
    if let Err(error) = &result {
        tracing::warn!(%error, "cannot read the incident freeze; the last known one stays");
    }
    Finished::Freeze(result)
}

/// The incident freeze in force, if any. A value that does not parse counts as a freeze: a
/// person meant to stop updates, and a typo must not let them through.
pub async fn load(client: &Client, namespace: &str) -> Result<Option<Freeze>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = api
        .get_opt(STATE_CONFIGMAP)
        .await
        .map_err(|e| format!("ConfigMap {namespace}/{STATE_CONFIGMAP}: {e}"))?;
    let Some(text) = map
        .and_then(|m| m.data)
        .and_then(|mut d| d.remove(FREEZE_KEY))
    else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_str(&text).unwrap_or_else(|e| {
        Freeze {
            from: None,
            to: None,
            reason: format!("unreadable freeze in {STATE_CONFIGMAP} ({e})"),
            namespaces: Vec::new(),
            by: None,
        }
    })))
}

/// Sets the incident freeze.
pub async fn set(client: &Client, namespace: &str, freeze: &Freeze) -> Result<(), String> {
    let text = serde_json::to_string(freeze).map_err(|e| e.to_string())?;
    save(client, namespace, FREEZE_KEY, &text)
        .await
        .map_err(|e| format!("ConfigMap {namespace}/{STATE_CONFIGMAP}: {e}"))
}

/// Lifts the incident freeze; true when there was one.
pub async fn clear(client: &Client, namespace: &str) -> Result<bool, String> {
    let had = load(client, namespace).await?.is_some();
    if had {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let patch = serde_json::json!({ "data": { FREEZE_KEY: null } });
        api.patch(
            STATE_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| format!("ConfigMap {namespace}/{STATE_CONFIGMAP}: {e}"))?;
    }
    Ok(had)
}
