//! What the watch caches keep of each object: what tagwatch reads. A chart-shaped Deployment is
//! about 20 KB of JSON, and tagwatch reads a few hundred bytes of it: the metadata, the image of
//! each container, the pull credentials, the rollout settings and the status. `managedFields`,
//! kubectl's last-applied copy, probes, variables, volumes and the like are dropped as each object
//! arrives, before the reflector stores it, so the cache costs in proportion to what is read.
//!
//! Nothing is ever written back from a trimmed object: a canary is copied from a fresh read of its
//! primary, and every patch names only the fields it changes.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde_json::Value;

/// kubectl's copy of the last applied manifest: the whole object again, as JSON text.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object the watch caches may slim down to what tagwatch reads.
pub trait Trim {
    fn trim(&mut self);
}

/// Drops what tagwatch never reads from an object about to be cached.
pub fn trim<K: Trim>(object: &mut K) {
    object.trim();
}

fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A container as tagwatch reads it: its name and image.
fn container(c: Container) -> Container {
    Container {
        name: c.name,
        image: c.image,
        ..Container::default()
    }
}

/// A pod template keeps its labels (a Job copies its template's labels, and they find it) and,
/// of its pod, the containers' images, the pull secrets and the service account.
fn template(template: &mut PodTemplateSpec) {
    if let Some(m) = template.metadata.as_mut() {
        *m = ObjectMeta {
            labels: m.labels.take(),
            ..ObjectMeta::default()
        };
    }
    if let Some(pod) = template.spec.as_mut() {
        *pod = PodSpec {
            containers: std::mem::take(&mut pod.containers)
                .into_iter()
                .map(container)
                .collect(),
            init_containers: pod
                .init_containers
                .take()
                .map(|c| c.into_iter().map(container).collect()),
            image_pull_secrets: pod.image_pull_secrets.take(),
            service_account_name: pod.service_account_name.take(),
            ..PodSpec::default()
        };
    }
}

/// A condition's times are never read (a rollout is judged by its type, status, reason and
/// message, and by tagwatch's own clock): two timestamps of every condition of every object.
macro_rules! untimed {
    ($status:expr) => {
        for c in $status
            .iter_mut()
            .flat_map(|s| s.conditions.iter_mut().flatten())
        {
            c.last_transition_time = None;
        }
    };
}

impl Trim for Deployment {
    fn trim(&mut self) {
        meta(&mut self.metadata);
        if let Some(spec) = self.spec.as_mut() {
            template(&mut spec.template);
            // The rollout is the controller's; tagwatch judges it by its status alone.
            spec.strategy = None;
            spec.revision_history_limit = None;
        }
        untimed!(self.status);
        for c in self
            .status
            .iter_mut()
            .flat_map(|s| s.conditions.iter_mut().flatten())
        {
            c.last_update_time = None;
        }
    }
}

impl Trim for StatefulSet {
    fn trim(&mut self) {
        meta(&mut self.metadata);
        if let Some(spec) = self.spec.as_mut() {
            template(&mut spec.template);
            spec.volume_claim_templates = None;
            spec.revision_history_limit = None;
        }
        untimed!(self.status);
    }
}

impl Trim for DaemonSet {
    fn trim(&mut self) {
        meta(&mut self.metadata);
        if let Some(spec) = self.spec.as_mut() {
            template(&mut spec.template);
            spec.revision_history_limit = None;
        }
        untimed!(self.status);
    }
}

impl Trim for CronJob {
    fn trim(&mut self) {
        meta(&mut self.metadata);
        if let Some(job) = self.spec.as_mut().map(|s| &mut s.job_template) {
            if let Some(m) = job.metadata.as_mut() {
                *m = ObjectMeta {
                    labels: m.labels.take(),
                    ..ObjectMeta::default()
                };
            }
            if let Some(spec) = job.spec.as_mut() {
                template(&mut spec.template);
            }
        }
    }
}

