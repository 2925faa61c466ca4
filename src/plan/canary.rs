//! Canary rollouts, pure: the state kept on the primary, the canary Deployment built from it, and
//! the judgement of what the canary's pods (and the optional query) show.
//!
//! Time comes in as an argument and all state lives in the primary's annotation, so a restart or
//! a new leader resumes a canary exactly where it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::model::annotations as keys;
use crate::model::canary::CanarySpec;
use crate::model::kind::Kind;
use crate::model::rollout_state::CanaryState;
use crate::model::workload::Workload;

pub const TRACK_CANARY: &str = "canary";
pub const TRACK_PRIMARY: &str = "primary";

/// One canary pod as the judgement needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub ready: bool,
    pub restarts: i32,
}

/// A query check's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Value(f64),
    NoData,
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep watching; `changed`: the state must be written back (bake started, a check failed).
    Wait {
        state: CanaryState,
        changed: bool,
    },
    Pass,
    Fail(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Small fixed set, for the metric: `not_ready`, `unready`, `restarts`, `query`.
    pub kind: &'static str,
    pub message: String,
}

fn fail(kind: &'static str, message: String) -> Verdict {
    Verdict::Fail(Failure { kind, message })
}

fn since(from: &str, now: Timestamp) -> Duration {
    from.parse::<Timestamp>()
        .ok()
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        // Unreadable or in the future: count from now, never cut a bake short.
        .unwrap_or_default()
}

/// What the canary's pods, and `check` (evaluated only while all pods are Ready and a query is
/// set), say now.
pub fn judge(
    spec: &CanarySpec,
    state: &CanaryState,
    now: Timestamp,
    pods: &[PodView],
    check: Option<&Check>,
) -> Verdict {
    if let Some(pod) = pods.iter().find(|p| p.restarts > 0) {
        return fail(
            "restarts",
            format!("pod {} restarted {} time(s)", pod.name, pod.restarts),
        );
    }
    let ready = pods.iter().filter(|p| p.ready).count();
    let all_ready = ready >= usize::try_from(spec.replicas).unwrap_or(1) && ready == pods.len();
    if !all_ready {
        if state.ready_since.is_some() {
            let pod = pods
                .iter()
                .find(|p| !p.ready)
                .map_or("a canary pod", |p| p.name.as_str());
            return fail(
                "unready",
                format!("pod {pod} stopped being Ready during the bake"),
            );
        }
        if since(&state.started, now) >= spec.timeout {
            let pod = pods.iter().find(|p| !p.ready).map_or_else(
                || "no canary pod".to_string(),
                |p| format!("pod {}", p.name),
            );
            return fail(
                "not_ready",
                format!(
                    "{pod} not Ready within {} ({ready}/{} ready)",
                    humantime::format_duration(spec.timeout),
                    spec.replicas
                ),
            );
        }
        return Verdict::Wait {
            state: state.clone(),
            changed: false,
        };
    }
    let mut next = state.clone();
    let mut changed = false;
    if next.ready_since.is_none() {
        next.ready_since = Some(now.to_string());
        changed = true;
    }
    if let (Some((query, threshold)), Some(check)) = (&spec.query, check) {
        let failed = match check {
            Check::Value(v) if threshold.holds(*v) => None,
            Check::Value(v) => Some(format!("query returned {v}, needs {threshold}: {query}")),
            Check::NoData => Some(format!("query returned no data: {query}")),
            Check::Error(e) => Some(format!("query failed: {e}")),
        };
        if let Some(message) = failed {
            next.failed_checks += 1;
            changed = true;
            if next.failed_checks > spec.failures {
                return fail("query", message);
            }
        }
    }
    let baked = next
        .ready_since
        .as_deref()
        .map_or(Duration::ZERO, |t| since(t, now));
    if baked >= spec.bake {
        return Verdict::Pass;
    }
    Verdict::Wait {
        state: next,
        changed,
    }
}

