//! When each repository is listed next: the shortest interval any of its users asks for, spread
//! with jitter, backed off exponentially per repository after failures, and pulled forward by
//! webhooks.
//!
//! Pure: time and randomness come in as arguments, so the rules are tested without a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::model::image::Repository;

/// Backoff never grows past this, however long a registry stays broken.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// The longest interval the schedule takes. `tagwatch.dev/interval` refuses longer ones at parse;
/// this bounds whatever else comes in (the default interval, a future caller), so every
/// `Instant` below stays a few days from now at most.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// A `Retry-After` longer than this counts as this: a registry, or anything in front of it,
/// cannot park a repository for ever (nor overflow the clock with `Retry-After: 18446744073709551615`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone)]
struct RepoState {
    interval: Duration,
    next_due: Instant,
    last_attempt: Option<Instant>,
    failures: u32,
    /// A listing is under way: not due, and no reason to wake, until it ends.
    listing: bool,
    /// A webhook came while it was being listed: the listing may predate the push, so it is
    /// listed again as soon as this one succeeds.
    again: bool,
}

/// Keyed by what is listed: a repository, or (in the poll loop) a repository as one login sees it.
#[derive(Debug)]
pub struct Schedule<K = Repository> {
    repos: HashMap<K, RepoState>,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Schedule {
            repos: HashMap::new(),
        }
    }
}

/// How early a repository may be listed to share a round. Never during backoff: a registry that
/// failed waits its full delay (and `Retry-After`).
/// Nor before a first listing: start-up stays spread.
fn early(state: &RepoState) -> Duration {
    if state.failures > 0 || state.last_attempt.is_none() {
        Duration::ZERO
    } else {
        state.interval / 20
    }
}

/// A fraction in `[0, 1)`, from the caller's random source.
pub type Jitter = f64;

/// `at + delay`, saturating. Every delay here is bounded (a day or two at most), so the fallback
/// is only reached with an `Instant` near the end of its range, never with a real clock; there
/// `at` itself is the latest time at hand.
fn after(at: Instant, delay: Duration) -> Instant {
    at.checked_add(delay).unwrap_or(at)
}

