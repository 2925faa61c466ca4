//! The poll loop's work that waits on the outside world: a tag listing, a write (with its re-reads
//! after a conflict), a look at a canary or rollout, an alias sync. Each runs as its own task,
//! bounded in time, and reports back to the loop through one channel, so a slow registry or a
//! hung write delays only the workloads it concerns. A panic inside a task is caught, counted and
//! reported as a failure: it never ends the process, and never leaves work marked in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DynamicObject;
use kube::runtime::events::EventType;
use kube::Api;

use crate::discover::object::api_resource;
use crate::discover::Object;
use tokio::sync::mpsc;

use crate::act::rollouts::{Rollouts, Step};
use crate::act::runner::{Fenced, Writer};
use crate::act::write::{now, reference, ApplyError};
use crate::act::Context;
use crate::discover;
use crate::metrics::{Metrics, Task, UpdateResult, Why};
use crate::model::annotations as keys;
use crate::model::history::{Entry, How};
use crate::model::image::Repository;
use crate::model::rollout_state::RolloutState;
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::actions::UpdateJob;
use crate::plan::alias_tags::Levels;
use crate::plan::partition;
use crate::plan::patch;
use crate::plan::rollout;
use crate::plan::update::{self, Digest, WorkloadPlan};
use crate::registry::alias_tags::{Confirmed, Sync};
use crate::registry::{Login, RegistryError};

/// A write (its digest reads, re-reads and retries included) or a rollout check gives up after
/// this; the loop then tries again. Listings have their own deadline (`listTimeout`).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// A write that meets a conflict is decided again on a fresh read, this many times in all.
const WRITE_ATTEMPTS: usize = 3;

/// A repository as one login sees it. Listings, digests and backoff are kept per key, so a
/// workload is only ever planned from what its own credentials could read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListingKey {
    pub repo: Repository,
    pub login: Login,
}

impl fmt::Display for ListingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as {}", self.repo, self.login)
    }
}

/// What a finished task reports to the loop.
pub enum Finished {
    Listed(Listed),
    Applied(Applied),
    Checked(Checked),
    Aliased(Repository),
    /// Left-behind canaries were looked at; true when one is left for the next look.
    Swept(bool),
    /// A candidate's facts for the release gates were read (or could not be).
    Facts(crate::act::gates::FactsRead),
    /// The Nodes' platforms (`tagwatch.dev/platforms: auto`) were read (or could not be).
    Nodes(Result<std::collections::BTreeSet<crate::model::gates::Platform>, String>),
    /// First-seen times were saved (or not: saved again later).
    Saved(bool),
    /// The incident freeze (`tagwatch freeze`) was read (or could not be).
    Freeze(Result<Option<crate::plan::holds::Freeze>, String>),
}

pub struct Listed {
    pub key: ListingKey,
    pub result: Result<Vec<String>, RegistryError>,
    /// Registry digests of the tags `digest`-policy containers run, read after a complete listing.
    pub digests: Vec<(String, Result<Option<String>, RegistryError>)>,
}

pub struct Applied {
    pub id: WorkloadId,
    /// The resourceVersion the first decision was made on.
    pub decided_at: Option<String>,
    pub outcome: WriteOutcome,
    /// Conflicts met on the way (each followed by a fresh read).
    pub conflicts: usize,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Images written, to this many containers; `complete` is false when a pinned digest could
    /// not be read for some of them (they wait for the next decision).
    Updated { containers: usize, complete: bool },
    /// A person's change recorded; no image written.
    Acknowledged,
    /// A canary started instead of a write to the primary.
    CanaryStarted,
    /// Nothing to write.
    Nothing,
    /// Not written; decided again on the next turn.
    Retry(String),
    /// Refused by the API server (validation, admission): not tried again until the workload or
    /// the candidate version changes.
    Refused(String),
    /// Not opted in any more, or deleted, as read after a conflict.
    Gone,
}

pub struct Checked {
    pub id: WorkloadId,
    /// The watched rollout the check was about, if any.
    pub started: Option<String>,
    pub step: Step,
}

/// What a refused write was decided on: the same workload (generation and annotations) with the
/// same candidates is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint(u64);

pub fn fingerprint(workload: &Workload, plan: &WorkloadPlan) -> Fingerprint {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    workload.generation.hash(&mut hasher);
    workload.annotations_hash.hash(&mut hasher);
    for pending in plan.pending() {
        (&pending.container, &pending.to_tag).hash(&mut hasher);
    }
    for manual in &plan.manual {
        (&manual.container, &manual.current).hash(&mut hasher);
    }
    Fingerprint(hasher.finish())
}

