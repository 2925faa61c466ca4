//! A stand-in for the DaemonSet controller (22): one pod per eligible Node the server holds
//! (none: `desiredNumberScheduled: 0`), a rolling update that replaces old pods node by node
//! while no more than `maxUnavailable` are unavailable, and the template generation annotation.

use serde_json::{json, Value};

use super::controller::template_hash;
use super::kubelet;
use super::resources::{DAEMONSETS, NODES, PODS};
use super::store::random_suffix;
use super::workloads::{self, owned_pods, set_nonzero};
use super::Cluster;

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// Taints the real controller tolerates on every daemon pod, whatever its template says.
const TOLERATED: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/unschedulable",
];

/// The annotation counts template changes (the real `spec.templateGeneration`): 1 on create, +1
/// whenever an update changes the template; nothing a client writes there sticks.
pub(crate) fn stamp_template_generation(current: Option<&Value>, object: &mut Value) {
    let generation = match current {
        None => 1,
        Some(current) => {
            let before = current["metadata"]["annotations"][TEMPLATE_GENERATION]
                .as_str()
                .and_then(|g| g.parse::<u64>().ok())
                .unwrap_or(1);
            let changed = current["spec"]["template"] != object["spec"]["template"];
            before + u64::from(changed)
        }
    };
    object["metadata"]["annotations"][TEMPLATE_GENERATION] = json!(generation.to_string());
}

/// Whether a daemon pod of `template` may run on `node`: its nodeSelector matches and every
/// NoSchedule/NoExecute taint is tolerated.
pub(crate) fn eligible(template: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selected = template["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &labels[k] == v);
    let tolerations = template["spec"]["tolerations"].as_array();
    let tolerated = |taint: &Value| {
        let key = taint["key"].as_str().unwrap_or_default();
        taint["effect"] == "PreferNoSchedule"
            || TOLERATED.contains(&key)
            || tolerations
                .into_iter()
                .flatten()
                .any(|t| tolerates(t, taint))
    };
    selected
        && node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .all(tolerated)
}

fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect_ok = toleration["effect"]
        .as_str()
        .is_none_or(|e| e.is_empty() || taint["effect"] == e);
    let key = toleration["key"].as_str().unwrap_or_default();
    let exists = toleration["operator"] == "Exists";
    if key.is_empty() {
        return exists && effect_ok;
    }
    let value_ok = exists
        || toleration["value"].as_str().unwrap_or_default()
            == taint["value"].as_str().unwrap_or_default();
    taint["key"] == key && value_ok && effect_ok
}

/// `maxUnavailable` as a pod count: an integer, or a percentage of the desired pods rounded up;
/// at least one, or a rollout could never start.
pub(crate) fn max_unavailable(spec: &Value, desired: usize) -> usize {
    let value = &spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"];
    let count = match value.as_str().and_then(|s| s.strip_suffix('%')) {
        Some(percent) => percent
            .parse::<usize>()
            .map_or(1, |p| (p * desired).div_ceil(100)),
        None => value.as_u64().unwrap_or(1) as usize,
    };
    count.max(1)
}

pub(crate) fn reconcile_all(cluster: &mut Cluster) {
    let names: Vec<(String, String)> = cluster
        .store
        .list(&DAEMONSETS, None)
        .map(workloads::namespace_and_name)
        .collect();
    for (namespace, name) in names {
        reconcile(cluster, &namespace, &name);
    }
}

struct Daemon {
    name: String,
    node: String,
    updated: bool,
    ready: bool,
}

