//! `tagwatch plan`: one read-only pass over the cluster, printed.

use std::sync::Arc;

use serde::Serialize;

use crate::act::Context;
use crate::app;
use crate::cli::{ClusterArgs, Output, PlanArgs};
use crate::config::{FileConfig, Settings};
use crate::control::Poller;
use crate::discover::watch::Workloads;
use crate::discover::Cached;
use crate::metrics::Metrics;
use crate::model::kind::Kind;
use crate::model::workload::Workload;
use crate::plan::update::{Outcome, WorkloadPlan};
use crate::registry::pull_secrets::PullSecrets;

#[derive(Debug, Serialize)]
pub struct Row {
    pub workload: String,
    pub container: String,
    pub image: String,
    /// `update`, `up-to-date`, `skip`, `no-listing` or `invalid`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub reason: String,
    /// Versions a release gate held back (`1.2.0 held back by platforms: …`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gated: Vec<String>,
    /// What `tagwatch run` would do for this workload now (never done here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// Lists the workloads in scope and plans each once, writing nothing: what `plan` prints and
/// `pending` judges.
pub(crate) async fn dry_run(
    cluster: &ClusterArgs,
    file: &FileConfig,
) -> anyhow::Result<(Poller, Vec<(Workload, WorkloadPlan)>)> {
    let settings = cluster.resolve(file);
    let client = app::kube_client(settings.kubeconfig.as_deref()).await?;
    let metrics = Metrics::unregistered()?;
    let deployments = list_workloads(&client, &settings).await;
    let credentials = app::registry_credentials(&settings.registries, Some(&client)).await?;
    let ctx = Arc::new(Context {
        client: client.clone(),
        fanout: app::fanout(&settings.registries, metrics.clone())?,
        secrets: PullSecrets::new(client.clone(), credentials),
        metrics,
        default_interval: settings.interval,
        aliases: Vec::new(),
        prometheus: None,
        allowed_registries: settings.registries.allowed_registries.clone(),
        confirmed: Default::default(),
        taken_names: Default::default(),
        holds: crate::control::holds::HoldSettings {
            freezes: file.freezes.clone(),
            limits: crate::plan::holds::Limits {
                total: file.max_concurrent_rollouts,
                per_namespace: file.max_concurrent_rollouts_per_namespace,
            },
        },
        verification: Arc::new(crate::act::verify::Verification {
            policies: file.verification.policies()?,
            namespace: Some(client.default_namespace().to_string()),
            aliases: Default::default(),
        }),
    });
    // Read-only by construction: no writer, so no action is ever performed, only printed.
    let mut poller = Poller::read_only(ctx);
    let plans = poller.dry_run(&deployments).await;
    Ok((poller, plans))
}

pub async fn plan(args: PlanArgs, file: FileConfig) -> anyhow::Result<()> {
    let (mut poller, plans) = dry_run(&args.cluster, &file).await?;
    let mut rows = Vec::new();
    for (workload, plan) in &plans {
        for problem in &workload.problems {
            rows.push(Row {
                workload: workload.id.to_string(),
                container: problem.container.clone().unwrap_or_else(|| "*".into()),
                image: String::new(),
                decision: "invalid",
                tag: None,
                reason: format!("{}: {}", problem.field, problem.reason),
                gated: Vec::new(),
                actions: Vec::new(),
            });
        }
        for ((name, outcome), container) in plan.outcomes.iter().zip(&workload.containers) {
            let (decision, tag, reason) = match outcome {
                Outcome::Update(p) => ("update", Some(p.to_tag.clone()), p.reason.to_string()),
                Outcome::UpToDate => ("up-to-date", None, String::new()),
                Outcome::Skip(reason) => ("skip", None, reason.to_string()),
                Outcome::NotListed => (
                    "no-listing",
                    None,
                    poller
                        .listing_failure(&container.image.repository)
                        .unwrap_or("not listed")
                        .to_string(),
                ),
            };
            rows.push(Row {
                workload: workload.id.to_string(),
                container: name.clone(),
                image: container.image_text.clone(),
                decision,
                tag,
                reason,
                gated: plan
                    .judged
                    .iter()
                    .filter(|j| {
                        &j.container == name && j.result != crate::plan::gates::GateResult::Passed
                    })
                    .map(|j| format!("{} held back by {}: {}", j.tag, j.gate, j.reason))
                    .collect(),
                actions: Vec::new(),
            });
        }
    }
    // The same actions `run` would hand its runner; here there is none, so they are only shown.
    let actions = poller.take_actions();
    for row in &mut rows {
        row.actions = actions
            .iter()
            .filter(|a| a.concerns(&row.workload))
            .map(ToString::to_string)
            .collect();
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            print_table(&rows);
            if !actions.is_empty() {
                println!("\nACTIONS (what `tagwatch run` would do; nothing was done)");
                for action in &actions {
                    println!("  {action}");
                }
            }
        }
    }
    Ok(())
}

/// Every workload of every kind in scope, read once (the same reflectors `run` keeps).
async fn list_workloads(client: &kube::Client, settings: &Settings) -> Vec<Cached> {
    let watched = Workloads::start(
        client,
        &settings.namespaces,
        settings.selector.as_deref(),
        &Kind::ALL,
    );
    watched.ready().await;
    watched.snapshot()
}

fn print_table(rows: &[Row]) {
    let header = ["WORKLOAD", "CONTAINER", "IMAGE", "DECISION", "REASON"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let decision = match &r.tag {
                Some(tag) => format!("{} → {tag}", r.decision),
                None => r.decision.to_string(),
            };
            let reason = std::iter::once(r.reason.clone())
                .chain(r.gated.iter().map(|g| format!("gated: {g}")))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            [
                r.workload.clone(),
                r.container.clone(),
                r.image.clone(),
                decision,
                reason,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 5]| {
        let mut out = String::new();
        for (i, (cell, w)) in cols.iter().zip(widths).enumerate() {
            if i == 4 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}
