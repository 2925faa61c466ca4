//! A stand-in for the StatefulSet controller (16–21): pods `<name>-<ordinal>` created in ordinal
//! order, each waiting for the one before to be Ready (OrderedReady); a rolling update replaces
//! pods from the highest ordinal down to `partition`, waiting at an updated pod that is not
//! Ready; `currentRevision` becomes `updateRevision` only once every pod is updated and Ready.
//! In `Instant` mode all of it happens at once, as a separate status write after the spec write.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::controller::template_hash;
use super::kubelet;
use super::resources::{PODS, STATEFULSETS};
use super::workloads::{self, owned_pods, set_nonzero};
use super::Cluster;

/// What the controller remembers per StatefulSet (the real one keeps ControllerRevisions): the
/// current revision and the pod template of every revision still in use.
#[derive(Default)]
pub(crate) struct Revisions {
    sets: BTreeMap<(String, String), History>,
}

struct History {
    current: String,
    templates: BTreeMap<String, Value>,
}

impl Revisions {
    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.sets.remove(&(namespace.to_string(), name.to_string()));
    }

    pub fn forget_namespace(&mut self, namespace: &str) {
        self.sets.retain(|(ns, _), _| ns != namespace);
    }
}

/// `<name>-<hash of the pod template>`, like `db-699ccbb857` in 18.
pub(crate) fn revision_name(name: &str, template: &Value) -> String {
    format!("{name}-{}", template_hash(template))
}

/// A pod as the rollout sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PodState {
    /// Runs the update revision.
    pub updated: bool,
    pub ready: bool,
}

/// The one thing the controller does next.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Create the pod of this ordinal at the update revision (else at the current one).
    Create { ordinal: usize, updated: bool },
    /// Delete this pod: a condemned ordinal, or one to recreate at the update revision.
    Delete(usize),
    /// Nothing to do until a pod becomes Ready (or the spec changes).
    Wait,
}

/// The partition arithmetic: ordinals at or above `partition` run the update revision, the others
/// keep the current one. `pods` by ordinal.
pub(crate) fn next_step(
    replicas: usize,
    partition: usize,
    pods: &BTreeMap<usize, PodState>,
) -> Step {
    if let Some(condemned) = pods.keys().rev().find(|o| **o >= replicas) {
        return Step::Delete(*condemned);
    }
    for ordinal in 0..replicas {
        match pods.get(&ordinal) {
            None => {
                return Step::Create {
                    ordinal,
                    updated: ordinal >= partition,
                }
            }
            Some(pod) if !pod.ready => return Step::Wait,
            Some(_) => {}
        }
    }
    (partition..replicas)
        .rev()
        .find(|o| pods.get(o).is_some_and(|p| !p.updated))
        .map_or(Step::Wait, Step::Delete)
}

pub(crate) fn reconcile_all(cluster: &mut Cluster) {
    let names: Vec<(String, String)> = cluster
        .store
        .list(&STATEFULSETS, None)
        .map(workloads::namespace_and_name)
        .collect();
    for (namespace, name) in names {
        reconcile(cluster, &namespace, &name);
    }
}

pub(crate) fn reconcile(cluster: &mut Cluster, namespace: &str, name: &str) {
    let Some(set) = cluster.store.get(&STATEFULSETS, namespace, name).cloned() else {
        return;
    };
    let spec = &set["spec"];
    let template = &spec["template"];
    let update = revision_name(name, template);
    let key = (namespace.to_string(), name.to_string());
    let history = cluster.statefulsets.sets.entry(key).or_insert(History {
        current: update.clone(),
        templates: BTreeMap::new(),
    });
    history.templates.insert(update.clone(), template.clone());
    let current = history.current.clone();
    let current_template = history.templates.get(&current).cloned();

    let replicas = spec["replicas"].as_u64().unwrap_or(1) as usize;
    let rolling = spec["updateStrategy"]["type"] != "OnDelete";
    // OnDelete: only pods deleted by someone else come back at the update revision.
    let partition = if rolling {
        spec["updateStrategy"]["rollingUpdate"]["partition"]
            .as_u64()
            .unwrap_or(0) as usize
    } else {
        replicas
    };
    let uid = set["metadata"]["uid"].clone();
    loop {
        let pods = pod_states(cluster, namespace, name, &uid, &update);
        match next_step(replicas, partition, &pods) {
            Step::Wait => break,
            Step::Delete(ordinal) => {
                let pod = format!("{name}-{ordinal}");
                if cluster.store.remove(&PODS, namespace, &pod).is_none() {
                    break; // a pod named unlike its ordinal ("db-01"): leave it be
                }
            }
            Step::Create { ordinal, updated } => {
                let (revision, template) = match (&current_template, updated) {
                    (Some(old), false) => (&current, old),
                    _ => (&update, template),
                };
                let pod = pod_for(cluster, &set, template, revision, ordinal);
                cluster.store.insert(&PODS, pod);
            }
        }
    }

    let status = settle(cluster, &set, &current, &update, rolling);
    let mut settled = set.clone();
    settled["status"] = status;
    if settled != set {
        cluster.store.update(&STATEFULSETS, settled);
    }
}

fn pod_states(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    uid: &Value,
    update: &str,
) -> BTreeMap<usize, PodState> {
    owned_pods(cluster, namespace, uid)
        .filter_map(|pod| {
            let pod_name = pod["metadata"]["name"].as_str()?;
            let ordinal = pod_name
                .strip_prefix(name)?
                .strip_prefix('-')?
                .parse()
                .ok()?;
            let state = PodState {
                updated: pod["metadata"]["labels"]["controller-revision-hash"] == update,
                ready: kubelet::is_ready(pod),
            };
            Some((ordinal, state))
        })
        .collect()
}

