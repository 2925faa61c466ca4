//! Object storage with one monotonic resourceVersion, a change history for watches, and the
//! broadcast that wakes open watches. Everything here runs under the server's single lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::resources::Resource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One write, as a watch replays or streams it.
pub(crate) struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub resource: &'static Resource,
    pub object: Value,
    /// The object before a modification: a filtered watch needs it to see an object leave or
    /// enter its selector.
    pub previous: Option<Value>,
}

#[derive(Clone)]
pub(crate) enum Signal {
    Change(Arc<Change>),
    /// `expire_watches()`: open watches end with a 410; carries the new oldest resourceVersion.
    Expire(u64),
    Shutdown,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    group: &'static str,
    plural: &'static str,
    namespace: String,
    name: String,
}

impl ObjectKey {
    fn new(resource: &'static Resource, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: resource.group,
            plural: resource.plural,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn of(resource: &'static Resource, object: &Value) -> ObjectKey {
        let meta = &object["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ObjectKey {
            group: resource.group,
            plural: resource.plural,
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
        }
    }
}

/// A stored object with the resource it was written through, so that deleting a namespace can
/// name each object's resource, custom ones included.
struct Stored {
    resource: &'static Resource,
    object: Value,
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<ObjectKey, Stored>,
    history: Vec<Arc<Change>>,
    /// Watches from a resourceVersion older than this get 410 Expired, like after etcd compaction.
    oldest_rv: u64,
    signals: broadcast::Sender<Signal>,
}

impl Store {
    pub fn new() -> Store {
        let (signals, _) = broadcast::channel(4096);
        Store {
            // Start where a fresh real cluster roughly is, so "0" never looks like a real version.
            rv: 100,
            objects: BTreeMap::new(),
            history: Vec::new(),
            oldest_rv: 0,
            signals,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, resource: &'static Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&ObjectKey::new(resource, namespace, name))
            .map(|stored| &stored.object)
    }

    /// Objects of one resource (in one namespace, or all), in (namespace, name) order like etcd keys.
    pub fn list<'a>(
        &'a self,
        resource: &'static Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |(key, _)| {
                key.group == resource.group
                    && key.plural == resource.plural
                    && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, stored)| &stored.object)
    }

    /// The objects of any resource in `namespace` with an owner reference to `uid`.
    pub fn owned_by(&self, namespace: &str, uid: &str) -> Vec<(&'static Resource, String)> {
        self.objects
            .iter()
            .filter(|(key, _)| key.namespace == namespace)
            .filter(|(_, stored)| {
                stored.object["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["uid"] == uid)
            })
            .map(|(key, stored)| (stored.resource, key.name.clone()))
            .collect()
    }

    /// Whether any stored object has this uid.
    pub fn exists_uid(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|stored| stored.object["metadata"]["uid"] == uid)
    }

    /// Stores a new object, stamping uid, creationTimestamp and a resourceVersion.
    pub fn insert(&mut self, resource: &'static Resource, mut object: Value) -> Value {
        let meta = &mut object["metadata"];
        meta["uid"] = json!(random_uid());
        meta["creationTimestamp"] = json!(now());
        self.write(resource, object, ChangeKind::Added)
    }

    /// Replaces a stored object under a new resourceVersion.
    pub fn update(&mut self, resource: &'static Resource, object: Value) -> Value {
        self.write(resource, object, ChangeKind::Modified)
    }

    pub fn remove(
        &mut self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&ObjectKey::new(resource, namespace, name))?
            .object;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(resource, ChangeKind::Deleted, &object, None);
        Some(object)
    }

    /// Deletes every object in a namespace, each with its own DELETED event.
    pub fn remove_namespace_contents(&mut self, namespace: &str) {
        let doomed: Vec<(&'static Resource, ObjectKey)> = self
            .objects
            .iter()
            .filter(|(key, _)| key.namespace == namespace)
            .map(|(key, stored)| (stored.resource, key.clone()))
            .collect();
        for (resource, key) in doomed {
            self.remove(resource, &key.namespace, &key.name);
        }
    }

    /// Deletes every object of a resource in every namespace, each with its own DELETED event.
    pub fn remove_all(&mut self, resource: &'static Resource) {
        let doomed: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|key| key.group == resource.group && key.plural == resource.plural)
            .cloned()
            .collect();
        for key in doomed {
            self.remove(resource, &key.namespace, &key.name);
        }
    }

    fn write(&mut self, resource: &'static Resource, mut object: Value, kind: ChangeKind) -> Value {
        self.rv += 1;
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let stored = Stored {
            resource,
            object: object.clone(),
        };
        let previous = self
            .objects
            .insert(ObjectKey::of(resource, &object), stored)
            .map(|s| s.object);
        self.record(resource, kind, &object, previous);
        object
    }

    fn record(
        &mut self,
        resource: &'static Resource,
        kind: ChangeKind,
        object: &Value,
        previous: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            resource,
            object: object.clone(),
            previous,
        });
        self.history.push(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.signals.send(Signal::Change(change));
    }

    /// Subscribing under the lock guarantees no change falls between replay and live events.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }

    /// Changes after `rv`, or `Err(oldest)` when `rv` is older than what is remembered.
    pub fn changes_after(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.oldest_rv {
            return Err(self.oldest_rv);
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    pub fn oldest_rv(&self) -> u64 {
        self.oldest_rv
    }

    /// Forgets history up to now and ends every open watch with 410 Expired.
    pub fn expire(&mut self) {
        self.oldest_rv = self.rv;
        self.history.clear();
        let _ = self.signals.send(Signal::Expire(self.oldest_rv));
    }

    pub fn shutdown(&self) {
        let _ = self.signals.send(Signal::Shutdown);
    }
}

/// RFC 3339 seconds, the precision the API server uses for metadata timestamps.
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn random_uid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The 5-character suffixes the server appends for `generateName` (no vowels, no look-alikes).
pub(crate) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
