//! Field ownership (`metadata.managedFields`) and server-side apply, as the real server keeps
//! them: every write records which manager set which fields (FieldsV1), an apply merges the
//! applied configuration, removes the fields its manager stopped applying, and answers 409 when
//! it would change a field another manager owns, unless forced (30-server-side-apply).
//!
//! Simplified against the real structured-merge-diff: lists whose items all carry a `name` are
//! associative by `name` (containers, env, volumes, imagePullSecrets); every other list is atomic.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::status::ApiError;
use super::store::now;

/// One owned field, as FieldsV1 path segments: `f:spec`, `k:{"name":"api"}`, `.`.
pub(crate) type FieldPath = Vec<String>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Who writes: the manager and, for a subresource write, which one.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub manager: String,
    pub subresource: Option<&'static str>,
}

impl Writer {
    pub fn new(manager: &str) -> Writer {
        Writer {
            manager: manager.to_string(),
            subresource: None,
        }
    }

    /// `fieldManager`, else the User-Agent up to its first `/`, as the real server names them.
    pub fn from_request(field_manager: Option<&str>, user_agent: Option<&str>) -> Writer {
        let manager = field_manager
            .filter(|m| !m.is_empty())
            .or_else(|| user_agent.and_then(|ua| ua.split('/').next()))
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown");
        Writer::new(manager)
    }

    pub fn status(mut self) -> Writer {
        self.subresource = Some("status");
        self
    }
}

/// Metadata the server owns itself: never part of anyone's field set.
const SYSTEM_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

fn associative(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i["name"].is_string())
}

fn item_key(item: &Value) -> String {
    format!("k:{}", json!({"name": item["name"]}))
}

fn walk(value: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(format!("f:{key}"));
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if associative(items) => {
            for item in items {
                prefix.push(item_key(item));
                prefix.push(".".into());
                out.insert(prefix.clone());
                prefix.pop();
                walk(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The fields a writer of `object` sets in the part it may write (`status` or the rest).
pub(crate) fn fields_of(object: &Value, subresource: Option<&str>) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, child) in map {
        let wanted = match subresource {
            Some(sub) => key == sub,
            None => !matches!(key.as_str(), "apiVersion" | "kind" | "status"),
        };
        if !wanted {
            continue;
        }
        let mut prefix = vec![format!("f:{key}")];
        if key == "metadata" {
            let mut meta = child.clone();
            if let Some(m) = meta.as_object_mut() {
                m.retain(|k, _| !SYSTEM_METADATA.contains(&k.as_str()));
            }
            if meta.as_object().is_some_and(|m| !m.is_empty()) {
                walk(&meta, &mut prefix, &mut out);
            }
        } else {
            walk(child, &mut prefix, &mut out);
        }
    }
    out
}

/// FieldsV1 JSON for a set of paths.
pub(crate) fn encode(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for segment in path {
            let child = node
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Value::Object(next) = child else {
                break;
            };
            node = next;
        }
    }
    Value::Object(root)
}

/// The set of paths a FieldsV1 JSON describes.
pub(crate) fn decode(fields: &Value) -> FieldSet {
    fn go(node: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        match node.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.clone());
                    go(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    go(fields, &mut Vec::new(), &mut out);
    out
}

/// The value a path points at, if the object has it.
fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = object;
    for segment in path {
        node = if let Some(field) = segment.strip_prefix("f:") {
            node.get(field)?
        } else if let Some(key) = segment.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).ok()?;
            node.as_array()?.iter().find(|i| i["name"] == key["name"])?
        } else if segment == "." {
            node
        } else {
            return None;
        };
    }
    Some(node)
}

/// Removes the field (or list item, for a `.` path) a path points at.
fn remove_at(object: &mut Value, path: &[String]) {
    let (parent_path, last) = match path {
        [rest @ .., last] if last == "." => match rest {
            [parent @ .., item] => (parent, item.as_str()),
            [] => return,
        },
        [parent @ .., last] => (parent, last.as_str()),
        [] => return,
    };
    let mut node = object;
    for segment in parent_path {
        let next = if let Some(field) = segment.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(key) = segment.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).unwrap_or_default();
            node.as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| i["name"] == key["name"]))
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        let key: Value = serde_json::from_str(key).unwrap_or_default();
        if let Some(items) = node.as_array_mut() {
            items.retain(|i| i["name"] != key["name"]);
        }
    }
}

/// `.spec.template.spec.containers[name="api"].image`, as conflict messages name a field.
fn describe(path: &[String]) -> String {
    let mut text = String::new();
    for segment in path {
        if let Some(field) = segment.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(key) = segment.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).unwrap_or_default();
            text.push_str(&format!("[name={}]", key["name"]));
        }
    }
    text
}

