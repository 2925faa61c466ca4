//! GitOps owners: Argo CD and Flux put a workload back the way Git says, so an image tagwatch
//! writes into a workload they manage is undone at their next sync (and tagwatch writes it again:
//! a tug of war). Such a workload is left alone unless its owner says otherwise with
//! `tagwatch.dev/gitops: allow` (e.g. Argo CD ignores the image field, or Flux reconciliation is
//! suspended for it).
//!
//! Pure: reads the labels and annotations the tools write on the objects they apply.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::annotations as keys;

/// The tool, and the object in it, that applies a workload from Git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    ArgoCd {
        application: String,
    },
    FluxKustomization {
        namespace: Option<String>,
        name: String,
    },
    FluxHelmRelease {
        namespace: Option<String>,
        name: String,
    },
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let qualified = |namespace: &Option<String>, name: &str| match namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_string(),
        };
        match self {
            Owner::ArgoCd { application } => write!(f, "Argo CD application \"{application}\""),
            Owner::FluxKustomization { namespace, name } => {
                write!(f, "Flux Kustomization {}", qualified(namespace, name))
            }
            Owner::FluxHelmRelease { namespace, name } => {
                write!(f, "Flux HelmRelease {}", qualified(namespace, name))
            }
        }
    }
}

/// Who would undo tagwatch's writes to the object, whatever `tagwatch.dev/gitops` says.
pub fn owner(meta: &ObjectMeta) -> Option<Owner> {
    let labels = meta.labels.as_ref();
    let annotations = meta.annotations.as_ref();
    let label = |key: &str| value(labels, key);
    let tracking_id = value(annotations, keys::ARGOCD_TRACKING_ID);
    let tracked_application = tracking_id.and_then(|id| {
        let (application, _) = id.split_once(':')?;
        Some(application).filter(|a| !a.is_empty())
    });

    if let Some(application) = label(keys::ARGOCD_INSTANCE) {
        return Some(Owner::ArgoCd {
            application: application.to_string(),
        });
    }
    // `app.kubernetes.io/instance` alone is no sign of Argo CD (Helm sets it on everything);
    // with Argo CD's tracking annotation beside it, it is Argo CD's tracking label.
    if let (Some(instance), Some(_)) = (label(keys::APP_INSTANCE), tracking_id) {
        return Some(Owner::ArgoCd {
            application: tracked_application.unwrap_or(instance).to_string(),
        });
    }
    // Annotation tracking alone (Argo CD's default since 3.0): the annotation names the object it
    // was written on, as Argo CD itself checks, so one copied onto another object does not count.
    if let (Some(id), Some(application)) = (tracking_id, tracked_application) {
        if tracks(id, meta) {
            return Some(Owner::ArgoCd {
                application: application.to_string(),
            });
        }
    }
    if let Some(name) = label(keys::FLUX_KUSTOMIZATION_NAME) {
        return Some(Owner::FluxKustomization {
            namespace: label(keys::FLUX_KUSTOMIZATION_NAMESPACE).map(str::to_string),
            name: name.to_string(),
        });
    }
    if let Some(name) = label(keys::FLUX_HELMRELEASE_NAME) {
        return Some(Owner::FluxHelmRelease {
            namespace: label(keys::FLUX_HELMRELEASE_NAMESPACE).map(str::to_string),
            name: name.to_string(),
        });
    }
    None
}

/// `tagwatch.dev/gitops`: `Ok(true)` for `allow`, `Ok(false)` when absent, the reason otherwise.
pub fn allowed(meta: &ObjectMeta) -> Result<bool, String> {
    match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::GITOPS))
        .map(|v| v.trim())
    {
        None => Ok(false),
        Some("allow") => Ok(true),
        Some(other) => Err(format!(
            "`{other}` is not `allow` (the only value; remove the annotation to leave a workload \
             managed by Argo CD or Flux alone)"
        )),
    }
}

/// A short description of the GitOps owner that would undo tagwatch's writes
/// (`Argo CD application "shop"`, `Flux Kustomization flux-system/apps`); `None` when there is
/// none or the workload allows tagwatch anyway. An invalid `tagwatch.dev/gitops` allows nothing.
pub fn managed_by(meta: &ObjectMeta) -> Option<String> {
    if allowed(meta) == Ok(true) {
        return None;
    }
    owner(meta).map(|owner| owner.to_string())
}