/// Spawns `work`, reporting `fallback()` instead when it panics or outlives `timeout`.
pub fn spawn<F, G>(
    tx: &mpsc::Sender<Finished>,
    metrics: &Metrics,
    task: Task,
    timeout: Option<Duration>,
    work: F,
    fallback: G,
) where
    F: Future<Output = Finished> + Send + 'static,
    G: FnOnce(&str) -> Finished + Send + 'static,
{
    let tx = tx.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let caught = AssertUnwindSafe(work).catch_unwind();
        let outcome = match timeout {
            Some(limit) => tokio::time::timeout(limit, caught).await.ok(),
            None => Some(caught.await),
        };
        let finished = match outcome {
            Some(Ok(done)) => done,
            Some(Err(panic)) => {
                metrics.panic(task);
                let message = panic_message(panic.as_ref());
                tracing::error!(task = task.label(), panic = %message, "task panicked: counted, reported as failed");
                fallback(&format!("panicked: {message}"))
            }
            None => {
                tracing::warn!(task = task.label(), "task timed out");
                fallback("timed out")
            }
        };
        // The loop is gone only at shutdown.
        let _ = tx.send(finished).await;
    });
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// One complete listing as `key.login`, then the digests of `digest_tags`.
pub async fn list(ctx: Arc<Context>, key: ListingKey, digest_tags: BTreeSet<String>) -> Finished {
    let credentials = key.login.credentials();
    let result = ctx.fanout.list_one(&key.repo, credentials).await;
    let mut digests = Vec::new();
    if result.is_ok() {
        for tag in digest_tags {
            let digest = ctx.fanout.digest_one(&key.repo, &tag, credentials).await;
            digests.push((tag, digest));
        }
    }
    Finished::Listed(Listed {
        key,
        result,
        digests,
    })
}

/// Alias tags of a freshly and completely listed maintained repository.
pub async fn sync_aliases(
    ctx: Arc<Context>,
    writer: Arc<Writer>,
    repo: Repository,
    levels: Levels,
    tags: Arc<Vec<String>>,
    confirmed: Arc<tokio::sync::Mutex<Confirmed>>,
) -> Finished {
    let credentials = ctx.secrets.own(&repo.registry);
    let may_write = || writer.may_write(Fenced::Alias);
    let mut confirmed = confirmed.lock().await;
    let policy = ctx.verification.aliases.get(&repo).cloned();
    let (tags, verified) = match &policy {
        None => (tags, None),
        Some(policy) => {
            let Some(allowed) = verified_targets(
                &ctx,
                &repo,
                &tags,
                levels,
                policy,
                &credentials,
                &mut confirmed,
            )
            .await
            else {
                return Finished::Aliased(repo);
            };
            (Arc::new(allowed), Some(confirmed.verified_digests(&repo)))
        }
    };
    let sync = Sync {
        client: ctx.fanout.client(),
        metrics: &ctx.metrics,
        credentials: &credentials,
        dry_run: false,
        may_write: &may_write,
        verified: verified.as_ref(),
    };
    sync.run(&repo, &tags, levels, &mut confirmed).await;
    Finished::Aliased(repo)
}

/// Alias targets whose signatures a repository's `aliases[].verify` policy checks per run.
const MAX_ALIAS_CHECKS: usize = 16;

/// The tags aliases may name under `policy`: each alias' newest target is checked (once per
/// version: a pass is remembered with its digest) and, when it fails, set aside and the choice
/// made again. `None` when a check could not decide: the aliases then stay where they are
/// rather than move back to an older version.
async fn verified_targets(
    ctx: &Context,
    repo: &Repository,
    tags: &[String],
    levels: Levels,
    policy: &str,
    credentials: &crate::registry::Credentials,
    confirmed: &mut Confirmed,
) -> Option<Vec<String>> {
    use crate::plan::gates::SignatureCheck;
    let names = std::collections::BTreeSet::from([policy.to_string()]);
    let mut allowed = tags.to_vec();
    let mut checks = 0;
    loop {
        let mut set_aside = false;
        for desired in crate::plan::alias_tags::desired(&allowed, levels) {
            if confirmed.verified(repo, &desired.target).is_some() {
                continue;
            }
            if checks >= MAX_ALIAS_CHECKS {
                tracing::warn!(repository = %repo, policy, "too many unverified versions to check in one run; aliases left as they are");
                return None;
            }
            checks += 1;
            let client = ctx.fanout.client();
            let digest = ctx
                .fanout
                .bounded(&repo.registry, || {
                    client.manifest_digest(repo, &desired.target, credentials)
                })
                .await;
            let Ok(Some(digest)) = digest else {
                return None;
            };
            let check = crate::act::verify::check(
                Some(&ctx.client),
                &ctx.verification,
                &ctx.fanout,
                repo,
                &digest,
                &names,
                credentials,
            )
            .await;
            match check.get(policy) {
                Some(SignatureCheck::Verified(_)) => {
                    confirmed.mark_verified(repo, &desired.target, digest)
                }
                Some(SignatureCheck::Unverified(why)) => {
                    tracing::info!(repository = %repo, version = %desired.target, reason = %why,
                        "alias not moved onto an unverified version");
                    allowed.retain(|t| *t != desired.target);
                    set_aside = true;
                }
                _ => return None,
            }
        }
        if !set_aside {
            return Some(allowed);
        }
    }
}

