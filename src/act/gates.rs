//! The reads release gates need (a candidate's facts, the Nodes' platforms) and the one piece of
//! state they keep: when each tag was first seen, in a ConfigMap in tagwatch's namespace, so a
//! restart or a new leader does not make every release young again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::tasks::{Finished, ListingKey};
use super::Context;
use crate::model::gates::Platform;
use crate::model::image::Repository;
use crate::plan::gates::{Facts, FirstSeen};

/// The ConfigMap tagwatch keeps its state in (in its own namespace; RBAC names it).
pub const STATE_CONFIGMAP: &str = "tagwatch-state";
/// Its key holding first-seen times: `{"registry/repo": {"tag": "RFC 3339"}}`.
pub const FIRST_SEEN_KEY: &str = "first-seen.json";
/// The Event reason of a candidate held back by a gate.
pub const GATE_BLOCKED: &str = "GateBlocked";

/// A ConfigMap holds at most 1 MiB: past this the times are kept in memory only (and a warning
/// says so) rather than failing every save.
pub const MAX_STATE_BYTES: usize = 900 * 1024;

pub struct FactsRead {
    pub repo: Repository,
    pub tag: String,
    pub result: Result<Facts, String>,
}

/// Reads the facts of one candidate tag, as the login its listing was made with, and judges its
/// signatures under `policies` (the verification policies its repository's users ask for).
pub async fn read_facts(
    ctx: Arc<Context>,
    key: ListingKey,
    tag: String,
    policies: BTreeSet<String>,
) -> Finished {
    let credentials = key.login.credentials();
    let mut result = crate::registry::facts::read(&ctx.fanout, &key.repo, &tag, credentials).await;
    if let Ok(facts) = &mut result {
        facts.signatures = crate::act::verify::check(
            Some(&ctx.client),
            &ctx.verification,
            &ctx.fanout,
            &key.repo,
            &facts.digest,
            &policies,
            credentials,
        )
        .await;
    }
    if let Err(error) = &result {
        tracing::warn!(repository = %key.repo, %tag, %error, "cannot read what the release gates judge; the version stays blocked");
    }
    Finished::Facts(FactsRead {
        repo: key.repo,
        tag,
        result,
    })
}

/// The `os/architecture` of every Node (`tagwatch.dev/platforms: auto`).
pub async fn read_nodes(ctx: Arc<Context>) -> Finished {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let result = match nodes.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items.iter().filter_map(node_platform).collect()),
        Err(error) => {
            tracing::warn!(%error, "cannot list Nodes for tagwatch.dev/platforms: auto");
            Err(error.to_string())
        }
    };
    Finished::Nodes(result)
}

/// The kubelet's `kubernetes.io/os` and `kubernetes.io/arch` labels, else its node info.
fn node_platform(node: &Node) -> Option<Platform> {
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let os = label("kubernetes.io/os").or(info.map(|i| i.operating_system.as_str()))?;
    let arch = label("kubernetes.io/arch").or(info.map(|i| i.architecture.as_str()))?;
    (!os.is_empty() && !arch.is_empty()).then(|| Platform::new(os, arch))
}

/// Merges `key: value` into the state ConfigMap, creating it when missing.
pub async fn save(
    client: &Client,
    namespace: &str,
    key: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({ "data": { key: value } });
    match api
        .patch(
            STATE_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let map = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(STATE_CONFIGMAP.into()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/name".to_string(),
                        "tagwatch".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
                ..Default::default()
            };
            api.create(&PostParams::default(), &map).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// The first-seen times saved before (empty when there are none yet). A ConfigMap that cannot
/// be read is an error: starting from nothing would make old releases look new, which only
/// delays them, but silently.
pub async fn load_first_seen(client: &Client, namespace: &str) -> Result<FirstSeen, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(map) = api.get_opt(STATE_CONFIGMAP).await? else {
        return Ok(FirstSeen::default());
    };
    let text = map
        .data
        .as_ref()
        .and_then(|d| d.get(FIRST_SEEN_KEY))
        .map(String::as_str)
        .unwrap_or("{}");
    Ok(decode_first_seen(text))
}

/// `{"registry/repo": {"tag": "RFC 3339"}}`; entries that do not parse are dropped (their tags
/// count as first seen at the next listing: later, never earlier).
pub fn decode_first_seen(text: &str) -> FirstSeen {
    let raw: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(text).unwrap_or_default();
    let mut seen = FirstSeen::default();
    for (repo, tags) in raw {
        let Ok(repo) = repo.parse::<Repository>() else {
            continue;
        };
        let tags: BTreeMap<String, Timestamp> = tags
            .into_iter()
            .filter_map(|(tag, at)| Some((tag, at.parse().ok()?)))
            .collect();
        seen.tags.insert(repo, tags);
    }
    seen
}

pub fn encode_first_seen(seen: &FirstSeen) -> String {
    let raw: BTreeMap<String, BTreeMap<&str, String>> = seen
        .tags
        .iter()
        .map(|(repo, tags)| {
            (
                repo.to_string(),
                tags.iter()
                    .map(|(tag, at)| (tag.as_str(), at.to_string()))
                    .collect(),
            )
        })
        .collect();
    serde_json::to_string(&raw).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_seen_round_trips() {
        let repo: Repository = "127.0.0.1:5000/team/app".parse().unwrap();
        let mut seen = FirstSeen::default();
        seen.listed(
            &repo,
            &["1.0.0".into(), "v2".into()],
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let text = encode_first_seen(&seen);
        assert_eq!(decode_first_seen(&text), seen);
        assert_eq!(decode_first_seen("garbage"), FirstSeen::default());
        let partly = r#"{"reg.io/app": {"1": "2026-01-01T00:00:00Z", "2": "yesterday"}}"#;
        assert_eq!(
            decode_first_seen(partly)
                .tags
                .values()
                .next()
                .unwrap()
                .len(),
            1
        );
    }
}
