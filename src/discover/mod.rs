//! Objects of every kind → workloads: reads the opt-in annotations, tagwatch's own state
//! annotations and the marks of a GitOps owner.
//!
//! Pure: takes the object the reflector holds, returns a value. Bad annotations become
//! [`Problem`]s on the workload (reported and skipped by the caller), never errors that stop others.

pub mod compact;
pub mod gitops;
pub mod object;
pub mod store;
pub mod trim;
pub mod watch;

pub use compact::Cached;
pub use object::{Object, Source};

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use k8s_openapi::api::core::v1::Container;

use crate::model::alias::Alias;
use crate::model::annotations as keys;
use crate::model::canary;
use crate::model::channels::Channels;
use crate::model::filter::parse_filter;
use crate::model::gates::{parse_min_age, GateSpec, Platforms};
use crate::model::history;
use crate::model::image::ImageRef;
use crate::model::policy::Policy;
use crate::model::rollout_state::{CanaryState, RolloutState};
use crate::model::window::Window;
use crate::model::workload::{
    OwnAnnotations, Pin, Problem, RolloutSettings, WatchedContainer, Workload, WorkloadId,
    DEFAULT_PROGRESS_DEADLINE, MAX_WORKLOAD_INTERVAL, MIN_WORKLOAD_INTERVAL,
    PROGRESS_DEADLINE_RANGE,
};

/// Whether the object opted in: `tagwatch.dev/policy` present and not `off`.
pub fn opted_in<S: Source + ?Sized>(object: &S) -> bool {
    object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::POLICY))
        .is_some_and(|p| !p.trim().eq_ignore_ascii_case("off"))
}

