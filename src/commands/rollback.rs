//! `tagwatch rollback`: a person rolls one workload of any kind back, to the image before the
//! current one in its `tagwatch.dev/history` or to `--to VERSION` ([`crate::plan::rollback`]).
//!
//! This command only reads the object, prints, writes and reports: the write is one JSON Patch
//! guarded by the resourceVersion the plan was made on, so a concurrent change (tagwatch's own,
//! or a person's) makes it fail whole.

use kube::runtime::events::{EventType, Recorder, Reporter};

use crate::act::write::{now, publish, reference, write_guarded, ApplyError};
use crate::app;
use crate::cli::RollbackArgs;
use crate::commands::history::read_workload;
use crate::plan::rollback::{note, plan, Step};

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let object = read_workload(&client, &args.workload).await?;
    let rollback = plan(
        &object,
        args.to.as_deref(),
        args.container.as_deref(),
        &now(),
    )?;
    let id = &rollback.workload.id;
    if args.dry_run {
        println!("would roll back {id} (dry run: nothing written)");
        print_steps(&rollback.steps);
        return Ok(());
    }
    match write_guarded(
        &client,
        &rollback.workload,
        &rollback.changes,
        &rollback.state,
    )
    .await
    {
        Ok(_) => {}
        Err(ApplyError::Conflict { .. }) => {
            anyhow::bail!("{id} changed while rolling back; run again")
        }
        Err(e) => return Err(e.into()),
    }
    println!("rolled back {id}");
    print_steps(&rollback.steps);
    // An Event is a report, not state: `publish` only warns when it cannot be written.
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "tagwatch".into(),
            instance: None,
        },
    );
    publish(
        &recorder,
        &reference(id, rollback.workload.uid.as_deref()),
        EventType::Normal,
        "RolledBack",
        "Rollback",
        note(&rollback.steps),
    )
    .await;
    Ok(())
}

fn print_steps(steps: &[Step]) {
    for step in steps {
        let rejected = match &step.rejected {
            Some(tag) => format!("{tag} rejected"),
            None => "nothing rejected".into(),
        };
        println!(
            "  {}: {} → {} ({rejected})",
            step.container, step.from, step.to
        );
    }
}
