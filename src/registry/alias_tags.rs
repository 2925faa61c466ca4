//! Keeping alias tags (`1.2`, `1`, `latest`) in a registry on the newest matching release.
//!
//! An alias is written by putting the version's exact manifest bytes, with its media type, under
//! the alias tag: the alias digest then equals the version's digest and no blob moves. An alias
//! already at the right digest is left alone; a failure leaves that alias as it was, and the next
//! cycle tries again.

use std::collections::HashMap;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::image::Repository;
use crate::plan::alias_tags::{self, Desired, Levels};
use crate::registry::{Credentials, RegistryClient};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Already names the version's manifest.
    Unchanged,
    /// Written (or, in a dry run, would be).
    Moved,
    WouldMove,
    /// Not written this time; retried next cycle.
    Failed,
    /// Not written: this replica stopped leading before the write; the leader writes it.
    NotLeader,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasOutcome {
    pub alias: String,
    pub target: String,
    /// The alias' digest before, if the tag existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which version each alias was last confirmed to name, per repository. A cycle checks only the
/// aliases whose target changed since, so a steady repository costs no request beyond its listing.
#[derive(Debug, Default)]
pub struct Confirmed {
    targets: HashMap<(Repository, String), String>,
    /// Versions whose signatures passed the repository's `aliases[].verify` policy, with the
    /// digest that was verified (a digest's signatures never stop verifying).
    verified: HashMap<(Repository, String), String>,
}

impl Confirmed {
    fn is_current(&self, repo: &Repository, desired: &Desired) -> bool {
        self.targets
            .get(&(repo.clone(), desired.alias.clone()))
            .is_some_and(|t| *t == desired.target)
    }

    fn confirm(&mut self, repo: &Repository, desired: &Desired) {
        self.targets.insert(
            (repo.clone(), desired.alias.clone()),
            desired.target.clone(),
        );
    }

    pub fn forget(&mut self, repo: &Repository) {
        self.targets.retain(|(r, _), _| r != repo);
        self.verified.retain(|(r, _), _| r != repo);
    }

    pub fn verified(&self, repo: &Repository, tag: &str) -> Option<&String> {
        self.verified.get(&(repo.clone(), tag.to_string()))
    }

    pub fn mark_verified(&mut self, repo: &Repository, tag: &str, digest: String) {
        self.verified
            .insert((repo.clone(), tag.to_string()), digest);
    }

    /// The verified digest of each tag of `repo`.
    pub fn verified_digests(&self, repo: &Repository) -> HashMap<String, String> {
        self.verified
            .iter()
            .filter(|((r, _), _)| r == repo)
            .map(|((_, tag), digest)| (tag.clone(), digest.clone()))
            .collect()
    }
}

pub struct Sync<'a> {
    pub client: &'a RegistryClient,
    pub metrics: &'a Metrics,
    pub credentials: &'a Credentials,
    /// Alias writes are sent only while this says leader.
    /// Asked immediately before each push: only the leader writes (the runner's fence).
    pub may_write: &'a (dyn Fn() -> bool + std::marker::Sync),
    pub dry_run: bool,
    /// With `aliases[].verify`: the digest each version was verified at. An alias is then
    /// written only onto a version listed here, and only at that digest.
    pub verified: Option<&'a HashMap<String, String>>,
}

impl Sync<'_> {
    /// Brings the aliases of `repo` in line with `tags` (a complete listing).
    pub async fn run(
        &self,
        repo: &Repository,
        tags: &[String],
        levels: Levels,
        confirmed: &mut Confirmed,
    ) -> Vec<AliasOutcome> {
        let mut outcomes = Vec::new();
        for desired in alias_tags::desired(tags, levels) {
            if confirmed.is_current(repo, &desired) {
                continue;
            }
            let outcome = self.one(repo, &desired).await;
            match outcome.action {
                Action::Unchanged | Action::Moved => confirmed.confirm(repo, &desired),
                Action::WouldMove | Action::Failed | Action::NotLeader => {}
            }
            if !self.dry_run {
                self.metrics
                    .alias_writes
                    .with_label_values(&[&repo.registry, action_label(&outcome.action)])
                    .inc();
            }
            let lost = outcome.action == Action::NotLeader;
            outcomes.push(outcome);
            if lost {
                // The rest would only cost reads that the leader makes anyway.
                break;
            }
        }
        outcomes
    }

    async fn one(&self, repo: &Repository, desired: &Desired) -> AliasOutcome {
        let mut outcome = AliasOutcome {
            alias: desired.alias.clone(),
            target: desired.target.clone(),
            from: None,
            digest: None,
            action: Action::Failed,
            error: None,
        };
        let client = self.client;
        let target = match client
            .get_manifest(repo, &desired.target, self.credentials)
            .await
        {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                // Deleted between the listing and now: the next listing decides again.
                outcome.error = Some(format!("{} is gone", desired.target));
                return outcome;
            }
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        };
        outcome.digest = Some(target.digest.clone());
        if let Some(verified) = self.verified {
            if verified.get(&desired.target) != Some(&target.digest) {
                // Moved since its signatures were checked (or never checked): not written.
                outcome.error = Some(format!(
                    "{} is not at the digest whose signature was verified",
                    desired.target
                ));
                return outcome;
            }
        }
        match client
            .manifest_digest(repo, &desired.alias, self.credentials)
            .await
        {
            Ok(current) => outcome.from = current,
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        }
        if outcome.from.as_deref() == Some(target.digest.as_str()) {
            outcome.action = Action::Unchanged;
            return outcome;
        }
        if self.dry_run {
            outcome.action = Action::WouldMove;
            return outcome;
        }
        // Checked at the last moment: the lease can lapse during the reads above.
        if !(self.may_write)() {
            tracing::info!(repository = %repo, alias = %desired.alias, target = %desired.target,
                "not the leader any more: alias left to the leader");
            outcome.action = Action::NotLeader;
            return outcome;
        }
        match client
            .put_manifest(repo, &desired.alias, &target, self.credentials)
            .await
        {
            Ok(written) if written == target.digest => {
                tracing::info!(repository = %repo, alias = %desired.alias, target = %desired.target,
                    digest = %target.digest, from = outcome.from.as_deref().unwrap_or("none"), "alias moved");
                outcome.action = Action::Moved;
            }
            Ok(written) => {
                outcome.error = Some(format!(
                    "the registry stored {written}, not {}",
                    target.digest
                ));
            }
            Err(e) => outcome.error = Some(e.to_string()),
        }
        if let Some(error) = &outcome.error {
            tracing::warn!(repository = %repo, alias = %desired.alias, target = %desired.target,
                error = %error, "alias not moved; retried next cycle");
        }
        outcome
    }
}

fn action_label(action: &Action) -> &'static str {
    match action {
        Action::Unchanged => "unchanged",
        Action::Moved => "moved",
        Action::WouldMove => "would_move",
        Action::Failed => "failed",
        Action::NotLeader => "not_leader",
    }
}
