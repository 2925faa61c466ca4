//! `tagwatch alias REGISTRY/REPO`: compute, and unless `--dry-run` apply, the alias moves of one
//! repository once (backfilling a repository, or a CI step right after a push).

use std::io::Write;

use crate::app;
use crate::cli::{AliasArgs, Output};
use crate::config::{FileConfig, RegistrySettings};
use crate::metrics::Metrics;
use crate::registry::alias_tags::{Action, AliasOutcome, Confirmed, Sync};

/// Exit code 0: nothing had to move; 1: aliases moved (or would); 2: an error.
pub async fn alias(args: AliasArgs, file: FileConfig) -> anyhow::Result<u8> {
    let repo = &args.repository;
    let insecure = if args.insecure {
        vec![repo.registry.clone()]
    } else {
        Vec::new()
    };
    let mut settings =
        RegistrySettings::resolve(&file, &insecure, None, args.registry_credentials.clone());
    // Only this registry's credentials: a Secret-sourced entry for another one would need a
    // cluster this command does not use.
    settings
        .credentials
        .retain(|(host, _)| *host == repo.registry);
    let credentials = app::registry_credentials(&settings, None)
        .await?
        .lookup(&repo.registry)
        .cloned()
        .unwrap_or_default();
    let metrics = Metrics::unregistered()?;
    let fanout = app::fanout(&settings, metrics.clone())?;
    let client = fanout.client();
    // A partial listing must not move an alias backwards: list_tags is all-or-nothing.
    let tags = client.list_tags(repo, &credentials).await?;
    let sync = Sync {
        verified: None,
        client,
        metrics: &metrics,
        credentials: &credentials,
        // A one-off run by a person or CI, outside any election.
        // A one-off command outside any election: it writes when asked to.
        may_write: &|| true,
        dry_run: args.dry_run,
    };
    let outcomes = sync
        .run(repo, &tags, args.levels, &mut Confirmed::default())
        .await;
    print(&outcomes, args.output)?;
    if outcomes.iter().any(|o| o.action == Action::Failed) {
        anyhow::bail!("some aliases could not be moved");
    }
    let moved = outcomes
        .iter()
        .any(|o| matches!(o.action, Action::Moved | Action::WouldMove));
    Ok(u8::from(moved))
}

fn print(outcomes: &[AliasOutcome], output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, outcomes)?;
            writeln!(out)?;
        }
        Output::Table => {
            writeln!(
                out,
                "{:<12} {:<14} {:<12} DIGEST",
                "ALIAS", "TARGET", "ACTION"
            )?;
            for o in outcomes {
                let action = match o.action {
                    Action::Unchanged => "unchanged",
                    Action::Moved => "moved",
                    Action::WouldMove => "would-move",
                    Action::Failed => "failed",
                    Action::NotLeader => "not-leader",
                };
                writeln!(
                    out,
                    "{:<12} {:<14} {:<12} {}{}",
                    o.alias,
                    o.target,
                    action,
                    o.digest.as_deref().unwrap_or("-"),
                    o.error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}