pub(crate) fn reconcile(cluster: &mut Cluster, namespace: &str, name: &str) {
    let Some(set) = cluster.store.get(&DAEMONSETS, namespace, name).cloned() else {
        return;
    };
    let spec = &set["spec"];
    let template = &spec["template"];
    let hash = template_hash(template);
    let nodes: Vec<String> = cluster
        .store
        .list(&NODES, None)
        .filter(|n| eligible(template, n))
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let uid = set["metadata"]["uid"].clone();

    // Misscheduled pods (node gone or no longer eligible) and duplicates go at once.
    let mut seen = Vec::new();
    let existing: Vec<Daemon> = daemons(cluster, namespace, &uid, &hash).collect();
    for daemon in existing {
        if nodes.contains(&daemon.node) && !seen.contains(&daemon.node) {
            seen.push(daemon.node);
        } else {
            cluster.store.remove(&PODS, namespace, &daemon.name);
        }
    }
    for node in nodes.iter().filter(|n| !seen.contains(n)) {
        let pod = pod_for(cluster, &set, &hash, node);
        cluster.store.insert(&PODS, pod);
    }
    if spec["updateStrategy"]["type"] != "OnDelete" {
        let budget = max_unavailable(spec, nodes.len());
        let old: Vec<Daemon> = daemons(cluster, namespace, &uid, &hash)
            .filter(|d| !d.updated)
            .collect();
        for old in old {
            let unavailable = daemons(cluster, namespace, &uid, &hash)
                .filter(|d| !d.ready)
                .count();
            // Replacing a Ready pod makes one more unavailable until its successor is Ready.
            if unavailable + usize::from(old.ready) > budget {
                break;
            }
            cluster.store.remove(&PODS, namespace, &old.name);
            let pod = pod_for(cluster, &set, &hash, &old.node);
            cluster.store.insert(&PODS, pod);
        }
    }

    let pods: Vec<Daemon> = daemons(cluster, namespace, &uid, &hash).collect();
    let ready = pods.iter().filter(|d| d.ready).count();
    let mut status = json!({
        "desiredNumberScheduled": nodes.len(),
        "currentNumberScheduled": pods.len(),
        "numberMisscheduled": 0,
        "numberReady": ready,
        "observedGeneration": set["metadata"]["generation"]
    });
    set_nonzero(
        &mut status,
        "updatedNumberScheduled",
        pods.iter().filter(|d| d.updated).count(),
    );
    // minReadySeconds is not modelled: a Ready pod is available at once.
    set_nonzero(&mut status, "numberAvailable", ready);
    set_nonzero(
        &mut status,
        "numberUnavailable",
        nodes.len().saturating_sub(ready),
    );
    let mut settled = set.clone();
    settled["status"] = status;
    if settled != set {
        cluster.store.update(&DAEMONSETS, settled);
    }
}

fn daemons<'a>(
    cluster: &'a Cluster,
    namespace: &'a str,
    uid: &'a Value,
    hash: &'a str,
) -> impl Iterator<Item = Daemon> + 'a {
    owned_pods(cluster, namespace, uid).map(move |pod| Daemon {
        name: pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        node: pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        updated: pod["metadata"]["labels"]["controller-revision-hash"] == hash,
        ready: kubelet::is_ready(pod),
    })
}

fn pod_for(cluster: &Cluster, set: &Value, hash: &str, node: &str) -> Value {
    let name = set["metadata"]["name"].as_str().unwrap_or_default();
    let template = &set["spec"]["template"];
    let generation = set["metadata"]["annotations"][TEMPLATE_GENERATION]
        .as_str()
        .unwrap_or("1")
        .to_string();
    let labels = [
        ("controller-revision-hash", hash.to_string()),
        ("pod-template-generation", generation),
    ];
    let pod_name = format!("{name}-{}", random_suffix(5));
    let health = cluster.controller.template_health(template);
    workloads::pod_from_template(set, template, &pod_name, &labels, node, health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_generation_counts_template_changes_only() {
        let mut created = json!({"spec": {"template": {"a": 1}}});
        stamp_template_generation(None, &mut created);
        assert_eq!(created["metadata"]["annotations"][TEMPLATE_GENERATION], "1");

        let mut strategy_only = created.clone();
        strategy_only["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        strategy_only["metadata"]["annotations"][TEMPLATE_GENERATION] = json!("7");
        stamp_template_generation(Some(&created), &mut strategy_only);
        assert_eq!(
            strategy_only["metadata"]["annotations"][TEMPLATE_GENERATION],
            "1"
        );

        let mut new_template = created.clone();
        new_template["spec"]["template"] = json!({"a": 2});
        stamp_template_generation(Some(&created), &mut new_template);
        assert_eq!(
            new_template["metadata"]["annotations"][TEMPLATE_GENERATION],
            "2"
        );
    }

    #[test]
    fn nodes_are_chosen_by_selector_and_taints() {
        let node = json!({
            "metadata": {"labels": {"pool": "edge"}},
            "spec": {"taints": [
                {"key": "dedicated", "value": "agents", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
            ]}
        });
        let plain = json!({"spec": {}});
        assert!(
            !eligible(&plain, &node),
            "the dedicated taint is not tolerated"
        );
        let tolerant = json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}
        ]}});
        assert!(eligible(&tolerant, &node));
        let everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert!(eligible(&everything, &node));
        let elsewhere = json!({"spec": {"nodeSelector": {"pool": "core"}, "tolerations": [{"operator": "Exists"}]}});
        assert!(!eligible(&elsewhere, &node));
        assert!(eligible(&plain, &json!({"metadata": {"name": "n"}})));
    }

    #[test]
    fn max_unavailable_scales_percentages_up() {
        let spec = |v: Value| json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": v}}});
        assert_eq!(max_unavailable(&spec(json!(1)), 10), 1);
        assert_eq!(max_unavailable(&spec(json!(3)), 10), 3);
        assert_eq!(max_unavailable(&spec(json!("25%")), 10), 3);
        assert_eq!(max_unavailable(&spec(json!("0%")), 10), 1);
        assert_eq!(max_unavailable(&json!({}), 0), 1);
    }
}
