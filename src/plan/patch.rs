//! The guarded JSON Patch for one workload: a `test` on every image it replaces, so a concurrent
//! change by a person or another tool makes the API server refuse it (422) instead of being
//! overwritten, plus tagwatch's state annotations and `kubernetes.io/change-cause` in the same write.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::model::alias::Alias;
use crate::model::annotations as keys;
use crate::model::history;
use crate::model::workload::{encode_applied, encode_rejected, encode_track, Workload};

/// One container image replaced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageChange {
    pub container: String,
    pub image_path: String,
    /// The image string as it is now (what the `test` op checks).
    pub from: String,
    /// The image string written.
    pub to: String,
    pub from_tag: String,
    pub to_tag: String,
}

/// tagwatch's state annotations after the write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub applied: BTreeMap<String, String>,
    pub track: BTreeMap<String, Alias>,
    pub rejected: BTreeMap<String, BTreeSet<String>>,
    /// Other annotations to set (`Some`) or remove (`None`) in the same write: history, canary and
    /// rollout state.
    pub extra: BTreeMap<String, Option<String>>,
}

impl State {
    /// tagwatch's state annotations as they are on the workload now: the base of every write
    /// that is not a fresh plan (canary steps, rollbacks).
    pub fn of(workload: &Workload) -> State {
        let mut state = State::default();
        for c in &workload.containers {
            state.applied.insert(
                c.name.clone(),
                c.applied.clone().unwrap_or_else(|| c.image_text.clone()),
            );
            if let Some(track) = c.track {
                state.track.insert(c.name.clone(), track);
            }
            if !c.rejected.is_empty() {
                state.rejected.insert(c.name.clone(), c.rejected.clone());
            }
        }
        state
    }

    /// Appends `entries` to the workload's `history` in the same write.
    pub fn record(
        &mut self,
        history: &[history::Entry],
        entries: impl IntoIterator<Item = history::Entry>,
    ) {
        let history = history::append(history.to_vec(), entries);
        self.extra
            .insert(keys::HISTORY.into(), Some(history::encode(&history)));
    }

    /// Never apply `tag` to `container` again.
    pub fn reject(&mut self, container: &str, tag: String) {
        self.rejected
            .entry(container.to_string())
            .or_default()
            .insert(tag);
    }
}

impl ImageChange {
    /// This change as a history entry.
    pub fn entry(&self, time: &str, how: history::How) -> history::Entry {
        history::Entry::new(time, &self.container, &self.from, &self.to, how)
    }
}