/// Applies `applied` onto `current` as a merge: maps merge, name-keyed lists merge by name,
/// everything else is replaced.
fn merge(current: &mut Value, applied: &Value) {
    match (current, applied) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Array(target), Value::Array(source))
            if associative(source) && (target.is_empty() || associative(target)) =>
        {
            for item in source {
                match target.iter_mut().find(|t| t["name"] == item["name"]) {
                    Some(existing) => merge(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, source) => *target = source.clone(),
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn parse(value: &Value) -> Option<Entry> {
        Some(Entry {
            manager: value["manager"].as_str()?.to_string(),
            operation: value["operation"].as_str()?.to_string(),
            api_version: value["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: value["time"].as_str().unwrap_or_default().to_string(),
            subresource: value["subresource"].as_str().map(str::to_string),
            fields: decode(&value["fieldsV1"]),
        })
    }

    fn to_value(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Entry::parse)
        .collect()
}

fn store_entries(object: &mut Value, entries: Vec<Entry>) {
    let kept: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    if let Some(meta) = object["metadata"].as_object_mut() {
        if kept.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(kept));
        }
    }
}

fn upsert(list: &mut Vec<Entry>, writer: &Writer, operation: &str, api_version: &str) -> usize {
    let position = list
        .iter()
        .position(|e| e.same_owner(&writer.manager, operation, writer.subresource));
    match position {
        Some(i) => {
            list[i].time = now();
            list[i].api_version = api_version.to_string();
            i
        }
        None => {
            list.push(Entry {
                manager: writer.manager.clone(),
                operation: operation.to_string(),
                api_version: api_version.to_string(),
                time: now(),
                subresource: writer.subresource.map(str::to_string),
                fields: FieldSet::new(),
            });
            list.len() - 1
        }
    }
}

/// Records an ordinary write (create, replace, JSON/merge patch, status write) of `updated`
/// over `previous` (None for a create): the writer takes the fields it changed from everyone.
/// Whatever `managedFields` the client sent are replaced by the server's bookkeeping.
pub(crate) fn record_update(previous: Option<&Value>, updated: &mut Value, writer: &Writer) {
    let api_version = updated["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut list = previous.map(entries).unwrap_or_default();
    let now_fields = fields_of(updated, writer.subresource);
    let before = previous
        .map(|p| fields_of(p, writer.subresource))
        .unwrap_or_default();
    let changed: FieldSet = now_fields
        .iter()
        .filter(|path| previous.is_none_or(|p| value_at(p, path) != value_at(updated, path)))
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&now_fields).cloned().collect();
    for entry in &mut list {
        entry.fields.retain(|f| !removed.contains(f));
        if !entry.same_owner(&writer.manager, "Update", writer.subresource) {
            entry.fields.retain(|f| !changed.contains(f));
        }
    }
    if !changed.is_empty() {
        let i = upsert(&mut list, writer, "Update", &api_version);
        list[i].fields.extend(changed);
    }
    store_entries(updated, list);
}

/// Server-side apply of `applied` by `writer` onto `current` (None: the object is created).
/// Returns the object to store, or 409 naming each field another manager owns with another
/// value (unless `force`, which takes them over).
pub(crate) fn apply(
    current: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, ApiError> {
    let api_version = applied["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let applied_fields = fields_of(applied, writer.subresource);
    let Some(current) = current else {
        let mut created = applied.clone();
        let list = vec![Entry {
            manager: writer.manager.clone(),
            operation: "Apply".into(),
            api_version,
            time: now(),
            subresource: writer.subresource.map(str::to_string),
            fields: applied_fields,
        }];
        store_entries(&mut created, list);
        return Ok(created);
    };
    let mut list = entries(current);
    let mut conflicts: Vec<(String, String, FieldPath)> = Vec::new();
    for entry in &list {
        if entry.manager == writer.manager {
            continue;
        }
        for path in entry.fields.intersection(&applied_fields) {
            if path.last().is_some_and(|s| s == ".") {
                continue;
            }
            if value_at(current, path) != value_at(applied, path) {
                conflicts.push((
                    entry.manager.clone(),
                    entry.api_version.clone(),
                    path.clone(),
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict(&conflicts));
    }
    let taken: FieldSet = conflicts.into_iter().map(|(_, _, p)| p).collect();
    for entry in &mut list {
        if entry.manager != writer.manager {
            entry.fields.retain(|f| !taken.contains(f));
        }
    }

    let mut merged = current.clone();
    merge(&mut merged, applied);
    let i = upsert(&mut list, writer, "Apply", &api_version);
    let dropped: FieldSet = list[i]
        .fields
        .difference(&applied_fields)
        .cloned()
        .collect();
    list[i].fields = applied_fields;
    // A field no longer applied goes, unless someone else still owns it; deepest first.
    let mut doomed: Vec<&FieldPath> = dropped
        .iter()
        .filter(|path| !list.iter().any(|e| e.fields.contains(*path)))
        .collect();
    doomed.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in doomed {
        remove_at(&mut merged, path);
    }
    store_entries(&mut merged, list);
    Ok(merged)
}

fn conflict(conflicts: &[(String, String, FieldPath)]) -> ApiError {
    let described: Vec<(String, String)> = conflicts
        .iter()
        .map(|(manager, version, path)| {
            (
                format!("conflict with \"{manager}\" using {version}"),
                describe(path),
            )
        })
        .collect();
    let message = match described.as_slice() {
        [(who, field)] => format!("Apply failed with 1 conflict: {who}: {field}"),
        many => format!(
            "Apply failed with {} conflicts: {}",
            many.len(),
            many.iter()
                .map(|(who, field)| format!("{who}: {field}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let causes: Vec<Value> = described
        .iter()
        .map(|(who, field)| json!({"reason": "FieldManagerConflict", "message": who, "field": field}))
        .collect();
    ApiError::new(409, "Conflict", &message, json!({"causes": causes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(object: &Value) -> Vec<String> {
        fields_of(object, None)
            .iter()
            .map(|p| p.join("/"))
            .collect()
    }

    #[test]
    fn fields_skip_system_metadata_and_key_named_lists() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "resourceVersion": "9", "labels": {"app": "api"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "api", "image": "a:1"}]}},
                     "args": ["x", "y"]},
            "status": {"replicas": 2}
        });
        assert_eq!(
            paths(&object),
            [
                "f:metadata/f:labels/f:app",
                "f:spec/f:args",
                "f:spec/f:replicas",
                "f:spec/f:template/f:spec/f:containers/k:{\"name\":\"api\"}/.",
                "f:spec/f:template/f:spec/f:containers/k:{\"name\":\"api\"}/f:image",
                "f:spec/f:template/f:spec/f:containers/k:{\"name\":\"api\"}/f:name",
            ]
        );
        let status: Vec<String> = fields_of(&object, Some("status"))
            .iter()
            .map(|p| p.join("/"))
            .collect();
        assert_eq!(status, ["f:status/f:replicas"]);
    }

    #[test]
    fn fields_v1_round_trips() {
        let object = json!({"metadata": {"annotations": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let fields = fields_of(&object, None);
        let encoded = encode(&fields);
        assert_eq!(
            encoded,
            json!({"f:metadata": {"f:annotations": {"f:a": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        );
        assert_eq!(decode(&encoded), fields);
    }

    #[test]
    fn an_update_takes_the_fields_it_changed() {
        let created = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let mut stored = created.clone();
        record_update(None, &mut stored, &Writer::new("kubectl"));
        let mut changed = stored.clone();
        changed["data"]["b"] = json!("3");
        record_update(Some(&stored), &mut changed, &Writer::new("tagwatch"));
        let owners: Vec<(String, Vec<String>)> = entries(&changed)
            .into_iter()
            .map(|e| (e.manager, e.fields.iter().map(|p| p.join("/")).collect()))
            .collect();
        assert_eq!(
            owners,
            [
                ("kubectl".to_string(), vec!["f:data/f:a".to_string()]),
                ("tagwatch".to_string(), vec!["f:data/f:b".to_string()]),
            ]
        );
    }

    #[test]
    fn apply_conflicts_with_another_owner_unless_forced_and_prunes_what_it_dropped() {
        let mut current = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "1"}});
        record_update(None, &mut current, &Writer::new("kubectl"));
        let mine = Writer::new("ci");
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "2", "b": "x"}});
        let Err(error) = apply(Some(&current), &applied, &mine, false) else {
            panic!("a conflict was expected");
        };
        assert_eq!(error.code, 409);
        assert_eq!(
            error.body["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.a"
        );
        let forced = apply(Some(&current), &applied, &mine, true).expect("forced");
        assert_eq!(forced["data"], json!({"a": "2", "b": "x"}));
        // Dropping `b` from the next apply removes it; `a` stays the applier's.
        let again = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "2"}});
        let pruned = apply(Some(&forced), &again, &mine, false).expect("apply");
        assert_eq!(pruned["data"], json!({"a": "2"}));
        let managers: Vec<String> = entries(&pruned).into_iter().map(|e| e.manager).collect();
        assert_eq!(managers, ["ci"]);
    }

    #[test]
    fn managers_come_from_the_field_manager_or_the_user_agent() {
        assert_eq!(
            Writer::from_request(Some("tagwatch"), Some("kubectl/v1.36")).manager,
            "tagwatch"
        );
        assert_eq!(
            Writer::from_request(None, Some("kubectl/v1.36 (linux)")).manager,
            "kubectl"
        );
        assert_eq!(Writer::from_request(None, None).manager, "unknown");
    }
}
