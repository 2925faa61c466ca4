//! The cheap part of the real server's validation: object names and workload essentials.

use serde_json::Value;

use super::resources::{
    Resource, CRONJOBS, CUSTOM_RESOURCE_DEFINITIONS, DAEMONSETS, DEPLOYMENTS, JOBS, NAMESPACES,
    PODS, STATEFULSETS,
};
use super::status::{ApiError, Cause};

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
(e.g. 'example.com', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Checks a whole object before it is stored; the error names every failing field.
pub(crate) fn validate(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    name_causes(resource, object, &mut causes);
    let spec = &object["spec"];
    if resource.same(&DEPLOYMENTS) || resource.same(&STATEFULSETS) {
        replicas_causes(spec, &mut causes);
        workload_causes(spec, &mut causes);
    } else if resource.same(&DAEMONSETS) {
        workload_causes(spec, &mut causes);
    } else if resource.same(&JOBS) {
        job_causes(spec, "spec", &mut causes);
    } else if resource.same(&CRONJOBS) {
        if spec["schedule"].as_str().unwrap_or_default().is_empty() {
            causes.push(required("spec.schedule"));
        }
        job_causes(
            &spec["jobTemplate"]["spec"],
            "spec.jobTemplate.spec",
            &mut causes,
        );
    } else if resource.same(&PODS) {
        containers_causes(spec, "spec", &mut causes);
    } else if resource.same(&CUSTOM_RESOURCE_DEFINITIONS) {
        crd_name_causes(object, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource, name, causes))
    }
}

fn name_causes(resource: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    let metadata = &object["metadata"];
    let label_only = resource.same(&NAMESPACES);
    if let Some(prefix) = metadata["generateName"].as_str() {
        // A generated suffix follows, so a trailing '-' is fine; a trailing '.' is not (12-create-event).
        let masked = match prefix.strip_suffix('-') {
            Some(head) => format!("{head}a"),
            None => prefix.to_string(),
        };
        if !valid_name(&masked, label_only) {
            causes.push(name_cause("metadata.generateName", prefix, label_only));
        }
    }
    match metadata["name"].as_str() {
        None | Some("") => causes.push(Cause {
            reason: "FieldValueRequired",
            message: "name or generateName is required".into(),
            field: "metadata.name".into(),
        }),
        Some(name) if !valid_name(name, label_only) => {
            causes.push(name_cause("metadata.name", name, label_only))
        }
        Some(_) => {}
    }
}

fn name_cause(field: &str, value: &str, label_only: bool) -> Cause {
    let rule = if label_only {
        LABEL_RULE
    } else {
        SUBDOMAIN_RULE
    };
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: \"{value}\": {rule}"),
        field: field.into(),
    }
}

fn valid_name(name: &str, label_only: bool) -> bool {
    let label_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    if label_only {
        name.len() <= 63 && label_ok(name)
    } else {
        name.len() <= 253 && name.split('.').all(label_ok)
    }
}

fn replicas_causes(spec: &Value, causes: &mut Vec<Cause>) {
    if let Some(replicas) = spec["replicas"].as_i64().filter(|r| *r < 0) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            field: "spec.replicas".into(),
        });
    }
}

/// A selector that matches the pod template, and containers with names and images.
fn workload_causes(spec: &Value, causes: &mut Vec<Cause>) {
    match spec["selector"]["matchLabels"].as_object() {
        None if spec["selector"]["matchExpressions"].is_null() => {
            causes.push(required("spec.selector"))
        }
        Some(wanted) => {
            let labels = &spec["template"]["metadata"]["labels"];
            if wanted.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {labels}: `selector` does not match template `labels`"
                    ),
                    field: "spec.template.metadata.labels".into(),
                });
            }
        }
        None => {}
    }
    containers_causes(&spec["template"]["spec"], "spec.template.spec", causes);
}

/// Job pods must not restart in place: the defaulted `Always` is refused.
fn job_causes(spec: &Value, prefix: &str, causes: &mut Vec<Cause>) {
    let pod_spec = &spec["template"]["spec"];
    let pod_prefix = format!("{prefix}.template.spec");
    containers_causes(pod_spec, &pod_prefix, causes);
    let policy = pod_spec["restartPolicy"].as_str().unwrap_or_default();
    if !matches!(policy, "OnFailure" | "Never") {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: \"{policy}\": supported values: \"OnFailure\", \"Never\""
            ),
            field: format!("{pod_prefix}.restartPolicy"),
        });
    }
}

/// The server routes a custom resource by the CRD's name, so it must be `<plural>.<group>`.
fn crd_name_causes(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let wanted = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or_default(),
        spec["group"].as_str().unwrap_or_default()
    );
    if name != wanted {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ),
            field: "metadata.name".into(),
        });
    }
}

fn containers_causes(pod_spec: &Value, prefix: &str, causes: &mut Vec<Cause>) {
    let containers = pod_spec["containers"].as_array().map(Vec::as_slice);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(required(&format!("{prefix}.containers")));
        return;
    };
    for (i, container) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            if container[field].as_str().unwrap_or_default().is_empty() {
                causes.push(required(&format!("{prefix}.containers[{i}].{field}")));
            }
        }
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: "Required value".into(),
        field: field.into(),
    }
}