/// An Argo Rollout, read through its JSON: the same cut of its pod template as the typed kinds'.
impl Trim for DynamicObject {
    fn trim(&mut self) {
        meta(&mut self.metadata);
        let Some(template) = self
            .data
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        if let Some(Value::Object(m)) = template.get_mut("metadata") {
            m.retain(|k, _| k == "labels");
        }
        if let Some(Value::Object(pod)) = template.get_mut("spec") {
            pod.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "containers" | "initContainers" | "imagePullSecrets" | "serviceAccountName"
                )
            });
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(containers)) = pod.get_mut(list) {
                    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                        c.retain(|k, _| k == "name" || k == "image");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::discover::{object::Object, workload};
    use crate::plan::rollout::{self, Progress};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn chart_pod() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"checksum/config": "abc"}},
            "spec": {
                "serviceAccountName": "web",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "affinity": {"podAntiAffinity": {}},
                "initContainers": [{"name": "migrate", "image": "registry.example/migrate:1.0.0",
                    "command": ["migrate"], "env": [{"name": "A", "value": "b"}]}],
                "containers": [{
                    "name": "web", "image": "registry.example/web:1.2.3",
                    "env": [{"name": "LOG", "value": "info"}],
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                }],
            },
        })
    }

    fn chart_deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "7", "generation": 3,
                "uid": "u-1",
                "annotations": {
                    "tagwatch.dev/policy": "minor",
                    LAST_APPLIED: "{\"apiVersion\":\"apps/v1\"}",
                },
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {}}],
            },
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "progressDeadlineSeconds": 600, "template": chart_pod(),
                "revisionHistoryLimit": 10,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                "availableReplicas": 2, "readyReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": "ReplicaSet \"web-5d9\" has successfully progressed.",
                    "lastUpdateTime": "2026-12-01T10:00:00Z",
                    "lastTransitionTime": "2026-12-01T09:00:00Z"}]},
        }))
        .unwrap()
    }

    #[test]
    fn keeps_what_discovery_and_rollout_checks_read_and_drops_the_rest() {
        let mut deployment = chart_deployment();
        let before = deployment.clone();
        deployment.trim();
        assert_eq!(deployment.metadata.managed_fields, None);
        let annotations = deployment.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["tagwatch.dev/policy"]
        );
        assert_eq!(deployment.metadata.labels, before.metadata.labels);
        assert_eq!(deployment.metadata.uid, before.metadata.uid);
        assert_eq!(
            deployment.metadata.resource_version,
            before.metadata.resource_version
        );
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let template = &spec.template;
        assert_eq!(
            template.metadata.as_ref().unwrap().labels,
            Some(BTreeMap::from([("app".into(), "web".into())]))
        );
        assert_eq!(template.metadata.as_ref().unwrap().annotations, None);
        let pod = template.spec.as_ref().unwrap();
        assert_eq!(
            serde_json::to_value(pod).unwrap(),
            json!({
                "serviceAccountName": "web",
                "imagePullSecrets": [{"name": "pull"}],
                "initContainers": [{"name": "migrate", "image": "registry.example/migrate:1.0.0"}],
                "containers": [{"name": "web", "image": "registry.example/web:1.2.3"}],
            })
        );
        assert_eq!(spec.strategy, None);
        assert_eq!(spec.revision_history_limit, None);
        let status = deployment.status.as_ref().unwrap();
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            ("Progressing", "True")
        );
        assert_eq!(condition.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert!(condition.message.as_deref().unwrap().contains("progressed"));
        assert_eq!(condition.last_update_time, None);
        assert_eq!(condition.last_transition_time, None);

        // Discovery and the rollout check read the same from either.
        let (slim, whole) = (Object::from(deployment), Object::from(before));
        assert_eq!(
            format!("{:?}", workload(&slim)),
            format!("{:?}", workload(&whole))
        );
        let progress = |o: &Object| rollout::progress(o.as_deployment().unwrap());
        assert_eq!(progress(&slim), Progress::Complete);
        assert_eq!(progress(&slim), progress(&whole));
    }

    #[test]
    fn every_kind_keeps_its_images_and_pull_credentials() {
        let meta = json!({"name": "x", "namespace": "shop", "annotations": {LAST_APPLIED: "{}"}});
        let mut set: StatefulSet = serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"selector": {}, "serviceName": "x", "template": chart_pod(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
        }))
        .unwrap();
        set.trim();
        let spec = set.spec.as_ref().unwrap();
        assert_eq!(spec.volume_claim_templates, None);
        assert_eq!(
            spec.update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition),
            Some(1)
        );
        assert_eq!(set.metadata.annotations, None);

        let mut cron: CronJob = serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"job": "x"}, "annotations": {"a": "b"}},
                "spec": {"template": chart_pod()}}},
        }))
        .unwrap();
        cron.trim();
        let job = &cron.spec.as_ref().unwrap().job_template;
        assert_eq!(
            job.metadata.as_ref().unwrap().labels,
            Some(BTreeMap::from([("job".into(), "x".into())]))
        );
        assert_eq!(job.metadata.as_ref().unwrap().annotations, None);
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example/web:1.2.3")
        );
        assert_eq!(pod.containers[0].env, None);

        let mut rollout: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": meta,
            "spec": {"replicas": 3, "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
                "template": chart_pod()},
            "status": {"phase": "Healthy"},
        }))
        .unwrap();
        rollout.trim();
        assert_eq!(
            rollout.data["spec"]["template"],
            json!({
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "serviceAccountName": "web",
                    "imagePullSecrets": [{"name": "pull"}],
                    "initContainers": [{"name": "migrate",
                        "image": "registry.example/migrate:1.0.0"}],
                    "containers": [{"name": "web", "image": "registry.example/web:1.2.3"}],
                },
            })
        );
        assert_eq!(rollout.data["spec"]["replicas"], json!(3));
        assert_eq!(rollout.data["status"], json!({"phase": "Healthy"}));
    }
}