/// The canary's name: `<primary>-canary`.
pub fn canary_name(primary: &str) -> String {
    format!("{primary}-canary")
}

/// The canary Deployment: the primary's pod template with `images`, pods and selector extended
/// by `tagwatch.dev/track: canary` (so the primary's Service sends it a share of traffic), owned
/// by the primary (deleted with it). It carries none of the primary's annotations: tagwatch must
/// never manage the canary itself.
pub fn canary_deployment(
    primary: &Deployment,
    images: &BTreeMap<String, String>,
    replicas: i32,
) -> Result<Deployment, String> {
    let name = primary
        .metadata
        .name
        .clone()
        .ok_or("the primary has no name")?;
    let uid = primary
        .metadata
        .uid
        .clone()
        .ok_or("the primary has no uid")?;
    let mut spec = primary.spec.clone().ok_or("the primary has no spec")?;
    let mut match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    match_labels.insert(keys::TRACK_LABEL.into(), TRACK_CANARY.into());
    spec.selector.match_labels = Some(match_labels);
    let template_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(keys::TRACK_LABEL.into(), TRACK_CANARY.into());
    let pod = spec
        .template
        .spec
        .as_mut()
        .ok_or("the primary has no pod spec")?;
    for (container, image) in images {
        let target = pod
            .containers
            .iter_mut()
            .chain(pod.init_containers.iter_mut().flatten())
            .find(|c| &c.name == container)
            .ok_or_else(|| format!("the primary has no container {container}"))?;
        target.image = Some(image.clone());
    }
    spec.replicas = Some(replicas);
    // The primary's rollout strategy and revision history are its own business.
    spec.paused = None;
    let mut labels = primary.metadata.labels.clone().unwrap_or_default();
    labels.insert(keys::TRACK_LABEL.into(), TRACK_CANARY.into());
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(canary_name(&name)),
            namespace: primary.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(keys::CANARY_OF.into(), name.clone())])),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name,
                uid,
                block_owner_deletion: Some(true),
                controller: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The label selector (`a=b,tagwatch.dev/track=canary`) listing the canary's pods.
pub fn canary_selector(canary: &Deployment) -> String {
    canary
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The primary a Deployment says it is the canary of, read from tagwatch's marker: named
/// `<primary>-canary`, labelled `tagwatch.dev/track: canary`, annotated
/// `tagwatch.dev/canary-of: <primary>`, and owned by a Deployment of that name (whose uid this
/// returns). `None`: not a canary tagwatch made.
pub fn owner_of(candidate: &Deployment) -> Option<Owner> {
    let meta = &candidate.metadata;
    let primary = meta.annotations.as_ref()?.get(keys::CANARY_OF)?;
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::TRACK_LABEL))
        .is_some_and(|t| t == TRACK_CANARY);
    if !labelled || meta.name.as_deref() != Some(canary_name(primary).as_str()) {
        return None;
    }
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == "Deployment" && r.api_version == "apps/v1" && &r.name == primary)
        .filter(|r| !r.uid.is_empty())
        .map(|r| Owner {
            name: primary.clone(),
            uid: r.uid.clone(),
        })
}

/// The primary a canary serves (from [`owner_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

/// Whether `candidate` is tagwatch's canary of the primary `primary_name` with `primary_uid`:
/// tagwatch's marker and an owner reference to exactly that Deployment. Anything else under the
/// canary's name is someone else's: never adopted, never deleted.
pub fn is_ours(candidate: &Deployment, primary_name: &str, primary_uid: &str) -> bool {
    owner_of(candidate).is_some_and(|o| o.name == primary_name)
        && candidate
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "Deployment" && r.name == primary_name && r.uid == primary_uid)
}