/// A canary or a watched rollout, looked at once.
pub async fn check(
    ctx: Arc<Context>,
    writer: Arc<Writer>,
    workload: Arc<Workload>,
    primary: Object,
) -> Finished {
    let step = Rollouts {
        ctx: &ctx,
        writer: &writer,
    }
    .check(&workload, &primary, ctx.prometheus.as_ref())
    .await;
    Finished::Checked(Checked {
        id: workload.id.clone(),
        started: workload
            .rollout
            .watching
            .as_ref()
            .map(|w| w.started.clone()),
        step,
    })
}

/// Removes tagwatch's canaries that nothing records any more (see [`Rollouts::remove_orphans`]).
pub async fn sweep(
    ctx: Arc<Context>,
    writer: Arc<Writer>,
    workloads: Vec<Arc<Workload>>,
    deployments: Vec<Arc<Deployment>>,
) -> Finished {
    let left = Rollouts {
        ctx: &ctx,
        writer: &writer,
    }
    .remove_orphans(&workloads, &deployments)
    .await;
    Finished::Swept(left)
}

pub async fn apply(ctx: Arc<Context>, writer: Arc<Writer>, job: UpdateJob) -> Finished {
    let id = job.workload.id.clone();
    let decided_at = job.workload.resource_version.clone();
    let fingerprint = fingerprint(&job.workload, &job.plan);
    let (outcome, conflicts) = write_until_settled(&ctx, &writer, job).await;
    Finished::Applied(Applied {
        id,
        decided_at,
        outcome,
        conflicts,
        fingerprint,
    })
}

/// Why a write did not land.
enum WriteError {
    /// The object changed since it was read: decide again on a fresh read.
    Conflict,
    Refused(String),
    Retry(String),
}

/// Writes the plan; on a conflict reads that one Deployment again and decides again at once, so
/// status churn during a rollout costs a retry, not a round, and a person's edit always wins.
async fn write_until_settled(
    ctx: &Context,
    writer: &Writer,
    job: UpdateJob,
) -> (WriteOutcome, usize) {
    let UpdateJob {
        mut workload,
        mut primary,
        inputs,
        mut plan,
        superseding,
    } = job;
    let mut conflicts = 0;
    loop {
        match write(
            ctx,
            writer,
            &workload,
            primary.as_ref(),
            &plan,
            superseding.as_ref(),
        )
        .await
        {
            Ok(outcome) => return (outcome, conflicts),
            Err(WriteError::Refused(message)) => {
                return (WriteOutcome::Refused(message), conflicts)
            }
            Err(WriteError::Retry(why)) => return (WriteOutcome::Retry(why), conflicts),
            Err(WriteError::Conflict) => {
                conflicts += 1;
                ctx.metrics.patch_conflicts.inc();
                if conflicts >= WRITE_ATTEMPTS {
                    let why = format!("changed underneath {conflicts} times in a row");
                    return (WriteOutcome::Retry(why), conflicts);
                }
                tracing::info!(workload = %workload.id, "workload changed since it was read; deciding again on a fresh read");
                let fresh = match read(&ctx.client, &workload.id).await {
                    Ok(Some(fresh)) => fresh,
                    Ok(None) => return (WriteOutcome::Gone, conflicts),
                    Err(e) => return (WriteOutcome::Retry(e.to_string()), conflicts),
                };
                let Some(mut read) = discover::workload(&fresh) else {
                    return (WriteOutcome::Gone, conflicts);
                };
                ctx.verification.enforce(&mut read);
                if read.rollout.canary_state.is_some() || read.rollout.watching.is_some() {
                    // A rollout of its own is under way now: the loop waits for it.
                    return (
                        WriteOutcome::Retry("a rollout started meanwhile".into()),
                        conflicts,
                    );
                }
                workload = Arc::new(read);
                plan = update::plan(&workload, &inputs);
                primary = Some(fresh);
            }
        }
    }
}

