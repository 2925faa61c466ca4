//! A workload that opted in, as tagwatch understands it: validated settings per container and the
//! state tagwatch keeps in the workload's own annotations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::alias::Alias;
use super::canary::CanarySpec;
use super::channels::Channels;
use super::history;
use super::image::ImageRef;
use super::kind::Kind;
use super::policy::Policy;
use crate::model::rollout_state::{CanaryState, RolloutState};

/// The shortest `tagwatch.dev/interval` a workload may ask for: registries are shared.
pub const MIN_WORKLOAD_INTERVAL: Duration = Duration::from_secs(10);

/// `tagwatch.dev/progress-deadline` when not given, and its bounds.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
pub const PROGRESS_DEADLINE_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(24 * 60 * 60));

/// The longest `tagwatch.dev/interval` a workload may ask for; longer is an invalid annotation
/// (a day is already longer than any sensible poll, and an unbounded one overflows the clock).
pub const MAX_WORKLOAD_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadId {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> WorkloadId {
        WorkloadId {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// A Deployment: the kind most commands default to.
    pub fn deployment(namespace: &str, name: &str) -> WorkloadId {
        WorkloadId::new(Kind::Deployment, namespace, name)
    }

    /// `NAMESPACE/NAME` (a Deployment) or `NAMESPACE/KIND/NAME` with any of kubectl's names for
    /// the kind (`sts`, `statefulset`, `statefulsets`, ...).
    pub fn parse(text: &str) -> Result<WorkloadId, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [namespace, name] => (Kind::Deployment, *namespace, *name),
            [namespace, kind, name] => {
                let kind = Kind::parse(kind).ok_or_else(|| {
                    format!(
                        "`{kind}` is not a kind tagwatch updates (deploy, sts, ds, cj, rollout)"
                    )
                })?;
                (kind, *namespace, *name)
            }
            _ => {
                return Err(format!(
                    "`{text}` is not NAMESPACE/NAME or NAMESPACE/KIND/NAME"
                ))
            }
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(format!(
                "`{text}` is not NAMESPACE/NAME or NAMESPACE/KIND/NAME"
            ));
        }
        Ok(WorkloadId::new(kind, namespace, name))
    }
}

/// `namespace/name` for a Deployment (as since the first release), `namespace/kind/name` else.
impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Deployment => write!(f, "{}/{}", self.namespace, self.name),
            kind => write!(f, "{}/{kind}/{}", self.namespace, self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pin {
    #[default]
    Tag,
    Digest,
}

/// One container tagwatch keeps current.
#[derive(Debug, Clone)]
pub struct WatchedContainer {
    pub name: String,
    /// JSON pointer to the container's `image` field, for the guarded patch.
    pub image_path: String,
    /// The image string exactly as in the spec (compared verbatim by the patch's `test` op).
    pub image_text: String,
    pub image: ImageRef,
    pub policy: Policy,
    pub channels: Channels,
    pub filter: Option<Regex>,
    pub pin: Pin,
    /// What tagwatch last wrote into this container, if anything.
    pub applied: Option<String>,
    /// The alias intent remembered from an earlier `app:1`.
    pub track: Option<Alias>,
    pub rejected: BTreeSet<String>,
    /// `tagwatch.dev/platforms`, `tagwatch.dev/min-age`.
    pub gates: super::gates::GateSpec,
}

/// Something a person must fix before tagwatch can serve (part of) the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `None` when the whole workload is affected.
    pub container: Option<String>,
    /// The annotation (or field) at fault, e.g. `tagwatch.dev/match` or `image`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.container {
            Some(container) => write!(f, "container {container}: {}: {}", self.field, self.reason),
            None => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub id: WorkloadId,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `tagwatch.dev/interval`, already raised to the minimum.
    pub interval: Option<Duration>,
    pub service_account: String,
    pub pull_secrets: Vec<String>,
    pub containers: Vec<WatchedContainer>,
    /// Containers (or the whole workload) left out, and why.
    pub problems: Vec<Problem>,
    /// tagwatch's own annotations as read, so a patch can tell whether to add or replace them.
    pub annotations: OwnAnnotations,
    /// A hash of all the workload's annotations (but kubectl's last-applied copy): a refused
    /// write is tried again once a person changed any of them.
    pub annotations_hash: u64,
    pub generation: Option<i64>,
    pub rollout: RolloutSettings,
    /// The GitOps owner that would undo tagwatch's writes (`Argo CD application "shop"`,
    /// `Flux Kustomization flux-system/apps`), unless the workload has `tagwatch.dev/gitops:
    /// allow`: such a workload is not written to.
    pub gitops: Option<String>,
    /// `tagwatch.dev/window`: when an update may start (`None`: any time).
    pub window: Option<Box<crate::model::window::Window>>,
    /// `tagwatch.dev/approvals`: updates wait for people to approve them (`None`: they don't).
    pub approvals: Option<Box<crate::plan::approvals::Approvals>>,
    /// `tagwatch.dev/notify`: the notification sinks chosen by name (`None`: the default sinks).
    pub notify: Option<BTreeSet<String>>,
}

