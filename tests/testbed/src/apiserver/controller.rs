//! A stand-in for the Deployment controller and ReplicaSets: in `Instant` mode every spec change
//! is acted on at once, as a separate status write, with Pods to match. Whether a rollout
//! *completes* depends on its pods, as on a real cluster: pods of an image the test has not
//! declared runnable stay Pending, so the rollout stays in progress (the old pods keep serving)
//! until the test says the pods become Ready (`set_image_health`, `set_default_image_health`).
//! A Deployment scaled to zero completes at once, as it does on a real cluster.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::kubelet;
use super::managed::{self, Writer};
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
    /// Every template hash this Deployment has had a ReplicaSet for, oldest first.
    replica_sets: Vec<String>,
}

/// How the pods of an image behave once scheduled, as a kubelet would report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageHealth {
    /// The image never starts (on a real cluster: the test images cannot be pulled or run):
    /// pods stay Pending, a rollout stays in progress. The default until a test says otherwise.
    #[default]
    Pending,
    Ready,
    /// Running, never passing readiness; a Deployment rolling it out reports
    /// `ProgressDeadlineExceeded` (at once: the test bed does not wait out the deadline).
    NeverReady,
    /// Ready, but every container has restarted this many times (a crash loop).
    Restarting(i64),
}

impl ImageHealth {
    /// Whether pods of this health count as available.
    pub fn ready(self) -> bool {
        matches!(self, ImageHealth::Ready | ImageHealth::Restarting(_))
    }

    /// A pod status for `spec` as a kubelet would report it.
    pub(crate) fn pod_status(self, spec: &Value) -> Value {
        match self {
            ImageHealth::Pending => kubelet::pending_status(spec),
            ImageHealth::Ready => kubelet::running_status(spec, true, 0),
            ImageHealth::NeverReady => kubelet::running_status(spec, false, 0),
            ImageHealth::Restarting(n) => kubelet::running_status(spec, true, n),
        }
    }
}

#[derive(Default)]
pub(crate) struct Controller {
    pub mode: ControllerMode,
    rollouts: BTreeMap<(String, String), Rollout>,
    /// Behaviour per image string; other images behave as `default_health`.
    pub images: BTreeMap<String, ImageHealth>,
    pub default_health: ImageHealth,
    /// A Deployment's rollout is written in the controller-manager's steps (three status
    /// writes, three watch events), not in one: the benchmarks' realistic watch traffic.
    pub status_steps: bool,
}

impl Controller {
    pub fn forget_namespace(&mut self, namespace: &str) {
        self.rollouts.retain(|(ns, _), _| ns != namespace);
    }

    /// The worst behaviour among a pod template's images.
    pub fn template_health(&self, template: &Value) -> ImageHealth {
        let spec = &template["spec"];
        let mut health = ImageHealth::Ready;
        for list in ["initContainers", "containers"] {
            for container in spec[list].as_array().into_iter().flatten() {
                let image = container["image"].as_str().unwrap_or_default();
                let of_image = self
                    .images
                    .get(image)
                    .copied()
                    .unwrap_or(self.default_health);
                health = match (health, of_image) {
                    (_, ImageHealth::NeverReady) | (ImageHealth::NeverReady, _) => {
                        ImageHealth::NeverReady
                    }
                    (_, ImageHealth::Pending) | (ImageHealth::Pending, _) => ImageHealth::Pending,
                    (_, ImageHealth::Restarting(n)) => ImageHealth::Restarting(n),
                    (current, ImageHealth::Ready) => current,
                };
            }
        }
        health
    }
}

/// The status a kubelet reports for a scheduled pod (`spec` has its `nodeName`) of this health.
pub(crate) fn pod_status(spec: &Value, health: ImageHealth) -> Value {
    health.pod_status(spec)
}

pub(crate) fn deployment_changed(cluster: &mut Cluster, namespace: &str, name: &str) {
    if cluster.controller.mode == ControllerMode::Instant {
        reconcile(cluster, namespace, name, false);
    }
}

/// Garbage collection: a Deployment's Pods go with it, whatever the mode.
pub(crate) fn deployment_deleted(cluster: &mut Cluster, namespace: &str, name: &str) {
    let key = (namespace.to_string(), name.to_string());
    if let Some(rollout) = cluster.controller.rollouts.remove(&key) {
        for hash in &rollout.replica_sets {
            delete_pods(cluster, namespace, &format!("{name}-{hash}"), |_, _| true);
        }
    }
}

/// Acts on every Deployment; with `refresh_pods`, pods already running take on their images'
/// current health too (a test said they become Ready, or break).
pub(crate) fn reconcile_all(cluster: &mut Cluster, refresh_pods: bool) {
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
        reconcile(cluster, &namespace, &name, refresh_pods);
    }
}

