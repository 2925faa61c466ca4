//! A person's rollback of one workload, of any kind (`tagwatch rollback`): back to the image before
//! the current one in its `tagwatch.dev/history`, or to `--to VERSION`. The tag left is rejected for
//! that container, so tagwatch never applies it again while newer versions still do.
//!
//! Pure: takes the object as read and the time, returns the changes and the state to write in one
//! guarded patch, or why not.

use std::collections::BTreeMap;

use crate::discover::{self, Source};
use crate::model::annotations as keys;
use crate::model::history::{Entry, How};
use crate::model::image::{tag_of, ImageRef};
use crate::model::tag::Tag;
use crate::model::workload::{WatchedContainer, Workload, WorkloadId};
use crate::plan::patch::{ImageChange, State};

/// The reason written into history entries and Events.
pub const REASON: &str = "tagwatch rollback";

/// Why a rollback is refused (exit 2); nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("workload {workload} is not watched by tagwatch (no {key} annotation, or `off`)", key = keys::POLICY)]
    NotOptedIn { workload: WorkloadId },
    #[error("a canary is in progress on {workload} ({key}); wait until it passes or fails, then roll back", key = keys::CANARY_STATE)]
    CanaryInProgress { workload: WorkloadId },
    #[error("workload {workload} has problems to fix first: {problems}")]
    Problems {
        workload: WorkloadId,
        problems: String,
    },
    #[error("workload {workload} is managed by {owner}, which would undo the rollback: roll back in Git (or set {key}: allow if {owner} leaves the image alone)", key = keys::GITOPS)]
    ManagedByGitOps { workload: WorkloadId, owner: String },
    #[error("container {container} is not watched by tagwatch (watched: {watched})")]
    NotWatched { container: String, watched: String },
    #[error("no earlier image in {key} for container {container}; use --to VERSION", key = keys::HISTORY)]
    NoEarlierImage { container: String },
    #[error("--to {version}: {reason}")]
    BadVersion { version: String, reason: String },
    #[error("container {container} already runs {image}")]
    AlreadyThere { container: String, image: String },
}

/// One container's way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub container: String,
    pub from: String,
    pub to: String,
    /// The tag left, now rejected for this container (none when the image had no tag).
    pub rejected: Option<String>,
}

/// Everything the write needs.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub workload: Workload,
    pub steps: Vec<Step>,
    pub changes: Vec<ImageChange>,
    pub state: State,
}

