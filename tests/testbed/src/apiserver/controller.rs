//! A stand-in for the Deployment controller and ReplicaSets: in `Instant` mode every spec change
//! is rolled out at once, as a separate status write, with ready Pods to match.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::kubelet;
use super::resources::{DEPLOYMENTS, PODS};
use super::store::{now, random_uid};
use super::Cluster;

/// How the workload controllers (Deployments, StatefulSets, DaemonSets) act.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ControllerMode {
    /// Status and Pods follow every spec change at once.
    #[default]
    Instant,
    /// Nothing moves by itself: tests drive status and pods through the seeding helpers.
    Manual,
}

/// What the controller remembers per Deployment: its current ReplicaSet and revision.
struct Rollout {
    hash: String,
    revision: u64,
    replica_set_uid: String,
}

/// How the pods of an image behave once scheduled, as a kubelet would report them: a way for
/// tests to ship a broken version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageHealth {
    #[default]
    Ready,
    /// Running, never passing readiness; a Deployment rolling it out reports
    /// `ProgressDeadlineExceeded` (at once: the test bed does not wait out the deadline).
    NeverReady,
    /// Ready, but every container has restarted this many times (a crash loop).
    Restarting(i64),
}

#[derive(Default)]
pub(crate) struct Controller {
    pub mode: ControllerMode,
    rollouts: BTreeMap<(String, String), Rollout>,
    /// Behaviour per image string; unknown images are Ready.
    pub images: BTreeMap<String, ImageHealth>,
}

impl Controller {
    pub fn forget_namespace(&mut self, namespace: &str) {
        self.rollouts.retain(|(ns, _), _| ns != namespace);
    }

    /// The worst behaviour among a pod template's images: how every controller's pods behave.
    pub fn template_health(&self, template: &Value) -> ImageHealth {
        let spec = &template["spec"];
        let mut health = ImageHealth::Ready;
        for list in ["initContainers", "containers"] {
            for container in spec[list].as_array().into_iter().flatten() {
                let image = container["image"].as_str().unwrap_or_default();
                match self.images.get(image).copied().unwrap_or_default() {
                    ImageHealth::NeverReady => return ImageHealth::NeverReady,
                    ImageHealth::Restarting(n) => health = ImageHealth::Restarting(n),
                    ImageHealth::Ready => {}
                }
            }
        }
        health
    }
}

/// The status a kubelet reports for a scheduled pod (`spec` has its `nodeName`) of this health.
pub(crate) fn pod_status(spec: &Value, health: ImageHealth) -> Value {
    match health {
        ImageHealth::Ready => kubelet::running_status(spec, true, 0),
        ImageHealth::NeverReady => kubelet::running_status(spec, false, 0),
        ImageHealth::Restarting(n) => kubelet::running_status(spec, true, n),
    }
}

pub(crate) fn deployment_changed(cluster: &mut Cluster, namespace: &str, name: &str) {
    if cluster.controller.mode == ControllerMode::Instant {
        reconcile(cluster, namespace, name);
    }
}

/// Garbage collection: a Deployment's Pods go with it, whatever the mode.
pub(crate) fn deployment_deleted(cluster: &mut Cluster, namespace: &str, name: &str) {
    let key = (namespace.to_string(), name.to_string());
    if let Some(rollout) = cluster.controller.rollouts.remove(&key) {
        delete_pods(cluster, namespace, &format!("{name}-{}", rollout.hash), 0);
    }
}

pub(crate) fn reconcile_all(cluster: &mut Cluster) {
    let names: Vec<(String, String)> = cluster
        .store
        .list(&DEPLOYMENTS, None)
        .map(|d| {
            let meta = &d["metadata"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&meta["namespace"]), text(&meta["name"]))
        })
        .collect();
    for (namespace, name) in names {
        reconcile(cluster, &namespace, &name);
    }
}

