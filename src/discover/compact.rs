//! How the watch caches hold an object: its identity and versions as fields, the rest as the
//! JSON of its trimmed form, decoded when something reads it.
//!
//! A trimmed object is a few hundred bytes of JSON, but parsed into k8s-openapi's types it costs
//! about 8 KB: every optional field of a pod spec, a container and a status is laid out whether
//! set or not, and each label or annotation map is a B-tree node with room for eleven entries.
//! Even an `ObjectMeta` holding five fields is laid out whole (about 400 B). An idle turn reads
//! only each object's identity and resourceVersion; the whole object is decoded when its workload
//! is parsed again (its resourceVersion moved) or checked, so at 10,000 workloads the caches cost
//! a tenth of what parsed objects would.
//!
//! The object is trimmed ([`super::trim`]) and encoded while its list page or watch event is
//! decoded ([`Arriving`]), so no parsed object outlives its moment. Its identity is moved out of
//! the JSON into fields, not copied: the body holds everything else.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use super::object::Object;
use super::trim::Trim;
use crate::model::annotations::CANARY_OF;
use crate::model::kind::Kind;
use crate::model::workload::WorkloadId;

/// One object of kind `K` as cached: what identifies it, and the rest of its trimmed form as JSON.
pub struct Compact<K> {
    name: Option<Box<str>>,
    namespace: Option<Box<str>>,
    uid: Option<Box<str>>,
    resource_version: Option<Box<str>>,
    generation: Option<i64>,
    /// One of tagwatch's canaries (`tagwatch.dev/canary-of`): the sweep looks for them each
    /// turn, without decoding anything.
    canary: bool,
    /// The trimmed object without the fields above.
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for Compact<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("resource_version", &self.resource_version)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl<K> Compact<K> {
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// The same object as `other` (namespace and name), whatever its version.
    pub fn same_object(&self, other: &Compact<K>) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }
}

impl<K> Compact<K>
where
    K: Resource + Trim + Serialize + DeserializeOwned,
{
    /// Trims `object` and keeps it compact.
    pub fn new(object: K) -> Result<Compact<K>, serde_json::Error> {
        Arriving::new(object).map(Arriving::into_compact)
    }

    /// The trimmed object, parsed, with its identity put back.
    pub fn decode(&self) -> Result<K, serde_json::Error> {
        let mut object: K = serde_json::from_slice(&self.body)?;
        let meta = object.meta_mut();
        let owned = |field: &Option<Box<str>>| field.as_deref().map(str::to_owned);
        meta.name = owned(&self.name);
        meta.namespace = owned(&self.namespace);
        meta.uid = owned(&self.uid);
        meta.resource_version = owned(&self.resource_version);
        meta.generation = self.generation;
        Ok(object)
    }
}

/// An object as the watcher decodes it from a list page or a watch event: already compact, with
/// its identity in an `ObjectMeta` because kube's watcher reads the resourceVersion to resume
/// from through [`Resource`]. Stored as the [`Compact`] it carries, without the `ObjectMeta`.
pub struct Arriving<K> {
    meta: ObjectMeta,
    canary: bool,
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Arriving<K> {
    fn clone(&self) -> Self {
        Arriving {
            meta: self.meta.clone(),
            canary: self.canary,
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Arriving<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arriving")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("resource_version", &self.meta.resource_version)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl<K> Arriving<K>
where
    K: Resource + Trim + Serialize + DeserializeOwned,
{
    /// Trims `object`, moves its identity out and encodes the rest.
    pub fn new(mut object: K) -> Result<Arriving<K>, serde_json::Error> {
        object.trim();
        let canary = object
            .meta()
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(CANARY_OF));
        let full = object.meta_mut();
        let meta = ObjectMeta {
            name: full.name.take(),
            namespace: full.namespace.take(),
            uid: full.uid.take(),
            resource_version: full.resource_version.take(),
            generation: full.generation.take(),
            ..ObjectMeta::default()
        };
        let body = serde_json::to_vec(&object)?.into_boxed_slice();
        Ok(Arriving {
            meta,
            canary,
            body,
            kind: PhantomData,
        })
    }
}

impl<K> Arriving<K> {
    pub fn into_compact(self) -> Compact<K> {
        let boxed = |field: Option<String>| field.map(String::into_boxed_str);
        Compact {
            name: boxed(self.meta.name),
            namespace: boxed(self.meta.namespace),
            uid: boxed(self.meta.uid),
            resource_version: boxed(self.meta.resource_version),
            generation: self.meta.generation,
            canary: self.canary,
            body: self.body,
            kind: PhantomData,
        }
    }
}

impl<'de, K> Deserialize<'de> for Arriving<K>
where
    K: Resource + Trim + Serialize + DeserializeOwned,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Arriving::new(K::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<K: Resource> Resource for Arriving<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// One object of a snapshot: cheap to clone (an `Arc`), read without decoding for what an idle
/// turn needs, decoded into an [`Object`] for the rest.
#[derive(Debug, Clone)]
pub enum Cached {
    Deployment(Arc<Compact<Deployment>>),
    StatefulSet(Arc<Compact<StatefulSet>>),
    DaemonSet(Arc<Compact<DaemonSet>>),
    CronJob(Arc<Compact<CronJob>>),
    Rollout(Arc<Compact<DynamicObject>>),
}

/// The same expression over each kind's variant.
macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Cached::Deployment($o) => $e,
            Cached::StatefulSet($o) => $e,
            Cached::DaemonSet($o) => $e,
            Cached::CronJob($o) => $e,
            Cached::Rollout($o) => $e,
        }
    };
}

impl Cached {
    pub fn kind(&self) -> Kind {
        match self {
            Cached::Deployment(_) => Kind::Deployment,
            Cached::StatefulSet(_) => Kind::StatefulSet,
            Cached::DaemonSet(_) => Kind::DaemonSet,
            Cached::CronJob(_) => Kind::CronJob,
            Cached::Rollout(_) => Kind::Rollout,
        }
    }