/// Pod `<name>-<ordinal>` as in 19: revision and identity labels, hostname and subdomain.
fn pod_for(
    cluster: &Cluster,
    set: &Value,
    template: &Value,
    revision: &str,
    ordinal: usize,
) -> Value {
    let name = set["metadata"]["name"].as_str().unwrap_or_default();
    let pod_name = format!("{name}-{ordinal}");
    let labels = [
        ("apps.kubernetes.io/pod-index", ordinal.to_string()),
        ("controller-revision-hash", revision.to_string()),
        ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
    ];
    let health = cluster.controller.template_health(template);
    let mut pod =
        workloads::pod_from_template(set, template, &pod_name, &labels, "testbed-node", health);
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod["spec"]["subdomain"] = json!(service);
    }
    pod
}

/// Counts the pods and, once every pod is updated and Ready, promotes the update revision.
fn settle(cluster: &mut Cluster, set: &Value, current: &str, update: &str, rolling: bool) -> Value {
    let (namespace, name) = workloads::namespace_and_name(set);
    let uid = &set["metadata"]["uid"];
    let revisions: Vec<(String, bool)> = owned_pods(cluster, &namespace, uid)
        .map(|p| {
            let revision = p["metadata"]["labels"]["controller-revision-hash"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (revision, kubelet::is_ready(p))
        })
        .collect();
    let replicas = revisions.len();
    let ready = revisions.iter().filter(|(_, r)| *r).count();
    let updated = revisions.iter().filter(|(rev, _)| rev == update).count();
    let complete = rolling && updated == replicas && ready == replicas;
    let (current, current_count) = if complete {
        (update.to_string(), updated)
    } else {
        let count = revisions.iter().filter(|(rev, _)| rev == current).count();
        (current.to_string(), count)
    };
    if let Some(history) = cluster.statefulsets.sets.get_mut(&(namespace, name)) {
        history.current = current.clone();
        let in_use: Vec<&String> = revisions.iter().map(|(rev, _)| rev).collect();
        history
            .templates
            .retain(|rev, _| *rev == current || rev == update || in_use.contains(&rev));
    }
    let mut status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": replicas,
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": 0,
        // minReadySeconds is not modelled: a Ready pod is available at once.
        "availableReplicas": ready
    });
    set_nonzero(&mut status, "readyReplicas", ready);
    set_nonzero(&mut status, "currentReplicas", current_count);
    set_nonzero(&mut status, "updatedReplicas", updated);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(states: &[(bool, bool)]) -> BTreeMap<usize, PodState> {
        states
            .iter()
            .enumerate()
            .map(|(i, (updated, ready))| {
                (
                    i,
                    PodState {
                        updated: *updated,
                        ready: *ready,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn creates_in_ordinal_order_and_waits_for_readiness() {
        let created = |ordinal| Step::Create {
            ordinal,
            updated: true,
        };
        assert_eq!(next_step(3, 0, &pods(&[])), created(0));
        assert_eq!(next_step(3, 0, &pods(&[(true, true)])), created(1));
        assert_eq!(next_step(3, 0, &pods(&[(true, false)])), Step::Wait);
        assert_eq!(
            next_step(3, 0, &pods(&[(true, true), (true, true), (true, true)])),
            Step::Wait
        );
    }

    #[test]
    fn partition_updates_only_ordinals_at_or_above_it_from_the_top() {
        let old = (false, true);
        // 17/18: replicas 3, partition 2 → only db-2 is replaced.
        assert_eq!(next_step(3, 2, &pods(&[old, old, old])), Step::Delete(2));
        assert_eq!(
            next_step(3, 2, &pods(&[old, old])),
            Step::Create {
                ordinal: 2,
                updated: true
            }
        );
        assert_eq!(
            next_step(3, 2, &pods(&[old, old, (true, true)])),
            Step::Wait
        );
        // A missing pod below the partition comes back at the current revision.
        let mut gap = pods(&[old, old, (true, true)]);
        gap.remove(&0);
        assert_eq!(
            next_step(3, 2, &gap),
            Step::Create {
                ordinal: 0,
                updated: false
            }
        );
        // 20/21: partition 0 → the rest, highest first.
        assert_eq!(
            next_step(3, 0, &pods(&[old, old, (true, true)])),
            Step::Delete(1)
        );
        // An updated pod that never becomes Ready halts the rollout.
        assert_eq!(
            next_step(3, 0, &pods(&[old, old, (true, false)])),
            Step::Wait
        );
    }

    #[test]
    fn scaling_down_removes_the_highest_ordinals_first() {
        let ready = (true, true);
        assert_eq!(
            next_step(1, 0, &pods(&[ready, ready, ready])),
            Step::Delete(2)
        );
    }

    #[test]
    fn revision_names_follow_the_template() {
        let template = json!({"spec": {"containers": [{"name": "app", "image": "db:2.0.0"}]}});
        let same = revision_name("db", &template);
        assert_eq!(same, revision_name("db", &template.clone()));
        assert!(
            same.starts_with("db-") && same.len() == "db-".len() + 10,
            "{same}"
        );
        let mut changed = template.clone();
        changed["spec"]["containers"][0]["image"] = json!("db:2.1.0");
        assert_ne!(revision_name("db", &changed), same);
    }
}
