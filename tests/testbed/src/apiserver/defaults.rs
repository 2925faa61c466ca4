//! Field defaulting the real API server applies on every write (see 01-get-deployment, and 16,
//! 22 and 23 for the other workloads). Custom resources get none (25).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::resources::{
    Resource, CRONJOBS, CUSTOM_RESOURCE_DEFINITIONS, DAEMONSETS, DEPLOYMENTS, JOBS, NAMESPACES,
    PODS, SECRETS, STATEFULSETS,
};

pub(crate) fn apply(resource: &Resource, object: &mut Value) {
    if resource.same(&DEPLOYMENTS) {
        deployment(object);
    } else if resource.same(&STATEFULSETS) {
        statefulset(object);
    } else if resource.same(&DAEMONSETS) {
        daemonset(object);
    } else if resource.same(&CRONJOBS) {
        cronjob(object);
    } else if resource.same(&JOBS) {
        job_spec(&mut object["spec"]);
    } else if resource.same(&PODS) {
        pod_spec(&mut object["spec"]);
    } else if resource.same(&NAMESPACES) {
        namespace(object);
    } else if resource.same(&SECRETS) {
        secret(object);
    } else if resource.same(&CUSTOM_RESOURCE_DEFINITIONS) {
        custom_resource_definition(object);
    }
}