/// The rollback of `object`: `to` a tag, or else to each container's previous image in the
/// history; only `container` when given, else every watched container. `now` stamps the history.
pub fn plan<S: Source + ?Sized>(
    object: &S,
    to: Option<&str>,
    container: Option<&str>,
    now: &str,
) -> Result<Rollback, Refusal> {
    let meta = object.meta();
    let id = WorkloadId::new(
        object.kind(),
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    );
    let workload = discover::workload(object).ok_or_else(|| Refusal::NotOptedIn {
        workload: id.clone(),
    })?;
    if workload.annotations.contains_key(keys::CANARY_STATE) {
        return Err(Refusal::CanaryInProgress { workload: id });
    }
    if !workload.problems.is_empty() {
        return Err(Refusal::Problems {
            workload: id,
            problems: workload
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    if let Some(owner) = &workload.gitops {
        return Err(Refusal::ManagedByGitOps {
            workload: id,
            owner: owner.clone(),
        });
    }
    let selected: Vec<&WatchedContainer> = match container {
        Some(wanted) => {
            let found = workload.containers.iter().find(|c| c.name == wanted);
            vec![found.ok_or_else(|| Refusal::NotWatched {
                container: wanted.to_string(),
                watched: watched(&workload),
            })?]
        }
        None => workload.containers.iter().collect(),
    };
    let mut steps = Vec::new();
    for c in selected {
        let target = match to {
            Some(version) => with_version(c, version)?,
            None => {
                previous(&workload.rollout.history, c).ok_or_else(|| Refusal::NoEarlierImage {
                    container: c.name.clone(),
                })?
            }
        };
        if target == c.image_text {
            return Err(Refusal::AlreadyThere {
                container: c.name.clone(),
                image: target,
            });
        }
        let target_tag = tag_of(&target);
        steps.push(Step {
            container: c.name.clone(),
            from: c.image_text.clone(),
            to: target,
            // Moving between digests of one tag rejects nothing: the tag is where we go.
            rejected: c
                .image
                .tag
                .clone()
                .filter(|t| Some(t) != target_tag.as_ref()),
        });
    }
    let changes: Vec<ImageChange> = steps
        .iter()
        .filter_map(|step| {
            let c = workload
                .containers
                .iter()
                .find(|c| c.name == step.container)?;
            Some(ImageChange {
                container: step.container.clone(),
                image_path: c.image_path.clone(),
                from: step.from.clone(),
                to: step.to.clone(),
                from_tag: c.image.tag.clone().unwrap_or_default(),
                to_tag: tag_of(&step.to).unwrap_or_default(),
            })
        })
        .collect();
    let state = state_after(&workload, &steps, now);
    Ok(Rollback {
        workload,
        steps,
        changes,
        state,
    })
}

/// `web: app:1.2.4 → app:1.2.3 (tagwatch rollback)`: the Event's note.
pub fn note(steps: &[Step]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .map(|s| format!("{}: {} → {}", s.container, s.from, s.to))
        .collect();
    format!("{} ({REASON})", parts.join(", "))
}

/// The container's image with its tag replaced, in the user's notation; a pinned digest goes.
fn with_version(c: &WatchedContainer, version: &str) -> Result<String, Refusal> {
    let bad = |reason: String| Refusal::BadVersion {
        version: version.to_string(),
        reason,
    };
    let target = c.image.with_tag(version, None);
    match ImageRef::parse(&target) {
        Ok(parsed) if parsed.tag.as_deref() == Some(version) && parsed.name == c.image.name => {
            Ok(target)
        }
        Ok(_) => Err(bad("not a tag".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The image the container ran before its current one: the `from` of the newest change that
/// led to the current image. Changes that never ran on this workload (failed canaries) and
/// earlier rollbacks by hand (their `from` is rejected) are passed over, as is any image whose
/// tag is rejected: going back to a version already judged bad is no rollback.
fn previous(history: &[Entry], c: &WatchedContainer) -> Option<String> {
    history
        .iter()
        .rev()
        .filter(|e| e.container == c.name && e.to == c.image_text)
        .filter(|e| {
            matches!(
                e.how,
                How::Update | How::CanaryPass | How::Manual | How::Rollback
            )
        })
        .map(|e| e.from.clone())
        .find(|from| {
            !from.is_empty()
                && *from != c.image_text
                && tag_of(from).is_none_or(|tag| !c.rejected.contains(&tag))
        })
}

/// tagwatch's state after the rollback: the targets applied, the tags left rejected, an alias
/// intent kept only where the target still lies inside it, the history appended and any
/// watched rollout forgotten (the person's rollback supersedes it).
fn state_after(workload: &Workload, steps: &[Step], now: &str) -> State {
    let mut state = State::of(workload);
    for step in steps {
        state
            .applied
            .insert(step.container.clone(), step.to.clone());
        if let Some(tag) = &step.rejected {
            state.reject(&step.container, tag.clone());
        }
        let inside = state.track.get(&step.container).is_some_and(|alias| {
            matches!(tag_of(&step.to).map(|t| Tag::parse(&t)),
                Some(Tag::Version(v)) if alias.contains(v.version()))
        });
        if !inside {
            state.track.remove(&step.container);
        }
    }
    let entries = steps.iter().map(|step| {
        Entry::new(
            now,
            &step.container,
            &step.from,
            &step.to,
            How::ManualRollback,
        )
        .because(Some(REASON.to_string()))
    });
    state.extra = BTreeMap::from([(keys::ROLLOUT.to_string(), None)]);
    state.record(&workload.rollout.history, entries);
    state
}

fn watched(workload: &Workload) -> String {
    let names: Vec<&str> = workload
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::discover::Object;
    use crate::model::history;
    use crate::model::kind::Kind;
    use crate::plan::patch;
    use kube::api::DynamicObject;
    use serde_json::json;

    const NOW: &str = "2026-02-01T00:00:00Z";
    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CANARY_STATE: &str = r#"{"phase":"running","images":{"web":"x:2"},"from":{"web":"x:1"},"started":"2026-01-01T00:00:00Z"}"#;

    /// An object of `kind` named `web` in `shop`, with these annotations and containers, read
    /// as a dynamic read gives it.
    fn object(kind: Kind, annotations: serde_json::Value, images: &[(&str, &str)]) -> Object {
        let containers: Vec<_> = images
            .iter()
            .map(|(name, image)| json!({"name": name, "image": image}))
            .collect();
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": containers}});
        let spec = match kind {
            Kind::CronJob => json!({"schedule": "0 3 * * *",
                "jobTemplate": {"spec": {"template": template}}}),
            Kind::StatefulSet => json!({"serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}}, "template": template}),
            _ => json!({"selector": {"matchLabels": {"app": "web"}}, "template": template}),
        };
        let dynamic: DynamicObject = serde_json::from_value(json!({
            "apiVersion": kind.api_version(), "kind": kind.name(),
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7",
                "annotations": annotations},
            "spec": spec,
        }))
        .unwrap();
        Object::from_dynamic(kind, dynamic).unwrap()
    }

    fn entry(container: &str, from: &str, to: &str, how: &str) -> serde_json::Value {
        json!({"time": "2026-01-01T00:00:00Z", "container": container, "from": from, "to": to, "how": how})
    }

    fn history(entries: &[serde_json::Value]) -> String {
        serde_json::to_string(entries).unwrap()
    }

    fn step(container: &str, from: &str, to: &str, rejected: Option<&str>) -> Step {
        Step {
            container: container.into(),
            from: from.into(),
            to: to.into(),
            rejected: rejected.map(String::from),
        }
    }

    /// One history: 0.9.0 → 1.0.0 → 1.1.0 on `web`.
    fn updated_twice() -> serde_json::Value {
        json!({
            "tagwatch.dev/policy": "minor",
            "tagwatch.dev/applied": "{\"web\":\"reg/app:1.1.0\"}",
            "tagwatch.dev/track": "1",
            "tagwatch.dev/rollout": "{\"from\":{},\"to\":{},\"started\":\"x\"}",
            "tagwatch.dev/history": history(&[
                entry("web", "reg/app:0.9.0", "reg/app:1.0.0", "update"),
                entry("web", "reg/app:1.0.0", "reg/app:1.1.0", "update"),
            ]),
        })
    }

    #[test]
    fn plans() {
        let pinned = format!("127.0.0.1:5000/org/app:2.1.0@{DIGEST}");
        struct Case {
            name: &'static str,
            kind: Kind,
            annotations: serde_json::Value,
            images: Vec<(&'static str, String)>,
            to: Option<&'static str>,
            container: Option<&'static str>,
            steps: Vec<Step>,
            paths: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "history: the image before, the one left rejected",
                kind: Kind::Deployment,
                annotations: updated_twice(),
                images: vec![("web", "reg/app:1.1.0".into())],
                to: None,
                container: None,
                steps: vec![step("web", "reg/app:1.1.0", "reg/app:1.0.0", Some("1.1.0"))],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "history on a StatefulSet",
                kind: Kind::StatefulSet,
                annotations: updated_twice(),
                images: vec![("web", "reg/app:1.1.0".into())],
                to: None,
                container: None,
                steps: vec![step("web", "reg/app:1.1.0", "reg/app:1.0.0", Some("1.1.0"))],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "history on a DaemonSet",
                kind: Kind::DaemonSet,
                annotations: updated_twice(),
                images: vec![("web", "reg/app:1.1.0".into())],
                to: None,
                container: None,
                steps: vec![step("web", "reg/app:1.1.0", "reg/app:1.0.0", Some("1.1.0"))],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "--to on a CronJob: its job template",
                kind: Kind::CronJob,
                annotations: json!({"tagwatch.dev/policy": "minor"}),
                images: vec![("web", "reg/app:1.1.0".into())],
                to: Some("1.0.3"),
                container: None,
                steps: vec![step("web", "reg/app:1.1.0", "reg/app:1.0.3", Some("1.1.0"))],
                paths: vec!["/spec/jobTemplate/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "--to on an Argo Rollout",
                kind: Kind::Rollout,
                annotations: json!({"tagwatch.dev/policy": "minor"}),
                images: vec![("web", "reg/app:1.1.0".into())],
                to: Some("1.0.0"),
                container: None,
                steps: vec![step("web", "reg/app:1.1.0", "reg/app:1.0.0", Some("1.1.0"))],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "history passes over failed canaries, rollbacks and rejected images",
                kind: Kind::Deployment,
                annotations: json!({
                    "tagwatch.dev/policy": "minor",
                    "tagwatch.dev/rejected": "{\"web\":[\"1.1.0\"]}",
                    "tagwatch.dev/history": history(&[
                        entry("web", "reg/app:0.9.0", "reg/app:1.0.0", "update"),
                        entry("web", "reg/app:1.0.0", "reg/app:1.1.0", "update"),
                        entry("web", "reg/app:1.1.0", "reg/app:1.0.0", "rollback"),
                        entry("web", "reg/app:1.0.0", "reg/app:1.0.0", "canary-fail"),
                    ]),
                }),
                images: vec![("web", "reg/app:1.0.0".into())],
                to: None,
                container: None,
                steps: vec![step("web", "reg/app:1.0.0", "reg/app:0.9.0", Some("1.0.0"))],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "history of every watched container",
                kind: Kind::Deployment,
                annotations: json!({
                    "tagwatch.dev/policy": "minor",
                    "tagwatch.dev/history": history(&[
                        entry("web", "reg/app:1.0.0", "reg/app:1.1.0", "update"),
                        entry("side", "reg/side:2.0.0", "reg/side:2.1.0", "canary-pass"),
                    ]),
                }),
                images: vec![
                    ("web", "reg/app:1.1.0".into()),
                    ("side", "reg/side:2.1.0".into()),
                ],
                to: None,
                container: None,
                steps: vec![
                    step("web", "reg/app:1.1.0", "reg/app:1.0.0", Some("1.1.0")),
                    step("side", "reg/side:2.1.0", "reg/side:2.0.0", Some("2.1.0")),
                ],
                paths: vec![
                    "/spec/template/spec/containers/0/image",
                    "/spec/template/spec/containers/1/image",
                ],
            },
            Case {
                name: "--container: that one only",
                kind: Kind::StatefulSet,
                annotations: json!({
                    "tagwatch.dev/policy": "minor",
                    "tagwatch.dev/history": history(&[
                        entry("side", "reg/side:2.0.0", "reg/side:2.1.0", "update"),
                    ]),
                }),
                images: vec![
                    ("web", "reg/app:1.1.0".into()),
                    ("side", "reg/side:2.1.0".into()),
                ],
                to: None,
                container: Some("side"),
                steps: vec![step(
                    "side",
                    "reg/side:2.1.0",
                    "reg/side:2.0.0",
                    Some("2.1.0"),
                )],
                paths: vec!["/spec/template/spec/containers/1/image"],
            },
            Case {
                name: "--to keeps the registry and drops the digest",
                kind: Kind::Deployment,
                annotations: json!({"tagwatch.dev/policy": "major"}),
                images: vec![("web", pinned.clone()), ("side", "side:1.0.0".into())],
                to: Some("1.9.0"),
                container: Some("web"),
                steps: vec![step(
                    "web",
                    &pinned,
                    "127.0.0.1:5000/org/app:1.9.0",
                    Some("2.1.0"),
                )],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
            Case {
                name: "--to the same tag without its digest rejects nothing",
                kind: Kind::Deployment,
                annotations: json!({"tagwatch.dev/policy": "major"}),
                images: vec![("web", pinned.clone())],
                to: Some("2.1.0"),
                container: None,
                steps: vec![step("web", &pinned, "127.0.0.1:5000/org/app:2.1.0", None)],
                paths: vec!["/spec/template/spec/containers/0/image"],
            },
        ];
        for case in cases {
            let images: Vec<(&str, &str)> =
                case.images.iter().map(|(n, i)| (*n, i.as_str())).collect();
            let o = object(case.kind, case.annotations, &images);
            let r = plan(&o, case.to, case.container, NOW)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(r.steps, case.steps, "{}", case.name);
            assert_eq!(r.workload.id.kind, case.kind, "{}", case.name);
            let paths: Vec<&str> = r.changes.iter().map(|c| c.image_path.as_str()).collect();
            assert_eq!(paths, case.paths, "{}", case.name);
            for (change, step) in r.changes.iter().zip(&r.steps) {
                assert_eq!(
                    (change.from.as_str(), change.to.as_str()),
                    (step.from.as_str(), step.to.as_str()),
                    "{}",
                    case.name
                );
                assert_eq!(r.state.applied[&step.container], step.to, "{}", case.name);
                if let Some(tag) = &step.rejected {
                    assert!(
                        r.state.rejected[&step.container].contains(tag),
                        "{}",
                        case.name
                    );
                }
            }
            let written = history::decode(r.state.extra[keys::HISTORY].as_deref());
            let recorded: Vec<_> = written
                .iter()
                .rev()
                .take(r.steps.len())
                .map(|e| (e.how, e.reason.as_deref(), e.time.as_str()))
                .collect();
            assert_eq!(
                recorded,
                vec![(How::ManualRollback, Some(REASON), NOW); r.steps.len()],
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn the_state_and_patch_of_a_history_rollback() {
        let o = object(
            Kind::Deployment,
            updated_twice(),
            &[("web", "reg/app:1.1.0")],
        );
        let r = plan(&o, None, None, NOW).unwrap();
        assert!(r.state.track.contains_key("web"), "1.0.0 is inside alias 1");
        assert_eq!(r.state.extra[keys::ROLLOUT], None, "the watch is forgotten");
        let written = history::decode(r.state.extra[keys::HISTORY].as_deref());
        assert_eq!(written.len(), 3);
        let last = written.last().unwrap();
        assert_eq!(
            (last.from.as_str(), last.to.as_str()),
            ("reg/app:1.1.0", "reg/app:1.0.0")
        );
        assert_eq!(
            note(&r.steps),
            "web: reg/app:1.1.0 → reg/app:1.0.0 (tagwatch rollback)"
        );
        let patch = serde_json::to_value(patch::build_guarded(
            &r.changes,
            &r.state,
            Some(&r.workload.annotations.to_map()),
            r.workload.resource_version.as_deref(),
        ))
        .unwrap();
        assert_eq!(
            patch[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"})
        );
        assert!(patch.as_array().unwrap().contains(
            &json!({"op": "remove", "path": "/metadata/annotations/tagwatch.dev~1rollout"})
        ));
    }

    #[test]
    fn an_alias_is_kept_only_where_the_target_lies_inside_it() {
        let o = object(
            Kind::Deployment,
            json!({"tagwatch.dev/policy": "major", "tagwatch.dev/track": "2"}),
            &[("web", "reg/app:2.1.0"), ("side", "side:2.0.0")],
        );
        let r = plan(&o, Some("1.9.0"), Some("web"), NOW).unwrap();
        assert!(
            !r.state.track.contains_key("web"),
            "1.9.0 is outside alias 2"
        );
        assert!(
            r.state.track.contains_key("side"),
            "side is not rolled back"
        );
        assert_eq!(r.state.applied["side"], "side:2.0.0");
        assert_eq!(r.changes[0].to_tag, "1.9.0");
        let r = plan(&o, Some("2.0.5"), Some("web"), NOW).unwrap();
        assert!(r.state.track.contains_key("web"), "2.0.5 is inside alias 2");
    }

    /// (case, object, --to, --container, the refusal's message)
    type Refused<'a> = (&'a str, Object, Option<&'a str>, Option<&'a str>, &'a str);

    #[test]
    fn refusals() {
        let minor = json!({"tagwatch.dev/policy": "minor"});
        let argo = json!({"tagwatch.dev/policy": "minor",
            "argocd.argoproj.io/tracking-id": "shop:apps/StatefulSet:shop/web"});
        let cases: Vec<Refused> = vec![
            (
                "not opted in",
                object(Kind::Deployment, json!({}), &[("web", "a:1.0.0")]),
                None,
                None,
                "workload shop/web is not watched by tagwatch (no tagwatch.dev/policy annotation, or `off`)",
            ),
            (
                "not opted in, named with its kind",
                object(
                    Kind::StatefulSet,
                    json!({"tagwatch.dev/policy": "off"}),
                    &[("web", "a:1.0.0")],
                ),
                Some("0.9.0"),
                None,
                "workload shop/statefulset/web is not watched by tagwatch",
            ),
            (
                "canary in progress",
                object(
                    Kind::Deployment,
                    json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/canary-state": CANARY_STATE}),
                    &[("web", "x:1")],
                ),
                Some("1"),
                None,
                "a canary is in progress on shop/web (tagwatch.dev/canary-state)",
            ),
            (
                "problems",
                object(
                    Kind::DaemonSet,
                    json!({"tagwatch.dev/policy": "sideways"}),
                    &[("web", "a:1.0.0")],
                ),
                Some("0.9.0"),
                None,
                "workload shop/daemonset/web has problems to fix first: tagwatch.dev/policy",
            ),
            (
                "an invalid GitOps opt-out is a problem",
                object(
                    Kind::Deployment,
                    json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/gitops": "yes"}),
                    &[("web", "a:1.0.0")],
                ),
                Some("0.9.0"),
                None,
                "has problems to fix first: tagwatch.dev/gitops: `yes` is not `allow`",
            ),
            (
                "managed by GitOps",
                object(Kind::StatefulSet, argo, &[("web", "a:1.0.0")]),
                Some("0.9.0"),
                None,
                "workload shop/statefulset/web is managed by Argo CD application \"shop\", which would undo the rollback",
            ),
            (
                "no earlier image",
                object(Kind::Deployment, minor.clone(), &[("web", "a:1.0.0")]),
                None,
                None,
                "no earlier image in tagwatch.dev/history for container web; use --to VERSION",
            ),
            (
                "no earlier image: only a failed canary",
                object(
                    Kind::Deployment,
                    json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/history": history(&[
                        entry("web", "a:1.0.0", "a:1.1.0", "canary-fail"),
                    ])}),
                    &[("web", "a:1.1.0")],
                ),
                None,
                None,
                "no earlier image in tagwatch.dev/history for container web",
            ),
            (
                "not watched",
                object(Kind::CronJob, minor.clone(), &[("web", "a:1.0.0")]),
                Some("0.9.0"),
                Some("side"),
                "container side is not watched by tagwatch (watched: web)",
            ),
            (
                "bad version",
                object(Kind::Deployment, minor.clone(), &[("web", "a:1.0.0")]),
                Some("a b"),
                None,
                "--to a b",
            ),
            (
                "a digest is no version",
                object(Kind::Deployment, minor.clone(), &[("web", "a:1.0.0")]),
                Some("1.0.0@sha256:00"),
                None,
                "--to 1.0.0@sha256:00",
            ),
            (
                "already there",
                object(Kind::Rollout, minor, &[("web", "a:1.0.0")]),
                Some("1.0.0"),
                None,
                "container web already runs a:1.0.0",
            ),
        ];
        for (name, o, to, container, message) in cases {
            let err = plan(&o, to, container, NOW).unwrap_err().to_string();
            assert!(err.contains(message), "{name}: {err:?} lacks {message:?}");
        }
    }

    #[test]
    fn a_gitops_workload_that_allows_tagwatch_rolls_back() {
        let o = object(
            Kind::Deployment,
            json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/gitops": "allow",
                "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}),
            &[("web", "a:1.1.0")],
        );
        let r = plan(&o, Some("1.0.0"), None, NOW).unwrap();
        assert_eq!(
            r.steps,
            vec![step("web", "a:1.1.0", "a:1.0.0", Some("1.1.0"))]
        );
    }
}
