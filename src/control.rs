//! The poll loop's state and decisions: discover → list → decide → apply → record.
//!
//! The loop itself never waits on a registry or on a write: listings, writes and rollout checks
//! run as tasks ([`crate::act::tasks`]) and report back through one channel. A slow or hostile
//! registry then delays only the workloads that use it, a decision is made as soon as the
//! listing it needs is complete, and canaries are judged every second whatever the registries do.
//!
//! A repository is listed once per login per round however many workloads share it; a workload is
//! planned only from a listing made with the credentials it would pull with itself (its pod
//! template's and ServiceAccount's pull secrets, else the operator's, else anonymous), so one
//! tenant can never read another's private tags through tagwatch. A workload is planned when one
//! of its listings completes, or when the workload itself changed (then with the last complete
//! listing, so a person's `app:1` takes effect without waiting a poll).

use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::act::rollouts::Step;
use crate::act::runner::{Runner, Writer};
use crate::act::tasks::{
    self, Applied, Checked, Fingerprint, Finished, Listed, ListingKey, WriteOutcome,
};
use crate::act::write::reference;
use crate::act::Context;
use crate::discover::{self, Cached, Object};
use crate::metrics::{Task, UpdateResult, Why};
use crate::model::image::Repository;
use crate::model::kind::CanaryMode;
use crate::model::policy::Policy;
use crate::model::workload::{WatchedContainer, Workload, WorkloadId};
use crate::plan::actions::{self, Action};
use crate::plan::partition;
use crate::plan::schedule::Schedule;
use crate::plan::update::{self, Inputs, Outcome, WorkloadPlan};
use crate::registry::{Login, RegistryError};

mod gates;
pub mod holds;
mod wakeups;

/// How often canaries and rollouts in progress are looked at.
pub const ROLLOUT_CHECK: Duration = Duration::from_secs(1);

/// Reading one workload's pull secrets: past this the API server is slow, and the workload is
/// served anonymously this turn rather than holding up the loop.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolved logins are read again after this even when nothing failed: rotated secrets count.
const LOGINS_TTL: Duration = Duration::from_secs(600);
/// Workloads whose pull credentials are read at the same time: a bound on the API requests
/// (and connections) a start-up over thousands of workloads opens at once.
const CREDENTIAL_READS: usize = 16;

/// Finished tasks waiting for the loop; a full channel makes tasks wait, never drops a result.
/// The Event reason of an update that waits (freeze, window, rollout limit).
pub const HOLD_REASON: &str = "UpdateWaiting";

const FINISHED_QUEUE: usize = 1024;

/// What a round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub listed: usize,
    pub listing_failures: usize,
    pub planned: usize,
    pub applied: usize,
    pub conflicts: usize,
    pub refused: usize,
}

/// What the loop knows of one object, kept in one entry (one key) rather than a map each.
#[derive(Default)]
struct Known {
    /// The resourceVersion it was last parsed at.
    version: Option<String>,
    /// What it parsed to (None: not opted in).
    workload: Option<Arc<Workload>>,
    /// The resourceVersion it was last planned at.
    planned: Option<String>,
    /// Its logins, resolved at `version` (dropped when the object changes).
    logins: Option<Logins>,
    /// The last turn that saw the object.
    turn: u64,
}

/// Each registry a workload's containers use, and the login it pulls with there.
struct Logins {
    resolved: Instant,
    /// A short list, not a map: one or two registries per workload, and a map's first node
    /// reserves room for eleven (about 1 KB per workload).
    by_registry: Vec<(String, Login)>,
}

pub struct Poller {
    ctx: Arc<Context>,
    tx: mpsc::Sender<Finished>,
    /// Taken by the service loop ([`Poller::take_events`]); kept for [`Poller::round`] otherwise.
    rx: Option<mpsc::Receiver<Finished>>,
    /// Why the last listing of a key failed (cleared by a success).
    failures: HashMap<ListingKey, String>,
    schedule: Schedule<ListingKey>,
    listings: HashMap<ListingKey, Arc<Vec<String>>>,
    digests: HashMap<(ListingKey, String), String>,
    /// What each key's last listing held (tags and digests), so a listing that brought nothing
    /// new re-decides only the workloads that changed since their last decision.
    contents: HashMap<ListingKey, u64>,
    /// The workloads of the last turn that are decided from each key.
    users: HashMap<ListingKey, Vec<Arc<Workload>>>,
    /// Each object's last parse, plan and logins, by identity.
    discovered: HashMap<WorkloadId, Known>,
    /// Turns taken (by [`Poller::discover`]).
    turns: u64,
    /// The workloads of the last turn.
    workloads: Vec<Arc<Workload>>,
    /// Work in flight: a key is listed, a workload written or checked, a repository's aliases
    /// synced, by at most one task at a time.
    listing: HashSet<ListingKey>,
    writing: HashSet<WorkloadId>,
    checking: HashSet<WorkloadId>,
    aliasing: HashSet<Repository>,
    /// The look for left-behind canaries is under way.
    sweeping: bool,
    /// Workloads that wanted a decision while busy: decided once free.
    dirty: HashSet<WorkloadId>,
    /// Watched rollouts seen complete (or no longer tagwatch's), by (workload, started).
    settled: HashSet<(WorkloadId, String)>,
    /// Writes the API server refused, and what they were decided on.
    refused: HashMap<WorkloadId, Fingerprint>,
    next_check: Option<Instant>,
    /// Something only a turn redoes is due (logins dropped after a refusal).
    wants_turn: bool,
    /// Poll cycles under way: when each started and the listings it still waits for.
    cycles: Vec<(Instant, HashSet<ListingKey>)>,
    /// Completed rollouts already counted in the duration histogram.
    timed: HashSet<(WorkloadId, String)>,
    /// Rollouts started before this process are not timed: their completion was missed.
    since: k8s_openapi::jiff::Timestamp,
    /// Problems already reported per workload, so each is reported once, not every round.
    reported: HashMap<WorkloadId, BTreeSet<(&'static str, String)>>,
    /// Performs what the loop decides; None for `tagwatch plan`, which cannot write.
    runner: Option<Runner>,
    /// Actions decided without a runner, for `tagwatch plan` to print.
    actions: Vec<Action>,
    report: RoundReport,
    /// Release gates: facts read, first-seen times, wake-ups for `tagwatch.dev/min-age`.
    gates: gates::Gatekeeper,
    /// Updates that wait: freezes, windows, rollout slots.
    holds: holds::Holds,
}

impl Poller {
    /// The service's poller: decisions are performed by a runner writing through `writer`.
    pub fn new(ctx: Arc<Context>, writer: Arc<Writer>) -> Poller {
        let mut poller = Poller::read_only(ctx);
        poller.runner = Some(Runner::new(poller.ctx.clone(), writer, poller.tx.clone()));
        poller
    }

