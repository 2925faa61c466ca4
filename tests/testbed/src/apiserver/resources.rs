//! The resources the test server knows (built-in, and those CustomResourceDefinitions add), and
//! how request paths map onto them.

use k8s_openapi::api::{apps, batch, coordination, core, events};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One REST resource, as discovery would describe it.
pub(crate) struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// As discovery lists them (the order differs between built-in and custom resources).
    pub verbs: &'static [&'static str],
    pub status: StatusPolicy,
    /// Whether `metadata.generation` counts changes to the object's desired state.
    pub generation: bool,
    /// Served from a CustomResourceDefinition: stored as sent, no defaulting, typed decoding or
    /// built-in validation.
    pub custom: bool,
    /// Decodes a stored object into its typed form, so malformed bodies fail like a real decode does.
    pub decode: fn(&Value) -> Result<(), String>,
}

/// Who owns `status`.
#[derive(Clone, Copy)]
pub(crate) enum StatusPolicy {
    /// No `/status`: status, if any, is an ordinary field.
    Plain,
    /// `/status` is served, the main resource cannot change status, and a create replaces it
    /// with this (the typed empty status as the real server encodes it; `None`: no status at all).
    Subresource(fn() -> Option<Value>),
}

fn decodes<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Custom resources are stored as sent (25): any JSON object decodes.
pub(crate) fn decodes_anything(_: &Value) -> Result<(), String> {
    Ok(())
}

/// A zero Go status struct on the wire: fields without `omitempty` still appear (`replicas: 0`).
fn empty<T: Default + Serialize>() -> Option<Value> {
    serde_json::to_value(T::default()).ok()
}

/// Custom resources with a status subresource drop whatever status a create sends.
pub(crate) fn no_status() -> Option<Value> {
    None
}

/// Sorted, as built-in resources list them in discovery.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The order the CRD handler lists them in (27).
pub(crate) const CUSTOM_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

const fn built_in(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    decode: fn(&Value) -> Result<(), String>,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        status: StatusPolicy::Plain,
        generation: false,
        custom: false,
        decode,
    }
}

/// A workload: `/status`, generation, listed in `kubectl get all`.
const fn workload(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    decode: fn(&Value) -> Result<(), String>,
    empty_status: fn() -> Option<Value>,
) -> Resource {
    Resource {
        status: StatusPolicy::Subresource(empty_status),
        generation: true,
        categories: &["all"],
        ..built_in(group, plural, singular, kind, decode)
    }
}

pub(crate) static DEPLOYMENTS: Resource = Resource {
    short_names: &["deploy"],
    ..workload(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        decodes::<apps::v1::Deployment>,
        empty::<apps::v1::DeploymentStatus>,
    )
};
pub(crate) static STATEFULSETS: Resource = Resource {
    short_names: &["sts"],
    ..workload(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        decodes::<apps::v1::StatefulSet>,
        empty::<apps::v1::StatefulSetStatus>,
    )
};
pub(crate) static DAEMONSETS: Resource = Resource {
    short_names: &["ds"],
    ..workload(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        decodes::<apps::v1::DaemonSet>,
        empty::<apps::v1::DaemonSetStatus>,
    )
};
pub(crate) static CRONJOBS: Resource = Resource {
    short_names: &["cj"],
    ..workload(
        "batch",
        "cronjobs",
        "cronjob",
        "CronJob",
        decodes::<batch::v1::CronJob>,
        empty::<batch::v1::CronJobStatus>,
    )
};
pub(crate) static JOBS: Resource = workload(
    "batch",
    "jobs",
    "job",
    "Job",
    decodes::<batch::v1::Job>,
    empty::<batch::v1::JobStatus>,
);
pub(crate) static PODS: Resource = Resource {
    short_names: &["po"],
    categories: &["all"],
    ..built_in("", "pods", "pod", "Pod", decodes::<core::v1::Pod>)
};
pub(crate) static NAMESPACES: Resource = Resource {
    namespaced: false,
    short_names: &["ns"],
    verbs: &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ],
    ..built_in(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        decodes::<core::v1::Namespace>,
    )
};
pub(crate) static NODES: Resource = Resource {
    namespaced: false,
    short_names: &["no"],
    ..built_in("", "nodes", "node", "Node", decodes::<core::v1::Node>)
};
static CONFIG_MAPS: Resource = Resource {
    short_names: &["cm"],
    ..built_in(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        decodes::<core::v1::ConfigMap>,
    )
};
pub(crate) static SECRETS: Resource = built_in(
    "",
    "secrets",
    "secret",
    "Secret",
    decodes::<core::v1::Secret>,
);
static SERVICE_ACCOUNTS: Resource = Resource {
    short_names: &["sa"],
    ..built_in(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        decodes::<core::v1::ServiceAccount>,
    )
};
static CORE_EVENTS: Resource = Resource {
    short_names: &["ev"],
    ..built_in("", "events", "event", "Event", decodes::<core::v1::Event>)
};
static EVENTS: Resource = Resource {
    short_names: &["ev"],
    ..built_in(
        "events.k8s.io",
        "events",
        "event",
        "Event",
        decodes::<events::v1::Event>,
    )
};
static LEASES: Resource = built_in(
    "coordination.k8s.io",
    "leases",
    "lease",
    "Lease",
    decodes::<coordination::v1::Lease>,
);
pub(crate) static CUSTOM_RESOURCE_DEFINITIONS: Resource = Resource {
    namespaced: false,
    short_names: &["crd", "crds"],
    categories: &["api-extensions"],
    status: StatusPolicy::Subresource(empty::<apiextensions::CustomResourceDefinitionStatus>),
    generation: true,
    ..built_in(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        decodes::<apiextensions::CustomResourceDefinition>,
    )
};

