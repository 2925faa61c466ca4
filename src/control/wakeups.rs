//! When each workload is due to be decided again by the clock alone (a `min-age` candidate
//! coming of age, a window opening, a freeze or an approval deadline ending).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::model::workload::WorkloadId;

/// Woken a hair late rather than early: woken early, a workload would only wait again.
const SLACK: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
pub struct Wakeups(HashMap<WorkloadId, Instant>);

impl Wakeups {
    /// Wakes `id` at `at` (a wall-clock time, `now` being the wall clock's now), or never.
    pub fn set(&mut self, id: &WorkloadId, at: Option<Timestamp>, now: Timestamp) {
        match at {
            Some(at) => {
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                self.0.insert(id.clone(), Instant::now() + wait + SLACK);
            }
            None => {
                self.0.remove(id);
            }
        }
    }

    pub fn remove(&mut self, id: &WorkloadId) {
        self.0.remove(id);
    }

    pub fn retain(&mut self, present: &HashSet<&WorkloadId>) {
        self.0.retain(|id, _| present.contains(id));
    }

    /// The workloads due at `now`, forgotten as they are handed out.
    pub fn due(&mut self, now: Instant) -> Vec<WorkloadId> {
        let due: Vec<WorkloadId> = self
            .0
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.0.remove(id);
        }
        due
    }

    pub fn next(&self) -> Option<Instant> {
        self.0.values().min().copied()
    }
}