/// Whether the canary's pod template runs `images` (container → image): a canary of ours that
/// runs something else is left from an earlier canary and is not resumed.
pub fn runs(canary: &Deployment, images: &BTreeMap<String, String>) -> bool {
    let Some(pod) = canary.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return false;
    };
    images.iter().all(|(container, image)| {
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .any(|c| &c.name == container && c.image.as_deref() == Some(image.as_str()))
    })
}

/// Why a canary of tagwatch's no longer has a reason to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphaned {
    /// Its primary is gone.
    PrimaryDeleted,
    /// A Deployment of the primary's name exists, but it is another object (another uid).
    PrimaryReplaced,
    /// The primary no longer opts in (`tagwatch.dev/policy` off or absent).
    OptedOut,
    /// The primary's tagwatch annotations cannot be read, so no canary can be judged.
    InvalidAnnotation,
    /// The primary is opted in but records no canary (`tagwatch.dev/canary-state` removed).
    StateRemoved,
}

impl Orphaned {
    /// The metric's `reason` label.
    pub fn kind(self) -> &'static str {
        match self {
            Orphaned::PrimaryDeleted => "primary_deleted",
            Orphaned::PrimaryReplaced => "primary_replaced",
            Orphaned::OptedOut => "opted_out",
            Orphaned::InvalidAnnotation => "invalid_annotation",
            Orphaned::StateRemoved => "state_removed",
        }
    }
}

impl std::fmt::Display for Orphaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Orphaned::PrimaryDeleted => "its primary was deleted",
            Orphaned::PrimaryReplaced => {
                "its primary was deleted and replaced by another Deployment"
            }
            Orphaned::OptedOut => {
                "the primary no longer opts in (tagwatch.dev/policy off or absent)"
            }
            Orphaned::InvalidAnnotation => "the primary has an invalid tagwatch annotation",
            Orphaned::StateRemoved => "tagwatch.dev/canary-state was removed from the primary",
        })
    }
}

/// One canary of tagwatch's to delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub namespace: String,
    pub canary: String,
    /// The delete's precondition: the canary judged here, not whatever holds its name later.
    pub canary_uid: String,
    pub primary: Owner,
    pub why: Orphaned,
    /// The primary still carries `tagwatch.dev/canary-state` that nothing will act on: removed
    /// too, so that opting in again does not bring the canary back.
    pub clear_state: bool,
}

/// Whether `canary` is a canary of tagwatch's that must go, given its primary as read
/// (`None`: no Deployment of that name) and the primary's workload (`None`: not opted in). A
/// canary stays while its primary records a canary in progress (running or promoting).
pub fn orphaned(
    canary: &Deployment,
    primary: Option<&Deployment>,
    workload: Option<&Workload>,
) -> Option<Removal> {
    let owner = owner_of(canary)?;
    let meta = &canary.metadata;
    // Already being deleted: nothing to add.
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let removal = |why: Orphaned, clear_state: bool| {
        Some(Removal {
            namespace: meta.namespace.clone().unwrap_or_default(),
            canary: meta.name.clone().unwrap_or_default(),
            canary_uid: meta.uid.clone()?,
            primary: owner.clone(),
            why,
            clear_state,
        })
    };
    let Some(primary) = primary else {
        return removal(Orphaned::PrimaryDeleted, false);
    };
    if primary.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
        return removal(Orphaned::PrimaryReplaced, false);
    }
    let stale_state = primary
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(keys::CANARY_STATE));
    match workload {
        None => removal(Orphaned::OptedOut, stale_state),
        Some(w) if w.rollout.canary_state.is_some() => None,
        // The annotation is there but was not read: the workload's annotations are invalid.
        Some(_) if stale_state => removal(Orphaned::InvalidAnnotation, true),
        Some(_) => removal(Orphaned::StateRemoved, false),
    }
}

