//! A StatefulSet's canary, pure: the set's own rolling-update partition holds the new version to
//! its highest ordinals (no `<name>-canary` object), so the canary is one patch of the set and
//! its verdict another.
//!
//! Start: `partition = replicas - canary-replicas` (never below 0), the new images, and the
//! canary state recording the partition before, in one guarded patch. Judged: only the pods of
//! the update revision. Pass: the partition back as it was (the controller rolls out the rest).
//! Fail: images and partition back as they were, in one guarded patch.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::patch::{build_guarded, ImageChange, State};
use crate::model::canary::CanarySpec;

/// The label the StatefulSet controller puts on each pod: the revision it runs.
pub const REVISION_LABEL: &str = "controller-revision-hash";

const STRATEGY: &str = "/spec/updateStrategy";
const ROLLING_UPDATE: &str = "/spec/updateStrategy/rollingUpdate";
const PARTITION: &str = "/spec/updateStrategy/rollingUpdate/partition";

/// Where the partition sits in the set as read: JSON Patch cannot `add` below a missing map, so
/// setting it takes a different op for each shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// No `spec.updateStrategy` at all (the API server defaults one; a set from elsewhere may lack it).
    NoStrategy,
    /// `updateStrategy` without `rollingUpdate`.
    NoRollingUpdate,
    /// `rollingUpdate`, with its partition if set.
    At(Option<i32>),
}

impl Partition {
    /// The partition in force as written (`None`: not set, which means 0).
    pub fn value(self) -> Option<i32> {
        match self {
            Partition::At(value) => value,
            Partition::NoStrategy | Partition::NoRollingUpdate => None,
        }
    }
}

/// Where the set's partition sits, or why the set cannot run tagwatch's canary: with
/// `updateStrategy: OnDelete` a pod takes a new template only when someone deletes it, so no
/// partition can hold the new version to a few pods (the update then waits: going ahead without
/// the canary would skip the judgement its owner asked for).
pub fn rolling(set: &StatefulSet) -> Result<Partition, &'static str> {
    let Some(strategy) = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref()) else {
        return Ok(Partition::NoStrategy);
    };
    // Not given: the API server defaults it to RollingUpdate.
    if strategy.type_.as_deref() == Some("OnDelete") {
        return Err(
            "its updateStrategy is OnDelete, so a pod takes a new version only when someone \
             deletes it and no rolling-update partition can hold the new version to a few pods; \
             use RollingUpdate, or remove tagwatch.dev/canary to have it updated directly; \
             not updated",
        );
    }
    Ok(match &strategy.rolling_update {
        None => Partition::NoRollingUpdate,
        Some(rolling) => Partition::At(rolling.partition),
    })
}

/// Why this set cannot run tagwatch's canary, if it cannot.
pub fn refusal(set: &StatefulSet) -> Option<&'static str> {
    rolling(set).err()
}

/// `spec.replicas` (1 when not given, as the API server defaults it).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The partition that leaves `canary_replicas` ordinals (the highest) to the new version; never
/// below 0, where the whole set is the canary.
pub fn canary_partition(replicas: i32, canary_replicas: i32) -> i32 {
    replicas.saturating_sub(canary_replicas).max(0)
}

/// How many pods run the update revision under `partition`: the ordinals at or above it.
pub fn canary_pods(replicas: i32, partition: Option<i32>) -> i32 {
    let replicas = replicas.max(0);
    replicas
        .saturating_sub(partition.unwrap_or(0).max(0))
        .clamp(0, replicas)
}

/// The canary settings the judgement uses: as many pods must be Ready as the partition updates
/// (fewer than asked when the set is smaller; none for a set of zero replicas, which then has
/// nothing to fail on and passes after its bake).
pub fn judged(spec: &CanarySpec, set: &StatefulSet) -> CanarySpec {
    let partition = rolling(set).ok().and_then(Partition::value);
    CanarySpec {
        replicas: canary_pods(replicas(set), partition),
        ..spec.clone()
    }
}