/// One workload read afresh, whatever its kind.
async fn read(client: &kube::Client, id: &WorkloadId) -> anyhow::Result<Option<Object>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &api_resource(id.kind));
    match api.get_opt(&id.name).await? {
        Some(object) => Ok(Some(Object::from_dynamic(id.kind, object)?)),
        None => Ok(None),
    }
}

/// Reads pinned digests, then writes the guarded patch (or starts a canary, or records a
/// person's change) for `plan`, decided on `workload` exactly as read.
async fn write(
    ctx: &Context,
    writer: &Writer,
    workload: &Workload,
    primary: Option<&Object>,
    plan: &WorkloadPlan,
    superseding: Option<&RolloutState>,
) -> Result<WriteOutcome, WriteError> {
    let pending: Vec<_> = plan.pending().collect();
    if pending.is_empty() {
        return if plan.manual.is_empty() {
            Ok(WriteOutcome::Nothing)
        } else {
            acknowledge(writer, workload, plan).await
        };
    }
    let mut digests = BTreeMap::new();
    let mut complete = true;
    for p in pending.iter().filter(|p| p.digest == Digest::ToRead) {
        let credentials = ctx
            .secrets
            .credentials(workload, &p.repository.registry)
            .await;
        match ctx
            .fanout
            .digest_one(&p.repository, &p.to_tag, &credentials)
            .await
        {
            Ok(Some(digest)) => {
                digests.insert(p.container.clone(), digest);
            }
            Ok(None) | Err(_) => {
                complete = false;
                tracing::warn!(workload = %workload.id, container = %p.container, tag = %p.to_tag,
                    "cannot read the digest to pin; update postponed");
                ctx.metrics
                    .update(UpdateResult::Failed, &Why::DigestUnavailable);
            }
        }
    }
    let (changes, state) = update::finish(plan, &digests);
    if changes.is_empty() {
        return Err(WriteError::Retry("no pinned digest could be read".into()));
    }
    if let Some(spec) = &workload.rollout.canary {
        let rollouts = Rollouts { ctx, writer };
        let started = match primary {
            // A new version proves itself in a canary first; the primary is not touched yet.
            Some(Object::Deployment(primary)) => {
                rollouts
                    .start_canary(workload, primary, spec, &changes)
                    .await
            }
            // A StatefulSet's canary is its own partition: the images go in with it.
            Some(Object::StatefulSet(set)) => match partition::rolling(set) {
                Ok(at) => {
                    let mut state = state;
                    if !plan.manual.is_empty() {
                        state.record(&workload.rollout.history, manual_entries(plan, &now()));
                    }
                    rollouts
                        .start_partition_canary(workload, set, at, spec, &changes, state)
                        .await
                        .map(|()| true)
                }
                // Turned OnDelete since it was decided on: decided again, and refused then.
                Err(why) => return Err(WriteError::Retry(why.into())),
            },
            // The canary is not skipped for want of the object: decided again on a fresh read.
            _ => {
                return Err(WriteError::Retry(
                    "the workload to run the canary on was not read".into(),
                ))
            }
        };
        return match started {
            Ok(true) => Ok(WriteOutcome::CanaryStarted),
            Ok(false) => Ok(WriteOutcome::Retry(
                "a canary nothing recorded was removed first".into(),
            )),
            Err(error) => Err(write_error(workload, error)),
        };
    }
    let mut state = state;
    record_update(workload, plan, &changes, &mut state, superseding);
    let patch = patch::build_guarded(
        &changes,
        &state,
        Some(&workload.annotations.to_map()),
        workload.resource_version.as_deref(),
    );
    match writer.patch(&workload.id, patch, Fenced::Update).await {
        Ok(_) => {
            for (change, p) in changes.iter().zip(pending.iter()) {
                tracing::info!(
                    workload = %workload.id,
                    container = %change.container,
                    from = %change.from,
                    to = %change.to,
                    reason = p.reason,
                    "image updated"
                );
                ctx.metrics.update(UpdateResult::Applied, *p);
            }
            let reference = reference(&workload.id, workload.uid.as_deref());
            writer
                .publish(
                    &reference,
                    EventType::Normal,
                    "ImageUpdated",
                    "Update",
                    patch::change_cause(&changes),
                )
                .await;
            Ok(WriteOutcome::Updated {
                containers: changes.len(),
                complete,
            })
        }
        Err(error) => {
            ctx.metrics.update(UpdateResult::Failed, &error);
            Err(write_error(workload, error))
        }
    }
}