/// The workload for an opted-in object of any kind; `None` when it did not opt in.
pub fn workload<S: Source + ?Sized>(object: &S) -> Option<Workload> {
    if !opted_in(object) {
        return None;
    }
    let meta = object.meta();
    let kind = object.kind();
    let annotations: BTreeMap<String, String> = meta.annotations.clone().unwrap_or_default();
    let get = |key: &str| annotations.get(key).map(String::as_str);
    let id = WorkloadId {
        kind,
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone().unwrap_or_default(),
    };
    let mut problems = Vec::new();
    let mut problem = |container: Option<&str>, field: &str, reason: String| {
        problems.push(Problem {
            container: container.map(str::to_string),
            field: field.to_string(),
            reason,
        })
    };

    let policy = get(keys::POLICY).map(Policy::from_str).transpose();
    let channels = get(keys::PRERELEASE)
        .map(Channels::from_str)
        .transpose()
        .map(Option::unwrap_or_default);
    let filter = get(keys::MATCH).map(parse_filter).transpose();
    let pin = match get(keys::PIN)
        .map(|p| p.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("tag") | Some("") => Ok(Pin::Tag),
        Some("digest") => Ok(Pin::Digest),
        Some(other) => Err(format!("unknown pin `{other}`: expected `tag` or `digest`")),
    };
    let interval = match get(keys::INTERVAL) {
        None => Ok(None),
        Some(text) => match humantime::parse_duration(text.trim()) {
            Ok(d) if d > MAX_WORKLOAD_INTERVAL => Err(format!(
                "`{text}` is longer than 24h, the longest interval a workload may ask for"
            )),
            Ok(d) => Ok(Some(d.max(MIN_WORKLOAD_INTERVAL))),
            Err(e) => Err(format!("`{text}` is not a duration like 30s or 5m: {e}")),
        },
    };
    let state = State::read(&annotations);
    let gitops = gitops::allowed(meta);
    // A gate that does not parse stops updates: going ahead ungated would skip the check the
    // owner asked for.
    let gates = gate_spec(get(keys::VERIFY), get(keys::PLATFORMS), get(keys::MIN_AGE));

    let (policy, channels, filter, pin, interval, gates) =
        match (policy, channels, filter, pin, interval, gitops, gates) {
            (
                Ok(Some(policy)),
                Ok(channels),
                Ok(filter),
                Ok(pin),
                Ok(interval),
                Ok(_),
                Ok(gates),
            ) => (policy, channels, filter, pin, interval, gates),
            (policy, channels, filter, pin, interval, gitops, gates) => {
                if let Err(e) = policy {
                    problem(None, keys::POLICY, e.to_string());
                }
                if let Err(e) = channels {
                    problem(None, keys::PRERELEASE, e.to_string());
                }
                if let Err(e) = filter {
                    problem(None, keys::MATCH, e.to_string());
                }
                if let Err(e) = pin {
                    problem(None, keys::PIN, e);
                }
                if let Err(e) = interval {
                    problem(None, keys::INTERVAL, e);
                }
                if let Err(e) = gitops {
                    problem(None, keys::GITOPS, e);
                }
                if let Err((field, e)) = gates {
                    problem(None, field, e);
                }
                return Some(empty_workload(object, id, problems, annotations));
            }
        };
    let state = match state {
        Ok(state) => state,
        Err((field, reason)) => {
            problem(None, field, reason);
            return Some(empty_workload(object, id, problems, annotations));
        }
    };
    // A window that does not parse stops updates: going ahead at any hour would ignore the
    // owner's "not now".
    let window = match get(keys::WINDOW) {
        None => None,
        Some(text) => match Window::parse(text, get(keys::WINDOW_TIMEZONE)) {
            Ok(window) => Some(window),
            Err(reason) => {
                let field = if reason.contains("time zone") {
                    keys::WINDOW_TIMEZONE
                } else {
                    keys::WINDOW
                };
                problem(None, field, reason);
                return Some(empty_workload(object, id, problems, annotations));
            }
        },
    };
    // Approvals that do not parse stop updates: going ahead would skip the review asked for.
    let approvals = match crate::plan::approvals::Approvals::from_annotations(&annotations) {
        Ok(approvals) => approvals,
        Err((field, reason)) => {
            problem(None, field, reason);
            return Some(empty_workload(object, id, problems, annotations));
        }
    };
    // A canary asked for but misconfigured stops updates: going ahead without the canary would
    // skip the judgement the owner asked for.
    let rollout = match rollout_state(&annotations) {
        Ok(rollout) => rollout,
        Err((field, reason)) => {
            problem(None, field, reason);
            return Some(empty_workload(object, id, problems, annotations));
        }
    };

    let template = object.pod_template();
    let pod_spec = template.as_ref().and_then(|t| t.spec.as_ref());
    let regular: &[Container] = pod_spec.map(|p| p.containers.as_slice()).unwrap_or(&[]);
    let init: &[Container] = pod_spec
        .and_then(|p| p.init_containers.as_deref())
        .unwrap_or(&[]);
    let named: Option<BTreeSet<&str>> = get(keys::CONTAINERS).map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    if let Some(named) = &named {
        for name in named {
            if !regular.iter().chain(init).any(|c| c.name == *name) {
                problem(
                    None,
                    keys::CONTAINERS,
                    format!("names container `{name}`, which the pod template does not have"),
                );
            }
        }
    }
    let candidates = regular
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c,
                format!("{}/spec/containers/{i}/image", kind.template_pointer()),
                false,
            )
        })
        .chain(init.iter().enumerate().map(|(i, c)| {
            (
                c,
                format!("{}/spec/initContainers/{i}/image", kind.template_pointer()),
                true,
            )
        }));

    let mut containers = Vec::new();
    for (container, image_path, is_init) in candidates {
        let selected = match &named {
            Some(named) => named.contains(container.name.as_str()),
            None => !is_init,
        };
        if !selected {
            continue;
        }
        let name = container.name.as_str();
        let override_key = format!("{}{name}", keys::POLICY_PREFIX);
        let policy = match get(&override_key).map(Policy::from_str) {
            None => policy.clone(),
            Some(Ok(Policy::Off)) => continue,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                problem(Some(name), &override_key, e.to_string());
                continue;
            }
        };
        let image_text = container.image.clone().unwrap_or_default();
        let image = match ImageRef::parse(&image_text) {
            Ok(image) => image,
            Err(e) => {
                problem(Some(name), "image", e.to_string());
                continue;
            }
        };
        containers.push(WatchedContainer {
            name: name.to_string(),
            image_path,
            image_text,
            image,
            policy,
            channels: channels.clone(),
            filter: filter.clone(),
            pin,
            applied: state.applied.get(name).cloned(),
            track: state.track_for(name),
            rejected: state.rejected_for(name),
            gates: gates.clone(),
        });
    }
    let mut workload = empty_workload(object, id, problems, annotations);
    // Kept for the workload's life, ten thousand of them: no spare capacity (a first push
    // reserves room for four containers, 1.4 KB unused in the common one-container pod).
    containers.shrink_to_fit();
    workload.containers = containers;
    workload.interval = interval;
    workload.rollout = rollout;
    workload.window = window.map(Box::new);
    workload.approvals = approvals.map(Box::new);
    Some(workload)
}