/// Every canary of tagwatch's in `deployments` that must go: each Deployment carrying the
/// marker is looked up with its primary (same namespace) and the primary's workload.
pub fn orphans(deployments: &[Arc<Deployment>], workloads: &[Arc<Workload>]) -> Vec<Removal> {
    deployments
        .iter()
        .filter_map(|candidate| {
            let owner = owner_of(candidate)?;
            let namespace = candidate.metadata.namespace.as_deref();
            let primary = deployments.iter().find(|d| {
                d.metadata.namespace.as_deref() == namespace
                    && d.metadata.name.as_deref() == Some(owner.name.as_str())
            });
            // Only a Deployment has a `<name>-canary`: a StatefulSet of the same name (whose
            // canary is its own partition) says nothing about it.
            let workload = workloads.iter().find(|w| {
                w.id.kind == Kind::Deployment
                    && Some(w.id.namespace.as_str()) == namespace
                    && w.id.name == owner.name
            });
            orphaned(candidate, primary.map(|p| &**p), workload.map(|w| &**w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::query::Threshold;
    use crate::model::rollout_state::Phase;

    fn spec() -> CanarySpec {
        CanarySpec {
            replicas: 1,
            timeout: Duration::from_secs(60),
            bake: Duration::from_secs(30),
            query: None,
            failures: 0,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn state() -> CanaryState {
        CanaryState {
            phase: Phase::Running,
            images: BTreeMap::from([("web".into(), "app:2".into())]),
            from: BTreeMap::from([("web".into(), "app:1".into())]),
            started: at(0).to_string(),
            ready_since: None,
            failed_checks: 0,
            partition: None,
        }
    }

    fn pod(ready: bool, restarts: i32) -> PodView {
        PodView {
            name: "web-canary-abc".into(),
            ready,
            restarts,
        }
    }

    #[test]
    fn ready_pods_bake_then_pass() {
        let Verdict::Wait {
            state: baking,
            changed: true,
        } = judge(&spec(), &state(), at(5), &[pod(true, 0)], None)
        else {
            panic!("the bake starts")
        };
        assert_eq!(baking.ready_since, Some(at(5).to_string()));
        assert!(matches!(
            judge(&spec(), &baking, at(20), &[pod(true, 0)], None),
            Verdict::Wait { changed: false, .. }
        ));
        assert_eq!(
            judge(&spec(), &baking, at(35), &[pod(true, 0)], None),
            Verdict::Pass
        );
    }

    #[test]
    fn failures_say_which_pod_and_why() {
        let mut baking = state();
        baking.ready_since = Some(at(5).to_string());
        let cases = [
            (
                judge(&spec(), &state(), at(61), &[pod(false, 0)], None),
                "not_ready",
            ),
            (judge(&spec(), &state(), at(61), &[], None), "not_ready"),
            (
                judge(&spec(), &state(), at(1), &[pod(true, 2)], None),
                "restarts",
            ),
            (
                judge(&spec(), &baking, at(10), &[pod(false, 0)], None),
                "unready",
            ),
        ];
        for (verdict, kind) in cases {
            let Verdict::Fail(failure) = verdict else {
                panic!("{kind}: {verdict:?}")
            };
            assert_eq!(failure.kind, kind);
            assert!(
                failure.message.contains("web-canary-abc")
                    || failure.message.contains("no canary pod"),
                "{}",
                failure.message
            );
        }
        assert!(matches!(
            judge(&spec(), &state(), at(59), &[pod(false, 0)], None),
            Verdict::Wait { .. }
        ));
    }

    #[test]
    fn query_checks_count_against_the_tolerance() {
        let mut spec = spec();
        spec.query = Some(("q".into(), "< 0.05".parse::<Threshold>().unwrap()));
        spec.failures = 1;
        let mut baking = state();
        baking.ready_since = Some(at(0).to_string());
        let Verdict::Wait {
            state: once,
            changed: true,
        } = judge(
            &spec,
            &baking,
            at(1),
            &[pod(true, 0)],
            Some(&Check::Value(0.2)),
        )
        else {
            panic!("one failure tolerated")
        };
        assert_eq!(once.failed_checks, 1);
        let Verdict::Fail(failure) =
            judge(&spec, &once, at(2), &[pod(true, 0)], Some(&Check::NoData))
        else {
            panic!("the second fails")
        };
        assert_eq!(failure.kind, "query");
        assert!(failure.message.contains("no data"));
        assert!(matches!(
            judge(
                &spec,
                &baking,
                at(3),
                &[pod(true, 0)],
                Some(&Check::Value(0.01))
            ),
            Verdict::Wait { changed: false, .. }
        ));
        spec.failures = 0;
        let Verdict::Fail(failure) = judge(
            &spec,
            &baking,
            at(3),
            &[pod(true, 0)],
            Some(&Check::Value(0.2)),
        ) else {
            panic!("over threshold")
        };
        assert!(failure.message.contains("0.2"), "{}", failure.message);
    }

    #[test]
    fn state_round_trips() {
        let text = state().encode();
        assert_eq!(CanaryState::decode(&text).unwrap(), state());
        assert!(text.contains("\"phase\":\"running\""));
    }

    #[test]
    fn the_canary_copies_the_template_with_the_new_image_and_the_track_label() {
        let primary: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web"}, "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "app:1"}, {"name": "side", "image": "s:1"}]}}
            }
        }))
        .unwrap();
        let canary = canary_deployment(
            &primary,
            &BTreeMap::from([("web".into(), "app:2".into())]),
            1,
        )
        .unwrap();
        let value = serde_json::to_value(&canary).unwrap();
        assert_eq!(value["metadata"]["name"], "web-canary");
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            value["metadata"]["annotations"],
            serde_json::json!({"tagwatch.dev/canary-of": "web"})
        );
        assert_eq!(value["spec"]["replicas"], 1);
        assert_eq!(
            value["spec"]["selector"]["matchLabels"],
            serde_json::json!({"app": "web", "tagwatch.dev/track": "canary"})
        );
        assert_eq!(
            value["spec"]["template"]["metadata"]["labels"]["tagwatch.dev/track"],
            "canary"
        );
        assert_eq!(
            value["spec"]["template"]["spec"]["containers"][0]["image"],
            "app:2"
        );
        assert_eq!(
            value["spec"]["template"]["spec"]["containers"][1]["image"],
            "s:1"
        );
        assert_eq!(
            canary_selector(&canary),
            "app=web,tagwatch.dev/track=canary"
        );
        assert!(
            canary_deployment(&primary, &BTreeMap::from([("nope".into(), "x".into())]), 1).is_err()
        );
    }

    fn primary(uid: &str, annotations: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": uid,
                "labels": {"app": "web"}, "annotations": annotations},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "app:1"}]}}
            }
        }))
        .unwrap()
    }

    /// tagwatch's canary of `primary("u-1", ..)`, as `canary_deployment` builds it and the API
    /// server stores it.
    fn ours() -> Deployment {
        let mut canary = canary_deployment(
            &primary("u-1", serde_json::json!({})),
            &BTreeMap::from([("web".into(), "app:2".into())]),
            1,
        )
        .unwrap();
        canary.metadata.uid = Some("c-1".into());
        canary
    }

    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Deployment {
        let mut value = serde_json::to_value(ours()).unwrap();
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_canary_is_ours_only_with_the_marker_and_an_owner_reference_to_the_primary() {
        let cases: Vec<(&str, Deployment, bool)> = vec![
            ("as built", ours(), true),
            (
                "no owner reference",
                edited(|v| v["metadata"]["ownerReferences"] = serde_json::json!([])),
                false,
            ),
            (
                "owned by another uid",
                edited(|v| v["metadata"]["ownerReferences"][0]["uid"] = "u-2".into()),
                false,
            ),
            (
                "owned by another kind",
                edited(|v| v["metadata"]["ownerReferences"][0]["kind"] = "StatefulSet".into()),
                false,
            ),
            (
                "no canary-of annotation",
                edited(|v| v["metadata"]["annotations"] = serde_json::json!({})),
                false,
            ),
            (
                "canary of another primary",
                edited(|v| v["metadata"]["annotations"]["tagwatch.dev/canary-of"] = "api".into()),
                false,
            ),
            (
                "no track label",
                edited(|v| v["metadata"]["labels"] = serde_json::json!({"app": "web"})),
                false,
            ),
            (
                "another name",
                edited(|v| v["metadata"]["name"] = "web-canary-2".into()),
                false,
            ),
            (
                "a second owner besides the primary",
                edited(|v| {
                    v["metadata"]["ownerReferences"]
                        .as_array_mut()
                        .unwrap()
                        .insert(0, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "x-1"}))
                }),
                true,
            ),
        ];
        for (case, candidate, want) in cases {
            assert_eq!(is_ours(&candidate, "web", "u-1"), want, "{case}");
            assert_eq!(
                owner_of(&candidate).is_some(),
                want || case.starts_with("owned by another uid"),
                "{case}"
            );
        }
        assert!(!is_ours(&ours(), "web", "u-2"), "the primary replaced");
        assert!(!is_ours(&ours(), "api", "u-1"));
        assert_eq!(
            owner_of(&ours()),
            Some(Owner {
                name: "web".into(),
                uid: "u-1".into()
            })
        );
    }

    #[test]
    fn a_canary_runs_the_images_under_test_or_is_stale() {
        let images = |image: &str| BTreeMap::from([("web".to_string(), image.to_string())]);
        assert!(runs(&ours(), &images("app:2")));
        assert!(!runs(&ours(), &images("app:3")));
        assert!(!runs(
            &ours(),
            &BTreeMap::from([("side".to_string(), "s:1".to_string())])
        ));
    }

    fn workload_of(deployment: &Deployment) -> Option<Workload> {
        crate::discover::workload(deployment)
    }

    #[test]
    fn a_canary_goes_when_nothing_records_it() {
        let running = serde_json::to_string(&state()).unwrap();
        let opted = |extra: &[(&str, &str)]| {
            let mut annotations = serde_json::json!({
                "tagwatch.dev/policy": "minor",
                "tagwatch.dev/canary": "true",
            });
            for (k, v) in extra {
                annotations[*k] = serde_json::json!(v);
            }
            primary("u-1", annotations)
        };
        type Case = (&'static str, Option<Deployment>, Option<(Orphaned, bool)>);
        let cases: Vec<Case> = vec![
            (
                "a canary in progress",
                Some(opted(&[("tagwatch.dev/canary-state", &running)])),
                None,
            ),
            (
                "promoting",
                Some(opted(&[(
                    "tagwatch.dev/canary-state",
                    &running.replace("running", "promoting"),
                )])),
                None,
            ),
            (
                "canary turned off: fail_canary's to remove",
                Some(primary(
                    "u-1",
                    serde_json::json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/canary-state": running}),
                )),
                None,
            ),
            (
                "primary gone",
                None,
                Some((Orphaned::PrimaryDeleted, false)),
            ),
            (
                "primary replaced",
                Some(primary(
                    "u-2",
                    serde_json::json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/canary-state": running}),
                )),
                Some((Orphaned::PrimaryReplaced, false)),
            ),
            (
                "policy off with a stale state",
                Some(primary(
                    "u-1",
                    serde_json::json!({"tagwatch.dev/policy": "off", "tagwatch.dev/canary-state": running}),
                )),
                Some((Orphaned::OptedOut, true)),
            ),
            (
                "no policy, no state",
                Some(primary("u-1", serde_json::json!({}))),
                Some((Orphaned::OptedOut, false)),
            ),
            (
                "invalid annotation",
                Some(opted(&[
                    ("tagwatch.dev/canary-state", &running),
                    ("tagwatch.dev/canary-bake", "soon"),
                ])),
                Some((Orphaned::InvalidAnnotation, true)),
            ),
            (
                "unreadable state",
                Some(opted(&[("tagwatch.dev/canary-state", "{")])),
                Some((Orphaned::InvalidAnnotation, true)),
            ),
            (
                "state removed",
                Some(opted(&[])),
                Some((Orphaned::StateRemoved, false)),
            ),
        ];
        for (case, primary, want) in cases {
            let workload = primary.as_ref().and_then(workload_of);
            let got = orphaned(&ours(), primary.as_ref(), workload.as_ref());
            assert_eq!(got.as_ref().map(|r| (r.why, r.clear_state)), want, "{case}");
            if let Some(removal) = got {
                assert_eq!(
                    (
                        removal.namespace.as_str(),
                        removal.canary.as_str(),
                        removal.canary_uid.as_str()
                    ),
                    ("shop", "web-canary", "c-1"),
                    "{case}"
                );
                assert_eq!(removal.primary.uid, "u-1", "{case}");
            }
        }
        // Someone else's Deployment is never a removal, whatever its primary says.
        let foreign = edited(|v| v["metadata"]["ownerReferences"] = serde_json::json!([]));
        assert_eq!(orphaned(&foreign, None, None), None);
        // Already being deleted: nothing to do.
        let going = edited(|v| v["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into());
        assert_eq!(orphaned(&going, None, None), None);
    }

    #[test]
    fn orphans_are_found_in_a_snapshot_by_namespace_and_name() {
        let running = serde_json::to_string(&state()).unwrap();
        let kept = primary(
            "u-1",
            serde_json::json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/canary": "true",
                "tagwatch.dev/canary-state": running}),
        );
        let mut elsewhere = kept.clone();
        elsewhere.metadata.namespace = Some("other".into());
        let snapshot = |primaries: Vec<Deployment>| -> (Vec<Arc<Deployment>>, Vec<Arc<Workload>>) {
            let workloads = primaries
                .iter()
                .filter_map(workload_of)
                .map(Arc::new)
                .collect();
            let mut all: Vec<Arc<Deployment>> = primaries.into_iter().map(Arc::new).collect();
            all.push(Arc::new(ours()));
            (all, workloads)
        };
        let (deployments, workloads) = snapshot(vec![kept.clone()]);
        assert_eq!(orphans(&deployments, &workloads), vec![]);
        // The same primary in another namespace is not this canary's.
        // A StatefulSet named like the primary, with a canary of its own, keeps nothing alive:
        // the primary that lost its canary state loses its canary.
        let stateless = primary(
            "u-1",
            serde_json::json!({"tagwatch.dev/policy": "minor", "tagwatch.dev/canary": "true"}),
        );
        let (deployments, mut workloads) = snapshot(vec![stateless]);
        let mut set = workload_of(&kept).unwrap();
        set.id.kind = Kind::StatefulSet;
        workloads.insert(0, Arc::new(set));
        let found = orphans(&deployments, &workloads);
        assert_eq!(
            found.iter().map(|r| r.why).collect::<Vec<_>>(),
            vec![Orphaned::StateRemoved]
        );
        let (deployments, workloads) = snapshot(vec![elsewhere]);
        let found = orphans(&deployments, &workloads);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].why, Orphaned::PrimaryDeleted);
        let off = primary(
            "u-1",
            serde_json::json!({"tagwatch.dev/policy": "off", "tagwatch.dev/canary-state": "{}"}),
        );
        let (deployments, workloads) = snapshot(vec![off]);
        let found = orphans(&deployments, &workloads);
        assert_eq!(
            found
                .iter()
                .map(|r| (r.why, r.clear_state))
                .collect::<Vec<_>>(),
            vec![(Orphaned::OptedOut, true)]
        );
    }
}
