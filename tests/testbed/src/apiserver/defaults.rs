//! Field defaulting the real API server applies on every write (see 01-get-deployment).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::resources::{Resource, DEPLOYMENTS, NAMESPACES, PODS};

pub(crate) fn apply(resource: &Resource, object: &mut Value) {
    if resource.same(&DEPLOYMENTS) {
        deployment(object);
    } else if resource.same(&PODS) {
        pod_spec(&mut object["spec"]);
    } else if resource.same(&NAMESPACES) {
        namespace(object);
    } else if resource.plural == "secrets" {
        secret(object);
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
    set_missing(&mut spec["template"], "metadata", json!({}));
    pod_spec(&mut spec["template"]["spec"]);
}

/// Defaults for a pod spec, shared by Pods and Deployment templates.
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec[list].as_array_mut() {
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