/// `"tagwatch: web 1.2.3 → 1.2.4, side 2.0.0 → 2.1.0"`
pub fn change_cause(changes: &[ImageChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {} → {}", c.container, c.from_tag, c.to_tag))
        .collect();
    format!("tagwatch: {}", parts.join(", "))
}

/// Builds the patch. `existing` are the workload's annotations as last seen: JSON Patch needs to
/// know whether the map exists (`add` of the map) and which keys to `remove`.
pub fn build(
    changes: &[ImageChange],
    state: &State,
    existing: Option<&BTreeMap<String, String>>,
) -> json_patch::Patch {
    build_guarded(changes, state, existing, None)
}

/// As [`build`], and with `resource_version` the write applies only to the object exactly as
/// judged: any change in between (another replica promoting the same canary, a person's edit)
/// makes the `test` fail. Used where a decision must happen exactly once.
pub fn build_guarded(
    changes: &[ImageChange],
    state: &State,
    existing: Option<&BTreeMap<String, String>>,
    resource_version: Option<&str>,
) -> json_patch::Patch {
    let mut ops = Vec::new();
    if let Some(rv) = resource_version {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    for change in changes {
        ops.push(json!({"op": "test", "path": change.image_path, "value": change.from}));
        ops.push(json!({"op": "replace", "path": change.image_path, "value": change.to}));
    }
    let mut set: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (key, value) in &state.extra {
        set.insert(key.as_str(), value.clone());
    }
    set.insert(keys::APPLIED, Some(encode_applied(&state.applied)));
    set.insert(keys::TRACK, encode_track(&state.track));
    set.insert(keys::REJECTED, encode_rejected(&state.rejected));
    if !changes.is_empty() {
        set.insert(keys::CHANGE_CAUSE, Some(change_cause(changes)));
    }
    match existing {
        None => {
            let map: BTreeMap<&str, String> = set
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": map}));
        }
        Some(existing) => {
            for (key, value) in set {
                let path = format!("/metadata/annotations/{}", escape(key));
                match value {
                    Some(value) if existing.get(key) != Some(&value) => {
                        ops.push(json!({"op": "add", "path": path, "value": value}))
                    }
                    None if existing.contains_key(key) => {
                        ops.push(json!({"op": "remove", "path": path}))
                    }
                    _ => {}
                }
            }
        }
    }
    // Every op above is well-formed by construction; an empty patch is the safe fallback.
    serde_json::from_value(Value::Array(ops)).unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

/// Removes one annotation, and nothing else, from the object exactly as read: the `test` on
/// `resource_version` makes any change in between refuse it (for a Deployment tagwatch no longer
/// manages, whose other annotations are not tagwatch's to rewrite).
pub fn remove_annotation(key: &str, resource_version: &str) -> json_patch::Patch {
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "remove", "path": format!("/metadata/annotations/{}", escape(key))},
    ]);
    serde_json::from_value(ops).unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

/// RFC 6901: `~` → `~0`, `/` → `~1`.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn change() -> ImageChange {
        ImageChange {
            container: "web".into(),
            image_path: "/spec/template/spec/containers/0/image".into(),
            from: "r/app:1.2.3".into(),
            to: "r/app:1.2.4".into(),
            from_tag: "1.2.3".into(),
            to_tag: "1.2.4".into(),
        }
    }

    fn state() -> State {
        State {
            applied: BTreeMap::from([("web".into(), "r/app:1.2.4".into())]),
            track: BTreeMap::from([("web".into(), Alias::new(1, None))]),
            rejected: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn guards_each_image_and_records_state() {
        let existing = BTreeMap::from([
            ("tagwatch.dev/policy".to_string(), "minor".to_string()),
            ("tagwatch.dev/rejected".to_string(), "1.0.0".to_string()),
        ]);
        let patch = serde_json::to_value(build(&[change()], &state(), Some(&existing))).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "r/app:1.2.3"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "r/app:1.2.4"},
                {"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": "tagwatch: web 1.2.3 → 1.2.4"},
                {"op": "add", "path": "/metadata/annotations/tagwatch.dev~1applied", "value": "{\"web\":\"r/app:1.2.4\"}"},
                {"op": "remove", "path": "/metadata/annotations/tagwatch.dev~1rejected"},
                {"op": "add", "path": "/metadata/annotations/tagwatch.dev~1track", "value": "1"},
            ])
        );
    }

    #[test]
    fn adds_the_annotation_map_when_there_is_none() {
        let patch = serde_json::to_value(build(&[change()], &state(), None)).unwrap();
        let last = patch.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["path"], "/metadata/annotations");
        assert_eq!(last["value"]["tagwatch.dev/track"], "1");
    }

    #[test]
    fn a_guarded_patch_tests_the_resource_version_first_and_sets_extra_annotations() {
        let mut state = state();
        state
            .extra
            .insert("tagwatch.dev/history".into(), Some("[]".into()));
        state.extra.insert("tagwatch.dev/canary-state".into(), None);
        let existing =
            BTreeMap::from([("tagwatch.dev/canary-state".to_string(), "{}".to_string())]);
        let patch =
            serde_json::to_value(build_guarded(&[], &state, Some(&existing), Some("42"))).unwrap();
        let ops = patch.as_array().unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"})
        );
        assert!(ops.contains(
            &json!({"op": "remove", "path": "/metadata/annotations/tagwatch.dev~1canary-state"})
        ));
        assert!(ops.contains(&json!({"op": "add", "path": "/metadata/annotations/tagwatch.dev~1history", "value": "[]"})));
    }

    #[test]
    fn removing_one_annotation_is_guarded_by_the_resource_version() {
        let patch =
            serde_json::to_value(remove_annotation("tagwatch.dev/canary-state", "7")).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "remove", "path": "/metadata/annotations/tagwatch.dev~1canary-state"},
            ])
        );
    }

    #[test]
    fn escapes_pointer_segments() {
        assert_eq!(escape("a/b~c"), "a~1b~0c");
    }
}
