//! Every annotation and label key tagwatch reads or writes: the whole user-facing vocabulary in
//! one place, so a key is spelled once.

/// What every annotation of tagwatch's own begins with.
pub const PREFIX: &str = "tagwatch.dev/";
pub const POLICY: &str = "tagwatch.dev/policy";
/// `tagwatch.dev/policy.<container>` overrides the policy for one container.
pub const POLICY_PREFIX: &str = "tagwatch.dev/policy.";
pub const PRERELEASE: &str = "tagwatch.dev/prerelease";
pub const MATCH: &str = "tagwatch.dev/match";
pub const PIN: &str = "tagwatch.dev/pin";
pub const INTERVAL: &str = "tagwatch.dev/interval";
pub const CONTAINERS: &str = "tagwatch.dev/containers";
/// Release gate: every platform a candidate must cover (`linux/amd64,linux/arm64`, or `auto`:
/// the cluster's Nodes').
pub const PLATFORMS: &str = "tagwatch.dev/platforms";
/// Verification policies (by name, comma-separated) a candidate's cosign signatures must pass.
pub const VERIFY: &str = "tagwatch.dev/verify";
/// Release gate: how old a candidate must be (counted from the later of its `created` time and
/// when tagwatch first saw the tag listed).
pub const MIN_AGE: &str = "tagwatch.dev/min-age";
/// When updates may start: `Mon-Fri 09:00-16:00, Sat 10:00-12:00`.
pub const WINDOW: &str = "tagwatch.dev/window";
/// The window's IANA time zone (default UTC).
pub const WINDOW_TIMEZONE: &str = "tagwatch.dev/window-timezone";
/// How many people must approve an update before it is written (1..10).
pub const APPROVALS: &str = "tagwatch.dev/approvals";
/// How long a proposal waits for approval before it expires (default 7d).
pub const APPROVAL_DEADLINE: &str = "tagwatch.dev/approval-deadline";
/// The update waiting for approval (JSON, written by tagwatch).
pub const PROPOSAL: &str = "tagwatch.dev/proposal";
/// Who approved which version (JSON list, written by `tagwatch approve`).
pub const APPROVALS_GIVEN: &str = "tagwatch.dev/approvals-given";
/// What tagwatch last wrote, per container (JSON map container → image).
pub const APPLIED: &str = "tagwatch.dev/applied";
/// The alias a container follows (`1`), or a JSON map container → alias.
pub const TRACK: &str = "tagwatch.dev/track";
/// Tags never to apply again, per container (JSON map container → [tags]) or a comma list for all.
pub const REJECTED: &str = "tagwatch.dev/rejected";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// `true`: a new version runs in `<name>-canary` first.
pub const CANARY: &str = "tagwatch.dev/canary";
pub const CANARY_REPLICAS: &str = "tagwatch.dev/canary-replicas";
pub const CANARY_TIMEOUT: &str = "tagwatch.dev/canary-timeout";
pub const CANARY_BAKE: &str = "tagwatch.dev/canary-bake";
pub const CANARY_QUERY: &str = "tagwatch.dev/canary-query";
pub const CANARY_THRESHOLD: &str = "tagwatch.dev/canary-threshold";
pub const CANARY_FAILURES: &str = "tagwatch.dev/canary-failures";
/// A canary in progress (JSON, written by tagwatch on the primary).
pub const CANARY_STATE: &str = "tagwatch.dev/canary-state";
/// How long a rollout of a kind without `progressDeadlineSeconds` (StatefulSet, DaemonSet) may
/// take before tagwatch rolls it back (default 10m).
pub const PROGRESS_DEADLINE: &str = "tagwatch.dev/progress-deadline";
/// `allow`: tagwatch writes to a workload even though Argo CD or Flux manages it (which would
/// otherwise undo the writes: tagwatch leaves such a workload alone). Any other value is invalid.
pub const GITOPS: &str = "tagwatch.dev/gitops";
/// The notification sinks (by name, comma-separated) told about this workload; absent: the
/// sinks marked `default`.
pub const NOTIFY: &str = "tagwatch.dev/notify";
/// `off`: never roll back automatically.
pub const ROLLBACK: &str = "tagwatch.dev/rollback";
/// A rollout tagwatch started and is watching (JSON, written by tagwatch).
pub const ROLLOUT: &str = "tagwatch.dev/rollout";
/// The last ten image changes (JSON, written by tagwatch).
pub const HISTORY: &str = "tagwatch.dev/history";
/// Label on the canary's pods (and key of the canary selector).
pub const TRACK_LABEL: &str = "tagwatch.dev/track";
/// On the canary Deployment: the primary it serves.
pub const CANARY_OF: &str = "tagwatch.dev/canary-of";

// Keys GitOps tools write on the objects they manage (read by `discover::gitops`, never written).

/// Argo CD's label tracking: the application's name (its default label key when configured so).
pub const ARGOCD_INSTANCE: &str = "argocd.argoproj.io/instance";
/// Argo CD's annotation tracking: `<application>:<group>/<kind>:<namespace>/<name>`.
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// The well-known instance label (Argo CD's default tracking label, but Helm sets it too).
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// Flux kustomize-controller: the Kustomization that applied the object.
pub const FLUX_KUSTOMIZATION_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_KUSTOMIZATION_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// Flux helm-controller: the HelmRelease that installed the object.
pub const FLUX_HELMRELEASE_NAME: &str = "helm.toolkit.fluxcd.io/name";
pub const FLUX_HELMRELEASE_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";