    /// A poller that lists and decides but has no way to write: `tagwatch plan`.
    pub fn read_only(ctx: Arc<Context>) -> Poller {
        let (tx, rx) = mpsc::channel(FINISHED_QUEUE);
        let hold_settings = ctx.holds.clone();
        Poller {
            tx,
            rx: Some(rx),
            failures: HashMap::new(),
            schedule: Schedule::default(),
            listings: HashMap::new(),
            digests: HashMap::new(),
            contents: HashMap::new(),
            users: HashMap::new(),
            discovered: HashMap::new(),
            turns: 0,
            workloads: Vec::new(),
            listing: HashSet::new(),
            writing: HashSet::new(),
            checking: HashSet::new(),
            aliasing: HashSet::new(),
            sweeping: false,
            dirty: HashSet::new(),
            settled: HashSet::new(),
            refused: HashMap::new(),
            next_check: None,
            wants_turn: false,
            cycles: Vec::new(),
            timed: HashSet::new(),
            since: k8s_openapi::jiff::Timestamp::now(),
            reported: HashMap::new(),
            runner: None,
            actions: Vec::new(),
            report: RoundReport::default(),
            gates: gates::Gatekeeper::default(),
            holds: holds::Holds::new(hold_settings),
            ctx,
        }
    }

    /// The channel finished tasks report on, for the service loop to select on alongside its
    /// other wake-ups; hand each item to [`Poller::finished`].
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Finished>> {
        self.rx.take()
    }

    /// Keeps first-seen times (`tagwatch.dev/min-age`) in tagwatch's ConfigMap in `namespace`,
    /// starting from those saved there before.
    pub fn keep_first_seen(&mut self, namespace: String, saved: crate::plan::gates::FirstSeen) {
        self.gates.restore(namespace, saved);
    }

    /// Reads the incident freeze (`tagwatch freeze`) from tagwatch's state ConfigMap in
    /// `namespace`, every few seconds.
    pub fn watch_freezes(&mut self, namespace: String) {
        self.holds.store = Some(namespace);
    }

    /// The incident freeze as read now (at start, before the first decisions).
    pub fn freeze_read(&mut self, freeze: Result<Option<crate::plan::holds::Freeze>, String>) {
        self.holds.freeze_read(freeze);
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        let polls = [
            self.schedule.next_wakeup(),
            self.gates.next_wakeup(),
            self.holds.next_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min();
        match (polls, self.next_check) {
            (Some(p), Some(c)) => Some(p.min(c)),
            (p, c) => p.or(c),
        }
    }

    /// Tasks still running.
    pub fn in_flight(&self) -> usize {
        self.listing.len()
            + self.writing.len()
            + self.checking.len()
            + self.aliasing.len()
            + usize::from(self.sweeping)
            + self.gates.reads_in_flight()
            + self.holds.reads_in_flight()
    }

    /// A webhook named this repository: list it (as every login that reads it) as soon as its
    /// backoff allows. False if nobody uses it.
    pub fn trigger(&mut self, repo: &Repository) -> bool {
        self.schedule
            .trigger_matching(|key| &key.repo == repo, Instant::now())
    }

    /// Why the last listing of `repo` failed, for any login, if it did.
    pub fn listing_failure(&self, repo: &Repository) -> Option<&str> {
        self.failures
            .iter()
            .filter(|(key, _)| &key.repo == repo)
            .map(|(_, why)| why.as_str())
            .next()
    }

    /// A round: lists what is due, decides and writes what changed or was listed, looks at
    /// rollouts in progress, and returns once every task it started is done.
    pub async fn round(&mut self, deployments: &[Cached]) -> RoundReport {
        self.run_round(deployments, false).await
    }

    /// A round that lists every repository now, whatever its schedule ("poll now").
    pub async fn round_all(&mut self, deployments: &[Cached]) -> RoundReport {
        self.run_round(deployments, true).await
    }

    async fn run_round(&mut self, deployments: &[Cached], all: bool) -> RoundReport {
        self.turn_with(deployments, all, true).await;
        self.drain(deployments, None).await;
        std::mem::take(&mut self.report)
    }

    /// Handles finished tasks until none is in flight (or `limit` passes: a shutdown waits for
    /// writes in flight, but not for ever).
    pub async fn drain(&mut self, deployments: &[Cached], limit: Option<Duration>) {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        while self.in_flight() > 0 {
            let Some(rx) = self.rx.as_mut() else {
                return;
            };
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => rx.recv().await,
            };
            match next {
                Some(done) => self.finished(done, deployments).await,
                None => return,
            }
        }
    }

    /// One turn of the service loop: discovers, starts the listings that are due, decides for the
    /// workloads that changed, and starts the rollout checks that are due. Returns without
    /// waiting for any of the tasks it starts.
    pub async fn turn(&mut self, deployments: &[Cached]) {
        self.turn_with(deployments, false, false).await;
    }

    /// Whether a turn is due before the next resync: see [`Poller::turn`].
    pub fn wants_turn(&self) -> bool {
        self.wants_turn
    }

    async fn turn_with(&mut self, deployments: &[Cached], all: bool, check_now: bool) {
        self.wants_turn = false;
        let workloads = self.discover(deployments);
        self.workloads = workloads.clone();
        if let Some(runner) = &self.runner {
            runner.writer().route_notifications(&workloads);
        }
        self.gates.sync(&workloads);
        self.holds.sync(&workloads);
        self.report_problems(&workloads);
        self.ctx
            .metrics
            .workloads_watched
            .set(workloads.len() as i64);
        self.resolve_logins(&workloads).await;

        let wanted = self.intervals(&workloads);
        self.listings.retain(|key, _| wanted.contains_key(key));
        self.digests.retain(|(key, _), _| wanted.contains_key(key));
        self.contents.retain(|key, _| wanted.contains_key(key));
        self.failures.retain(|key, _| wanted.contains_key(key));
        self.users = self.users_by_key(&workloads);
        self.schedule.sync(&wanted, Instant::now(), rand::random());
        let repositories: BTreeSet<&Repository> = wanted.keys().map(|k| &k.repo).collect();
        self.ctx
            .metrics
            .repositories_watched
            .set(repositories.len() as i64);

        let due: Vec<ListingKey> = if all {
            wanted.keys().cloned().collect()
        } else {
            self.schedule.due(Instant::now())
        };
        let due = self.start_listings(due);

        // Every turn notices a rollout tagwatch just started; while one runs, once a second.
        if check_now || self.next_check.is_none_or(|at| at <= Instant::now()) {
            self.start_checks(deployments);
        }

        // A workload whose listing just started is decided when it completes.
        let listing_now: HashSet<&ListingKey> = due.iter().collect();
        for workload in &workloads {
            let changed = workload.resource_version.as_ref() != self.planned_at(&workload.id);
            if !changed {
                continue;
            }
            let waits = self
                .keys_of(workload)
                .iter()
                .any(|key| listing_now.contains(key));
            if !waits {
                self.decide(workload, deployments);
            }
        }

        self.gate_turn(deployments);
        self.hold_turn(deployments);

        let present: HashSet<&WorkloadId> = workloads.iter().map(|w| &w.id).collect();
        self.reported.retain(|id, _| present.contains(id));
        self.refused.retain(|id, _| present.contains(id));
        self.settled.retain(|(id, _)| present.contains(id));
        self.dirty.retain(|id| present.contains(id));
    }

