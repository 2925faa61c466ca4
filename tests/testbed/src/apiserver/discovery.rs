//! API discovery documents (27): `/api`, `/apis`, `/apis/<group>` and the `APIResourceList` of a
//! group/version, built from what the server serves right now, so `kube::discovery` finds kinds
//! a CustomResourceDefinition added.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::resources::{Catalog, Resource};

/// `/api`: the core group's versions, and where to reach them.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// `/apis`: every named group.
pub(crate) fn group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = catalog
        .groups()
        .into_iter()
        .map(|(name, versions)| group_entry(name, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, for a group the catalog serves.
pub(crate) fn group(catalog: &Catalog, name: &str) -> Value {
    let versions = catalog
        .groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(_, versions)| versions)
        .unwrap_or_default();
    let mut group = group_entry(name, &versions);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    group
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let version = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    let listed: Vec<Value> = versions.iter().map(|v| version(v)).collect();
    // Versions are listed in the order they were added; the first is preferred.
    let preferred = versions.first().map(|v| version(v)).unwrap_or(Value::Null);
    json!({"name": name, "versions": listed, "preferredVersion": preferred})
}

/// `/api/v1`, `/apis/<group>/<version>`: the resources and subresources served there.
pub(crate) fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for resource in catalog
        .resources()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(resource_entry(resource));
        if resource.has_status() {
            resources.push(json!({
                "name": format!("{}/status", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["get", "patch", "update"]
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources
    })
}

fn resource_entry(resource: &Resource) -> Value {
    let mut entry = json!({
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": resource.verbs,
        "storageVersionHash": storage_version_hash(resource.group, resource.version, resource.kind)
    });
    // Empty lists are left out, as the real server's omitempty does.
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    entry
}

/// The real server's hash: base64 of the first 8 bytes of SHA-256 over `group/version/kind`.
pub(crate) fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::crd::CustomKind;

    #[test]
    fn storage_version_hashes_match_the_real_server() {
        // 27, and what a real server lists for Deployments and Pods.
        assert_eq!(
            storage_version_hash("argoproj.io", "v1alpha1", "Rollout"),
            "T0mdNo50nFA="
        );
        assert_eq!(
            storage_version_hash("apps", "v1", "Deployment"),
            "8aSe+NMegvE="
        );
        assert_eq!(storage_version_hash("", "v1", "Pod"), "xPOwRZ+Yhw8=");
    }

    #[test]
    fn a_custom_group_is_listed_like_27() -> anyhow::Result<()> {
        let mut catalog = Catalog::default();
        assert!(!group_list(&catalog).to_string().contains("argoproj.io"));
        let kind = CustomKind::argo_rollouts();
        let crd = serde_json::to_value(kind.definition()?)?;
        super::super::crd::install_into(&mut catalog, &crd);

        let want = json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "argoproj.io/v1alpha1",
            "resources": [
                {
                    "name": "rollouts",
                    "singularName": "rollout",
                    "namespaced": true,
                    "kind": "Rollout",
                    "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                    "shortNames": ["ro"],
                    "storageVersionHash": "T0mdNo50nFA="
                },
                {
                    "name": "rollouts/status",
                    "singularName": "",
                    "namespaced": true,
                    "kind": "Rollout",
                    "verbs": ["get", "patch", "update"]
                }
            ]
        });
        assert_eq!(resource_list(&catalog, "argoproj.io", "v1alpha1"), want);
        let groups = group_list(&catalog);
        let argo = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == "argoproj.io");
        assert_eq!(
            argo.map(|g| g["preferredVersion"]["groupVersion"].clone()),
            Some(json!("argoproj.io/v1alpha1"))
        );
        Ok(())
    }

    #[test]
    fn built_in_groups_list_their_workloads() {
        let catalog = Catalog::default();
        let names = |group: &str, version: &str| -> Vec<String> {
            resource_list(&catalog, group, version)["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(
            names("apps", "v1"),
            [
                "deployments",
                "deployments/status",
                "statefulsets",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status"
            ]
        );
        assert_eq!(
            names("batch", "v1"),
            ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]
        );
        assert!(names("", "v1").contains(&"nodes".to_string()));
        let deployments = &resource_list(&catalog, "apps", "v1")["resources"][0];
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["categories"], json!(["all"]));
        assert_eq!(
            group(&catalog, "batch")["preferredVersion"]["version"],
            "v1"
        );
        assert_eq!(core_versions("127.0.0.1:1")["versions"], json!(["v1"]));
    }
}