fn reconcile(cluster: &mut Cluster, namespace: &str, name: &str, refresh_pods: bool) {
    let Some(deployment) = cluster.store.get(&DEPLOYMENTS, namespace, name).cloned() else {
        return;
    };
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let key = (namespace.to_string(), name.to_string());
    let (revision, replica_set_uid, mut replica_sets) = match cluster.controller.rollouts.get(&key)
    {
        Some(r) if r.hash == hash => (
            r.revision,
            r.replica_set_uid.clone(),
            r.replica_sets.clone(),
        ),
        Some(r) => (r.revision + 1, random_uid(), r.replica_sets.clone()),
        None => (1, random_uid(), Vec::new()),
    };
    if !replica_sets.contains(&hash) {
        replica_sets.push(hash.clone());
    }
    cluster.controller.rollouts.insert(
        key,
        Rollout {
            hash: hash.clone(),
            revision,
            replica_set_uid: replica_set_uid.clone(),
            replica_sets: replica_sets.clone(),
        },
    );

    let replica_set = format!("{name}-{hash}");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let health = cluster.controller.template_health(template);
    let mut new_ready = 0;
    for index in 0..replicas {
        let pod_name = format!("{replica_set}-{index}");
        let pod = match cluster.store.get(&PODS, namespace, &pod_name).cloned() {
            None => {
                let pod = pod_for(&deployment, &hash, &replica_set_uid, &pod_name, health);
                cluster.store.insert(&PODS, pod)
            }
            Some(mut pod) if refresh_pods && !kubelet::behaves_as(&pod, health) => {
                pod["status"] = health.pod_status(&pod["spec"]);
                cluster.store.update(&PODS, pod)
            }
            Some(pod) => pod,
        };
        if kubelet::is_ready(&pod) {
            new_ready += 1;
        }
    }
    delete_pods(cluster, namespace, &replica_set, |index, _| {
        index >= replicas
    });

    // Old ReplicaSets keep their ready pods until the new ones are available (maxUnavailable
    // rounds down to 0 for small Deployments), as the real controller's surge does.
    let complete = new_ready == replicas;
    let mut old_ready = 0;
    for old in replica_sets.iter().filter(|h| **h != hash) {
        let old_set = format!("{name}-{old}");
        delete_pods(cluster, namespace, &old_set, |_, pod| {
            complete || !kubelet::is_ready(pod)
        });
        old_ready += pods_of(cluster, namespace, &old_set).count();
    }

    let mut rolled_out = deployment.clone();
    rolled_out["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
        json!(revision.to_string());
    let counts = Counts {
        replicas,
        updated: replicas,
        ready: new_ready + old_ready,
        total: replicas + old_ready,
    };
    let progress = if complete {
        Progress::Complete
    } else if health == ImageHealth::NeverReady {
        Progress::DeadlineExceeded
    } else {
        Progress::Ongoing
    };
    rolled_out["status"] = rollout_status(&deployment, &replica_set, counts, progress);
    if rolled_out == deployment {
        return;
    }
    let writer = Writer::new("kube-controller-manager").status();
    let new_template = deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        != rolled_out["metadata"]["annotations"]["deployment.kubernetes.io/revision"];
    let mut before = deployment;
    if cluster.controller.status_steps && new_template {
        // As the controller-manager does (../shared/apiserver-wire/10-watch-stream.txt): the
        // new revision first, then the new generation observed with nothing updated yet, then
        // where the rollout stands, each its own write and watch event.
        let mut revised = before.clone();
        revised["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!(revision.to_string());
        managed::record_update(Some(&before), &mut revised, &writer);
        let revised = cluster.store.update(&DEPLOYMENTS, revised);
        let mut observed = revised.clone();
        let started = Counts {
            updated: 0,
            ..counts
        };
        observed["status"] = rollout_status(&revised, &replica_set, started, Progress::Ongoing);
        managed::record_update(Some(&revised), &mut observed, &writer);
        before = cluster.store.update(&DEPLOYMENTS, observed);
        rolled_out["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
        rolled_out["metadata"]["managedFields"] = before["metadata"]["managedFields"].clone();
    }
    managed::record_update(Some(&before), &mut rolled_out, &writer);
    cluster.store.update(&DEPLOYMENTS, rolled_out);
}

fn pods_of<'a>(
    cluster: &'a Cluster,
    namespace: &'a str,
    replica_set: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    cluster
        .store
        .list(&PODS, Some(namespace))
        .filter(move |p| p["metadata"]["ownerReferences"][0]["name"] == replica_set)
}

/// Deletes the pods of one ReplicaSet that `doomed(index, pod)` picks.
fn delete_pods(
    cluster: &mut Cluster,
    namespace: &str,
    replica_set: &str,
    doomed: impl Fn(usize, &Value) -> bool,
) {
    let names: Vec<String> = pods_of(cluster, namespace, replica_set)
        .filter(|p| {
            let index = p["metadata"]["name"]
                .as_str()
                .and_then(|n| n.rsplit('-').next())
                .and_then(|i| i.parse::<usize>().ok());
            index.is_some_and(|i| doomed(i, p))
        })
        .filter_map(|p| p["metadata"]["name"].as_str())
        .map(str::to_string)
        .collect();
    for pod in names {
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
    let status = health.pod_status(&spec);
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

/// Pod counts behind a Deployment's status.
#[derive(Clone, Copy)]
struct Counts {
    /// `spec.replicas`
    replicas: usize,
    /// Pods of the newest ReplicaSet.
    updated: usize,
    /// Ready pods of any ReplicaSet.
    ready: usize,
    /// Pods of every ReplicaSet.
    total: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Progress {
    Complete,
    Ongoing,
    /// A rollout of never-ready pods past its progress deadline (at once on the test bed).
    DeadlineExceeded,
}

/// The status the real controller reports for a rollout in `progress` (see 10-watch-stream).
fn rollout_status(
    deployment: &Value,
    replica_set: &str,
    counts: Counts,
    progress: Progress,
) -> Value {
    let at = now();
    let max_unavailable = max_unavailable(deployment, counts.replicas);
    let available = if counts.ready + max_unavailable >= counts.replicas {
        json!({"status": "True", "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability."})
    } else {
        json!({"status": "False", "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability."})
    };
    let progressing = match progress {
        Progress::Complete => json!({"status": "True", "reason": "NewReplicaSetAvailable",
            "message": format!("ReplicaSet \"{replica_set}\" has successfully progressed.")}),
        Progress::Ongoing => json!({"status": "True", "reason": "ReplicaSetUpdated",
            "message": format!("ReplicaSet \"{replica_set}\" is progressing.")}),
        Progress::DeadlineExceeded => {
            json!({"status": "False", "reason": "ProgressDeadlineExceeded",
            "message": format!("ReplicaSet \"{replica_set}\" has timed out progressing.")})
        }
    };
    let condition = |type_: &str, mut fields: Value| {
        fields["type"] = json!(type_);
        fields["lastUpdateTime"] = json!(at);
        fields["lastTransitionTime"] = json!(at);
        fields
    };
    // terminatingReplicas is a pointer field: v1.36 reports it even at zero (01, 10).
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "terminatingReplicas": 0,
        "conditions": [condition("Available", available), condition("Progressing", progressing)]
    });
    // Zero counts are omitted on the wire, as the real server's omitempty does.
    let unavailable = counts.replicas.saturating_sub(counts.ready);
    for (field, count) in [
        ("replicas", counts.total),
        ("updatedReplicas", counts.updated),
        ("readyReplicas", counts.ready),
        ("availableReplicas", counts.ready),
        ("unavailableReplicas", unavailable),
    ] {
        if count > 0 {
            status[field] = json!(count);
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

/// `rollingUpdate.maxUnavailable` as a pod count: an integer, or a percentage rounded down.
fn max_unavailable(deployment: &Value, replicas: usize) -> usize {
    let value = &deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"];
    if let Some(n) = value.as_u64() {
        return n as usize;
    }
    value
        .as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|p| p.parse::<usize>().ok())
        .map_or(0, |percent| replicas * percent / 100)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

    use crate::apiserver::ApiServer;

    /// What a watcher sees after one image change: the change itself and the controller's
    /// status writes, one at once or three in the controller-manager's steps.
    async fn modified_after_an_image_change(steps: bool) -> Vec<(Option<i64>, Option<String>)> {
        let server = ApiServer::start().await.unwrap();
        server.set_status_steps(steps);
        let api: Api<Deployment> = Api::namespaced(server.client().unwrap(), "default");
        let deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "app:1.0.0"}]}}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        let settled = api.get("web").await.unwrap();
        let rv = settled.metadata.resource_version.clone().unwrap();
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "app:1.1.0"}]}}}});
        api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // Everything is written by the time the patch answers: a short watch replays it.
        let events: Vec<WatchEvent<Deployment>> = api
            .watch(&WatchParams::default().timeout(1), &rv)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        futures::stream::iter(events)
            .filter_map(|e| async move {
                match e {
                    WatchEvent::Modified(d) => Some((
                        d.status.as_ref().and_then(|s| s.observed_generation),
                        d.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned()),
                    )),
                    _ => None,
                }
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_rollout_is_written_in_the_controller_managers_steps_when_asked() {
        let one = modified_after_an_image_change(false).await;
        assert_eq!(
            one,
            vec![(Some(1), Some("1".into())), (Some(2), Some("2".into()))]
        );
        let steps = modified_after_an_image_change(true).await;
        assert_eq!(
            steps,
            vec![
                // The patch, as the controller last left it.
                (Some(1), Some("1".into())),
                // The new revision, then the new generation observed, then the rollout's end.
                (Some(1), Some("2".into())),
                (Some(2), Some("2".into())),
                (Some(2), Some("2".into())),
            ]
        );
    }
}
