//! What the watch caches keep of each object: what tagwatch reads. `managedFields` and kubectl's
//! last-applied copy of the object are often more than half its size, and tagwatch reads
//! neither, so they are dropped as each object arrives, before the reflector stores it.

use kube::Resource;

/// kubectl's copy of the last applied manifest: the whole object again, as JSON text.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what tagwatch never reads from an object about to be cached.
pub fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    #[test]
    fn drops_managed_fields_and_the_last_applied_copy_only() {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "7",
                "annotations": {
                    "tagwatch.dev/policy": "minor",
                    LAST_APPLIED: "{\"apiVersion\":\"apps/v1\"}",
                },
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {}}],
            },
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "web", "image": "registry.example/web:1.2.3"}]}}},
        }))
        .unwrap();
        let before = deployment.clone();
        trim(&mut deployment);
        assert_eq!(deployment.metadata.managed_fields, None);
        let annotations = deployment.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["tagwatch.dev/policy"]
        );
        assert_eq!(deployment.spec, before.spec);
        assert_eq!(deployment.metadata.labels, before.metadata.labels);
        assert_eq!(
            deployment.metadata.resource_version,
            before.metadata.resource_version
        );
    }
}