/// tagwatch's own annotations on a workload (`tagwatch.dev/…` and `kubernetes.io/change-cause`,
/// which its patches write), as read. A short sorted list rather than a map: a map's first node
/// reserves room for eleven entries (544 B) whatever it holds, and ten thousand workloads each
/// keep one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OwnAnnotations(Box<[(Box<str>, Box<str>)]>);

impl OwnAnnotations {
    /// Whether tagwatch writes `key`.
    pub fn is_own(key: &str) -> bool {
        key.starts_with(super::annotations::PREFIX) || key == super::annotations::CHANGE_CAUSE
    }

    /// tagwatch's own among `all`.
    pub fn of(all: &BTreeMap<String, String>) -> OwnAnnotations {
        OwnAnnotations(
            all.iter()
                .filter(|(k, _)| OwnAnnotations::is_own(k))
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// As a map, for a patch to compare with.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// How new versions roll out, and any rollout in progress. The settings and states are boxed:
/// most workloads have none, and ten thousand of them inline would cost 4 MB.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// `tagwatch.dev/canary: "true"` and its settings.
    pub canary: Option<Box<CanarySpec>>,
    /// A canary in progress.
    pub canary_state: Option<Box<CanaryState>>,
    /// A rollout tagwatch started and is watching.
    pub watching: Option<Box<RolloutState>>,
    /// Roll back automatically when the rollout passes its progress deadline.
    pub rollback: bool,
    /// tagwatch's own progress deadline, for kinds without one of their own.
    pub progress_deadline: Duration,
    pub history: Vec<history::Entry>,
}

impl RolloutSettings {
    /// The rollout watched, or else the one `canary` is (a canary whose rollout was not recorded).
    pub fn watched_or(&self, canary: &CanaryState) -> RolloutState {
        self.watching
            .as_deref()
            .cloned()
            .unwrap_or_else(|| canary.as_rollout())
    }
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            canary: None,
            canary_state: None,
            watching: None,
            rollback: true,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
            history: Vec::new(),
        }
    }
}

/// Per-container values of a state annotation.
pub fn encode_applied(applied: &BTreeMap<String, String>) -> String {
    serde_json::to_string(applied).unwrap_or_default()
}

/// The track annotation: a bare alias when one container follows one (the common case, and
/// what people write by hand), else a JSON map.
pub fn encode_track(track: &BTreeMap<String, Alias>) -> Option<String> {
    match track.len() {
        0 => None,
        1 => track.values().next().map(Alias::to_string),
        _ => {
            let map: BTreeMap<&str, String> = track
                .iter()
                .map(|(c, a)| (c.as_str(), a.to_string()))
                .collect();
            serde_json::to_string(&map).ok()
        }
    }
}

pub fn encode_rejected(rejected: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    let non_empty: BTreeMap<&String, &BTreeSet<String>> = rejected
        .iter()
        .filter(|(_, tags)| !tags.is_empty())
        .collect();
    if non_empty.is_empty() {
        None
    } else {
        serde_json::to_string(&non_empty).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn own_annotations_are_what_tagwatch_writes_each_found_by_key() {
        let all = BTreeMap::from([
            ("tagwatch.dev/policy".to_string(), "minor".to_string()),
            ("tagwatch.dev/applied".into(), "{}".into()),
            (
                "kubernetes.io/change-cause".into(),
                "tagwatch: app 1.2.3".into(),
            ),
            ("meta.helm.sh/release-name".into(), "web".into()),
            ("tagwatch.dev.example/other".into(), "x".into()),
        ]);
        let own = OwnAnnotations::of(&all);
        assert_eq!(own.get("tagwatch.dev/policy"), Some("minor"));
        assert_eq!(own.get("tagwatch.dev/applied"), Some("{}"));
        assert!(own.contains_key("kubernetes.io/change-cause"));
        assert_eq!(own.get("meta.helm.sh/release-name"), None);
        assert_eq!(own.get("tagwatch.dev.example/other"), None);
        assert_eq!(own.get("tagwatch.dev/track"), None);
        assert_eq!(
            own.to_map().keys().collect::<Vec<_>>(),
            vec![
                "kubernetes.io/change-cause",
                "tagwatch.dev/applied",
                "tagwatch.dev/policy"
            ]
        );
        assert_eq!(
            OwnAnnotations::of(&BTreeMap::new()),
            OwnAnnotations::default()
        );
    }

    #[test]
    fn a_workload_keeps_its_rare_settings_out_of_line() {
        // Ten thousand workloads are held at once; canaries, rollouts watched, windows and
        // approvals are the exception, so they cost a pointer each when absent.
        let size = std::mem::size_of::<Workload>();
        assert!(size <= 448, "a Workload is {size} B");
        assert!(std::mem::size_of::<RolloutSettings>() <= 96);
    }
}
