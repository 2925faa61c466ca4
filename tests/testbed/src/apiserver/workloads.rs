//! Which controller reacts to a write, the pieces every workload controller shares (owner
//! references, pods from a template), and garbage collection of what a deleted object owned.

use serde_json::{json, Value};

use super::controller::{self, ControllerMode, ImageHealth};
use super::resources::{Resource, DAEMONSETS, DEPLOYMENTS, NODES, PODS, STATEFULSETS};
use super::{daemonset, kubelet, statefulset, Cluster};

/// After a create or an update through the API. `desired_changed`: the part that bumps
/// `generation` changed (always true on create).
pub(crate) fn written(
    cluster: &mut Cluster,
    resource: &Resource,
    object: &Value,
    desired_changed: bool,
) {
    let (namespace, name) = namespace_and_name(object);
    if resource.same(&NODES) {
        // Labels and taints decide where daemons run, so any node write counts.
        if instant(cluster) {
            daemonset::reconcile_all(cluster);
        }
        return;
    }
    if !desired_changed {
        return;
    }
    if resource.same(&DEPLOYMENTS) {
        controller::deployment_changed(cluster, &namespace, &name);
    } else if resource.same(&STATEFULSETS) && instant(cluster) {
        statefulset::reconcile(cluster, &namespace, &name);
    } else if resource.same(&DAEMONSETS) && instant(cluster) {
        daemonset::reconcile(cluster, &namespace, &name);
    }
}

/// After a delete through the API. `orphan`: the delete asked `propagationPolicy: Orphan`, so
/// what the object owned stays, without the reference to it.
pub(crate) fn deleted(cluster: &mut Cluster, resource: &Resource, removed: &Value, orphan: bool) {
    let (namespace, name) = namespace_and_name(removed);
    if resource.same(&NODES) {
        if instant(cluster) {
            daemonset::reconcile_all(cluster);
        }
        return;
    }
    if resource.same(&PODS) {
        pod_changed(cluster, removed);
        return;
    }
    forget(cluster, resource, &namespace, &name);
    let uid = removed["metadata"]["uid"].as_str();
    if orphan {
        orphan_dependents(cluster, &namespace, uid);
    } else {
        collect_garbage(cluster, &namespace, uid);
    }
}

/// The controllers' own bookkeeping for a workload that is gone (its ReplicaSets' pods, its
/// revisions).
fn forget(cluster: &mut Cluster, resource: &Resource, namespace: &str, name: &str) {
    if resource.same(&DEPLOYMENTS) {
        controller::deployment_deleted(cluster, namespace, name);
    } else if resource.same(&STATEFULSETS) {
        cluster.statefulsets.forget(namespace, name);
    }
}

/// A pod changed outside its controller (a kubelet report, a delete): its owner reconciles, as
/// the real controllers do when their pods change.
pub(crate) fn pod_changed(cluster: &mut Cluster, pod: &Value) {
    if !instant(cluster) {
        return;
    }
    let (namespace, _) = namespace_and_name(pod);
    let owner = &pod["metadata"]["ownerReferences"][0];
    let name = owner["name"].as_str().unwrap_or_default().to_string();
    match owner["kind"].as_str() {
        Some("StatefulSet") => statefulset::reconcile(cluster, &namespace, &name),
        Some("DaemonSet") => daemonset::reconcile(cluster, &namespace, &name),
        _ => {}
    }
}

/// `set_controller(Instant)`: every workload catches up at once.
/// Acts on every workload; with `refresh_pods`, pods already running first take on their images'
/// current health (a test said they become Ready, or break).
pub(crate) fn reconcile_all(cluster: &mut Cluster, refresh_pods: bool) {
    if refresh_pods {
        refresh_pod_health(cluster);
    }
    controller::reconcile_all(cluster, false);
    statefulset::reconcile_all(cluster);
    daemonset::reconcile_all(cluster);
}

/// Every controller-owned pod reports what its images' health says, as a kubelet would.
fn refresh_pod_health(cluster: &mut Cluster) {
    let stale: Vec<Value> = cluster
        .store
        .list(&PODS, None)
        .filter(|pod| pod["metadata"]["ownerReferences"].is_array())
        .filter(|pod| {
            let health = cluster
                .controller
                .template_health(&json!({"spec": pod["spec"]}));
            !kubelet::behaves_as(pod, health)
        })
        .cloned()
        .collect();
    for mut pod in stale {
        let health = cluster
            .controller
            .template_health(&json!({"spec": pod["spec"]}));
        pod["status"] = health.pod_status(&pod["spec"]);
        cluster.store.update(&PODS, pod);
    }
}