    /// Woken by the clock ([`Poller::next_wakeup`]): starts the listings and rollout checks that
    /// are due, on the last turn's view. Costs what is due, not a look at every workload: with
    /// listings spread over the interval, the clock wakes the loop for nearly every one.
    pub async fn wake(&mut self, deployments: &[Cached]) {
        let due = self.schedule.due(Instant::now());
        self.start_listings(due);
        // Only while a rollout is watched: with none, a turn (a watch event) starts the checks
        // of a rollout that begins, and a wake costs no look at every workload.
        if self.next_check.is_some_and(|at| at <= Instant::now()) {
            self.start_checks(deployments);
        }
        // A `min-age` candidate coming of age is one of the clock's reasons to wake.
        self.gate_turn(deployments);
        // So is a window opening, a freeze ending, and the incident freeze to read.
        self.hold_turn(deployments);
    }

    /// Starts the listings of `due` not already under way, as one poll cycle; returns them.
    fn start_listings(&mut self, mut due: Vec<ListingKey>) -> Vec<ListingKey> {
        due.retain(|key| !self.listing.contains(key));
        due.sort();
        for key in &due {
            self.schedule.started(key);
            self.start_listing(key.clone());
        }
        if !due.is_empty() {
            tracing::debug!(
                listings = due.len(),
                workloads = self.workloads.len(),
                "poll cycle started"
            );
            self.cycles
                .push((Instant::now(), due.iter().cloned().collect()));
        }
        due
    }

    /// A task is done: record what it found, and decide for what it unblocked.
    pub async fn finished(&mut self, done: Finished, deployments: &[Cached]) {
        match done {
            Finished::Listed(listed) => self.listed(listed, deployments),
            Finished::Applied(applied) => self.applied(applied, deployments),
            Finished::Checked(checked) => {
                self.checked(checked, deployments);
                // A finished rollout frees a slot for the next waiting update.
                self.release_slots(deployments);
            }
            Finished::Freeze(freeze) => {
                if self.holds.freeze_read(freeze) {
                    for id in self.holds.held_ids() {
                        self.decide_again(&id, deployments);
                    }
                }
            }
            Finished::Aliased(repo) => {
                self.aliasing.remove(&repo);
            }
            Finished::Swept(left) => {
                self.sweeping = false;
                if left {
                    self.next_check = Some(Instant::now() + ROLLOUT_CHECK);
                }
            }
            Finished::Facts(read) => {
                let repo = read.repo.clone();
                self.gates.facts_read(read.repo, read.tag, read.result);
                self.decide_gated(deployments, |c| c.image.repository == repo);
            }
            Finished::Nodes(nodes) => {
                self.gates.nodes_read(nodes);
                self.decide_gated(deployments, |c| c.gates.wants_nodes());
            }
            Finished::Saved(ok) => {
                self.gates.saved(ok);
                self.save_first_seen();
            }
        }
    }

    /// Release gates' share of a turn: the Nodes read when `auto` needs them, the workloads
    /// whose waiting candidate came of age decided, first-seen times saved.
    fn gate_turn(&mut self, deployments: &[Cached]) {
        if self.gates.nodes_due(Instant::now()) {
            tasks::spawn(
                &self.tx,
                &self.ctx.metrics,
                Task::Listing,
                Some(tasks::TASK_TIMEOUT),
                crate::act::gates::read_nodes(self.ctx.clone()),
                |why| Finished::Nodes(Err(why.to_string())),
            );
        }
        for id in self.gates.due(Instant::now()) {
            if let Some(workload) = self.workloads.iter().find(|w| w.id == id).cloned() {
                self.decide(&workload, deployments);
            }
        }
        self.save_first_seen();
    }

    /// Holds' share of a turn: the incident freeze read when due, workloads whose window
    /// opened or freeze ended decided, free rollout slots handed out.
    fn hold_turn(&mut self, deployments: &[Cached]) {
        if let Some(namespace) = self.holds.store.clone() {
            if self.runner.is_some() && self.holds.freeze_due(Instant::now()) {
                tasks::spawn(
                    &self.tx,
                    &self.ctx.metrics,
                    Task::Listing,
                    Some(tasks::TASK_TIMEOUT),
                    crate::act::holds::read_freeze(self.ctx.client.clone(), namespace),
                    |why| Finished::Freeze(Err(why.to_string())),
                );
            }
        }
        for id in self.holds.due(Instant::now()) {
            self.decide_again(&id, deployments);
        }
        self.release_slots(deployments);
        self.set_waiting_gauges();
    }

    /// Decides the workloads waiting for a rollout slot, longest waiting first, while slots
    /// are free.
    fn release_slots(&mut self, deployments: &[Cached]) {
        if !self.holds.limited() {
            return;
        }
        for id in self.holds.queued() {
            let Some(workload) = self.workloads.iter().find(|w| w.id == id).cloned() else {
                continue;
            };
            self.unplan(&id);
            self.decide(&workload, deployments);
            if self.holds.is_queued(&id) {
                // Served in order: the rest wait behind this one.
                break;
            }
        }
    }

    /// Workloads rolling out: a rollout tagwatch watches and has not seen complete, a canary,
    /// or a write under way.
    fn running(&self) -> HashSet<WorkloadId> {
        let mut running: HashSet<WorkloadId> =
            self.workloads
                .iter()
                .filter(|w| {
                    w.rollout.canary_state.is_some()
                        || w.rollout.watching.as_ref().is_some_and(|r| {
                            !self.settled.contains(&(w.id.clone(), r.started.clone()))
                        })
                })
                .map(|w| w.id.clone())
                .collect();
        running.extend(self.writing.iter().cloned());
        running
    }

    fn set_waiting_gauges(&self) {
        for (reason, count) in self.holds.waiting_counts() {
            self.ctx
                .metrics
                .updates_waiting
                .with_label_values(&[reason])
                .set(count as i64);
        }
    }

