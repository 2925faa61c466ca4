//! Workloads the benchmarks seed the test bed with (`src/bin/testbed.rs`, `benches/`), so every
//! benchmark watches the same realistic objects.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

/// One container on `image`, opted in with policy `minor`, shaped like a Deployment applied with
/// kubectl from a typical chart: probes, resources, a few variables, and kubectl's last-applied
/// copy of the whole manifest (the API server adds `managedFields`), so the benchmark's watch
/// caches hold what a real cluster's would. `replicas: 0`: no pods to simulate.
pub fn kubectl_deployment(namespace: &str, name: &str, image: &str) -> anyhow::Result<Deployment> {
    let env: Vec<serde_json::Value> = (0..8)
        .map(|i| json!({ "name": format!("SETTING_{i}"), "value": format!("value-{i}-of-{name}") }))
        .collect();
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": 8080 }, "periodSeconds": 10, "timeoutSeconds": 2 });
    let mut manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": { "tagwatch.dev/policy": "minor" },
            "labels": {
                "app": name,
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": "bench",
                "app.kubernetes.io/managed-by": "kubectl",
            },
        },
        "spec": {
            "replicas": 0,
            "revisionHistoryLimit": 10,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } },
            "template": {
                "metadata": { "labels": { "app": name, "app.kubernetes.io/name": name } },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                        "env": env,
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "128Mi" },
                            "limits": { "cpu": "500m", "memory": "256Mi" },
                        },
                        "readinessProbe": probe("/ready"),
                        "livenessProbe": probe("/healthz"),
                        "securityContext": {
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                        },
                    }],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    });
    let last_applied = serde_json::to_string(&manifest)?;
    manifest["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(last_applied);
    Ok(serde_json::from_value(manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_opt_in_with_one_container() -> anyhow::Result<()> {
        let d = kubectl_deployment("bench", "app-7", "127.0.0.1:5000/bench/app-7:1.0.19")?;
        let annotations = d.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("tagwatch.dev/policy").map(String::as_str),
            Some("minor")
        );
        let containers = d
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers)
            .unwrap_or_default();
        assert_eq!(containers.len(), 1);
        Ok(())
    }
}