    pub fn name(&self) -> Option<&str> {
        each!(self, o => o.name())
    }

    pub fn namespace(&self) -> Option<&str> {
        each!(self, o => o.namespace())
    }

    pub fn uid(&self) -> Option<&str> {
        each!(self, o => o.uid())
    }

    pub fn generation(&self) -> Option<i64> {
        each!(self, o => o.generation())
    }

    pub fn id(&self) -> WorkloadId {
        super::object::id_of(self.kind(), self.namespace(), self.name())
    }

    pub fn is(&self, id: &WorkloadId) -> bool {
        super::object::is_of(self.kind(), self.namespace(), self.name(), id)
    }

    pub fn resource_version(&self) -> Option<&str> {
        each!(self, o => o.resource_version())
    }

    /// One of tagwatch's canaries.
    pub fn is_canary(&self) -> bool {
        each!(self, o => o.canary)
    }

    /// The whole (trimmed) object. Fails only if the JSON tagwatch encoded itself does not decode
    /// back, which a test pins for every kind.
    pub fn decode(&self) -> Result<Object, serde_json::Error> {
        Ok(match self {
            Cached::Deployment(o) => Object::Deployment(Arc::new(o.decode()?)),
            Cached::StatefulSet(o) => Object::StatefulSet(Arc::new(o.decode()?)),
            Cached::DaemonSet(o) => Object::DaemonSet(Arc::new(o.decode()?)),
            Cached::CronJob(o) => Object::CronJob(Arc::new(o.decode()?)),
            Cached::Rollout(o) => Object::Rollout(Arc::new(o.decode()?)),
        })
    }

    /// The whole object, or None (logged) in the case [`Cached::decode`] describes.
    pub fn object(&self) -> Option<Object> {
        self.decode()
            .inspect_err(|e| {
                tracing::error!(workload = %self.id(), error = %e,
                    "a cached object does not decode; skipped");
            })
            .ok()
    }