fn gate_spec(
    verify: Option<&str>,
    platforms: Option<&str>,
    min_age: Option<&str>,
) -> Result<GateSpec, (&'static str, String)> {
    Ok(GateSpec {
        verify: verify
            .map(crate::model::verify::parse_names)
            .transpose()
            .map_err(|e| (keys::VERIFY, e))?
            .unwrap_or_default(),
        platforms: platforms
            .map(Platforms::parse)
            .transpose()
            .map_err(|e| (keys::PLATFORMS, e))?,
        min_age: match min_age {
            None => None,
            Some(text) => parse_min_age(text).map_err(|e| (keys::MIN_AGE, e))?,
        },
    })
}

/// Canary settings, canary and rollout state, rollback switch: read together, all-or-nothing.
fn rollout_state(
    annotations: &BTreeMap<String, String>,
) -> Result<RolloutSettings, (&'static str, String)> {
    let canary = canary::parse(annotations)?;
    let canary_state = annotations
        .get(keys::CANARY_STATE)
        .map(|t| CanaryState::decode(t))
        .transpose()
        .map_err(|e| (keys::CANARY_STATE, e))?;
    let watching = annotations
        .get(keys::ROLLOUT)
        .map(|t| RolloutState::decode(t))
        .transpose()
        .map_err(|e| (keys::ROLLOUT, e))?;
    let rollback = match annotations.get(keys::ROLLBACK).map(|v| v.trim()) {
        None | Some("on") | Some("true") => true,
        Some("off") | Some("false") => false,
        Some(other) => return Err((keys::ROLLBACK, format!("`{other}` is not `on` or `off`"))),
    };
    let progress_deadline = match annotations.get(keys::PROGRESS_DEADLINE).map(|v| v.trim()) {
        None => DEFAULT_PROGRESS_DEADLINE,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if (PROGRESS_DEADLINE_RANGE.0..=PROGRESS_DEADLINE_RANGE.1).contains(&d) => d,
            Ok(_) => {
                return Err((
                    keys::PROGRESS_DEADLINE,
                    format!("`{text}` is outside 10s to 24h"),
                ))
            }
            Err(e) => {
                return Err((
                    keys::PROGRESS_DEADLINE,
                    format!("`{text}` is not a duration like 10m: {e}"),
                ))
            }
        },
    };
    Ok(RolloutSettings {
        canary: canary.map(Box::new),
        canary_state: canary_state.map(Box::new),
        watching: watching.map(Box::new),
        rollback,
        progress_deadline,
        history: history::decode(annotations.get(keys::HISTORY).map(String::as_str)),
    })
}