/// In the order discovery lists groups and resources.
static BUILT_IN: [&Resource; 15] = [
    &PODS,
    &NAMESPACES,
    &NODES,
    &CONFIG_MAPS,
    &SECRETS,
    &SERVICE_ACCOUNTS,
    &CORE_EVENTS,
    &DEPLOYMENTS,
    &STATEFULSETS,
    &DAEMONSETS,
    &EVENTS,
    &CRONJOBS,
    &JOBS,
    &LEASES,
    &CUSTOM_RESOURCE_DEFINITIONS,
];

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, `secrets`: how NotFound/Conflict messages name the resource.
    pub fn qualified_plural(&self) -> String {
        qualify(self.plural, self.group)
    }

    /// `Deployment.apps`, `Pod`: how Invalid messages name the kind.
    pub fn qualified_kind(&self) -> String {
        qualify(self.kind, self.group)
    }

    pub fn same(&self, other: &Resource) -> bool {
        std::ptr::eq(self, other)
    }

    pub fn has_status(&self) -> bool {
        matches!(self.status, StatusPolicy::Subresource(_))
    }

    /// The built-in resource stored under a (group, plural) pair.
    pub fn lookup(group: &str, plural: &str) -> Option<&'static Resource> {
        BUILT_IN
            .iter()
            .copied()
            .find(|r| r.group == group && r.plural == plural)
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// What this server serves right now: the built-in resources and those of installed CRDs.
#[derive(Default)]
pub(crate) struct Catalog {
    /// (CRD name, one served version of it).
    custom: Vec<(String, &'static Resource)>,
}

impl Catalog {
    pub fn resources(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        BUILT_IN
            .iter()
            .copied()
            .chain(self.custom.iter().map(|(_, r)| *r))
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.resources()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Whether anything is served under this group/version.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.resources()
            .any(|r| r.group == group && r.version == version)
    }

    /// The named groups (not core) with their versions, in discovery order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for resource in self.resources().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == resource.group) {
                Some((_, versions)) if versions.contains(&resource.version) => {}
                Some((_, versions)) => versions.push(resource.version),
                None => groups.push((resource.group, vec![resource.version])),
            }
        }
        groups
    }

    /// Serves `resources` for the CRD `crd`, replacing what it served before.
    pub fn install(&mut self, crd: &str, resources: Vec<&'static Resource>) {
        self.uninstall(crd);
        self.custom
            .extend(resources.into_iter().map(|r| (crd.to_string(), r)));
    }

    /// Stops serving what the CRD `crd` served; returns those resources.
    pub fn uninstall(&mut self, crd: &str) -> Vec<&'static Resource> {
        let (gone, kept) = std::mem::take(&mut self.custom)
            .into_iter()
            .partition(|(name, _)| name == crd);
        self.custom = kept;
        gone.into_iter().map(|(_, r)| r).collect()
    }
}

/// What a request path addresses.
pub(crate) enum Route {
    Version,
    Discovery(Discovery),
    Resource(Target),
    /// A served group/version without such a resource: the real server's JSON NotFound Status.
    UnknownResource,
    /// Nothing is served here (an absent group, version or CRD): plain-text `404 page not found`.
    NotServed,
}

/// The discovery documents `kube::discovery` reads.
#[derive(Debug, PartialEq)]
pub(crate) enum Discovery {
    /// `/api`: `APIVersions`.
    CoreVersions,
    /// `/apis`: `APIGroupList`.
    Groups,
    /// `/apis/<group>`: `APIGroup`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`: `APIResourceList`.
    Resources { group: String, version: String },
}