    /// Caches an object read some other way (a list, a test's fixture).
    pub fn new(object: &Object) -> Result<Cached, serde_json::Error> {
        fn compact<K>(o: &K) -> Result<Arc<Compact<K>>, serde_json::Error>
        where
            K: Resource + Trim + Serialize + DeserializeOwned + Clone,
        {
            Compact::new(o.clone()).map(Arc::new)
        }
        Ok(match object {
            Object::Deployment(o) => Cached::Deployment(compact(o.as_ref())?),
            Object::StatefulSet(o) => Cached::StatefulSet(compact(o.as_ref())?),
            Object::DaemonSet(o) => Cached::DaemonSet(compact(o.as_ref())?),
            Object::CronJob(o) => Cached::CronJob(compact(o.as_ref())?),
            Object::Rollout(o) => Cached::Rollout(compact(o.as_ref())?),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::discover::trim::LAST_APPLIED;
    use crate::discover::Source;
    use serde_json::{json, Value};

    fn meta(name: &str) -> Value {
        json!({
            "name": name, "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
            "generation": 3, "labels": {"app": "web"},
            "annotations": {"tagwatch.dev/policy": "minor", LAST_APPLIED: "{}"},
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {}}],
        })
    }

    fn pod() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"checksum/config": "abc"}},
            "spec": {
                "serviceAccountName": "web",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{"name": "web", "image": "registry.example/web:1.2.3",
                    "env": [{"name": "LOG", "value": "info"}]}],
            },
        })
    }

    /// Each kind as the API server sends it, and the same object trimmed.
    fn kinds() -> Vec<(Value, Object, Object)> {
        fn pair<K>(json: Value, wrap: fn(Arc<K>) -> Object) -> (Value, Object, Object)
        where
            K: Trim + DeserializeOwned,
        {
            let whole: K = serde_json::from_value(json.clone()).unwrap();
            let mut trimmed: K = serde_json::from_value(json.clone()).unwrap();
            trimmed.trim();
            (json, wrap(Arc::new(whole)), wrap(Arc::new(trimmed)))
        }
        vec![
            pair::<Deployment>(
                json!({"metadata": meta("web"), "spec": {"replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}}, "template": pod()},
                    "status": {"observedGeneration": 3, "updatedReplicas": 2,
                        "conditions": [{"type": "Progressing", "status": "True",
                            "reason": "NewReplicaSetAvailable"}]}}),
                Object::Deployment,
            ),
            pair::<StatefulSet>(
                json!({"metadata": meta("db"), "spec": {"selector": {}, "serviceName": "db",
                    "template": pod(), "updateStrategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"partition": 1}}},
                    "status": {"replicas": 3, "currentRevision": "db-1"}}),
                Object::StatefulSet,
            ),
            pair::<DaemonSet>(
                json!({"metadata": meta("agent"), "spec": {"selector": {}, "template": pod()}}),
                Object::DaemonSet,
            ),
            pair::<CronJob>(
                json!({"metadata": meta("nightly"), "spec": {"schedule": "0 3 * * *",
                    "jobTemplate": {"spec": {"template": pod()}}}}),
                Object::CronJob,
            ),
            pair::<DynamicObject>(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "metadata": meta("edge"), "spec": {"replicas": 3, "template": pod(),
                        "strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
                    "status": {"phase": "Healthy"}}),
                Object::Rollout,
            ),
        ]
    }

    fn cached_from_json(kind: Kind, json: Value) -> Cached {
        fn arc<K>(json: Value) -> Arc<Compact<K>>
        where
            K: Resource + Trim + Serialize + DeserializeOwned,
        {
            let arriving: Arriving<K> = serde_json::from_value(json).unwrap();
            Arc::new(arriving.into_compact())
        }
        match kind {
            Kind::Deployment => Cached::Deployment(arc(json)),
            Kind::StatefulSet => Cached::StatefulSet(arc(json)),
            Kind::DaemonSet => Cached::DaemonSet(arc(json)),
            Kind::CronJob => Cached::CronJob(arc(json)),
            Kind::Rollout => Cached::Rollout(arc(json)),
        }
    }

    #[test]
    fn every_kind_decoded_as_the_api_server_sends_it_gives_back_its_trimmed_object() {
        for (json, whole, trimmed) in kinds() {
            let kind = Source::kind(&whole);
            // As the watcher decodes a list page or an event: straight from the wire.
            let cached = cached_from_json(kind, json);
            let decoded = cached.decode().unwrap();
            assert_eq!(
                format!("{decoded:?}"),
                format!("{trimmed:?}"),
                "{kind:?} decodes to its trimmed form"
            );
            assert_eq!(Source::meta(&decoded).managed_fields, None);
            assert!(!Source::meta(&decoded)
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(LAST_APPLIED));
            // Discovery reads the same workload from the cached object as from the whole one.
            let from_whole = crate::discover::workload(&whole);
            assert_eq!(
                format!("{:?}", crate::discover::workload(&decoded)),
                format!("{from_whole:?}"),
                "{kind:?}"
            );
            // Cached from an object read otherwise, the same again.
            let again = Cached::new(&whole).unwrap().decode().unwrap();
            assert_eq!(format!("{again:?}"), format!("{trimmed:?}"));
        }
    }

    #[test]
    fn the_fields_an_idle_turn_reads_need_no_decoding() {
        for (json, whole, _) in kinds() {
            let kind = Source::kind(&whole);
            let cached = cached_from_json(kind, json);
            assert_eq!(cached.kind(), kind);
            assert_eq!(cached.namespace(), Some("shop"));
            assert_eq!(cached.uid(), Some("u-1"));
            assert_eq!(cached.resource_version(), Some("7"));
            assert_eq!(cached.generation(), Some(3));
            assert_eq!(cached.id(), whole.id());
            assert!(cached.is(&whole.id()));
            assert!(!cached.is_canary());
            // The identity is moved out of the JSON, not copied.
            let body: Value = each!(&cached, o => serde_json::from_slice(&o.body).unwrap());
            for field in ["name", "namespace", "uid", "resourceVersion", "generation"] {
                assert_eq!(
                    body["metadata"].get(field),
                    None,
                    "{kind:?} body keeps {field}"
                );
            }
            assert_eq!(body["metadata"]["labels"]["app"], "web", "{kind:?}");
        }
    }

    #[test]
    fn a_canary_is_known_without_decoding() {
        let mut json = kinds().remove(0).0;
        json["metadata"]["annotations"][CANARY_OF] = json!("web");
        let cached = cached_from_json(Kind::Deployment, json);
        assert!(cached.is_canary());
    }

    #[test]
    fn a_cached_deployment_costs_a_fraction_of_the_parsed_one() {
        let (json, _, trimmed) = kinds().remove(0);
        let cached = cached_from_json(Kind::Deployment, json);
        let Cached::Deployment(compact) = &cached else {
            unreachable!()
        };
        // The parsed, trimmed Deployment's own struct alone, before any of its maps and strings.
        let parsed = std::mem::size_of::<Deployment>();
        let held = std::mem::size_of::<Compact<Deployment>>() + compact.body.len();
        assert!(held * 2 < parsed, "held {held} B, parsed struct {parsed} B");
        assert!(matches!(trimmed, Object::Deployment(_)));
    }
}
