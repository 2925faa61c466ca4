//! `tagwatch freeze`, `tagwatch unfreeze` and `tagwatch pending`: a person says "not now" for an
//! incident, and sees what waits and why.

use std::collections::HashSet;

use serde::Serialize;

use crate::app;
use crate::cli::{FreezeArgs, Output, PendingArgs, StateArgs};
use crate::config::FileConfig;
use crate::control::holds::{HoldSettings, Holds};
use crate::plan::approvals::Verdict;
use crate::plan::holds::{Freeze, Hold, Limits};

pub async fn freeze(args: FreezeArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.state.kubeconfig.as_deref()).await?;
    let now = jiff::Timestamp::now();
    let to = match args.duration {
        Some(duration) => Some(
            jiff::SignedDuration::try_from(duration)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .ok_or_else(|| anyhow::anyhow!("--for is too long"))?,
        ),
        None => None,
    };
    // Who froze, as the API server knows them. A freeze in an incident is never refused for
    // want of a name: an API server without SelfSubjectReview records none.
    let by = match crate::act::approvals::whoami(&client).await {
        Ok(user) if !user.is_empty() => Some(user),
        Ok(_) => None,
        Err(e) => {
            eprintln!(
                "warning: cannot ask the API server who you are ({e}); the freeze names no one"
            );
            None
        }
    };
    let freeze = Freeze {
        from: Some(now),
        to,
        reason: args.reason.clone(),
        namespaces: args.namespaces.clone(),
        by: by.clone(),
    };
    crate::act::holds::set(&client, &args.state.state_namespace, &freeze)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let scope = if args.namespaces.is_empty() {
        "every namespace".to_string()
    } else {
        args.namespaces.join(", ")
    };
    let by = by.map(|user| format!(" (by {user})")).unwrap_or_default();
    match to {
        Some(to) => println!("frozen in {scope} until {to}{by}: {}", args.reason),
        None => println!(
            "frozen in {scope} until `tagwatch unfreeze`{by}: {}",
            args.reason
        ),
    }
    Ok(())
}

/// Exit 0 when a freeze was lifted, 1 when there was none.
pub async fn unfreeze(args: StateArgs) -> anyhow::Result<u8> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let had = crate::act::holds::clear(&client, &args.state_namespace)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    if had {
        println!("unfrozen: updates start again");
        Ok(0)
    } else {
        println!("no freeze was set");
        Ok(1)
    }
}

#[derive(Debug, Serialize)]
struct Waiting {
    workload: String,
    /// `container → version` for each held update.
    updates: Vec<String>,
    /// `approval`, `freeze`, `window` or `limit`.
    reason: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    /// For `approval`: distinct people who approved the proposed version, and how many must.
    #[serde(skip_serializing_if = "Option::is_none")]
    approvals_given: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approvals_needed: Option<u8>,
}

#[derive(Debug, Serialize)]
struct Report {
    freezes: Vec<Freeze>,
    waiting: Vec<Waiting>,
}

pub async fn pending(args: PendingArgs, file: FileConfig) -> anyhow::Result<()> {
    let (_, plans) = crate::commands::plan::dry_run(&args.cluster, &file).await?;
    let settings = args.cluster.resolve(&file);
    let client = app::kube_client(settings.kubeconfig.as_deref()).await?;
    let mut holds = Holds::new(HoldSettings {
        freezes: file.freezes.clone(),
        limits: Limits {
            total: file.max_concurrent_rollouts,
            per_namespace: file.max_concurrent_rollouts_per_namespace,
        },
    });
    let live = crate::act::holds::load(&client, &args.state_namespace)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    holds.freeze_read(Ok(live));
    let now = jiff::Timestamp::now();
    let mut running: HashSet<_> = plans
        .iter()
        .filter(|(w, _)| w.rollout.watching.is_some() || w.rollout.canary_state.is_some())
        .map(|(w, _)| w.id.clone())
        .collect();
    let mut waiting = Vec::new();
    let mut plans: Vec<_> = plans
        .iter()
        .filter(|(_, plan)| plan.pending().next().is_some())
        .collect();
    plans.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    // In a stable order, as the service serves rollout slots: those that fit would start.
    for (workload, plan) in plans {
        let versions = plan
            .pending()
            .map(|p| (p.container.clone(), p.to_tag.clone()))
            .collect();
        // Approval first, as the service judges it: a proposal waits for people whatever else.
        let hold = match holds.check_approval(workload, &versions, now) {
            None | Some(Verdict::Released { .. }) => holds.check(workload, &running, now),
            Some(_) => holds.hold_of(&workload.id).cloned(),
        };
        match hold {
            None => {
                running.insert(workload.id.clone());
            }
            Some(hold) => waiting.push(Waiting {
                workload: workload.id.to_string(),
                updates: plan
                    .pending()
                    .map(|p| format!("{} → {}", p.container, p.to_tag))
                    .collect(),
                reason: hold.kind(),
                message: hold.to_string(),
                until: hold.until().map(|t| t.to_string()),
                approvals_given: match &hold {
                    Hold::Approval { given, .. } => Some(*given),
                    _ => None,
                },
                approvals_needed: match &hold {
                    Hold::Approval { needed, .. } => Some(*needed),
                    _ => None,
                },
            }),
        }
    }
    let freezes: Vec<Freeze> = holds
        .freezes()
        .into_iter()
        .filter(|f| f.to.is_none_or(|to| to > now))
        .collect();
    let report = Report { freezes, waiting };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            for freeze in &report.freezes {
                let scope = if freeze.namespaces.is_empty() {
                    "all namespaces".to_string()
                } else {
                    freeze.namespaces.join(", ")
                };
                let from = freeze.from.map(|t| t.to_string()).unwrap_or_default();
                let to = freeze.to.map_or("unfreeze".to_string(), |t| t.to_string());
                let by = freeze
                    .by
                    .as_ref()
                    .map(|user| format!(" (by {user})"))
                    .unwrap_or_default();
                println!("FREEZE {scope} {from} → {to}{by}: {}", freeze.reason);
            }
            if report.waiting.is_empty() {
                println!("no update waits");
            }
            for row in &report.waiting {
                println!(
                    "{}  {}  {}: {}",
                    row.workload,
                    row.updates.join(", "),
                    row.reason,
                    row.message
                );
            }
        }
    }
    Ok(())
}
