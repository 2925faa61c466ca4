//! `tagwatch history`: the image changes tagwatch recorded on one workload of any kind
//! (`tagwatch.dev/history`), newest last, and any canary or rollout it is in the middle of.
//! Reads one object; writes nothing. Exit 2 when the workload does not exist.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::{Api, Client};

use crate::app;
use crate::cli::{HistoryArgs, Output};
use crate::discover::object::{api_resource, Object};
use crate::discover::Source;
use crate::model::annotations as keys;
use crate::model::history::{self, Entry};
use crate::model::kind::Kind;
use crate::model::rollout_state::{CanaryState, Phase, RolloutState};
use crate::model::workload::WorkloadId;

pub async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let object = read_workload(&client, &args.workload).await?;
    let annotations = object.meta().annotations.clone().unwrap_or_default();
    let entries = entries(&annotations);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Table => {
            if entries.is_empty() {
                println!(
                    "no image changes recorded on {} ({})",
                    args.workload,
                    keys::HISTORY
                );
            } else {
                print_table(&rows(&entries));
            }
            for line in in_progress(&annotations) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// The workload named on the command line, of its kind (read through the dynamic API, as the
/// guarded write patches it); a missing one is a clear error (exit 2).
pub async fn read_workload(client: &Client, id: &WorkloadId) -> anyhow::Result<Object> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &api_resource(id.kind));
    // Any 404: a missing object answers a `NotFound` Status, an unserved kind (no Argo Rollouts)
    // a bare "404 page not found" that `get_opt` does not count as not found.
    let object = match api.get(&id.name).await {
        Ok(object) => object,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(match id.kind {
                Kind::Rollout => anyhow::anyhow!(
                    "workload {id} not found (or Argo Rollouts is not installed: no {} rollouts)",
                    Kind::Rollout.api_version()
                ),
                _ => anyhow::anyhow!("workload {id} not found"),
            })
        }
        Err(e) => return Err(anyhow::anyhow!("reading workload {id}: {e}")),
    };
    Object::from_dynamic(id.kind, object).map_err(|e| {
        anyhow::anyhow!(
            "reading workload {id}: not a readable {}: {e}",
            id.kind.name()
        )
    })
}

/// The recorded history; an unreadable annotation (edited by hand) is reported and shown empty,
/// as tagwatch itself treats it.
fn entries(annotations: &BTreeMap<String, String>) -> Vec<Entry> {
    let text = annotations.get(keys::HISTORY).map(String::as_str);
    if let Some(text) = text {
        if serde_json::from_str::<Vec<Entry>>(text).is_err() {
            eprintln!(
                "tagwatch history: {} is not readable; tagwatch starts it afresh",
                keys::HISTORY
            );
        }
    }
    history::decode(text)
}

fn rows(entries: &[Entry]) -> Vec<[String; 6]> {
    entries
        .iter()
        .map(|e| {
            [
                e.time.clone(),
                e.container.clone(),
                e.from.clone(),
                e.to.clone(),
                e.how.as_str().to_string(),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

/// One line each for a canary in progress and a rollout being watched.
fn in_progress(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(text) = annotations.get(keys::CANARY_STATE) {
        lines.push(match CanaryState::decode(text) {
            Ok(state) => format!(
                "canary in progress: phase {}, {}, started {}",
                match state.phase {
                    Phase::Running => "running",
                    Phase::Promoting => "promoting",
                },
                transitions(&state.from, &state.images),
                state.started
            ),
            Err(e) => format!("canary in progress ({}): {e}", keys::CANARY_STATE),
        });
    }
    if let Some(text) = annotations.get(keys::ROLLOUT) {
        lines.push(match RolloutState::decode(text) {
            Ok(state) => format!(
                "rollout being watched: {}, started {}",
                transitions(&state.from, &state.to),
                state.started
            ),
            Err(e) => format!("rollout being watched ({}): {e}", keys::ROLLOUT),
        });
    }
    lines
}

/// `web app:1.0.0 → app:1.1.0, side …`
fn transitions(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> String {
    to.iter()
        .map(|(container, image)| match from.get(container) {
            Some(before) => format!("{container} {before} → {image}"),
            None => format!("{container} → {image}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(rows: &[[String; 6]]) {
    let header = ["TIME", "CONTAINER", "FROM", "TO", "HOW", "REASON"];
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn describes_a_canary_and_a_watched_rollout() {
        let annotations = BTreeMap::from([
            (
                keys::CANARY_STATE.to_string(),
                r#"{"phase":"running","images":{"web":"x:2"},"from":{"web":"x:1"},"started":"2026-01-01T00:00:00Z"}"#
                    .to_string(),
            ),
            (
                keys::ROLLOUT.to_string(),
                r#"{"from":{"web":"x:1"},"to":{"web":"x:2"},"started":"2026-01-01T00:01:00Z"}"#
                    .to_string(),
            ),
        ]);
        assert_eq!(
            in_progress(&annotations),
            vec![
                "canary in progress: phase running, web x:1 → x:2, started 2026-01-01T00:00:00Z"
                    .to_string(),
                "rollout being watched: web x:1 → x:2, started 2026-01-01T00:01:00Z".to_string(),
            ]
        );
        assert!(in_progress(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn rows_show_how_and_reason() {
        let entries = history::decode(Some(
            r#"[{"time":"t","container":"web","from":"a:1","to":"a:2","how":"canary-fail","reason":"crash"}]"#,
        ));
        assert_eq!(
            rows(&entries),
            vec![["t", "web", "a:1", "a:2", "canary-fail", "crash"].map(String::from)]
        );
    }
}
