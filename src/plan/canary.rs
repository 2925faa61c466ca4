//! Canary rollouts, pure: the state kept on the primary, the canary Deployment built from it, and
//! the judgement of what the canary's pods (and the optional query) show.
//!
//! Time comes in as an argument and all state lives in the primary's annotation, so a restart or
//! a new leader resumes a canary exactly where it was.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::model::canary::CanarySpec;
use crate::model::rollout_state::CanaryState;
use crate::model::workload::keys;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::canary_query::Threshold;
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
}