fn deployment(object: &mut Value) {
    let spec = &mut object["spec"];
    set_missing(spec, "replicas", json!(1));
    let strategy = &mut spec["strategy"];
    set_missing(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let rolling = &mut strategy["rollingUpdate"];
        set_missing(rolling, "maxUnavailable", json!("25%"));
        set_missing(rolling, "maxSurge", json!("25%"));
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    set_missing(spec, "progressDeadlineSeconds", json!(600));
    pod_template(&mut spec["template"]);
}

fn statefulset(object: &mut Value) {
    let spec = &mut object["spec"];
    set_missing(spec, "replicas", json!(1));
    set_missing(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = &mut spec["updateStrategy"];
    set_missing(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        set_missing(&mut strategy["rollingUpdate"], "partition", json!(0));
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    let retention = &mut spec["persistentVolumeClaimRetentionPolicy"];
    set_missing(retention, "whenDeleted", json!("Retain"));
    set_missing(retention, "whenScaled", json!("Retain"));
    pod_template(&mut spec["template"]);
}

fn daemonset(object: &mut Value) {
    let spec = &mut object["spec"];
    let strategy = &mut spec["updateStrategy"];
    set_missing(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let rolling = &mut strategy["rollingUpdate"];
        set_missing(rolling, "maxUnavailable", json!(1));
        set_missing(rolling, "maxSurge", json!(0));
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    pod_template(&mut spec["template"]);
}

/// A CronJob's job template gets pod defaults only; Job defaults apply when a Job is made (23).
fn cronjob(object: &mut Value) {
    let spec = &mut object["spec"];
    set_missing(spec, "concurrencyPolicy", json!("Allow"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "successfulJobsHistoryLimit", json!(3));
    set_missing(spec, "failedJobsHistoryLimit", json!(1));
    let job_template = &mut spec["jobTemplate"];
    set_missing(job_template, "metadata", json!({}));
    pod_template(&mut job_template["spec"]["template"]);
}

fn job_spec(spec: &mut Value) {
    set_missing(spec, "parallelism", json!(1));
    set_missing(spec, "completions", json!(1));
    set_missing(spec, "backoffLimit", json!(6));
    set_missing(spec, "completionMode", json!("NonIndexed"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    pod_template(&mut spec["template"]);
}

fn pod_template(template: &mut Value) {
    set_missing(template, "metadata", json!({}));
    pod_spec(&mut template["spec"]);
}

fn custom_resource_definition(object: &mut Value) {
    let names = &mut object["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    set_missing(names, "singular", json!(kind.to_ascii_lowercase()));
    set_missing(names, "listKind", json!(format!("{kind}List")));
    set_missing(&mut object["spec"]["conversion"], "strategy", json!("None"));
}

/// Defaults for a pod spec, shared by Pods and every workload's template.
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    for list in ["initContainers", "containers"] {
        // `get_mut`, not indexing: indexing a missing key would store a `null` list.
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container);
        }
    }
    set_missing(spec, "restartPolicy", json!("Always"));
    set_missing(spec, "terminationGracePeriodSeconds", json!(30));
    set_missing(spec, "dnsPolicy", json!("ClusterFirst"));
    set_missing(spec, "securityContext", json!({}));
    set_missing(spec, "schedulerName", json!("default-scheduler"));
}

fn container(container: &mut Value) {
    set_missing(container, "resources", json!({}));
    set_missing(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    set_missing(container, "terminationMessagePolicy", json!("File"));
    let policy = pull_policy(container["image"].as_str().unwrap_or_default());
    set_missing(container, "imagePullPolicy", json!(policy));
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent` (digests count as pinned).
pub(crate) fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn namespace(object: &mut Value) {
    let name = object["metadata"]["name"].clone();
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    set_missing(&mut object["spec"], "finalizers", json!(["kubernetes"]));
    set_missing(&mut object["status"], "phase", json!("Active"));
}

/// The server folds write-only `stringData` into base64 `data`.
fn secret(object: &mut Value) {
    set_missing(object, "type", json!("Opaque"));
    let Some(Value::Object(plain)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    set_missing(object, "data", Value::Object(Map::new()));
    for (key, value) in plain {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or_default());
        object["data"][key] = json!(encoded);
    }
}

fn set_missing(parent: &mut Value, key: &str, value: Value) {
    if parent.is_null() {
        *parent = Value::Object(Map::new());
    }
    if let Some(map) = parent.as_object_mut() {
        map.entry(key).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(resource: &Resource, spec: Value) -> Value {
        let mut object = json!({"spec": spec});
        apply(resource, &mut object);
        object["spec"].take()
    }

    fn container(image: &str) -> Value {
        json!({
            "name": "app", "image": image, "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
        })
    }

    fn pod_spec_of(image: &str, restart: &str) -> Value {
        json!({
            "containers": [container(image)], "restartPolicy": restart,
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "securityContext": {}, "schedulerName": "default-scheduler"
        })
    }

    #[test]
    fn workload_specs_default_like_16_22_and_23() {
        let template = |app: &str, image: &str| {
            json!({"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": image}]}})
        };
        let statefulset = defaulted(
            &STATEFULSETS,
            json!({"replicas": 3, "selector": {"matchLabels": {"app": "db"}}, "serviceName": "db",
                "template": template("db", "registry.example/db:2.0.0")}),
        );
        let want = json!({
            "replicas": 3, "selector": {"matchLabels": {"app": "db"}}, "serviceName": "db",
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": pod_spec_of("registry.example/db:2.0.0", "Always")},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 10,
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}
        });
        assert_eq!(statefulset, want);

        let daemonset = defaulted(
            &DAEMONSETS,
            json!({"selector": {"matchLabels": {"app": "agent"}},
                "template": template("agent", "registry.example/agent:1.0.0")}),
        );
        let want = json!({
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": pod_spec_of("registry.example/agent:1.0.0", "Always")},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10
        });
        assert_eq!(daemonset, want);

        let cronjob = defaulted(
            &CRONJOBS,
            json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "registry.example/batch:1.0.0"}],
                "restartPolicy": "Never"}}}}}),
        );
        let want = json!({
            "schedule": "0 3 * * *", "concurrencyPolicy": "Allow", "suspend": false,
            "jobTemplate": {"metadata": {}, "spec": {"template": {"metadata": {},
                "spec": pod_spec_of("registry.example/batch:1.0.0", "Never")}}},
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1
        });
        assert_eq!(cronjob, want);
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("127.0.0.1:5000/api", "Always"),
            ("127.0.0.1:5000/api:1.2.3", "IfNotPresent"),
            ("ghcr.io/a/b@sha256:abc", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy(image), want, "{image}");
        }
    }
}
