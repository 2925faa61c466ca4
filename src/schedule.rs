//! When each repository is listed next: the shortest interval any of its users asks for, spread
//! with jitter, backed off exponentially per repository after failures, and pulled forward by
//! webhooks.
//!
//! Pure: time and randomness come in as arguments, so the rules are tested without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::image::Repository;

/// Backoff never grows past this, however long a registry stays broken.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
struct RepoState {
    interval: Duration,
    next_due: Instant,
    last_attempt: Option<Instant>,
    failures: u32,
}

#[derive(Debug, Default)]
pub struct Schedule {
    repos: HashMap<Repository, RepoState>,
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

impl Schedule {
    /// Brings the set of repositories and their intervals up to date. A new repository is due
    /// after `spread` (a random fraction of a short start-up window, so a fleet does not hit a
    /// registry at once); a shorter interval takes effect from the last attempt, not the next one.
    pub fn sync(&mut self, wanted: &HashMap<Repository, Duration>, now: Instant, spread: Jitter) {
        self.repos.retain(|repo, _| wanted.contains_key(repo));
        for (repo, &interval) in wanted {
            match self.repos.get_mut(repo) {
                Some(state) => {
                    if interval < state.interval && state.failures == 0 {
                        let from = state.last_attempt.unwrap_or(now);
                        state.next_due = state.next_due.min(from + interval);
                    }
                    state.interval = interval;
                }
                None => {
                    let window = (interval / 10).min(Duration::from_secs(2));
                    self.repos.insert(
                        repo.clone(),
                        RepoState {
                            interval,
                            next_due: now + window.mul_f64(spread.clamp(0.0, 1.0)),
                            last_attempt: None,
                            failures: 0,
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
    pub fn due(&self, now: Instant) -> Vec<Repository> {
        let mut due: Vec<Repository> = self
            .repos
            .iter()
            .filter(|(_, s)| s.next_due <= now + early(s))
            .map(|(r, _)| r.clone())
            .collect();
        due.sort();
        due
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        // The earliest due time exactly: joining early is for company, never a reason to wake.
        self.repos.values().map(|s| s.next_due).min()
    }

    /// A complete listing: back to the normal interval, give or take 10% so polls stay spread.
    pub fn succeeded(&mut self, repo: &Repository, now: Instant, jitter: Jitter) {
        if let Some(state) = self.repos.get_mut(repo) {
            state.failures = 0;
            state.last_attempt = Some(now);
            state.next_due = now + spread(state.interval, jitter);
        }
    }

    /// A failed listing: wait the interval doubled per consecutive failure (capped), or what the
    /// registry asked for with `Retry-After` if that is longer.
    pub fn failed(
        &mut self,
        repo: &Repository,
        retry_after: Option<Duration>,
        now: Instant,
        jitter: Jitter,
    ) -> Duration {
        let Some(state) = self.repos.get_mut(repo) else {
            return Duration::ZERO;
        };
        state.failures = state.failures.saturating_add(1);
        state.last_attempt = Some(now);
        let doubling = 2u32.saturating_pow(state.failures.saturating_sub(1).min(16));
        let backoff = state
            .interval
            .saturating_mul(doubling)
            .min(MAX_BACKOFF.max(state.interval));
        let delay = spread(backoff, jitter).max(retry_after.unwrap_or_default());
        state.next_due = now + delay;
        delay
    }

    /// A webhook says the repository changed: list it now.
    pub fn trigger(&mut self, repo: &Repository, now: Instant) -> bool {
        match self.repos.get_mut(repo) {
            Some(state) => {
                state.next_due = state.next_due.min(now);
                true
            }
            None => false,
        }
    }

    /// The current backoff of a repository: time to its next attempt while it is failing.
    pub fn backoff(&self, repo: &Repository, now: Instant) -> Option<Duration> {
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

    pub fn repositories(&self) -> impl Iterator<Item = &Repository> {
        self.repos.keys()
    }
}

/// `base` moved by up to ±10%.
fn spread(base: Duration, jitter: Jitter) -> Duration {
    base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
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
    fn unused_repositories_are_dropped() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&wanted(&[("a", 60), ("b", 60)]), t0, 0.0);
        s.sync(&wanted(&[("b", 60)]), t0, 0.0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.next_wakeup(), Some(t0));
    }
}