/// All annotations but kubectl's last-applied copy (which the watch caches drop), hashed.
fn annotations_hash(annotations: &BTreeMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (key, value) in annotations {
        if key != trim::LAST_APPLIED {
            (key, value).hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn empty_workload<S: Source + ?Sized>(
    object: &S,
    id: WorkloadId,
    problems: Vec<Problem>,
    annotations: BTreeMap<String, String>,
) -> Workload {
    let template = object.pod_template();
    let pod_spec = template.as_ref().and_then(|t| t.spec.as_ref());
    Workload {
        id,
        uid: object.meta().uid.clone(),
        resource_version: object.meta().resource_version.clone(),
        interval: None,
        service_account: pod_spec
            .and_then(|p| p.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        pull_secrets: pod_spec
            .and_then(|p| p.image_pull_secrets.as_ref())
            .map(|secrets| secrets.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default(),
        containers: Vec::new(),
        problems,
        annotations: OwnAnnotations::of(&annotations),
        annotations_hash: annotations_hash(&annotations),
        generation: object.meta().generation,
        rollout: RolloutSettings::default(),
        // Set whatever else is wrong: an invalid opt-out allows nothing.
        gitops: gitops::managed_by(object.meta()),
        window: None,
        approvals: None,
        // Whatever else is wrong too: a refusal is itself worth telling the chosen sinks.
        notify: notify_sinks(object.meta()),
    }
}

/// `tagwatch.dev/notify: a, b` → the names (an empty value chooses no sink); absent: `None`.
fn notify_sinks(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<BTreeSet<String>> {
    let value = meta.annotations.as_ref()?.get(keys::NOTIFY)?;
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// tagwatch's own state annotations, parsed.
struct State {
    applied: BTreeMap<String, String>,
    /// `None` key: a bare alias, for every container.
    track: BTreeMap<Option<String>, Alias>,
    rejected: BTreeMap<Option<String>, BTreeSet<String>>,
}

impl State {
    fn read(annotations: &BTreeMap<String, String>) -> Result<State, (&'static str, String)> {
        let applied = match annotations.get(keys::APPLIED) {
            None => BTreeMap::new(),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                (
                    keys::APPLIED,
                    format!("not a JSON map of container to image ({e}); delete the annotation to reset"),
                )
            })?,
        };
        let track = match annotations.get(keys::TRACK).map(|t| t.trim()) {
            None | Some("") => BTreeMap::new(),
            Some(text) if text.starts_with('{') => {
                let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
                    (
                        keys::TRACK,
                        format!("not an alias nor a JSON map of container to alias: {e}"),
                    )
                })?;
                map.into_iter()
                    .map(|(c, a)| {
                        Alias::from_str(&a)
                            .map(|a| (Some(c), a))
                            .map_err(|e| (keys::TRACK, e.to_string()))
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(text) => {
                let alias = Alias::from_str(text).map_err(|e| (keys::TRACK, e.to_string()))?;
                BTreeMap::from([(None, alias)])
            }
        };
        let rejected = match annotations.get(keys::REJECTED).map(|t| t.trim()) {
            None | Some("") => BTreeMap::new(),
            Some(text) if text.starts_with('{') => {
                let map: BTreeMap<String, BTreeSet<String>> =
                    serde_json::from_str(text).map_err(|e| {
                        (
                            keys::REJECTED,
                            format!("not a JSON map of container to tag list: {e}"),
                        )
                    })?;
                map.into_iter().map(|(c, tags)| (Some(c), tags)).collect()
            }
            Some(text) => BTreeMap::from([(
                None,
                text.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            )]),
        };
        Ok(State {
            applied,
            track,
            rejected,
        })
    }

    fn track_for(&self, container: &str) -> Option<Alias> {
        self.track
            .get(&Some(container.to_string()))
            .or_else(|| self.track.get(&None))
            .copied()
    }

    fn rejected_for(&self, container: &str) -> BTreeSet<String> {
        let mut tags = self
            .rejected
            .get(&Some(container.to_string()))
            .cloned()
            .unwrap_or_default();
        if let Some(all) = self.rejected.get(&None) {
            tags.extend(all.iter().cloned());
        }
        tags
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;
    use std::time::Duration;

    fn deployment(annotations: serde_json::Value, containers: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": containers,
                    "initContainers": [{"name": "migrate", "image": "reg/migrate:1.0.0"}],
                    "imagePullSecrets": [{"name": "pull"}],
                    "serviceAccountName": "builder"
                }}
            }
        }))
        .unwrap()
    }

    fn web(image: &str) -> serde_json::Value {
        json!([{"name": "web", "image": image}])
    }

    #[test]
    fn notify_names_sinks_even_on_a_workload_with_problems() {
        let read = |annotations: serde_json::Value| {
            workload(&deployment(annotations, web("reg/app:1.0.0"))).unwrap()
        };
        let set = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(read(json!({"tagwatch.dev/policy": "minor"})).notify, None);
        assert_eq!(
            read(json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/notify": " ops, audit ,"}))
                .notify,
            set(&["audit", "ops"])
        );
        assert_eq!(
            read(json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/notify": ""})).notify,
            set(&[])
        );
        let broken = read(json!({"tagwatch.dev/policy": "sideways", "tagwatch.dev/notify": "ops"}));
        assert!(!broken.problems.is_empty());
        assert_eq!(broken.notify, set(&["ops"]));
    }

    #[test]
    fn not_opted_in_without_policy_or_with_off() {
        assert!(workload(&deployment(json!({}), web("reg/app:1.0.0"))).is_none());
        assert!(workload(&deployment(
            json!({"tagwatch.dev/policy": "off"}),
            web("a:1.0.0")
        ))
        .is_none());
    }

    #[test]
    fn a_person_changing_any_annotation_changes_the_hash_kubectls_copy_does_not() {
        let hash = |annotations: serde_json::Value| {
            workload(&deployment(annotations, web("reg/app:1.2.3")))
                .unwrap()
                .annotations_hash
        };
        let base = hash(json!({"tagwatch.dev/policy": "minor"}));
        assert_eq!(
            hash(json!({"tagwatch.dev/policy": "minor", trim::LAST_APPLIED: "{}"})),
            base
        );
        assert_ne!(
            hash(json!({"tagwatch.dev/policy": "minor", "policy.example/allow": "yes"})),
            base
        );
        assert_ne!(hash(json!({"tagwatch.dev/policy": "patch"})), base);
        // Only tagwatch's own annotations are kept.
        let w = workload(&deployment(
            json!({"tagwatch.dev/policy": "minor", "policy.example/allow": "yes"}),
            web("reg/app:1.2.3"),
        ))
        .unwrap();
        assert_eq!(w.annotations.get("tagwatch.dev/policy"), Some("minor"));
        assert_eq!(w.annotations.get("policy.example/allow"), None);
    }

    #[test]
    fn reads_settings_and_state() {
        let w = workload(&deployment(
            json!({
                "tagwatch.dev/policy": "minor",
                "tagwatch.dev/prerelease": "rc",
                "tagwatch.dev/pin": "digest",
                "tagwatch.dev/interval": "2s",
                "tagwatch.dev/applied": "{\"web\":\"reg/app:1.2.3\"}",
                "tagwatch.dev/track": "1",
                "tagwatch.dev/rejected": "1.2.4",
            }),
            web("reg/app:1.2.3"),
        ))
        .unwrap();
        assert!(w.problems.is_empty(), "{:?}", w.problems);
        assert_eq!(w.id.to_string(), "shop/web");
        assert_eq!(
            w.interval,
            Some(MIN_WORKLOAD_INTERVAL),
            "raised to the minimum"
        );
        assert_eq!(w.service_account, "builder");
        assert_eq!(w.pull_secrets, vec!["pull".to_string()]);
        assert_eq!(w.containers.len(), 1, "init containers only when named");
        let c = &w.containers[0];
        assert_eq!(c.image_path, "/spec/template/spec/containers/0/image");
        assert_eq!(c.policy, Policy::Minor);
        assert_eq!(c.pin, Pin::Digest);
        assert_eq!(c.applied.as_deref(), Some("reg/app:1.2.3"));
        assert_eq!(c.track, Some(Alias::new(1, None)));
        assert!(c.rejected.contains("1.2.4"));
    }

    #[test]
    fn named_containers_include_init_containers_and_overrides_apply() {
        let w = workload(&deployment(
            json!({
                "tagwatch.dev/policy": "patch",
                "tagwatch.dev/containers": "web, migrate",
                "tagwatch.dev/policy.migrate": "major",
            }),
            web("reg/app:1.2.3"),
        ))
        .unwrap();
        let names: Vec<_> = w
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.policy.clone()))
            .collect();
        assert_eq!(
            names,
            vec![("web", Policy::Patch), ("migrate", Policy::Major)]
        );
        assert_eq!(
            w.containers[1].image_path,
            "/spec/template/spec/initContainers/0/image"
        );
    }

    #[test]
    fn bad_annotations_become_problems_naming_the_annotation() {
        let cases = [
            (
                json!({"tagwatch.dev/policy": "sideways"}),
                "tagwatch.dev/policy",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/match": "v1["}),
                "tagwatch.dev/match",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/pin": "both"}),
                "tagwatch.dev/pin",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/interval": "soon"}),
                "tagwatch.dev/interval",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/track": "1.2.3"}),
                "tagwatch.dev/track",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/applied": "web=x"}),
                "tagwatch.dev/applied",
            ),
            (
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/containers": "nope"}),
                "tagwatch.dev/containers",
            ),
        ];
        for (annotations, field) in cases {
            let w = workload(&deployment(annotations.clone(), web("reg/app:1.0.0"))).unwrap();
            assert!(
                w.problems.iter().any(|p| p.field == field),
                "{annotations}: {:?}",
                w.problems
            );
        }
    }

    #[test]
    fn the_interval_is_bounded_at_parse() {
        let interval = |text: &str| {
            let w = workload(&deployment(
                json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/interval": text}),
                web("reg/app:1.0.0"),
            ))
            .unwrap();
            match w.problems.as_slice() {
                [] => Ok(w.interval),
                [p] if p.field == keys::INTERVAL && p.container.is_none() => {
                    assert!(w.containers.is_empty(), "the workload is skipped");
                    Err(p.reason.clone())
                }
                other => panic!("{text}: {other:?}"),
            }
        };
        assert_eq!(interval("24h"), Ok(Some(MAX_WORKLOAD_INTERVAL)));
        assert_eq!(interval("1day"), Ok(Some(MAX_WORKLOAD_INTERVAL)));
        assert_eq!(interval(" 5m "), Ok(Some(Duration::from_secs(300))));
        for huge in [
            "24h 1s",
            "25h",
            "1000000000y",
            "18446744073709551615s",
            "584942417355y",
        ] {
            let reason = interval(huge).unwrap_err();
            assert!(
                reason.contains("24h") || reason.contains("not a duration"),
                "{huge}: {reason}"
            );
        }
        assert!(interval("18446744073709551615s")
            .unwrap_err()
            .contains("longer than 24h"));
    }

    #[test]
    fn a_bad_image_skips_only_that_container() {
        let w = workload(&deployment(
            json!({"tagwatch.dev/policy": "minor"}),
            json!([{"name": "web", "image": "Bad Image"}, {"name": "side", "image": "reg/side:1.0.0"}]),
        ))
        .unwrap();
        assert_eq!(w.containers.len(), 1);
        assert_eq!(w.containers[0].name, "side");
        assert_eq!(w.problems.len(), 1);
        assert_eq!(w.problems[0].container.as_deref(), Some("web"));
    }

    #[test]
    fn a_workload_managed_by_gitops_says_by_whom_unless_it_allows_tagwatch() {
        let managed = |labels: serde_json::Value, annotations: serde_json::Value| {
            let mut d = deployment(annotations, web("reg/app:1.0.0"));
            d.metadata.labels = serde_json::from_value(labels).unwrap();
            workload(&d).unwrap()
        };
        let argo = json!({"argocd.argoproj.io/instance": "shop"});
        let w = managed(argo.clone(), json!({"tagwatch.dev/policy": "minor"}));
        assert_eq!(w.gitops.as_deref(), Some(r#"Argo CD application "shop""#));
        assert!(w.problems.is_empty(), "{:?}", w.problems);
        assert_eq!(
            w.containers.len(),
            1,
            "still read: the loop decides what to do"
        );

        let w = managed(
            argo.clone(),
            json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/gitops": "allow"}),
        );
        assert_eq!(w.gitops, None);
        assert!(w.problems.is_empty(), "{:?}", w.problems);

        let w = managed(
            argo,
            json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/gitops": "please"}),
        );
        assert_eq!(
            w.gitops.as_deref(),
            Some(r#"Argo CD application "shop""#),
            "an invalid opt-out allows nothing"
        );
        assert_eq!(w.problems.len(), 1, "{:?}", w.problems);
        assert_eq!(w.problems[0].field, keys::GITOPS);
        assert!(w.problems[0].reason.contains("`please` is not `allow`"));
        assert!(w.containers.is_empty(), "skipped as an invalid annotation");

        let w = managed(
            json!({"app": "web"}),
            json!({"tagwatch.dev/policy": "minor"}),
        );
        assert_eq!(w.gitops, None);
        // The opt-out on a workload nobody manages is harmless.
        let w = managed(
            json!({}),
            json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/gitops": "allow"}),
        );
        assert!(w.problems.is_empty() && w.gitops.is_none());
    }

    #[test]
    fn gitops_owners_are_read_on_every_kind() {
        let flux = json!({
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        });
        let stateful: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop", "labels": flux,
                "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"spec": {"containers": [{"name": "db", "image": "reg/db:1.0.0"}]}}}
        }))
        .unwrap();
        let w = workload(&Object::from(stateful)).unwrap();
        assert_eq!(w.id.to_string(), "shop/statefulset/db");
        assert_eq!(
            w.gitops.as_deref(),
            Some("Flux Kustomization flux-system/apps")
        );
        let cron: k8s_openapi::api::batch::v1::CronJob = serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "shop",
                "labels": {"helm.toolkit.fluxcd.io/name": "jobs",
                    "helm.toolkit.fluxcd.io/namespace": "shop"},
                "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "job", "image": "reg/job:1.0.0"}]}}}}}
        }))
        .unwrap();
        let w = workload(&cron).unwrap();
        assert_eq!(w.gitops.as_deref(), Some("Flux HelmRelease shop/jobs"));
    }

    /// Whatever a person (or an attacker with edit rights on one Deployment) writes into the
    /// annotations and image strings, and whatever tags a registry lists: parsing and planning
    /// return values, never panic.
    mod properties {
        use super::*;
        use crate::model::image::Repository;
        use crate::plan::update::{self, Inputs};
        use proptest::prelude::*;
        use proptest::sample::select;
        use std::collections::HashMap;
        use std::sync::Arc;

        const KEYS: &[&str] = &[
            keys::POLICY,
            keys::PRERELEASE,
            keys::MATCH,
            keys::PIN,
            keys::INTERVAL,
            keys::CONTAINERS,
            keys::APPLIED,
            keys::TRACK,
            keys::REJECTED,
            keys::CHANGE_CAUSE,
            keys::CANARY,
            keys::CANARY_REPLICAS,
            keys::CANARY_TIMEOUT,
            keys::CANARY_BAKE,
            keys::CANARY_QUERY,
            keys::CANARY_THRESHOLD,
            keys::CANARY_FAILURES,
            keys::CANARY_STATE,
            keys::ROLLBACK,
            keys::ROLLOUT,
            keys::HISTORY,
            keys::CANARY_OF,
            keys::GITOPS,
            keys::ARGOCD_TRACKING_ID,
            "tagwatch.dev/policy.web",
            "tagwatch.dev/policy.side",
            "tagwatch.dev/policy.",
        ];

        /// Values that mean something to some key, and ones that mean nothing to any.
        fn value() -> impl Strategy<Value = String> {
            let known = select(vec![
                "minor",
                "major",
                "patch",
                "digest",
                "off",
                "semver",
                "~1.2",
                "^1",
                ">=1.0.0, <2",
                "rc",
                "beta,rc",
                "*",
                "tag",
                "true",
                "false",
                "on",
                "0",
                "1",
                "100",
                "101",
                "-1",
                "1s",
                "9s",
                "24h",
                "24h 1s",
                "18446744073709551615s",
                "1000000000y",
                "99999999999999999999999y",
                "< 0.05",
                ">= NaN",
                "web",
                "web, migrate",
                "1",
                "1.2",
                "v1.2",
                "{\"web\":\"reg/app:9.9.9\"}",
                "{\"web\":\"1\"}",
                "{\"web\":[\"1.2.4\"]}",
                "{",
                "[]",
                "null",
                "^v?[0-9]+\\.[0-9]+$",
                "(a+)+$",
                "[",
                "\u{0}",
                "",
                "{\"phase\":\"baking\",\"started\":\"not a time\"}",
                "[{\"time\":\"2024-01-01T00:00:00Z\"}]",
            ])
            .prop_map(str::to_owned);
            prop_oneof![3 => known, 2 => any::<String>(), 1 => "[ -~]{0,40}"]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => select(KEYS.to_vec()).prop_map(str::to_owned),
                1 => "tagwatch\\.dev/[a-z.-]{0,16}",
                1 => any::<String>(),
            ]
        }

        fn image() -> impl Strategy<Value = String> {
            let known = select(vec![
                "reg/app:1.2.3",
                "nginx",
                "nginx:1.25",
                "reg/app:v1.2.3-rc.1+b.5",
                "127.0.0.1:5000/a/b:1.0.0",
                "reg/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "reg/app:1.2.3@sha256:00",
                "REG/App:1",
                "reg/app:",
                ":1.0.0",
                "reg//app:1",
                "reg/app:1:2",
                "",
            ])
            .prop_map(str::to_owned);
            prop_oneof![
                3 => known,
                2 => "[a-z0-9.:/@_-]{0,30}",
                1 => any::<String>(),
            ]
        }

        fn tags() -> impl Strategy<Value = Vec<String>> {
            let tag = prop_oneof![
                3 => (0u64..3, 0u64..3, 0u64..4).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
                1 => select(vec![
                    "latest", "1", "1.2", "v1.2.3", "1.2.3-rc.1", "1.2.3+build", "01.2.3",
                    "18446744073709551616.0.0", "1.2.3.4", "",
                ])
                .prop_map(str::to_owned),
                1 => any::<String>(),
            ];
            proptest::collection::vec(tag, 0..12)
        }

        fn deployment_of(
            annotations: &BTreeMap<String, String>,
            images: &[(String, String)],
        ) -> Deployment {
            let containers: Vec<_> = images
                .iter()
                .map(|(name, image)| json!({"name": name, "image": image}))
                .collect();
            deployment(json!(annotations), json!(containers))
        }

        /// Annotations: either anything at all, or a valid opt-in with a few keys set to anything
        /// (so most cases get past the parser and reach the planner).
        fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
            let policy = select(vec!["minor", "major", "patch", "digest", "~1.0", "off"]);
            let mostly_valid = (
                policy,
                proptest::collection::btree_map(
                    select(KEYS.to_vec()).prop_map(str::to_owned),
                    value(),
                    0..3,
                ),
            )
                .prop_map(|(policy, mut extra)| {
                    extra
                        .entry(keys::POLICY.to_string())
                        .or_insert_with(|| policy.into());
                    extra
                });
            prop_oneof![
                1 => proptest::collection::btree_map(key(), value(), 0..10),
                2 => mostly_valid,
            ]
        }

        fn container() -> impl Strategy<Value = (String, String)> {
            let name = select(vec!["web", "side", "migrate"]).prop_map(str::to_owned);
            let good = select(vec![
                "reg/app:1.0.0",
                "reg/app:1.1.2",
                "reg/app:v1.0.0",
                "reg/app:1",
                "reg/other:0.1.0-rc.1",
                "nginx:1.2",
                "127.0.0.1:5000/a/b:2.0.0",
                "reg/app:1.0.0@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ])
            .prop_map(str::to_owned);
            (name, prop_oneof![3 => good, 1 => image()])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn annotations_images_and_listings_never_panic(
                annotations in annotations(),
                images in proptest::collection::vec(container(), 0..3),
                listing in tags(),
                other in tags(),
                digest in "[a-z0-9:]{0,20}",
            ) {
                let Some(w) = workload(&deployment_of(&annotations, &images)) else {
                    return Ok(());
                };
                if let Some(interval) = w.interval {
                    prop_assert!((MIN_WORKLOAD_INTERVAL..=MAX_WORKLOAD_INTERVAL).contains(&interval));
                }
                let mut tags: HashMap<Repository, Arc<Vec<String>>> = HashMap::new();
                let mut digests = HashMap::new();
                for (i, c) in w.containers.iter().enumerate() {
                    let list = if i == 0 { &listing } else { &other };
                    tags.insert(c.image.repository.clone(), Arc::new(list.clone()));
                    for tag in list {
                        digests.insert((c.image.repository.clone(), tag.clone()), digest.clone());
                    }
                }
                let _ = update::plan(&w, &Inputs { tags, digests, ..Inputs::default() });
                // And with nothing listed yet.
                let _ = update::plan(&w, &Inputs::default());
            }

            #[test]
            fn image_references_never_panic(text in image()) {
                if let Ok(image) = ImageRef::parse(&text) {
                    let _ = image.with_tag("1.2.3", Some("sha256:00"));
                    let _ = image.repository.to_string();
                }
            }
        }
    }
}