/// A non-empty value; an empty label is no marker.
fn value<'a>(map: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    map?.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Whether an Argo CD tracking id (`<application>:<group>/<kind>:<namespace>/<name>`) names
/// this object (its namespace and name; the kind is not in the metadata).
fn tracks(id: &str, meta: &ObjectMeta) -> bool {
    let mut parts = id.splitn(3, ':');
    let (Some(_application), Some(_group_kind), Some(object)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (namespace, name) = object.split_once('/').unwrap_or(("", object));
    meta.name.as_deref() == Some(name)
        && (namespace.is_empty() || meta.namespace.as_deref().unwrap_or("default") == namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }
    }

    /// Labels or annotations of a case.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn managed_by_every_marker_allow_and_bad_values() {
        let argo = Some(r#"Argo CD application "shop""#);
        let kustomization = Some("Flux Kustomization flux-system/apps");
        // (case, labels, annotations, managed by)
        let cases: &[(&str, Pairs, Pairs, Option<&str>)] = &[
            ("nothing", &[], &[], None),
            (
                "unrelated labels",
                &[("app", "web"), ("team", "shop")],
                &[("deployment.kubernetes.io/revision", "3")],
                None,
            ),
            (
                "Argo CD instance label",
                &[("argocd.argoproj.io/instance", "shop")],
                &[],
                argo,
            ),
            (
                "an empty Argo CD instance label is no marker",
                &[("argocd.argoproj.io/instance", " ")],
                &[],
                None,
            ),
            (
                "app.kubernetes.io/instance alone: Helm's, not Argo CD's",
                &[("app.kubernetes.io/instance", "shop")],
                &[],
                None,
            ),
            (
                "app.kubernetes.io/instance with the tracking id: the application from the id",
                &[("app.kubernetes.io/instance", "web-release")],
                &[(
                    "argocd.argoproj.io/tracking-id",
                    "shop:apps/Deployment:prod/web",
                )],
                argo,
            ),
            (
                "app.kubernetes.io/instance with an unreadable tracking id: the label",
                &[("app.kubernetes.io/instance", "shop")],
                &[("argocd.argoproj.io/tracking-id", "garbled")],
                argo,
            ),
            (
                "tracking id alone, naming this object",
                &[],
                &[(
                    "argocd.argoproj.io/tracking-id",
                    "shop:apps/Deployment:prod/web",
                )],
                argo,
            ),
            (
                "tracking id alone, copied from another object",
                &[],
                &[(
                    "argocd.argoproj.io/tracking-id",
                    "shop:apps/Deployment:prod/api",
                )],
                None,
            ),
            (
                "tracking id alone, another namespace",
                &[],
                &[(
                    "argocd.argoproj.io/tracking-id",
                    "shop:apps/Deployment:staging/web",
                )],
                None,
            ),
            (
                "Flux Kustomization",
                &[
                    ("kustomize.toolkit.fluxcd.io/name", "apps"),
                    ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
                ],
                &[],
                kustomization,
            ),
            (
                "Flux Kustomization without its namespace label",
                &[("kustomize.toolkit.fluxcd.io/name", "apps")],
                &[],
                Some("Flux Kustomization apps"),
            ),
            (
                "Flux HelmRelease",
                &[
                    ("helm.toolkit.fluxcd.io/name", "web"),
                    ("helm.toolkit.fluxcd.io/namespace", "prod"),
                ],
                &[],
                Some("Flux HelmRelease prod/web"),
            ),
            (
                "Flux labels as annotations are no marker",
                &[],
                &[("kustomize.toolkit.fluxcd.io/name", "apps")],
                None,
            ),
            (
                "allowed",
                &[("argocd.argoproj.io/instance", "shop")],
                &[("tagwatch.dev/gitops", "allow")],
                None,
            ),
            (
                "allowed, with spaces",
                &[("kustomize.toolkit.fluxcd.io/name", "apps")],
                &[("tagwatch.dev/gitops", " allow ")],
                None,
            ),
            (
                "a bad value allows nothing",
                &[
                    ("kustomize.toolkit.fluxcd.io/name", "apps"),
                    ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
                ],
                &[("tagwatch.dev/gitops", "yes")],
                kustomization,
            ),
            (
                "allow on an unmanaged workload changes nothing",
                &[],
                &[("tagwatch.dev/gitops", "allow")],
                None,
            ),
        ];
        for (case, labels, annotations, want) in cases {
            assert_eq!(
                managed_by(&meta(labels, annotations)).as_deref(),
                *want,
                "{case}"
            );
        }
    }

    #[test]
    fn the_opt_out_is_allow_or_invalid() {
        let cases = [
            (None, Ok(false)),
            (Some("allow"), Ok(true)),
            (Some(" allow\n"), Ok(true)),
            (Some("Allow"), Err("`Allow` is not `allow`")),
            (Some("true"), Err("`true` is not `allow`")),
            (Some(""), Err("`` is not `allow`")),
            (Some("deny"), Err("`deny` is not `allow`")),
        ];
        for (value, want) in cases {
            let annotations: Vec<(&str, &str)> = value
                .map(|v| ("tagwatch.dev/gitops", v))
                .into_iter()
                .collect();
            let got = allowed(&meta(&[], &annotations));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{value:?}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{value:?}: {got}"),
                (got, want) => panic!("{value:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn argo_cd_wins_over_flux_when_both_label_an_object() {
        let both = meta(
            &[
                ("argocd.argoproj.io/instance", "shop"),
                ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ],
            &[],
        );
        assert_eq!(
            owner(&both),
            Some(Owner::ArgoCd {
                application: "shop".into()
            })
        );
    }
}