fn write_error(workload: &Workload, error: ApplyError) -> WriteError {
    match error {
        ApplyError::Conflict { .. } => WriteError::Conflict,
        ApplyError::Refused { .. } => {
            tracing::warn!(workload = %workload.id, error = %error, "update refused by the API server; not retried until the workload or the candidate changes");
            WriteError::Refused(error.to_string())
        }
        ApplyError::NotLeader { .. } => WriteError::Retry(error.to_string()),
        ApplyError::Transport { .. } => {
            tracing::warn!(workload = %workload.id, error = %error, "update failed");
            WriteError::Retry(error.to_string())
        }
    }
}

/// A person changed an image and nothing follows from it: record it (history, the version
/// rolled back from as rejected, the image as the new baseline) in one guarded write, once.
async fn acknowledge(
    writer: &Writer,
    workload: &Workload,
    plan: &WorkloadPlan,
) -> Result<WriteOutcome, WriteError> {
    let mut state = plan.state.clone();
    let now = now();
    let seen = manual_entries(plan, &now)
        .zip(&plan.manual)
        .map(|(e, m)| e.because(m.rejected.as_ref().map(|t| format!("{t} rejected"))));
    state.record(&workload.rollout.history, seen);
    // Whatever tagwatch was watching is not its rollout any more.
    state.extra.insert(keys::ROLLOUT.into(), None);
    match writer
        .write_guarded(workload, &[], &state, Fenced::Update)
        .await
    {
        Ok(_) => {
            for m in &plan.manual {
                tracing::info!(workload = %workload.id, container = %m.container, from = %m.applied,
                    to = %m.current, rejected = m.rejected.as_deref().unwrap_or(""), "manual change recorded");
            }
            Ok(WriteOutcome::Acknowledged)
        }
        Err(error) => Err(write_error(workload, error)),
    }
}

/// History entries (a person's change seen, then this update) and the rollout to watch, written
/// in the same patch as the images.
fn record_update(
    workload: &Workload,
    plan: &WorkloadPlan,
    changes: &[patch::ImageChange],
    state: &mut patch::State,
    superseding: Option<&RolloutState>,
) {
    let now = now();
    let updates = changes.iter().map(|c| c.entry(&now, How::Update));
    let mut rollout = rollout::watch(changes, now.clone(), workload.generation);
    let mut history = workload.rollout.history.clone();
    if let Some(replaced) = superseding {
        (rollout, history) = rollout::supersede(replaced, rollout, &history);
        tracing::info!(workload = %workload.id, replaced = ?replaced.to, by = ?rollout.to,
            "a rollout still in progress is superseded by a newer version");
    }
    state.record(&history, manual_entries(plan, &now).chain(updates));
    state
        .extra
        .insert(keys::ROLLOUT.into(), Some(rollout.encode()));
}

/// A person's changes seen by the plan, as history entries.
fn manual_entries<'a>(plan: &'a WorkloadPlan, now: &'a str) -> impl Iterator<Item = Entry> + 'a {
    plan.manual
        .iter()
        .map(move |m| Entry::new(now, &m.container, &m.applied, &m.current, How::Manual))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(why: &str) -> Finished {
        Finished::Aliased(Repository {
            registry: "r.test".into(),
            path: why.into(),
        })
    }

    fn reported(done: Option<Finished>) -> String {
        match done {
            Some(Finished::Aliased(repo)) => repo.path,
            _ => String::from("(something else)"),
        }
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_failed_and_counted() {
        let metrics = Metrics::unregistered().unwrap_or_else(|e| panic!("{e}"));
        let (tx, mut rx) = mpsc::channel(1);
        let work = async {
            if rand::random::<u8>() < 255 {
                panic!("boom");
            }
            named("done")
        };
        spawn(&tx, &metrics, Task::Listing, None, work, named);
        assert_eq!(reported(rx.recv().await), "panicked: boom");
        assert_eq!(
            metrics
                .panics
                .with_label_values(&[Task::Listing.label()])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn a_task_past_its_time_is_reported_failed() {
        let metrics = Metrics::unregistered().unwrap_or_else(|e| panic!("{e}"));
        let (tx, mut rx) = mpsc::channel(1);
        let work = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            named("done")
        };
        spawn(
            &tx,
            &metrics,
            Task::Write,
            Some(Duration::from_millis(50)),
            work,
            named,
        );
        assert_eq!(reported(rx.recv().await), "timed out");
        assert_eq!(
            metrics
                .panics
                .with_label_values(&[Task::Write.label()])
                .get(),
            0
        );
    }
}
