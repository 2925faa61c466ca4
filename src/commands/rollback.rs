//! `tagwatch rollback`: a person rolls a Deployment back, to the image before the current one in
//! its `tagwatch.dev/history` or to `--to VERSION`. The tag left is rejected for that container,
//! so tagwatch never applies it again while newer versions still do.
//!
//! Planning is pure ([`plan`]); the write is one JSON Patch guarded by the resourceVersion the
//! plan was made on, so a concurrent change (tagwatch's own, or a person's) makes it fail whole.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::events::{EventType, Recorder, Reporter};

use crate::act::write::{now, publish, reference, write_guarded, ApplyError};
use crate::app;
use crate::cli::RollbackArgs;
use crate::commands::history::read_deployment;
use crate::discover;
use crate::model::annotations as keys;
use crate::model::history::{Entry, How};
use crate::model::image::{tag_of, ImageRef};
use crate::model::tag::Tag;
use crate::model::workload::{WatchedContainer, Workload};
use crate::plan::patch::{ImageChange, State};

/// The reason written into history entries and Events.
pub const REASON: &str = "tagwatch rollback";

/// Why a rollback is refused (exit 2); nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("deployment {deployment} is not watched by tagwatch (no {key} annotation, or `off`)", key = keys::POLICY)]
    NotOptedIn { deployment: String },
    #[error("a canary is in progress on {deployment} ({key}); wait until it passes or fails, then roll back", key = keys::CANARY_STATE)]
    CanaryInProgress { deployment: String },
    #[error("deployment {deployment} has problems to fix first: {problems}")]
    Problems {
        deployment: String,
        problems: String,
    },
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

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let deployment = read_deployment(&client, &args.deployment).await?;
    let rollback = plan(
        &deployment,
        args.to.as_deref(),
        args.container.as_deref(),
        &now(),
    )?;
    let id = &rollback.workload.id;
    if args.dry_run {
        println!("would roll back {id} (dry run: nothing written)");
        print_steps(&rollback.steps);
        return Ok(());
    }
    match write_guarded(
        &client,
        &rollback.workload,
        &rollback.changes,
        &rollback.state,
    )
    .await
    {
        Ok(_) => {}
        Err(ApplyError::Conflict { .. }) => {
            anyhow::bail!("the deployment changed while rolling back; run again")
        }
        Err(e) => return Err(e.into()),
    }
    println!("rolled back {id}");
    print_steps(&rollback.steps);
    // An Event is a report, not state: `publish` only warns when it cannot be written.
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "tagwatch".into(),
            instance: None,
        },
    );
    publish(
        &recorder,
        &reference(id, rollback.workload.uid.as_deref()),
        EventType::Normal,
        "RolledBack",
        "Rollback",
        note(&rollback.steps),
    )
    .await;
    Ok(())
}

