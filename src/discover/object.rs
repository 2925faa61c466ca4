//! One object of a watched kind, as the reflectors hold it: cheap to clone (an `Arc`), and read
//! the same way whatever its kind (metadata, pod template) by discovery, planning and checks.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};

use crate::model::kind::Kind;
use crate::model::workload::WorkloadId;

#[derive(Debug, Clone)]
pub enum Object {
    Deployment(Arc<Deployment>),
    StatefulSet(Arc<StatefulSet>),
    DaemonSet(Arc<DaemonSet>),
    CronJob(Arc<CronJob>),
    /// Argo Rollouts' kind has no typed API here: read through its JSON.
    Rollout(Arc<DynamicObject>),
}

/// What discovery reads of an object, whatever its kind.
pub trait Source {
    fn kind(&self) -> Kind;
    fn meta(&self) -> &ObjectMeta;
    /// The pod template, where the kind keeps it (`spec.template`, a CronJob's job template).
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>>;
}

impl Source for Deployment {
    fn kind(&self) -> Kind {
        Kind::Deployment
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec.as_ref().map(|s| Cow::Borrowed(&s.template))
    }
}

impl Source for StatefulSet {
    fn kind(&self) -> Kind {
        Kind::StatefulSet
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec.as_ref().map(|s| Cow::Borrowed(&s.template))
    }
}

impl Source for DaemonSet {
    fn kind(&self) -> Kind {
        Kind::DaemonSet
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec.as_ref().map(|s| Cow::Borrowed(&s.template))
    }
}

impl Source for CronJob {
    fn kind(&self) -> Kind {
        Kind::CronJob
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        let job = self.spec.as_ref()?.job_template.spec.as_ref()?;
        Some(Cow::Borrowed(&job.template))
    }
}

impl Source for DynamicObject {
    fn kind(&self) -> Kind {
        Kind::Rollout
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        // A template that does not decode is no template: the workload has nothing to watch.
        let template = self.data.get("spec")?.get("template")?;
        serde_json::from_value(template.clone())
            .ok()
            .map(Cow::Owned)
    }
}

impl Source for Object {
    fn kind(&self) -> Kind {
        match self {
            Object::Deployment(_) => Kind::Deployment,
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::CronJob(_) => Kind::CronJob,
            Object::Rollout(_) => Kind::Rollout,
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Deployment(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::Rollout(o) => &o.metadata,
        }
    }

    fn pod_template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        match self {
            Object::Deployment(o) => o.pod_template(),
            Object::StatefulSet(o) => o.pod_template(),
            Object::DaemonSet(o) => o.pod_template(),
            Object::CronJob(o) => o.pod_template(),
            Object::Rollout(o) => o.pod_template(),
        }
    }
}

/// Who an object of `kind` named `name` in `namespace` is.
pub fn id_of(kind: Kind, namespace: Option<&str>, name: Option<&str>) -> WorkloadId {
    WorkloadId::new(
        kind,
        namespace.unwrap_or("default"),
        name.unwrap_or_default(),
    )
}

/// Whether an object of `kind` named `name` in `namespace` is `id`, without building its id.
pub fn is_of(kind: Kind, namespace: Option<&str>, name: Option<&str>, id: &WorkloadId) -> bool {
    kind == id.kind && name == Some(id.name.as_str()) && namespace == Some(id.namespace.as_str())
}

impl Object {
    pub fn id(&self) -> WorkloadId {
        let meta = self.meta();
        id_of(self.kind(), meta.namespace.as_deref(), meta.name.as_deref())
    }

    pub fn is(&self, id: &WorkloadId) -> bool {
        let meta = self.meta();
        is_of(
            self.kind(),
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            id,
        )
    }

    pub fn as_deployment(&self) -> Option<&Deployment> {
        match self {
            Object::Deployment(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_stateful_set(&self) -> Option<&StatefulSet> {
        match self {
            Object::StatefulSet(s) => Some(s),
            _ => None,
        }
    }

    /// Reads any object of a served kind from its JSON (a dynamic read or write's answer).
    pub fn from_dynamic(kind: Kind, object: DynamicObject) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::Rollout => Object::Rollout(Arc::new(object)),
            kind => {
                let value = serde_json::to_value(&object)?;
                match kind {
                    Kind::Deployment => {
                        Object::Deployment(Arc::new(serde_json::from_value(value)?))
                    }
                    Kind::StatefulSet => {
                        Object::StatefulSet(Arc::new(serde_json::from_value(value)?))
                    }
                    Kind::DaemonSet => Object::DaemonSet(Arc::new(serde_json::from_value(value)?)),
                    Kind::CronJob => Object::CronJob(Arc::new(serde_json::from_value(value)?)),
                    Kind::Rollout => Object::Rollout(Arc::new(serde_json::from_value(value)?)),
                }
            }
        })
    }
}

/// The API resource of a kind, for dynamic reads and writes of any kind alike.
pub fn api_resource(kind: Kind) -> ApiResource {
    ApiResource {
        group: kind.group().to_string(),
        version: kind.version().to_string(),
        api_version: kind.api_version().to_string(),
        kind: kind.name().to_string(),
        plural: kind.plural().to_string(),
    }
}

impl From<Deployment> for Object {
    fn from(o: Deployment) -> Object {
        Object::Deployment(Arc::new(o))
    }
}

impl From<Arc<Deployment>> for Object {
    fn from(o: Arc<Deployment>) -> Object {
        Object::Deployment(o)
    }
}

impl From<StatefulSet> for Object {
    fn from(o: StatefulSet) -> Object {
        Object::StatefulSet(Arc::new(o))
    }
}

impl From<DaemonSet> for Object {
    fn from(o: DaemonSet) -> Object {
        Object::DaemonSet(Arc::new(o))
    }
}

impl From<CronJob> for Object {
    fn from(o: CronJob) -> Object {
        Object::CronJob(Arc::new(o))
    }
}