    /// Whether `workload`'s update waits for people to approve it (`tagwatch.dev/approvals`),
    /// recording the proposal, its expiry or its release as the verdict asks. Approval comes
    /// before the other holds: people can review while a window is closed or a freeze lasts.
    fn awaits_approval(&mut self, workload: &Arc<Workload>, plan: &WorkloadPlan) -> bool {
        use crate::act::approvals::{APPROVAL_EXPIRED, APPROVAL_GRANTED, APPROVAL_REQUIRED};
        use crate::plan::approvals::{approve_command, Verdict};
        let pending: BTreeMap<String, String> = plan
            .pending()
            .map(|p| (p.container.clone(), p.to_tag.clone()))
            .collect();
        let now = jiff::Timestamp::now();
        let Some(verdict) = self.holds.check_approval(workload, &pending, now) else {
            return false;
        };
        let changes: Vec<String> = plan
            .pending()
            .map(|p| format!("{} {} → {}", p.container, p.from_tag, p.to_tag))
            .collect();
        let changes = changes.join(", ");
        match verdict {
            Verdict::Released { proposal } => {
                let label = proposal.label();
                let approvers: Vec<&str> = workload
                    .approvals
                    .as_ref()
                    .map(|a| a.approvers(&label).into_iter().collect())
                    .unwrap_or_default();
                let key = format!("{label}@{}", proposal.since);
                let fresh = self
                    .reported
                    .entry(workload.id.clone())
                    .or_default()
                    .insert((APPROVAL_GRANTED, key));
                if fresh {
                    let note = format!(
                        "{changes} approved by {}: it goes ahead",
                        approvers.join(", ")
                    );
                    tracing::info!(workload = %workload.id, %note, "update approved");
                    self.act(Action::Publish {
                        regarding: reference(&workload.id, workload.uid.as_deref()),
                        reason: APPROVAL_GRANTED,
                        note,
                    });
                }
                false
            }
            Verdict::Propose(proposal) => {
                let needed = workload.approvals.as_ref().map_or(1, |a| a.needed);
                let deadline = workload
                    .approvals
                    .as_ref()
                    .map(|a| humantime::format_duration(a.deadline).to_string())
                    .unwrap_or_default();
                let note = format!(
                    "{changes} needs {needed} approval(s) within {deadline}; approve with: {}",
                    approve_command(&workload.id.to_string(), &proposal)
                );
                tracing::info!(workload = %workload.id, %note, "update proposed");
                self.act(Action::RecordProposal {
                    workload: workload.clone(),
                    proposal,
                    reason: APPROVAL_REQUIRED,
                    note,
                });
                true
            }
            Verdict::Expire(proposal) => {
                let note = format!(
                    "the proposal of {} expired unapproved; not updated (a newer version proposes again)",
                    proposal.label()
                );
                tracing::info!(workload = %workload.id, %note, "proposal expired");
                self.act(Action::RecordProposal {
                    workload: workload.clone(),
                    proposal,
                    reason: APPROVAL_EXPIRED,
                    note,
                });
                true
            }
            Verdict::Waiting { .. } | Verdict::Expired(_) => true,
        }
    }

    /// Whether `workload`'s update must wait; reported once per reason as `UpdateWaiting`.
    fn held(&mut self, workload: &Arc<Workload>, plan: &WorkloadPlan) -> bool {
        if self.awaits_approval(workload, plan) {
            self.set_waiting_gauges();
            return true;
        }
        // Counting rollouts costs a look at every workload: only with a limit to count for.
        let running = if self.holds.limited() {
            self.running()
        } else {
            HashSet::new()
        };
        let Some(hold) = self.holds.check(workload, &running, jiff::Timestamp::now()) else {
            self.set_waiting_gauges();
            return false;
        };
        let versions: Vec<String> = plan
            .pending()
            .map(|p| format!("{} → {}", p.container, p.to_tag))
            .collect();
        let note = format!("{} waits: {}", versions.join(", "), hold.note());
        tracing::info!(workload = %workload.id, reason = hold.kind(), %note, "update waits");
        self.report_once(workload, BTreeSet::from([note]), HOLD_REASON);
        self.set_waiting_gauges();
        true
    }

    fn save_first_seen(&mut self) {
        if self.runner.is_none() {
            return;
        }
        if let Some((namespace, data)) = self.gates.save_due() {
            self.act(Action::SaveFirstSeen { namespace, data });
        }
    }

    /// Decides again the gated workloads with a container `matches` picks (new facts are in).
    fn decide_gated(
        &mut self,
        deployments: &[Cached],
        matches: impl Fn(&WatchedContainer) -> bool,
    ) {
        let affected: Vec<Arc<Workload>> = self
            .workloads
            .iter()
            .filter(|w| {
                w.containers
                    .iter()
                    .any(|c| !c.gates.is_empty() && matches(c))
            })
            .cloned()
            .collect();
        for workload in affected {
            self.decide(&workload, deployments);
        }
    }

    /// Counts and reports a plan's gate judgements, and starts the reads it waits for.
    fn record_gates(&mut self, workload: &Workload, plan: &WorkloadPlan) {
        if workload.containers.iter().all(|c| c.gates.is_empty()) {
            return;
        }
        let reports = self
            .gates
            .planned(workload, plan, k8s_openapi::jiff::Timestamp::now());
        let regarding = reference(&workload.id, workload.uid.as_deref());
        for report in reports {
            self.ctx.metrics.gate(report.gate, report.result);
            if let Some(note) = report.note {
                tracing::info!(workload = %workload.id, gate = %report.gate, %note, "release gate");
                self.act(Action::Publish {
                    regarding: regarding.clone(),
                    reason: crate::act::gates::GATE_BLOCKED,
                    note,
                });
            }
        }
        let keys = self.keys_of(workload);
        for (repo, tag) in self.gates.reads(plan) {
            let Some(key) = keys.iter().find(|k| k.repo == repo).cloned() else {
                continue;
            };
            let policies = self.gates.policies_for(&repo);
            let failed = (repo.clone(), tag.clone());
            tasks::spawn(
                &self.tx,
                &self.ctx.metrics,
                Task::Listing,
                Some(tasks::TASK_TIMEOUT),
                crate::act::gates::read_facts(self.ctx.clone(), key, tag, policies),
                move |why| {
                    Finished::Facts(crate::act::gates::FactsRead {
                        repo: failed.0.clone(),
                        tag: failed.1.clone(),
                        result: Err(why.to_string()),
                    })
                },
            );
        }
    }

    /// Read-only pass for `tagwatch plan`: lists every repository now (as each workload's own
    /// login) and plans every workload. Writes nothing to the cluster (no patch, no Event).
    pub async fn dry_run(&mut self, deployments: &[Cached]) -> Vec<(Workload, WorkloadPlan)> {
        self.turn_with(deployments, true, false).await;
        self.drain(deployments, None).await;
        self.workloads
            .clone()
            .into_iter()
            .map(|w| {
                let plan = update::plan(&w, &self.inputs_for(&w));
                (Arc::unwrap_or_clone(w), plan)
            })
            .collect()
    }