/// The ops that move the partition from `at` to `to` (`None`: remove it, as it was not set).
/// A partition that is set is tested too, like every image the patch replaces.
pub fn partition_ops(at: Partition, to: Option<i32>) -> Vec<Value> {
    match (at, to) {
        (Partition::NoStrategy, Some(to)) => vec![json!({
            "op": "add", "path": STRATEGY,
            "value": {"type": "RollingUpdate", "rollingUpdate": {"partition": to}},
        })],
        (Partition::NoRollingUpdate, Some(to)) => vec![json!({
            "op": "add", "path": ROLLING_UPDATE, "value": {"partition": to},
        })],
        (Partition::At(None), Some(to)) => {
            vec![json!({"op": "add", "path": PARTITION, "value": to})]
        }
        (Partition::At(Some(from)), Some(to)) => vec![
            json!({"op": "test", "path": PARTITION, "value": from}),
            json!({"op": "replace", "path": PARTITION, "value": to}),
        ],
        (Partition::At(Some(from)), None) => vec![
            json!({"op": "test", "path": PARTITION, "value": from}),
            json!({"op": "remove", "path": PARTITION}),
        ],
        // Not set, and to stay so.
        (Partition::NoStrategy | Partition::NoRollingUpdate | Partition::At(None), None) => {
            Vec::new()
        }
    }
}

/// The partition from where it is (`at`, as read) to `to` (`None`: not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub at: Partition,
    pub to: Option<i32>,
}

impl Move {
    /// Whether the spec changes (and so the generation moves).
    pub fn changes(self) -> bool {
        self.at.value() != self.to
    }
}

/// One step of a partition canary in one patch, guarded by `resource_version` (the object the
/// step was decided on): `changes` to the images, the partition moved (`None`: left alone, as
/// a set turned OnDelete meanwhile must be), and tagwatch's annotations (`state`).
pub fn patch(
    changes: &[ImageChange],
    state: &State,
    annotations: &BTreeMap<String, String>,
    resource_version: Option<&str>,
    partition: Option<Move>,
) -> json_patch::Patch {
    let mut patch = build_guarded(changes, state, Some(annotations), resource_version);
    let ops = partition.map_or_else(Vec::new, |m| partition_ops(m.at, m.to));
    let ops: Result<Vec<json_patch::PatchOperation>, _> = serde_json::from_value(Value::Array(ops));
    match ops {
        Ok(ops) => patch.0.extend(ops),
        // Well-formed by construction; an empty patch writes nothing rather than half a step.
        Err(_) => patch.0.clear(),
    }
    patch
}

/// The revision the set's pods are being moved to, once the controller has seen the latest spec
/// (before that, `updateRevision` still names the revision before the write, whose pods would
/// pass for the canary).
pub fn update_revision(set: &StatefulSet) -> Option<&str> {
    let status = set.status.as_ref()?;
    let observed = status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
    observed
        .then_some(status.update_revision.as_deref())
        .flatten()
        .filter(|r| !r.is_empty())
}

