//! CustomResourceDefinitions (25–28): what an installed CRD makes the server serve, the status
//! the apiextensions controllers write once its names are accepted, and a way for tests to
//! describe one that works against a real cluster too.

use std::sync::Mutex;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{json, Value};

use super::resources::{
    decodes_anything, no_status, Catalog, Resource, StatusPolicy, CUSTOM_RESOURCE_DEFINITIONS,
    CUSTOM_VERBS,
};
use super::store::now;
use super::Cluster;

/// The `app.kubernetes.io/managed-by` label on every CRD [`CustomKind::definition`] makes, so a
/// test on a real cluster can tell its own CRD from one an operator (Argo) installed.
pub const MANAGED_BY: &str = "tagwatch-testbed";

/// A custom kind for a test to install: one served version, any fields (the schema preserves
/// unknown fields, like the CRD behind 25).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Serve `/status` (the main resource then cannot change status, and a create drops it).
    pub status: bool,
}

impl CustomKind {
    /// A kind with a `/status` subresource, as most CRDs have.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> CustomKind {
        CustomKind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            short_names: Vec::new(),
            status: true,
        }
    }

    /// Argo Rollouts' `argoproj.io/v1alpha1` Rollout (27).
    pub fn argo_rollouts() -> CustomKind {
        CustomKind {
            short_names: vec!["ro".into()],
            ..CustomKind::new("argoproj.io", "v1alpha1", "Rollout", "rollouts", true)
        }
    }

    /// `<plural>.<group>`, the only name the real server accepts for the CRD.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The CustomResourceDefinition to create, here or on a real cluster.
    pub fn definition(&self) -> anyhow::Result<CustomResourceDefinition> {
        let mut names = json!({
            "kind": self.kind,
            "listKind": format!("{}List", self.kind),
            "plural": self.plural,
            "singular": self.kind.to_ascii_lowercase()
        });
        if !self.short_names.is_empty() {
            names["shortNames"] = json!(self.short_names);
        }
        let mut version = json!({
            "name": self.version,
            "served": true,
            "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
        });
        if self.status {
            version["subresources"] = json!({"status": {}});
        }
        let definition = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": self.crd_name(),
                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}
            },
            "spec": {
                "group": self.group,
                "names": names,
                "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
                "versions": [version]
            }
        });
        Ok(serde_json::from_value(definition)?)
    }

    /// How `kube::Api<DynamicObject>` addresses the kind.
    pub fn api_resource(&self) -> kube::core::ApiResource {
        let gvk = kube::core::GroupVersionKind::gvk(&self.group, &self.version, &self.kind);
        kube::core::ApiResource::from_gvk_with_plural(&gvk, &self.plural)
    }
}

/// The resources one served version of a CRD describes, as owned strings.
#[derive(PartialEq)]
struct Served {
    group: String,
    version: String,
    plural: String,
    singular: String,
    kind: String,
    namespaced: bool,
    short_names: Vec<String>,
    categories: Vec<String>,
    status: bool,
}

/// Resources are `&'static` so stored changes and watches can share them cheaply; a custom one
/// is leaked once per distinct definition, and reinstalling the same CRD reuses it.
static INTERNED: Mutex<Vec<&'static Resource>> = Mutex::new(Vec::new());

fn describes(resource: &Resource, served: &Served) -> bool {
    resource.group == served.group
        && resource.version == served.version
        && resource.plural == served.plural
        && resource.singular == served.singular
        && resource.kind == served.kind
        && resource.namespaced == served.namespaced
        && resource.short_names == served.short_names.as_slice()
        && resource.categories == served.categories.as_slice()
        && resource.has_status() == served.status
}

fn intern(served: Served) -> &'static Resource {
    let mut interned = super::lock(&INTERNED);
    if let Some(found) = interned.iter().find(|r| describes(r, &served)) {
        return found;
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let leak_all = |v: Vec<String>| -> &'static [&'static str] {
        Box::leak(v.into_iter().map(leak).collect())
    };
    let resource: &'static Resource = Box::leak(Box::new(Resource {
        group: leak(served.group),
        version: leak(served.version),
        plural: leak(served.plural),
        singular: leak(served.singular),
        kind: leak(served.kind),
        namespaced: served.namespaced,
        short_names: leak_all(served.short_names),
        categories: leak_all(served.categories),
        verbs: CUSTOM_VERBS,
        status: if served.status {
            StatusPolicy::Subresource(no_status)
        } else {
            StatusPolicy::Plain
        },
        generation: true,
        custom: true,
        decode: decodes_anything,
    }));
    interned.push(resource);
    resource
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// One resource per served version of the CRD.
fn resources_of(crd: &Value) -> Vec<&'static Resource> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .map(|version| {
            intern(Served {
                group: text(&spec["group"]),
                version: text(&version["name"]),
                plural: text(&names["plural"]),
                singular: text(&names["singular"]),
                kind: text(&names["kind"]),
                namespaced: spec["scope"] == "Namespaced",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: version["subresources"]["status"].is_object(),
            })
        })
        .collect()
}

/// Serves what the CRD describes now, in place of what it described before.
pub(crate) fn install_into(catalog: &mut Catalog, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    catalog.install(name, resources_of(crd));
}

/// After a CRD is created or changed: serve what it now describes, and mark it established.
pub(crate) fn installed(cluster: &mut Cluster, crd: &Value) {
    install_into(&mut cluster.catalog, crd);
    let spec = &crd["spec"];
    let stored: Vec<&Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| &v["name"])
        .collect();
    let status = &crd["status"];
    if status["acceptedNames"] == spec["names"] && status["storedVersions"] == json!(stored) {
        return;
    }
    let at = now();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": at})
    };
    let mut established = crd.clone();
    established["status"] = json!({
        "acceptedNames": spec["names"],
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted")
        ],
        "storedVersions": stored
    });
    cluster
        .store
        .update(&CUSTOM_RESOURCE_DEFINITIONS, established);
}

/// After a CRD is deleted: its kinds are no longer served, and their objects are gone.
pub(crate) fn removed(cluster: &mut Cluster, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    for resource in cluster.catalog.uninstall(name) {
        cluster.store.remove_all(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions_become_interned_resources() -> anyhow::Result<()> {
        let kind = CustomKind::argo_rollouts();
        let crd = serde_json::to_value(kind.definition()?)?;
        let first = resources_of(&crd);
        assert_eq!(first.len(), 1);
        let rollouts = first[0];
        assert_eq!(
            (
                rollouts.group,
                rollouts.version,
                rollouts.plural,
                rollouts.kind
            ),
            ("argoproj.io", "v1alpha1", "rollouts", "Rollout")
        );
        assert_eq!(
            (rollouts.singular, rollouts.short_names),
            ("rollout", &["ro"][..])
        );
        assert!(rollouts.namespaced && rollouts.has_status() && rollouts.custom);
        assert!(
            rollouts.same(resources_of(&crd)[0]),
            "the same definition is reused"
        );

        let plain = CustomKind {
            status: false,
            ..kind.clone()
        };
        let other = resources_of(&serde_json::to_value(plain.definition()?)?);
        assert!(!other[0].same(rollouts) && !other[0].has_status());

        let mut unserved = crd.clone();
        unserved["spec"]["versions"][0]["served"] = json!(false);
        assert!(resources_of(&unserved).is_empty());
        Ok(())
    }
}