fn reconcile(cluster: &mut Cluster, namespace: &str, name: &str) {
    let Some(deployment) = cluster.store.get(&DEPLOYMENTS, namespace, name).cloned() else {
        return;
    };
    let hash = template_hash(&deployment["spec"]["template"]);
    let key = (namespace.to_string(), name.to_string());
    let (revision, replica_set_uid, retired) = match cluster.controller.rollouts.get(&key) {
        Some(r) if r.hash == hash => (r.revision, r.replica_set_uid.clone(), None),
        Some(r) => (r.revision + 1, random_uid(), Some(r.hash.clone())),
        None => (1, random_uid(), None),
    };
    cluster.controller.rollouts.insert(
        key,
        Rollout {
            hash: hash.clone(),
            revision,
            replica_set_uid: replica_set_uid.clone(),
        },
    );
    if let Some(old_hash) = retired {
        delete_pods(cluster, namespace, &format!("{name}-{old_hash}"), 0);
    }

    let replica_set = format!("{name}-{hash}");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let health = cluster
        .controller
        .template_health(&deployment["spec"]["template"]);
    for index in 0..replicas {
        let pod_name = format!("{replica_set}-{index}");
        if cluster.store.get(&PODS, namespace, &pod_name).is_none() {
            let pod = pod_for(&deployment, &hash, &replica_set_uid, &pod_name, health);
            cluster.store.insert(&PODS, pod);
        }
    }
    delete_pods(cluster, namespace, &replica_set, replicas);

    let mut rolled_out = deployment.clone();
    rolled_out["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
        json!(revision.to_string());
    let stuck = health == ImageHealth::NeverReady;
    rolled_out["status"] = rollout_status(&deployment, &replica_set, replicas, stuck);
    if rolled_out != deployment {
        cluster.store.update(&DEPLOYMENTS, rolled_out);
    }
}

/// Deletes the pods of one ReplicaSet whose index is `from` or above.
fn delete_pods(cluster: &mut Cluster, namespace: &str, replica_set: &str, from: usize) {
    let doomed: Vec<String> = cluster
        .store
        .list(&PODS, Some(namespace))
        .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == replica_set)
        .filter_map(|p| p["metadata"]["name"].as_str())
        .filter(|n| {
            n.rsplit('-')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i >= from)
        })
        .map(str::to_string)
        .collect();
    for pod in doomed {
        cluster.store.remove(&PODS, namespace, &pod);
    }
}

fn pod_for(
    deployment: &Value,
    hash: &str,
    replica_set_uid: &str,
    pod_name: &str,
    health: ImageHealth,
) -> Value {
    let template = &deployment["spec"]["template"];
    let namespace = &deployment["metadata"]["namespace"];
    let replica_set = format!(
        "{}-{hash}",
        deployment["metadata"]["name"].as_str().unwrap_or_default()
    );
    let mut labels = template["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!("testbed-node");
    let status = pod_status(&spec, health);
    let mut pod = json!({
        "metadata": {
            "name": pod_name,
            "generateName": format!("{replica_set}-"),
            "namespace": namespace,
            "labels": labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": replica_set,
                "uid": replica_set_uid,
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": spec,
        "status": status
    });
    if let Some(meta) = pod["metadata"].as_object_mut() {
        meta.retain(|_, v| !v.is_null());
    }
    pod
}

/// The status the real controller reports once a rollout has finished, or (`stuck`) once a
/// rollout of never-ready pods has passed its progress deadline.
fn rollout_status(deployment: &Value, replica_set: &str, replicas: usize, stuck: bool) -> Value {
    let at = now();
    let (available, progressing) = if stuck {
        (
            json!({"status": "False", "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability."}),
            json!({"status": "False", "reason": "ProgressDeadlineExceeded",
                "message": format!("ReplicaSet \"{replica_set}\" has timed out progressing.")}),
        )
    } else {
        (
            json!({"status": "True", "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability."}),
            json!({"status": "True", "reason": "NewReplicaSetAvailable",
                "message": format!("ReplicaSet \"{replica_set}\" has successfully progressed.")}),
        )
    };
    let condition = |type_: &str, mut fields: Value| {
        fields["type"] = json!(type_);
        fields["lastUpdateTime"] = json!(at);
        fields["lastTransitionTime"] = json!(at);
        fields
    };
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "conditions": [condition("Available", available), condition("Progressing", progressing)]
    });
    // Zero counts are omitted on the wire, as the real server's omitempty does.
    if replicas > 0 {
        let counts: &[&str] = if stuck {
            &["replicas", "updatedReplicas", "unavailableReplicas"]
        } else {
            &[
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ]
        };
        for field in counts {
            status[*field] = json!(replicas);
        }
    }
    // Keep condition timestamps stable when nothing but time would change.
    if let Some(previous) = deployment["status"]["conditions"].as_array() {
        let same_shape = |a: &Value, b: &Value| {
            ["type", "status", "reason", "message"]
                .iter()
                .all(|k| a[k] == b[k])
        };
        if let Some(conditions) = status["conditions"].as_array_mut() {
            for condition in conditions.iter_mut() {
                if let Some(old) = previous.iter().find(|p| same_shape(p, condition)) {
                    *condition = old.clone();
                }
            }
        }
    }
    status
}

/// A stable 10-character hash of the pod template, in the server's suffix alphabet.
pub(crate) fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char;
            hash /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