/// The rollback of `deployment`: `to` a tag, or else to each container's previous image in the
/// history; only `container` when given, else every watched container. `now` stamps the history.
pub fn plan(
    deployment: &Deployment,
    to: Option<&str>,
    container: Option<&str>,
    now: &str,
) -> Result<Rollback, Refusal> {
    let name = format!(
        "{}/{}",
        deployment
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default"),
        deployment.metadata.name.as_deref().unwrap_or_default()
    );
    let workload = discover::workload(deployment).ok_or_else(|| Refusal::NotOptedIn {
        deployment: name.clone(),
    })?;
    if workload.annotations.contains_key(keys::CANARY_STATE) {
        return Err(Refusal::CanaryInProgress { deployment: name });
    }
    if !workload.problems.is_empty() {
        return Err(Refusal::Problems {
            deployment: name,
            problems: workload
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
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
/// led to the current image. Changes that never ran on this Deployment (failed canaries) and
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

/// `web: app:1.2.4 → app:1.2.3 (tagwatch rollback)`
fn note(steps: &[Step]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .map(|s| format!("{}: {} → {}", s.container, s.from, s.to))
        .collect();
    format!("{} ({REASON})", parts.join(", "))
}

fn print_steps(steps: &[Step]) {
    for step in steps {
        let rejected = match &step.rejected {
            Some(tag) => format!("{tag} rejected"),
            None => "nothing rejected".into(),
        };
        println!(
            "  {}: {} → {} ({rejected})",
            step.container, step.from, step.to
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::history;
    use crate::plan::patch;
    use serde_json::json;

    const NOW: &str = "2026-02-01T00:00:00Z";

    fn deployment(annotations: serde_json::Value, images: &[(&str, &str)]) -> Deployment {
        let containers: Vec<_> = images
            .iter()
            .map(|(name, image)| json!({"name": name, "image": image}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7",
                "annotations": annotations},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": containers}}
            }
        }))
        .unwrap()
    }

    fn entry(container: &str, from: &str, to: &str, how: &str) -> serde_json::Value {
        json!({"time": "2026-01-01T00:00:00Z", "container": container, "from": from, "to": to, "how": how})
    }

    fn history(entries: &[serde_json::Value]) -> String {
        serde_json::to_string(entries).unwrap()
    }

    #[test]
    fn goes_back_to_the_image_before_and_rejects_the_one_left() {
        let d = deployment(
            json!({
                "tagwatch.dev/policy": "minor",
                "tagwatch.dev/applied": "{\"web\":\"reg/app:1.1.0\"}",
                "tagwatch.dev/track": "1",
                "tagwatch.dev/rollout": "{\"from\":{},\"to\":{},\"started\":\"x\"}",
                "tagwatch.dev/history": history(&[
                    entry("web", "reg/app:0.9.0", "reg/app:1.0.0", "update"),
                    entry("web", "reg/app:1.0.0", "reg/app:1.1.0", "update"),
                ]),
            }),
            &[("web", "reg/app:1.1.0")],
        );
        let r = plan(&d, None, None, NOW).unwrap();
        assert_eq!(
            r.steps,
            vec![Step {
                container: "web".into(),
                from: "reg/app:1.1.0".into(),
                to: "reg/app:1.0.0".into(),
                rejected: Some("1.1.0".into()),
            }]
        );
        assert_eq!(
            r.changes[0].image_path,
            "/spec/template/spec/containers/0/image"
        );
        assert_eq!(r.state.applied["web"], "reg/app:1.0.0");
        assert!(r.state.rejected["web"].contains("1.1.0"));
        assert!(r.state.track.contains_key("web"), "1.0.0 is inside alias 1");
        assert_eq!(r.state.extra[keys::ROLLOUT], None);
        let written = history::decode(r.state.extra[keys::HISTORY].as_deref());
        let last = written.last().unwrap();
        assert_eq!(last.how, How::ManualRollback);
        assert_eq!(last.reason.as_deref(), Some(REASON));
        assert_eq!(
            (last.from.as_str(), last.to.as_str()),
            ("reg/app:1.1.0", "reg/app:1.0.0")
        );
        assert_eq!(written.len(), 3);
        assert_eq!(
            note(&r.steps),
            "web: reg/app:1.1.0 → reg/app:1.0.0 (tagwatch rollback)"
        );

        let patch = serde_json::to_value(patch::build_guarded(
            &r.changes,
            &r.state,
            Some(&r.workload.annotations),
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
    fn passes_over_failed_canaries_and_rejected_images() {
        let d = deployment(
            json!({
                "tagwatch.dev/policy": "minor",
                "tagwatch.dev/rejected": "{\"web\":[\"1.1.0\"]}",
                "tagwatch.dev/history": history(&[
                    entry("web", "reg/app:0.9.0", "reg/app:1.0.0", "update"),
                    entry("web", "reg/app:1.0.0", "reg/app:1.1.0", "update"),
                    entry("web", "reg/app:1.1.0", "reg/app:1.0.0", "rollback"),
                    entry("web", "reg/app:1.0.0", "reg/app:1.0.0", "canary-fail"),
                ]),
            }),
            &[("web", "reg/app:1.0.0")],
        );
        let r = plan(&d, None, None, NOW).unwrap();
        assert_eq!(r.steps[0].to, "reg/app:0.9.0");
        assert_eq!(
            r.state.rejected["web"],
            ["1.0.0", "1.1.0"].map(String::from).into()
        );
    }

    #[test]
    fn to_a_version_keeps_the_reference_and_drops_the_digest() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let d = deployment(
            json!({"tagwatch.dev/policy": "major", "tagwatch.dev/track": "2"}),
            &[
                ("web", &format!("127.0.0.1:5000/org/app:2.1.0@{digest}")),
                ("side", "side:1.0.0"),
            ],
        );
        let r = plan(&d, Some("1.9.0"), Some("web"), NOW).unwrap();
        assert_eq!(r.steps.len(), 1);
        assert_eq!(r.steps[0].to, "127.0.0.1:5000/org/app:1.9.0");
        assert_eq!(r.steps[0].rejected.as_deref(), Some("2.1.0"));
        assert!(
            !r.state.track.contains_key("web"),
            "1.9.0 is outside alias 2"
        );
        assert!(r.state.track.contains_key("side"));
        assert_eq!(r.changes[0].to_tag, "1.9.0");
        assert_eq!(r.state.applied["side"], "side:1.0.0");
    }

    #[test]
    fn refusals() {
        let canary = json!({
            "tagwatch.dev/policy": "minor",
            "tagwatch.dev/canary-state": "{\"phase\":\"running\",\"images\":{\"web\":\"x:2\"},\"from\":{\"web\":\"x:1\"},\"started\":\"2026-01-01T00:00:00Z\"}",
        });
        let minor = json!({"tagwatch.dev/policy": "minor"});
        let cases: Vec<(Deployment, Option<&str>, Option<&str>, &str)> = vec![
            (
                deployment(json!({}), &[("web", "a:1.0.0")]),
                None,
                None,
                "not watched by tagwatch",
            ),
            (
                deployment(canary, &[("web", "x:1")]),
                Some("1"),
                None,
                "a canary is in progress",
            ),
            (
                deployment(
                    json!({"tagwatch.dev/policy": "sideways"}),
                    &[("web", "a:1.0.0")],
                ),
                Some("0.9.0"),
                None,
                "tagwatch.dev/policy",
            ),
            (
                deployment(minor.clone(), &[("web", "a:1.0.0")]),
                None,
                None,
                "no earlier image in tagwatch.dev/history for container web; use --to VERSION",
            ),
            (
                deployment(minor.clone(), &[("web", "a:1.0.0")]),
                Some("0.9.0"),
                Some("side"),
                "container side is not watched by tagwatch (watched: web)",
            ),
            (
                deployment(minor.clone(), &[("web", "a:1.0.0")]),
                Some("a b"),
                None,
                "--to a b",
            ),
            (
                deployment(minor, &[("web", "a:1.0.0")]),
                Some("1.0.0"),
                None,
                "already runs a:1.0.0",
            ),
        ];
        for (d, to, container, message) in cases {
            let err = plan(&d, to, container, NOW).unwrap_err().to_string();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
    }
}