    /// The opted-in workloads. An object is parsed again only when its resourceVersion moved:
    /// an idle turn over a thousand workloads then costs a lookup each, not a parse. The entries
    /// are updated in place: a table rebuilt every turn (2.5 MB at 10,000 objects) would leave a
    /// hole in the heap each time.
    fn discover(&mut self, objects: &[Cached]) -> Vec<Arc<Workload>> {
        self.turns = self.turns.wrapping_add(1);
        let turn = self.turns;
        let mut workloads = Vec::new();
        for object in objects {
            let version = object.resource_version();
            let known = self.discovered.entry(object.id()).or_default();
            if version.is_none() || known.version.as_deref() != version {
                if known.version.as_deref() != version {
                    // Read again for a changed object: its pull secrets may have changed. Its
                    // plan stays, compared with the new version: an older plan is no plan.
                    known.logins = None;
                }
                known.version = version.map(str::to_owned);
                known.workload =
                    object
                        .object()
                        .as_ref()
                        .and_then(discover::workload)
                        .map(|mut workload| {
                            self.ctx.verification.enforce(&mut workload);
                            Arc::new(workload)
                        });
            }
            known.turn = turn;
            if let Some(w) = &known.workload {
                workloads.push(w.clone());
            }
        }
        // Objects that are gone drop out with all that was known of them.
        self.discovered.retain(|_, known| known.turn == turn);
        workloads
    }

