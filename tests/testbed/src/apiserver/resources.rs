//! The resources the test server knows, and how request paths map onto them.

use k8s_openapi::api::{apps, coordination, core, events};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One REST resource, as discovery would describe it.
pub(crate) struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Decodes a stored object into its typed form, so malformed bodies fail like a real decode does.
    pub decode: fn(&Value) -> Result<(), String>,
}

fn decodes<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(crate) static DEPLOYMENTS: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "deployments",
    kind: "Deployment",
    namespaced: true,
    decode: decodes::<apps::v1::Deployment>,
};
pub(crate) static PODS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    kind: "Pod",
    namespaced: true,
    decode: decodes::<core::v1::Pod>,
};
pub(crate) static NAMESPACES: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
    decode: decodes::<core::v1::Namespace>,
};
static SECRETS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
    decode: decodes::<core::v1::Secret>,
};
static SERVICE_ACCOUNTS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    kind: "ServiceAccount",
    namespaced: true,
    decode: decodes::<core::v1::ServiceAccount>,
};
static CORE_EVENTS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
    decode: decodes::<core::v1::Event>,
};
static EVENTS: Resource = Resource {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
    decode: decodes::<events::v1::Event>,
};
static LEASES: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    namespaced: true,
    decode: decodes::<coordination::v1::Lease>,
};

static ALL: [&Resource; 8] = [
    &DEPLOYMENTS,
    &PODS,
    &NAMESPACES,
    &SECRETS,
    &SERVICE_ACCOUNTS,
    &CORE_EVENTS,
    &EVENTS,
    &LEASES,
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

    /// The resource stored under a (group, plural) pair.
    pub fn lookup(group: &str, plural: &str) -> Option<&'static Resource> {
        ALL.iter()
            .copied()
            .find(|r| r.group == group && r.plural == plural)
    }

    fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        ALL.iter()
            .copied()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// What a request path addresses.
pub(crate) enum Route {
    Version,
    Resource(Target),
    Unknown,
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

pub(crate) fn parse_path(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Route::Version,
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    let target = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        match Resource::find(group, version, plural) {
            Some(resource) if scoped_right(resource, namespace.is_some(), name.is_some()) => {
                Route::Resource(Target {
                    resource,
                    namespace: namespace.map(str::to_string),
                    name: name.map(str::to_string),
                    subresource: sub.map(str::to_string),
                })
            }
            _ => Route::Unknown,
        }
    };
    match rest {
        [plural] => target(plural, None, None, None),
        ["namespaces", name] => target("namespaces", None, Some(name), None),
        ["namespaces", ns, plural] => target(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => target(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => target(plural, Some(ns), Some(name), Some(sub)),
        [plural, name] if *plural != "namespaces" => target(plural, None, Some(name), None),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(path: &str) -> String {
        match parse_path(path) {
            Route::Version => "version".into(),
            Route::Unknown => "unknown".into(),
            Route::Resource(t) => format!(
                "{}/{} ns={:?} name={:?} sub={:?}",
                t.resource.group, t.resource.plural, t.namespace, t.name, t.subresource
            ),
        }
    }

    #[test]
    fn maps_paths_like_the_real_api() {
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
                "/apis/events.k8s.io/v1/namespaces/d/events",
                "events.k8s.io/events ns=Some(\"d\") name=None sub=None",
            ),
            ("/apis/apps/v1/namespaces/demo/replicasets", "unknown"),
            ("/apis/apps/v1/deployments/api", "unknown"),
            ("/healthz", "unknown"),
        ];
        for (path, want) in cases {
            assert_eq!(describe(path), want, "{path}");
        }
    }
}