fn instant(cluster: &Cluster) -> bool {
    cluster.controller.mode == ControllerMode::Instant
}

/// The garbage collector, after `owner_uid` was deleted: every object of any kind in the
/// namespace whose owner references name it goes too (recursively), unless another of its owners
/// still exists: then only the dangling reference is dropped, as the real collector does.
fn collect_garbage(cluster: &mut Cluster, namespace: &str, owner_uid: Option<&str>) {
    let Some(uid) = owner_uid.filter(|u| !u.is_empty()) else {
        return;
    };
    if cluster.gc_paused {
        return;
    }
    for (resource, name) in cluster.store.owned_by(namespace, uid) {
        let Some(object) = cluster.store.get(resource, namespace, &name).cloned() else {
            // Collected a moment ago, with another of its owners.
            continue;
        };
        let other_owner_lives = references_of(&object["metadata"])
            .filter(|r| r["uid"] != uid)
            .filter_map(|r| r["uid"].as_str())
            .any(|other| cluster.store.exists_uid(other));
        if other_owner_lives {
            drop_reference(cluster, resource, object, uid);
            continue;
        }
        if let Some(removed) = cluster.store.remove(resource, namespace, &name) {
            if !resource.same(&PODS) {
                forget(cluster, resource, namespace, &name);
                collect_garbage(cluster, namespace, removed["metadata"]["uid"].as_str());
            }
        }
    }
}

/// `propagationPolicy: Orphan`: the dependents stay, without their reference to `owner_uid`.
fn orphan_dependents(cluster: &mut Cluster, namespace: &str, owner_uid: Option<&str>) {
    let Some(uid) = owner_uid.filter(|u| !u.is_empty()) else {
        return;
    };
    for (resource, name) in cluster.store.owned_by(namespace, uid) {
        if let Some(object) = cluster.store.get(resource, namespace, &name).cloned() {
            drop_reference(cluster, resource, object, uid);
        }
    }
}

/// Writes `object` without its owner reference to `uid` (the field goes when it empties).
fn drop_reference(
    cluster: &mut Cluster,
    resource: &'static Resource,
    mut object: Value,
    uid: &str,
) {
    let meta = &mut object["metadata"];
    let kept: Vec<Value> = references_of(meta)
        .filter(|r| r["uid"] != uid)
        .cloned()
        .collect();
    match meta.as_object_mut() {
        Some(map) if kept.is_empty() => {
            map.remove("ownerReferences");
        }
        Some(map) => {
            map.insert("ownerReferences".into(), Value::Array(kept));
        }
        None => return,
    }
    cluster.store.update(resource, object);
}

/// The owner references in `meta`.
fn references_of(meta: &Value) -> impl Iterator<Item = &Value> {
    meta["ownerReferences"].as_array().into_iter().flatten()
}

pub(crate) fn namespace_and_name(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (text(&meta["namespace"]), text(&meta["name"]))
}

/// The controller reference a workload puts on what it creates.
pub(crate) fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true
    })
}

/// A pod of `owner` from `template`, scheduled on `node`, running as the kubelet reports pods of
/// `health`. `labels` are added to the template's.
pub(crate) fn pod_from_template(
    owner: &Value,
    template: &Value,
    name: &str,
    labels: &[(&str, String)],
    node: &str,
    health: ImageHealth,
) -> Value {
    let owner_name = owner["metadata"]["name"].as_str().unwrap_or_default();
    let mut pod_labels = template["metadata"]["labels"].clone();
    for (key, value) in labels {
        pod_labels[*key] = json!(value);
    }
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(node);
    let status = controller::pod_status(&spec, health);
    let mut pod = json!({
        "metadata": {
            "name": name,
            "generateName": format!("{owner_name}-"),
            "namespace": owner["metadata"]["namespace"],
            "labels": pod_labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [owner_reference(owner)]
        },
        "spec": spec,
        "status": status
    });
    if let Some(meta) = pod["metadata"].as_object_mut() {
        meta.retain(|_, v| !v.is_null());
    }
    pod
}

/// The pods `owner_uid` controls, in one namespace.
pub(crate) fn owned_pods<'a>(
    cluster: &'a Cluster,
    namespace: &'a str,
    owner_uid: &'a Value,
) -> impl Iterator<Item = &'a Value> + 'a {
    cluster
        .store
        .list(&PODS, Some(namespace))
        .filter(move |p| &p["metadata"]["ownerReferences"][0]["uid"] == owner_uid)
}

/// A count that the real server's `omitempty` leaves out when zero.
pub(crate) fn set_nonzero(status: &mut Value, field: &str, count: usize) {
    if count > 0 {
        status[field] = json!(count);
    }
}