    /// The login each workload pulls each of its registries with, read again when the workload
    /// changed, when a registry refused it, or after [`LOGINS_TTL`]. Up to [`CREDENTIAL_READS`]
    /// workloads' reads run side by side (a read shared by many is made once), all cut at one
    /// deadline [`CREDENTIALS_TIMEOUT`] away: a slow API server costs a turn that long at most.
    async fn resolve_logins(&mut self, workloads: &[Arc<Workload>]) {
        let stale: Vec<&Arc<Workload>> = workloads
            .iter()
            .filter(|w| {
                self.logins_of(&w.id)
                    .is_none_or(|l| l.resolved.elapsed() >= LOGINS_TTL)
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let secrets = &self.ctx.secrets;
        let deadline = tokio::time::Instant::now() + CREDENTIALS_TIMEOUT;
        let reads = stale.into_iter().map(|workload| async move {
            let registries: BTreeSet<&str> = workload
                .containers
                .iter()
                .map(|c| c.image.repository.registry.as_str())
                .collect();
            let read = async {
                let mut by_registry = Vec::with_capacity(registries.len());
                for registry in registries {
                    let credentials = secrets.credentials(workload, registry).await;
                    by_registry.push((registry.to_string(), Login::new(credentials)));
                }
                by_registry
            };
            let resolved = tokio::time::timeout_at(deadline, read).await;
            (workload, resolved)
        });
        let resolved: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(CREDENTIAL_READS)
            .collect()
            .await;
        for (workload, resolved) in resolved {
            match resolved {
                Ok(by_registry) => {
                    if let Some(known) = self.discovered.get_mut(&workload.id) {
                        known.logins = Some(Logins {
                            resolved: Instant::now(),
                            by_registry,
                        });
                    }
                }
                Err(_) => {
                    // Not listed for, not decided this turn; never decided with another login.
                    tracing::warn!(workload = %workload.id,
                        "reading pull secrets timed out; trying again next turn");
                    if let Some(known) = self.discovered.get_mut(&workload.id) {
                        known.logins = None;
                    }
                }
            }
        }
    }

    fn logins_of(&self, id: &WorkloadId) -> Option<&Logins> {
        self.discovered.get(id)?.logins.as_ref()
    }

    /// The resourceVersion `id` was last planned at.
    fn planned_at(&self, id: &WorkloadId) -> Option<&String> {
        self.discovered.get(id)?.planned.as_ref()
    }

    fn set_planned(&mut self, id: &WorkloadId, version: String) {
        if let Some(known) = self.discovered.get_mut(id) {
            known.planned = Some(version);
        }
    }

    /// Decided afresh at the next chance.
    fn unplan(&mut self, id: &WorkloadId) {
        if let Some(known) = self.discovered.get_mut(id) {
            known.planned = None;
        }
    }

    fn login_of(&self, workload: &Workload, registry: &str) -> Option<&Login> {
        self.logins_of(&workload.id)?
            .by_registry
            .iter()
            .find(|(r, _)| r == registry)
            .map(|(_, login)| login)
    }

    /// The listing keys a workload's containers are decided from.
    fn keys_of(&self, workload: &Workload) -> Vec<ListingKey> {
        self.container_keys(workload)
            .into_iter()
            .map(|(_, key)| key)
            .collect()
    }

    /// Each container with the listing key it is decided from (none for a container whose
    /// registry login is not resolved yet).
    fn container_keys<'w>(
        &self,
        workload: &'w Workload,
    ) -> Vec<(&'w WatchedContainer, ListingKey)> {
        workload
            .containers
            .iter()
            .filter_map(|c| {
                let repo = &c.image.repository;
                let login = self.login_of(workload, &repo.registry)?;
                Some((
                    c,
                    ListingKey {
                        repo: repo.clone(),
                        login: login.clone(),
                    },
                ))
            })
            .collect()
    }

    /// Which workloads each listing key decides, indexed once per turn so a finished listing
    /// finds its users without a scan of every workload.
    fn users_by_key(&self, workloads: &[Arc<Workload>]) -> HashMap<ListingKey, Vec<Arc<Workload>>> {
        let mut users: HashMap<ListingKey, Vec<Arc<Workload>>> = HashMap::new();
        for workload in workloads {
            let mut keys = self.keys_of(workload);
            keys.sort();
            keys.dedup();
            for key in keys {
                users.entry(key).or_default().push(workload.clone());
            }
        }
        users
    }

    /// What `workload` may be decided on: the listings (and digests) made with its own logins.
    fn inputs_for(&self, workload: &Workload) -> Inputs {
        let mut inputs = Inputs::default();
        for (container, key) in self.container_keys(workload) {
            if let Some(tags) = self.listings.get(&key) {
                inputs.tags.insert(key.repo.clone(), tags.clone());
            }
            if !container.gates.is_empty() {
                inputs.gates = self.gates.inputs();
            }
            if let Some(tag) = &container.image.tag {
                if let Some(digest) = self.digests.get(&(key.clone(), tag.clone())) {
                    inputs
                        .digests
                        .insert((key.repo.clone(), tag.clone()), digest.clone());
                }
            }
        }
        inputs
    }

    /// The poll interval per listing key: the shortest any of its users asks for. Repositories
    /// with maintained aliases are listed (as tagwatch's own login) at the default interval even
    /// without users. Images on hosts outside `allowedRegistries` are never listed.
    fn intervals(&mut self, workloads: &[Arc<Workload>]) -> HashMap<ListingKey, Duration> {
        let mut wanted: HashMap<ListingKey, Duration> = HashMap::new();
        for (repo, _) in &self.ctx.aliases {
            let login = Login::new(self.ctx.secrets.own(&repo.registry));
            wanted.insert(
                ListingKey {
                    repo: repo.clone(),
                    login,
                },
                self.ctx.default_interval,
            );
        }
        let mut refused_hosts: Vec<(Arc<Workload>, BTreeSet<String>)> = Vec::new();
        for workload in workloads {
            let interval = workload.interval.unwrap_or(self.ctx.default_interval);
            let mut refused = BTreeSet::new();
            for container in &workload.containers {
                let repo = &container.image.repository;
                if !self.ctx.allows(&repo.registry) {
                    refused.insert(format!(
                        "container {}: registry {} is not in allowedRegistries",
                        container.name, repo.registry
                    ));
                    continue;
                }
                let Some(login) = self.login_of(workload, &repo.registry) else {
                    continue;
                };
                wanted
                    .entry(ListingKey {
                        repo: repo.clone(),
                        login: login.clone(),
                    })
                    .and_modify(|i| *i = (*i).min(interval))
                    .or_insert(interval);
            }
            if !refused.is_empty() {
                refused_hosts.push((workload.clone(), refused));
            }
        }
        {
            for (workload, messages) in refused_hosts {
                let fresh = self.report_once(&workload, messages, "RegistryNotAllowed");
                if fresh > 0 {
                    self.ctx.metrics.update_by(
                        UpdateResult::Skipped,
                        &Why::NotAllowed,
                        fresh as u64,
                    );
                }
            }
        }
        wanted
    }

    fn start_listing(&mut self, key: ListingKey) {
        // The tags `digest`-policy containers run: their registry digests come with the listing.
        // Only the key's users, indexed at the last turn: a listing costs its users, not a look
        // at every workload.
        let mut digest_tags = BTreeSet::new();
        for workload in self.users.get(&key).into_iter().flatten() {
            for (container, k) in self.container_keys(workload) {
                if container.policy == Policy::Digest && k == key {
                    if let Some(tag) = &container.image.tag {
                        digest_tags.insert(tag.clone());
                    }
                }
            }
        }
        self.listing.insert(key.clone());
        let failed_key = key.clone();
        tasks::spawn(
            &self.tx,
            &self.ctx.metrics,
            Task::Listing,
            None,
            tasks::list(self.ctx.clone(), key, digest_tags),
            move |why| {
                Finished::Listed(Listed {
                    key: failed_key.clone(),
                    result: Err(RegistryError::Internal {
                        repository: failed_key.repo.to_string(),
                        message: why.to_string(),
                    }),
                    digests: Vec::new(),
                })
            },
        );
    }

    fn listed(&mut self, listed: Listed, deployments: &[Cached]) {
        let Listed {
            key,
            result,
            digests,
        } = listed;
        self.listing.remove(&key);
        self.cycle_progress(&key);
        let now = Instant::now();
        match result {
            Ok(tags) => {
                tracing::debug!(repository = %key.repo, login = %key.login, tags = tags.len(), "listed");
                self.report.listed += 1;
                self.schedule.succeeded(&key, now, rand::random());
                if self.failures.remove(&key).is_some() {
                    // Its backoff ended: the registry's worst one may have too.
                    self.update_backoff_gauges();
                }
                self.ctx
                    .metrics
                    .registry_last_success
                    .with_label_values(&[&key.repo.registry])
                    .set(unix_now());
                let content = fingerprint_listing(&tags, &digests);
                let same = self.contents.insert(key.clone(), content) == Some(content);
                self.gates
                    .listed(&key.repo, &tags, k8s_openapi::jiff::Timestamp::now());
                let tags = Arc::new(tags);
                self.listings.insert(key.clone(), tags.clone());
                for (tag, digest) in digests {
                    match digest {
                        Ok(Some(digest)) => {
                            self.digests.insert((key.clone(), tag), digest);
                        }
                        Ok(None) => {
                            self.digests.remove(&(key.clone(), tag));
                        }
                        Err(error) => {
                            tracing::warn!(repository = %key.repo, tag = %tag, error = %error, "cannot read digest");
                            self.digests.remove(&(key.clone(), tag));
                        }
                    }
                }
                self.maintain_aliases(&key, tags);
                let users = self.users.get(&key).cloned().unwrap_or_default();
                for workload in users {
                    // Nothing new listed and nothing changed since its last decision: the same
                    // decision again, so none is made (steady cost ∝ change, not size). A canary
                    // may wait on another object (its name taken): decided at every listing.
                    let unchanged =
                        self.planned_at(&workload.id) == workload.resource_version.as_ref();
                    // A gate that could not decide is asked again at every listing.
                    let retry = self.gates.must_retry(&workload.id);
                    if same && unchanged && workload.rollout.canary.is_none() && !retry {
                        continue;
                    }
                    self.decide(&workload, deployments);
                }
                self.save_first_seen();
            }
            Err(error) => {
                self.report.listing_failures += 1;
                self.failures.insert(key.clone(), error.to_string());
                let delay = self
                    .schedule
                    .failed(&key, error.retry_after(), now, rand::random());
                self.update_backoff_gauges();
                tracing::warn!(
                    repository = %key.repo,
                    login = %key.login,
                    error = %error,
                    retry_in_seconds = delay.as_secs_f64(),
                    "tag listing failed; no decision for its workloads this round"
                );
                self.ctx.metrics.update(UpdateResult::Skipped, &error);
                if matches!(error, RegistryError::Unauthorized { .. }) {
                    // Only the namespaces that pull with this login read their secrets again.
                    let namespaces: BTreeSet<String> = self
                        .workloads
                        .iter()
                        .filter(|w| self.keys_of(w).contains(&key))
                        .map(|w| w.id.namespace.clone())
                        .collect();
                    for namespace in namespaces {
                        self.ctx.secrets.forget_namespace(&namespace);
                        for (_, known) in self
                            .discovered
                            .iter_mut()
                            .filter(|(id, _)| id.namespace == namespace)
                        {
                            known.logins = None;
                        }
                    }
                    // Logins are read in turns: the next heartbeat brings one.
                    self.wants_turn = true;
                }
            }
        }
    }

    /// A poll cycle is the set of listings one turn started; it is counted (and timed) once the
    /// last of them is done.
    fn cycle_progress(&mut self, key: &ListingKey) {
        let metrics = &self.ctx.metrics;
        self.cycles.retain_mut(|(started, keys)| {
            keys.remove(key);
            if keys.is_empty() {
                metrics.poll_cycles.inc();
                metrics
                    .poll_cycle_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            !keys.is_empty()
        });
    }

    /// Moves the alias tags of a freshly (and completely) listed maintained repository.
    fn maintain_aliases(&mut self, key: &ListingKey, tags: Arc<Vec<String>>) {
        let Some((repo, levels)) = self
            .ctx
            .aliases
            .iter()
            .find(|(repo, _)| *repo == key.repo)
            .cloned()
        else {
            return;
        };
        let own = Login::new(self.ctx.secrets.own(&repo.registry));
        if key.login != own || self.aliasing.contains(&repo) {
            return;
        }
        if self.act(Action::MoveAliases {
            repo: repo.clone(),
            levels,
            tags,
        }) {
            self.aliasing.insert(repo);
        }
    }

    fn update_backoff_gauges(&self) {
        let now = Instant::now();
        let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
        for key in self.schedule.repositories() {
            let backoff = self
                .schedule
                .backoff(key, now)
                .map_or(0.0, |d| d.as_secs_f64());
            let entry = worst.entry(key.repo.registry.as_str()).or_insert(0.0);
            *entry = entry.max(backoff);
        }
        for (registry, seconds) in worst {
            self.ctx
                .metrics
                .registry_backoff_seconds
                .with_label_values(&[registry])
                .set(seconds);
        }
    }

    /// A canary is under way: newer versions wait for it. A plain rollout in progress does not
    /// hold them: a fix pushed for a crashing release must not wait out the deadline.
    fn rollout_busy(&self, workload: &Workload) -> bool {
        workload.rollout.canary_state.is_some()
    }

    /// Decides for one workload from its own listings, and starts the write if there is one.
    fn decide(&mut self, workload: &Arc<Workload>, deployments: &[Cached]) {
        let id = &workload.id;
        if self.writing.contains(id) || self.checking.contains(id) {
            self.dirty.insert(id.clone());
            return;
        }
        if self.rollout_busy(workload) {
            return;
        }
        // Only a canary needs the object itself (its pod template, a StatefulSet's update
        // strategy): no scan otherwise.
        let primary = workload
            .rollout
            .canary
            .as_ref()
            .and_then(|_| find(deployments, id));
        if self.refuse_outright(workload, primary.as_ref()) {
            return;
        }
        self.report.planned += 1;
        let inputs = self.inputs_for(workload);
        let plan = update::plan(workload, &inputs);
        self.record_skips(workload, &plan);
        self.record_gates(workload, &plan);
        let rv = workload.resource_version.clone();
        let has_work = plan.pending().next().is_some() || !plan.manual.is_empty();
        if plan.pending().next().is_none() && self.holds.started(id) {
            // Nothing to start: it no longer waits for anything.
            self.set_waiting_gauges();
        }
        if !has_work {
            if let Some(rv) = rv {
                self.set_planned(id, rv);
            }
            return;
        }
        if self.refused.get(id) == Some(&tasks::fingerprint(workload, &plan)) {
            // Refused as it stands: not sent again until the workload or the candidate changes.
            if let Some(rv) = rv {
                self.set_planned(id, rv);
            }
            return;
        }
        let mut plan = plan;
        if plan.pending().next().is_some() && self.held(workload, &plan) {
            if let Some(rv) = rv {
                self.set_planned(id, rv);
            }
            if plan.manual.is_empty() {
                return;
            }
            // A person's own change is recorded whatever holds the update.
            plan.outcomes
                .retain(|(_, o)| !matches!(o, update::Outcome::Update(_)));
        }
        // A plain rollout still in progress is replaced by this update (canaries wait instead).
        let superseding = workload
            .rollout
            .watching
            .as_deref()
            .filter(|w| !self.settled.contains(&(id.clone(), w.started.clone())))
            .cloned();
        let Some(action) = actions::for_plan(workload, primary, inputs, plan, superseding) else {
            return;
        };
        if self.act(action) {
            if self.holds.started(id) {
                self.set_waiting_gauges();
            }
            self.writing.insert(id.clone());
        }
    }

    /// Workloads tagwatch must not write at all, reported once: one owned by GitOps (its writes
    /// would be undone), and one asking for a canary its kind (or, for a StatefulSet, its update
    /// strategy) cannot run.
    fn refuse_outright(&mut self, workload: &Arc<Workload>, object: Option<&Object>) -> bool {
        if !workload.problems.iter().all(|p| p.container.is_some()) {
            // A workload-wide problem is reported as such (InvalidAnnotation), not as this.
            return false;
        }
        if let Some(owner) = &workload.gitops {
            let note = format!(
                "managed by {owner}: tagwatch's writes would be undone; not updated \
                 (annotate tagwatch.dev/gitops: allow to update it anyway)"
            );
            self.report_once(workload, BTreeSet::from([note]), "ManagedByGitOps");
            return true;
        }
        if workload.rollout.canary.is_some() {
            let why = match workload.id.kind.canary_mode() {
                CanaryMode::Separate => None,
                CanaryMode::Partition => object
                    .and_then(Object::as_stateful_set)
                    .and_then(partition::refusal),
                CanaryMode::External => Some(
                    "Argo Rollouts runs this workload's canary itself: remove tagwatch.dev/canary; \
                     not updated",
                ),
                CanaryMode::Unsupported => Some(
                    "tagwatch runs no canary for this kind: remove tagwatch.dev/canary to have it \
                     updated directly; not updated",
                ),
            };
            if let Some(why) = why {
                let note = format!(
                    "a {} cannot have tagwatch's canary: {why}",
                    workload.id.kind.name()
                );
                self.report_once(workload, BTreeSet::from([note]), "CanaryUnsupported");
                return true;
            }
        }
        false
    }

    fn applied(&mut self, applied: Applied, deployments: &[Cached]) {
        let Applied {
            id,
            decided_at,
            outcome,
            conflicts,
            fingerprint,
        } = applied;
        self.writing.remove(&id);
        self.report.conflicts += conflicts;
        let settled = match &outcome {
            WriteOutcome::Updated { complete, .. } => {
                self.report.applied += 1;
                *complete
            }
            WriteOutcome::Acknowledged | WriteOutcome::CanaryStarted | WriteOutcome::Nothing => {
                true
            }
            WriteOutcome::Gone => true,
            WriteOutcome::Retry(why) => {
                tracing::debug!(workload = %id, why, "not written; deciding again next turn");
                false
            }
            WriteOutcome::Refused(message) => {
                self.report.refused += 1;
                self.refused.insert(id.clone(), fingerprint);
                if let Some(workload) = self.workloads.iter().find(|w| w.id == id).cloned() {
                    let messages = BTreeSet::from([message.clone()]);
                    self.report_once(&workload, messages, "UpdateRefused");
                }
                true
            }
        };
        match (settled, decided_at) {
            (true, Some(rv)) => {
                self.set_planned(&id, rv);
            }
            // Decided again from the fresh object the reflector brings.
            _ => {
                self.unplan(&id);
            }
        }
        if self.dirty.remove(&id) {
            if let Some(workload) = self.workloads.iter().find(|w| w.id == id).cloned() {
                self.decide(&workload, deployments);
            }
        }
    }

    /// Looks at every canary and watched rollout (and at canaries left behind), each in its own
    /// task; due again in [`ROLLOUT_CHECK`] while any is in progress.
    fn start_checks(&mut self, deployments: &[Cached]) {
        let mut pending = false;
        let mut canaries = 0;
        let workloads = self.workloads.clone();
        for workload in &workloads {
            let rollout = &workload.rollout;
            if rollout.canary_state.is_some() {
                canaries += 1;
            }
            let watched = rollout.watching.as_ref().is_some_and(|w| {
                !self
                    .settled
                    .contains(&(workload.id.clone(), w.started.clone()))
            });
            if rollout.canary_state.is_none() && !watched {
                continue;
            }
            if workload.gitops.is_some() {
                // A rollback would be undone as well: GitOps owns this workload now.
                continue;
            }
            pending = true;
            if self.checking.contains(&workload.id) || self.writing.contains(&workload.id) {
                continue;
            }
            let Some(object) = find(deployments, &workload.id) else {
                continue;
            };
            let check = Action::CheckRollout {
                workload: workload.clone(),
                object,
            };
            if self.act(check) {
                self.checking.insert(workload.id.clone());
            }
        }
        self.ctx.metrics.canaries_in_progress.set(canaries);
        self.next_check = pending.then(|| Instant::now() + ROLLOUT_CHECK);
        self.sweep(deployments);
    }

    /// Looks for tagwatch's canaries that nothing records any more (opted out, state removed,
    /// primary gone), beside the loop.
    fn sweep(&mut self, deployments: &[Cached]) {
        if self.sweeping {
            return;
        }
        if !deployments.iter().any(Cached::is_canary) {
            return;
        }
        let sweep = Action::SweepCanaries {
            workloads: self.workloads.clone(),
            deployments: deployments
                .iter()
                .filter(|o| o.kind() == crate::model::kind::Kind::Deployment)
                .filter_map(|o| match o.object()? {
                    Object::Deployment(d) => Some(d),
                    _ => None,
                })
                .collect(),
        };
        if self.act(sweep) {
            self.sweeping = true;
        }
    }

    /// Hands an action to the runner; true when a task was started for it. Without a runner
    /// (`tagwatch plan`) the action is only collected, to be printed.
    fn act(&mut self, action: Action) -> bool {
        match &self.runner {
            Some(runner) => {
                runner.run(action);
                true
            }
            None => {
                self.actions.push(action);
                false
            }
        }
    }

    /// The actions decided without a runner, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn checked(&mut self, checked: Checked, deployments: &[Cached]) {
        let Checked { id, started, step } = checked;
        self.checking.remove(&id);
        match step {
            // Still in progress; a decision put off while this check ran (a listing completed
            // meanwhile) is made now: a newer version supersedes a plain rollout in progress,
            // and must not wait for the next listing (a poll interval, or a day).
            Step::Waiting => {
                if self.dirty.remove(&id) {
                    if let Some(workload) = self.workloads.iter().find(|w| w.id == id).cloned() {
                        self.decide(&workload, deployments);
                    }
                }
            }
            Step::Done => {
                if let Some(started) = started {
                    self.settled.insert((id.clone(), started));
                }
                self.unplan(&id);
                self.decide_again(&id, deployments);
            }
            Step::Completed { started } => {
                let ours = started
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .is_ok_and(|t| t >= self.since);
                // A CronJob's rollout waits for its schedule (a week, for a weekly job): that
                // wait is not how long rolling out took.
                let timed = ours && id.kind != crate::model::kind::Kind::CronJob;
                if timed && self.timed.insert((id.clone(), started.clone())) {
                    crate::act::rollouts::observe_duration(&self.ctx.metrics, &started);
                }
                self.settled.insert((id.clone(), started));
                self.decide_again(&id, deployments);
            }
        }
        let recorded: HashSet<(&WorkloadId, &str)> = self
            .workloads
            .iter()
            .filter_map(|w| Some((&w.id, w.rollout.watching.as_ref()?.started.as_str())))
            .collect();
        self.timed
            .retain(|(id, started)| recorded.contains(&(id, started.as_str())));
    }

    /// A rollout is over: the workload is decided with what is known now.
    fn decide_again(&mut self, id: &WorkloadId, deployments: &[Cached]) {
        self.dirty.remove(id);
        if let Some(workload) = self.workloads.iter().find(|w| &w.id == id).cloned() {
            self.decide(&workload, deployments);
        }
    }

    /// Bad annotations: a Warning Event naming the annotation, once per distinct problem.
    fn report_problems(&mut self, workloads: &[Arc<Workload>]) {
        for workload in workloads {
            let messages = workload.problems.iter().map(|p| p.to_string()).collect();
            let fresh = self.report_once(workload, messages, "InvalidAnnotation");
            if fresh > 0 {
                self.ctx.metrics.update_by(
                    UpdateResult::Skipped,
                    &Why::InvalidAnnotation,
                    fresh as u64,
                );
            }
        }
    }

    fn record_skips(&mut self, workload: &Workload, plan: &WorkloadPlan) {
        let mut messages = BTreeSet::new();
        for (container, outcome) in &plan.outcomes {
            if let Outcome::Skip(reason) = outcome {
                self.ctx.metrics.update(UpdateResult::Skipped, reason);
                messages.insert(format!("container {container}: {reason}"));
            }
        }
        self.report_once(workload, messages, "UpdateSkipped");
    }

    /// Logs and publishes a Warning Event for each message not reported before for this
    /// workload; returns how many were new. Publishing runs beside the loop: a slow API server
    /// delays the Event, not the next decision.
    fn report_once(
        &mut self,
        workload: &Workload,
        messages: BTreeSet<String>,
        reason: &'static str,
    ) -> usize {
        if messages.is_empty() {
            // Most workloads have nothing to report: no entry for them.
            return 0;
        }
        let reported = self.reported.entry(workload.id.clone()).or_default();
        let fresh: Vec<String> = messages
            .into_iter()
            .filter(|m| reported.insert((reason, m.clone())))
            .collect();
        let regarding = reference(&workload.id, workload.uid.as_deref());
        for message in &fresh {
            tracing::warn!(workload = %workload.id, reason, problem = %message, "workload (partly) skipped");
            self.act(Action::Publish {
                regarding: regarding.clone(),
                reason,
                note: message.clone(),
            });
        }
        fresh.len()
    }
}

/// A listing's content: its tags in order and the digest (or the failure to read one) of each
/// tag it resolved.
fn fingerprint_listing(
    tags: &[String],
    digests: &[(String, Result<Option<String>, RegistryError>)],
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tags.hash(&mut hasher);
    for (tag, digest) in digests {
        tag.hash(&mut hasher);
        match digest {
            Ok(digest) => digest.hash(&mut hasher),
            // A digest that could not be read is never "the same": decide again next time.
            Err(_) => rand::random::<u64>().hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// The object of `id`, decoded (the snapshot keeps it compact).
fn find(objects: &[Cached], id: &WorkloadId) -> Option<Object> {
    objects.iter().find(|o| o.is(id)).and_then(Cached::object)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