/// The canary's pods: those the set owns (by uid) that run its update revision and are not
/// being deleted. Pods below the partition keep the revision before and are not judged.
pub fn revision_pods<'a>(set: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let (Some(uid), Some(revision)) = (set.metadata.uid.as_deref(), update_revision(set)) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "StatefulSet" && r.uid == uid)
        })
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .is_some_and(|r| r == revision)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn set(spec: Value, status: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "uid": "set-uid", "generation": 4},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn spec_with(strategy: Option<Value>) -> Value {
        let mut spec = json!({"replicas": 3, "selector": {}, "serviceName": "db", "template": {}});
        if let Some(strategy) = strategy {
            spec["updateStrategy"] = strategy;
        }
        spec
    }

    #[test]
    fn reads_the_strategy_and_where_the_partition_sits() {
        let cases = [
            (None, Some(Partition::NoStrategy)),
            (
                Some(json!({"type": "RollingUpdate"})),
                Some(Partition::NoRollingUpdate),
            ),
            (
                Some(json!({"rollingUpdate": {"maxUnavailable": 1}})),
                Some(Partition::At(None)),
            ),
            (
                Some(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
                Some(Partition::At(Some(0))),
            ),
            (
                Some(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})),
                Some(Partition::At(Some(2))),
            ),
            (Some(json!({"type": "OnDelete"})), None),
        ];
        for (strategy, want) in cases {
            let set = set(spec_with(strategy.clone()), json!({}));
            assert_eq!(rolling(&set).ok(), want, "{strategy:?}");
            assert_eq!(refusal(&set).is_some(), want.is_none());
        }
        assert!(refusal(&set(
            spec_with(Some(json!({"type": "OnDelete"}))),
            json!({})
        ))
        .unwrap()
        .contains("OnDelete"));
    }

    #[test]
    fn the_partition_leaves_the_canary_replicas_to_the_new_version() {
        // (replicas, canary replicas, partition, pods judged)
        let cases = [
            (3, 1, 2, 1),
            (3, 2, 1, 2),
            (3, 3, 0, 3),
            // More canary pods than the set has: the whole set is the canary.
            (3, 5, 0, 3),
            (1, 1, 0, 1),
            // Nothing to run: nothing judged.
            (0, 1, 0, 0),
        ];
        for (replicas, canary, partition, pods) in cases {
            assert_eq!(
                canary_partition(replicas, canary),
                partition,
                "{replicas} - {canary}"
            );
            assert_eq!(canary_pods(replicas, Some(partition)), pods);
        }
        assert_eq!(canary_pods(3, None), 3, "no partition: every pod");
        assert_eq!(canary_pods(3, Some(7)), 0, "above the replicas: none");
        assert_eq!(canary_pods(3, Some(-1)), 3);
    }

    #[test]
    fn the_judgement_counts_the_pods_the_partition_updates() {
        let spec = CanarySpec {
            replicas: 2,
            timeout: Duration::from_secs(60),
            bake: Duration::from_secs(10),
            query: None,
            failures: 0,
        };
        let partitioned = |partition: i32, replicas: i32| {
            let mut spec = spec_with(Some(
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}),
            ));
            spec["replicas"] = json!(replicas);
            set(spec, json!({}))
        };
        assert_eq!(judged(&spec, &partitioned(1, 3)).replicas, 2);
        // Scaled up mid-canary: the new ordinals run the update revision too.
        assert_eq!(judged(&spec, &partitioned(1, 5)).replicas, 4);
        assert_eq!(judged(&spec, &partitioned(1, 3)).bake, spec.bake);
    }

    #[test]
    fn partition_ops_for_each_shape() {
        let cases = [
            (
                Partition::NoStrategy,
                Some(2),
                json!([{"op": "add", "path": "/spec/updateStrategy",
                        "value": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}]),
            ),
            (
                Partition::NoRollingUpdate,
                Some(2),
                json!([{"op": "add", "path": "/spec/updateStrategy/rollingUpdate",
                        "value": {"partition": 2}}]),
            ),
            (
                Partition::At(None),
                Some(2),
                json!([{"op": "add", "path": PARTITION, "value": 2}]),
            ),
            (
                Partition::At(Some(0)),
                Some(2),
                json!([{"op": "test", "path": PARTITION, "value": 0},
                       {"op": "replace", "path": PARTITION, "value": 2}]),
            ),
            // Back as it was: set to 0 ...
            (
                Partition::At(Some(2)),
                Some(0),
                json!([{"op": "test", "path": PARTITION, "value": 2},
                       {"op": "replace", "path": PARTITION, "value": 0}]),
            ),
            // ... or absent.
            (
                Partition::At(Some(2)),
                None,
                json!([{"op": "test", "path": PARTITION, "value": 2},
                       {"op": "remove", "path": PARTITION}]),
            ),
            (Partition::At(None), None, json!([])),
            (Partition::NoStrategy, None, json!([])),
            // Already there: tested and written as is; the spec does not change.
            (
                Partition::At(Some(0)),
                Some(0),
                json!([{"op": "test", "path": PARTITION, "value": 0},
                       {"op": "replace", "path": PARTITION, "value": 0}]),
            ),
        ];
        for (at, to, want) in cases {
            assert_eq!(Value::Array(partition_ops(at, to)), want, "{at:?} → {to:?}");
        }
    }

    #[test]
    fn a_move_changes_the_spec_unless_the_partition_is_already_there() {
        let cases = [
            (Partition::At(Some(0)), Some(2), true),
            (Partition::At(Some(2)), Some(0), true),
            (Partition::At(Some(2)), None, true),
            (Partition::NoStrategy, Some(2), true),
            (Partition::At(Some(0)), Some(0), false),
            (Partition::At(None), None, false),
            (Partition::NoRollingUpdate, None, false),
        ];
        for (at, to, changes) in cases {
            assert_eq!(Move { at, to }.changes(), changes, "{at:?} → {to:?}");
        }
    }

    #[test]
    fn every_shape_patched_ends_at_the_partition_asked() {
        for strategy in [
            None,
            Some(json!({"type": "RollingUpdate"})),
            Some(json!({"type": "RollingUpdate", "rollingUpdate": {}})),
            Some(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
        ] {
            let mut object = json!({"spec": spec_with(strategy.clone())});
            let read = set(object["spec"].clone(), json!({}));
            let at = rolling(&read).unwrap();
            let ops: json_patch::Patch =
                serde_json::from_value(Value::Array(partition_ops(at, Some(2)))).unwrap();
            json_patch::patch(&mut object, &ops).unwrap();
            assert_eq!(
                object["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 2,
                "{strategy:?}"
            );
            // And back.
            let canary = set(object["spec"].clone(), json!({}));
            let now = rolling(&canary).unwrap();
            let ops: json_patch::Patch =
                serde_json::from_value(Value::Array(partition_ops(now, at.value()))).unwrap();
            json_patch::patch(&mut object, &ops).unwrap();
            assert_eq!(
                object["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64(),
                at.value().map(i64::from),
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn one_guarded_patch_writes_images_partition_and_state() {
        let change = ImageChange {
            container: "db".into(),
            image_path: "/spec/template/spec/containers/0/image".into(),
            from: "r/db:1.0.0".into(),
            to: "r/db:1.1.0".into(),
            from_tag: "1.0.0".into(),
            to_tag: "1.1.0".into(),
        };
        let mut state = State::default();
        state
            .extra
            .insert("tagwatch.dev/canary-state".into(), Some("{}".into()));
        let patch = patch(
            &[change],
            &state,
            &BTreeMap::new(),
            Some("17"),
            Some(Move {
                at: Partition::At(Some(0)),
                to: Some(2),
            }),
        );
        let ops = serde_json::to_value(&patch).unwrap();
        let ops = ops.as_array().unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "17"}),
            "guarded first"
        );
        for op in [
            json!({"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "r/db:1.0.0"}),
            json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "r/db:1.1.0"}),
            json!({"op": "replace", "path": PARTITION, "value": 2}),
            json!({"op": "add", "path": "/metadata/annotations/tagwatch.dev~1canary-state", "value": "{}"}),
        ] {
            assert!(ops.contains(&op), "{op} in {ops:?}");
        }
    }

    fn pod(name: &str, owner: &str, revision: &str, deleting: bool) -> Pod {
        let mut pod = json!({
            "metadata": {
                "name": name,
                "labels": {"app": "db", REVISION_LABEL: revision},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                                     "uid": owner, "controller": true}],
            }
        });
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
        }
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn only_the_sets_pods_of_the_update_revision_are_the_canary() {
        let pods = vec![
            pod("db-0", "set-uid", "db-old", false),
            pod("db-1", "set-uid", "db-old", false),
            pod("db-2", "set-uid", "db-new", false),
            // Another object's pod with the same labels (a set of that name deleted and made again).
            pod("db-3", "other-uid", "db-new", false),
            // On its way out.
            pod("db-4", "set-uid", "db-new", true),
        ];
        let names = |set: &StatefulSet| -> Vec<String> {
            revision_pods(set, &pods)
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect()
        };
        let status = |observed: i64| {
            json!({"observedGeneration": observed, "replicas": 3,
                   "currentRevision": "db-old", "updateRevision": "db-new"})
        };
        assert_eq!(names(&set(spec_with(None), status(4))), ["db-2"]);
        // The controller has not seen tagwatch's write yet: its updateRevision is the one before.
        assert!(names(&set(spec_with(None), status(3))).is_empty());
        assert!(names(&set(spec_with(None), json!({}))).is_empty());
    }
}