pub(crate) struct Target {
    pub resource: &'static Resource,
    /// `None` for cluster-scoped resources and for all-namespace collections.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Namespaced objects live under a namespace (only their collection may also be listed across all);
/// cluster-scoped ones never do.
fn scoped_right(resource: &Resource, has_namespace: bool, has_name: bool) -> bool {
    if resource.namespaced {
        has_namespace || !has_name
    } else {
        !has_namespace
    }
}

pub(crate) fn parse_path(path: &str, catalog: &Catalog) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Route::Version,
        ["api"] => return Route::Discovery(Discovery::CoreVersions),
        ["apis"] => return Route::Discovery(Discovery::Groups),
        ["apis", group] if catalog.groups().iter().any(|(g, _)| g == group) => {
            return Route::Discovery(Discovery::Group(group.to_string()))
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::NotServed,
    };
    if !catalog.serves(group, version) {
        return Route::NotServed;
    }
    // The CRD handler passes requests for plurals it does not know on to the plain-text 404
    // (26); built-in group/versions answer a JSON Status.
    let unknown = || {
        let custom_group = catalog.resources().any(|r| r.group == group && r.custom);
        if custom_group {
            Route::NotServed
        } else {
            Route::UnknownResource
        }
    };
    let target = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        match catalog.find(group, version, plural) {
            Some(resource) if scoped_right(resource, namespace.is_some(), name.is_some()) => {
                Route::Resource(Target {
                    resource,
                    namespace: namespace.map(str::to_string),
                    name: name.map(str::to_string),
                    subresource: sub.map(str::to_string),
                })
            }
            _ => unknown(),
        }
    };
    match rest {
        [] => Route::Discovery(Discovery::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }),
        [plural] => target(plural, None, None, None),
        ["namespaces", name] => target("namespaces", None, Some(name), None),
        ["namespaces", ns, plural] => target(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => target(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => target(plural, Some(ns), Some(name), Some(sub)),
        [plural, name] if *plural != "namespaces" => target(plural, None, Some(name), None),
        [plural, name, sub] if *plural != "namespaces" => {
            target(plural, None, Some(name), Some(sub))
        }
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(path: &str, catalog: &Catalog) -> String {
        match parse_path(path, catalog) {
            Route::Version => "version".into(),
            Route::Discovery(d) => format!("discovery {d:?}"),
            Route::UnknownResource => "unknown resource".into(),
            Route::NotServed => "no route".into(),
            Route::Resource(t) => format!(
                "{}/{} ns={:?} name={:?} sub={:?}",
                t.resource.group, t.resource.plural, t.namespace, t.name, t.subresource
            ),
        }
    }

    static WIDGETS: Resource = Resource {
        group: "example.dev",
        plural: "widgets",
        custom: true,
        ..built_in("", "", "widget", "Widget", decodes_anything)
    };

    #[test]
    fn maps_paths_like_the_real_api() {
        let mut catalog = Catalog::default();
        catalog.install("widgets.example.dev", vec![&WIDGETS]);
        let cases = [
            ("/version", "version"),
            (
                "/apis/apps/v1/deployments",
                "apps/deployments ns=None name=None sub=None",
            ),
            (
                "/apis/apps/v1/namespaces/demo/deployments/api/status",
                "apps/deployments ns=Some(\"demo\") name=Some(\"api\") sub=Some(\"status\")",
            ),
            (
                "/api/v1/namespaces",
                "/namespaces ns=None name=None sub=None",
            ),
            (
                "/api/v1/namespaces/demo",
                "/namespaces ns=None name=Some(\"demo\") sub=None",
            ),
            (
                "/api/v1/nodes/n1",
                "/nodes ns=None name=Some(\"n1\") sub=None",
            ),
            (
                "/apis/events.k8s.io/v1/namespaces/d/events",
                "events.k8s.io/events ns=Some(\"d\") name=None sub=None",
            ),
            (
                "/apis/example.dev/v1/namespaces/d/widgets/w",
                "example.dev/widgets ns=Some(\"d\") name=Some(\"w\") sub=None",
            ),
            (
                "/apis/apps/v1/namespaces/demo/replicasets",
                "unknown resource",
            ),
            ("/apis/apps/v1/deployments/api", "unknown resource"),
            ("/apis/example.dev/v1/namespaces/d/gadgets", "no route"),
            ("/apis/example.dev/v2/namespaces/d/widgets", "no route"),
            (
                "/apis/argoproj.io/v1alpha1/namespaces/d/rollouts",
                "no route",
            ),
            ("/apis/argoproj.io/v1alpha1", "no route"),
            ("/apis/argoproj.io", "no route"),
            ("/api/v2", "no route"),
            ("/healthz", "no route"),
            ("/api", "discovery CoreVersions"),
            ("/apis", "discovery Groups"),
            ("/apis/batch", "discovery Group(\"batch\")"),
            (
                "/apis/example.dev/v1",
                "discovery Resources { group: \"example.dev\", version: \"v1\" }",
            ),
            (
                "/api/v1",
                "discovery Resources { group: \"\", version: \"v1\" }",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(describe(path, &catalog), want, "{path}");
        }
        catalog.uninstall("widgets.example.dev");
        assert_eq!(
            describe("/apis/example.dev/v1/namespaces/d/widgets", &catalog),
            "no route"
        );
    }
}