/// The jitter as a usable fraction: NaN or infinities (not from a real random source) count as 0.
fn fraction(jitter: Jitter) -> f64 {
    if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl<K: Clone + Eq + Hash + Ord> Schedule<K> {
    /// Brings the set of repositories and their intervals up to date. A new repository is due
    /// after `spread` (a random fraction of a short start-up window, so a fleet does not hit a
    /// registry at once); a shorter interval takes effect from the last attempt, not the next one.
    /// Intervals are taken as at most [`MAX_INTERVAL`].
    pub fn sync(&mut self, wanted: &HashMap<K, Duration>, now: Instant, spread: Jitter) {
        self.repos.retain(|repo, _| wanted.contains_key(repo));
        for (repo, &interval) in wanted {
            let interval = interval.min(MAX_INTERVAL);
            match self.repos.get_mut(repo) {
                Some(state) => {
                    if interval < state.interval && state.failures == 0 {
                        let from = state.last_attempt.unwrap_or(now);
                        state.next_due = state.next_due.min(after(from, interval));
                    }
                    state.interval = interval;
                }
                None => {
                    let window = (interval / 10).min(Duration::from_secs(2));
                    self.repos.insert(
                        repo.clone(),
                        RepoState {
                            interval,
                            next_due: after(now, window.mul_f64(fraction(spread))),
                            last_attempt: None,
                            failures: 0,
                            listing: false,
                            again: false,
                        },
                    );
                }
            }
        }
    }

    /// Repositories whose listing is due at `now`, in a stable order. A repository due within
    /// the next twentieth of its interval joins the round: that is inside its ±10% jitter band,
    /// and it turns a hundred slightly-spread repositories into a few rounds instead of a hundred
    /// (each round re-reads every workload).
    pub fn due(&self, now: Instant) -> Vec<K> {
        let mut due: Vec<K> = self
            .repos
            .iter()
            .filter(|(_, s)| !s.listing && s.next_due <= after(now, early(s)))
            .map(|(r, _)| r.clone())
            .collect();
        due.sort();
        due
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        // The earliest due time exactly: joining early is for company, never a reason to wake.
        // One being listed wakes nobody: its end does (a past due time would spin the loop).
        self.repos
            .values()
            .filter(|s| !s.listing)
            .map(|s| s.next_due)
            .min()
    }

    /// Its listing started: neither due nor waited for until it succeeds or fails.
    pub fn started(&mut self, repo: &K) {
        if let Some(state) = self.repos.get_mut(repo) {
            state.listing = true;
        }
    }

    /// A complete listing: back to the normal interval, give or take 10% so polls stay spread;
    /// at once if a webhook came while it was under way.
    pub fn succeeded(&mut self, repo: &K, now: Instant, jitter: Jitter) {
        if let Some(state) = self.repos.get_mut(repo) {
            state.failures = 0;
            state.last_attempt = Some(now);
            state.listing = false;
            state.next_due = if std::mem::take(&mut state.again) {
                now
            } else {
                after(now, spread(state.interval, jitter))
            };
        }
    }

    /// A failed listing: wait the interval doubled per consecutive failure (capped), or what the
    /// registry asked for with `Retry-After` (at most [`MAX_RETRY_AFTER`]) if that is longer.
    pub fn failed(
        &mut self,
        repo: &K,
        retry_after: Option<Duration>,
        now: Instant,
        jitter: Jitter,
    ) -> Duration {
        let Some(state) = self.repos.get_mut(repo) else {
            return Duration::ZERO;
        };
        state.failures = state.failures.saturating_add(1);
        state.last_attempt = Some(now);
        // The backoff wins over a webhook that came meanwhile, as over any other.
        state.listing = false;
        state.again = false;
        let doubling = 2u32.saturating_pow(state.failures.saturating_sub(1).min(16));
        let backoff = state
            .interval
            .saturating_mul(doubling)
            .min(MAX_BACKOFF.max(state.interval));
        let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
        let delay = spread(backoff, jitter).max(asked);
        state.next_due = after(now, delay);
        delay
    }

    /// A webhook says the repository changed: list it now, or when its backoff ends if it is
    /// failing. A hint never shortens a backoff or a `Retry-After`: a replayed or forged webhook
    /// must not turn a rate-limited registry into a listing storm. False for an unknown
    /// repository.
    pub fn trigger(&mut self, repo: &K, now: Instant) -> bool {
        match self.repos.get_mut(repo) {
            Some(state) if state.listing => {
                state.again = true;
                true
            }
            Some(state) => {
                // While failing, `next_due` is the end of the backoff (only `failed` sets it then).
                let backoff_end = (state.failures > 0).then_some(state.next_due);
                let earliest = backoff_end.map_or(now, |end| end.max(now));
                state.next_due = state.next_due.min(earliest);
                true
            }
            None => false,
        }
    }

    /// Triggers every key `hint` picks (a webhook names a repository; each login listing it is
    /// listed again). False when none did.
    pub fn trigger_matching(&mut self, hint: impl Fn(&K) -> bool, now: Instant) -> bool {
        let keys: Vec<K> = self.repos.keys().filter(|k| hint(k)).cloned().collect();
        for key in &keys {
            self.trigger(key, now);
        }
        !keys.is_empty()
    }

    /// The current backoff of a repository: time to its next attempt while it is failing.
    pub fn backoff(&self, repo: &K, now: Instant) -> Option<Duration> {
        self.repos
            .get(repo)
            .filter(|s| s.failures > 0)
            .map(|s| s.next_due.saturating_duration_since(now))
    }

    pub fn len(&self) -> usize {
        self.repos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
    }

    pub fn repositories(&self) -> impl Iterator<Item = &K> {
        self.repos.keys()
    }
}

/// `base` moved by up to ±10%, saturating (callers pass bounded durations anyway).
fn spread(base: Duration, jitter: Jitter) -> Duration {
    let factor = 0.9 + 0.2 * fraction(jitter);
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> Repository {
        Repository {
            registry: "r".into(),
            path: path.into(),
        }
    }

    fn wanted(items: &[(&str, u64)]) -> HashMap<Repository, Duration> {
        items
            .iter()
            .map(|(p, s)| (repo(p), Duration::from_secs(*s)))
            .collect()
    }

    /// A repository being listed is neither due nor a reason to wake (the loop would spin on
    /// its past due time); a webhook meanwhile lists it again right after, unless it failed.
    #[test]
    fn a_listing_under_way_is_not_due_and_a_webhook_meanwhile_lists_again() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60)]), t0, 0.0);
        s.succeeded(&repo("b"), t0, 0.0);
        let due = t0 + Duration::from_secs(2);
        assert_eq!(s.due(due), vec![repo("a")]);
        s.started(&repo("a"));
        assert!(s.due(due).is_empty());
        assert_eq!(
            s.next_wakeup(),
            s.repos.get(&repo("b")).map(|b| b.next_due),
            "only b wakes the loop"
        );

        let done = t0 + Duration::from_secs(3);
        s.succeeded(&repo("a"), done, 0.0);
        assert!(s.due(done).is_empty(), "the interval again");

        s.started(&repo("a"));
        assert!(s.trigger(&repo("a"), done));
        assert!(s.due(done).is_empty(), "not while it is listed");
        s.succeeded(&repo("a"), done, 0.0);
        assert_eq!(s.due(done), vec![repo("a")], "listed again at once");

        s.started(&repo("a"));
        assert!(s.trigger(&repo("a"), done));
        s.failed(&repo("a"), None, done, 0.0);
        assert!(s.due(done).is_empty(), "the backoff wins");
    }

    #[test]
    fn new_repositories_are_due_within_the_start_window() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60)]), t0, 0.5);
        assert!(s.due(t0).is_empty());
        assert_eq!(s.due(t0 + Duration::from_secs(2)).len(), 2);
    }

    #[test]
    fn success_waits_the_interval_with_jitter() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60)]), t0, 0.0);
        s.succeeded(&repo("a"), t0, 0.0);
        // 54 s at the low end of the jitter, less the 3 s a repository may join a round early.
        assert!(s.due(t0 + Duration::from_millis(50_900)).is_empty());
        assert_eq!(s.due(t0 + Duration::from_secs(51)), vec![repo("a")]);
        s.succeeded(&repo("a"), t0, 0.999);
        assert!(s.due(t0 + Duration::from_secs(62)).is_empty());
    }

    #[test]
    fn repositories_due_moments_apart_share_a_round_but_backoff_does_not() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60), ("c", 60)]), t0, 0.0);
        s.succeeded(&repo("a"), t0, 0.5);
        s.succeeded(&repo("b"), t0 + Duration::from_secs(2), 0.5);
        s.failed(&repo("c"), None, t0 + Duration::from_secs(1), 0.5);
        // a is due at 60 s, b at 62 s, c (backing off) at 61 s.
        assert_eq!(s.next_wakeup(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(
            s.due(t0 + Duration::from_secs(60)),
            vec![repo("a"), repo("b")]
        );
    }

    #[test]
    fn shorter_interval_from_a_new_user_applies_from_the_last_attempt() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 300)]), t0, 0.0);
        s.succeeded(&repo("a"), t0, 0.5);
        s.sync(&wanted(&[("a", 30)]), t0 + Duration::from_secs(5), 0.0);
        assert_eq!(s.due(t0 + Duration::from_secs(30)), vec![repo("a")]);
    }

    #[test]
    fn failures_back_off_exponentially_and_honour_retry_after() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 10)]), t0, 0.0);
        let d1 = s.failed(&repo("a"), None, t0, 0.5);
        let d2 = s.failed(&repo("a"), None, t0, 0.5);
        let d3 = s.failed(&repo("a"), None, t0, 0.5);
        assert_eq!((d1.as_secs(), d2.as_secs(), d3.as_secs()), (10, 20, 40));
        assert_eq!(s.backoff(&repo("a"), t0), Some(d3));
        let d = s.failed(&repo("a"), Some(Duration::from_secs(3600)), t0, 0.5);
        assert_eq!(d, Duration::from_secs(3600));
        for _ in 0..40 {
            s.failed(&repo("a"), None, t0, 0.5);
        }
        assert!(s.backoff(&repo("a"), t0) <= Some(MAX_BACKOFF));
        s.succeeded(&repo("a"), t0, 0.5);
        assert_eq!(s.backoff(&repo("a"), t0), None);
    }

    #[test]
    fn triggers_pull_known_repositories_forward_only() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 600)]), t0, 0.0);
        s.succeeded(&repo("a"), t0, 0.5);
        assert!(s.trigger(&repo("a"), t0 + Duration::from_secs(1)));
        assert_eq!(s.due(t0 + Duration::from_secs(1)), vec![repo("a")]);
        assert!(!s.trigger(&repo("unknown"), t0));
    }

    #[test]
    fn hints_wait_for_the_backoff_and_retry_after() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60)]), t0, 0.0);
        s.succeeded(&repo("b"), t0, 0.5);
        s.failed(&repo("a"), Some(Duration::from_secs(600)), t0, 0.5);
        for second in [1, 2, 300] {
            assert!(s.trigger(&repo("a"), at(second)), "a known repository");
        }
        assert!(
            !s.due(at(599)).contains(&repo("a")),
            "no hint shortens a Retry-After"
        );
        assert_eq!(
            s.backoff(&repo("a"), at(300)),
            Some(Duration::from_secs(300))
        );
        assert!(s.due(at(600)).contains(&repo("a")));
        // Past the backoff a hint is served at once; a healthy repository's hint too.
        assert!(s.trigger(&repo("a"), at(700)));
        assert!(s.due(at(700)).contains(&repo("a")));
        assert!(s.trigger(&repo("b"), at(1)));
        assert_eq!(s.due(at(1)), vec![repo("b")]);
        // A plain backoff (no Retry-After) holds as well.
        s.succeeded(&repo("a"), at(700), 0.5);
        let delay = s.failed(&repo("a"), None, at(701), 0.5);
        assert!(s.trigger(&repo("a"), at(702)));
        assert!(!s.due(at(702)).contains(&repo("a")));
        assert_eq!(s.backoff(&repo("a"), at(701)), Some(delay));
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", u64::MAX), ("b", 60)]), t0, f64::NAN);
        s.succeeded(&repo("a"), t0, 0.999);
        assert_eq!(s.backoff(&repo("a"), t0), None);
        assert!(s.due(t0 + MAX_INTERVAL.mul_f64(1.1)).contains(&repo("a")));
        let delay = s.failed(&repo("b"), Some(Duration::MAX), t0, f64::INFINITY);
        assert_eq!(delay, MAX_RETRY_AFTER, "Retry-After is capped");
        assert_eq!(s.backoff(&repo("b"), t0), Some(MAX_RETRY_AFTER));
        for _ in 0..100 {
            s.failed(&repo("a"), Some(Duration::MAX), t0, 1.0);
        }
        assert!(s.backoff(&repo("a"), t0) <= Some(MAX_INTERVAL.mul_f64(1.1)));
        assert!(s.trigger(&repo("a"), t0));
        assert!(s.due(t0).is_empty());
    }

    #[test]
    fn unused_repositories_are_dropped() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60)]), t0, 0.0);
        s.sync(&wanted(&[("b", 60)]), t0, 0.0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.next_wakeup(), Some(t0));
    }

    mod properties {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use proptest::prelude::*;

        /// Durations from zero to `Duration::MAX`, small and huge ones both likely.
        fn duration() -> impl Strategy<Value = Duration> {
            prop_oneof![
                (0u64..7200).prop_map(Duration::from_secs),
                (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
                Just(Duration::MAX),
                Just(Duration::ZERO),
            ]
        }

        fn jitter() -> impl Strategy<Value = f64> {
            prop_oneof![
                0.0f64..1.0,
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-1.0),
                Just(2.0)
            ]
        }

        #[derive(Debug, Clone)]
        enum Op {
            Sync(Vec<(u8, Duration)>, f64),
            Due,
            Succeeded(u8, f64),
            Failed(u8, Option<Duration>, f64),
            Trigger(u8),
            Backoff(u8),
        }

        fn op() -> impl Strategy<Value = (Op, Duration)> {
            let repo = 0u8..4;
            let op = prop_oneof![
                (
                    proptest::collection::vec((0u8..4, duration()), 0..4),
                    jitter()
                )
                    .prop_map(|(w, j)| Op::Sync(w, j)),
                Just(Op::Due),
                (repo.clone(), jitter()).prop_map(|(r, j)| Op::Succeeded(r, j)),
                (repo.clone(), proptest::option::of(duration()), jitter())
                    .prop_map(|(r, d, j)| Op::Failed(r, d, j)),
                repo.clone().prop_map(Op::Trigger),
                repo.prop_map(Op::Backoff),
            ];
            // How far the clock moved before the operation: anything, up to the end of time.
            (op, duration())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any sequence of operations at any times: no panic; a hint never pulls a failing
            /// repository before the end of its backoff.
            #[test]
            fn no_panic_and_hints_respect_backoff(ops in proptest::collection::vec(op(), 1..24)) {
                let name = |r: u8| repo(&format!("r{r}"));
                let mut s = Schedule::default();
                let mut now = Instant::now();
                for (op, step) in ops {
                    now = now.checked_add(step).unwrap_or(now);
                    match op {
                        Op::Sync(w, j) => {
                            let w = w.into_iter().map(|(r, d)| (name(r), d)).collect();
                            s.sync(&w, now, j);
                        }
                        Op::Due => {
                            let _ = s.due(now);
                            let _ = s.next_wakeup();
                        }
                        Op::Succeeded(r, j) => s.succeeded(&name(r), now, j),
                        Op::Failed(r, d, j) => {
                            let delay = s.failed(&name(r), d, now, j);
                            prop_assert!(delay <= MAX_INTERVAL.max(MAX_RETRY_AFTER).mul_f64(1.1));
                        }
                        Op::Trigger(r) => {
                            let before = s.backoff(&name(r), now);
                            s.trigger(&name(r), now);
                            prop_assert_eq!(s.backoff(&name(r), now), before);
                        }
                        Op::Backoff(r) => {
                            let _ = s.backoff(&name(r), now);
                        }
                    }
                }
            }
        }
    }
}
