//! `tagwatch approve` and `tagwatch deny`: a person's decision on a proposed update, recorded
//! on the workload under the identity the API server reports (never one typed in).

use anyhow::Context as _;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::Client;

use crate::act::approvals::whoami;
use crate::act::write::{patch_workload, publish, reference, write_guarded, ApplyError};
use crate::app;
use crate::cli::ApproveArgs;
use crate::commands::history::read_workload;
use crate::model::annotations as keys;
use crate::model::workload::{Workload, WorkloadId};
use crate::plan::approvals::{self, Approvals};
use crate::plan::patch::State;

/// Another approver writing at the same moment fails our `test`: read again and add to theirs.
const ATTEMPTS: usize = 5;

async fn read(client: &Client, id: &WorkloadId) -> anyhow::Result<(Workload, Approvals)> {
    let object = read_workload(client, id).await?;
    let workload = crate::discover::workload(&object)
        .ok_or_else(|| anyhow::anyhow!("{id} is not watched by tagwatch"))?;
    let approvals = workload.approvals.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{id} asks for no approvals ({} is not set)",
            keys::APPROVALS
        )
    })?;
    Ok((workload, approvals))
}

pub async fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let user = whoami(&client)
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    if user.is_empty() {
        anyhow::bail!("the API server reports no user name for you; nothing recorded");
    }
    let id = &args.workload;
    for _ in 0..ATTEMPTS {
        let (workload, approvals) = read(&client, id).await?;
        let now = jiff::Timestamp::now();
        let given = approvals::approve(&approvals, args.version.as_deref(), &user, now)
            .map_err(|why| anyhow::anyhow!("{id}: {why}"))?;
        let label = approvals::open_proposal(&approvals, None)
            .map(|p| p.label())
            .unwrap_or_default();
        let Some(given) = given else {
            println!("{id}: {label} already approved by {user}");
            return Ok(());
        };
        let patch = approvals::given_patch(
            workload
                .annotations
                .get(keys::APPROVALS_GIVEN)
                .map(String::as_str),
            &given,
            workload.resource_version.as_deref(),
        );
        match patch_workload(&client, id, patch).await {
            Ok(_) => {
                let count = given.iter().filter(|g| g.version == label).count();
                println!(
                    "{id}: {label} approved by {user} ({count} of {} approvals)",
                    approvals.needed
                );
                return Ok(());
            }
            Err(ApplyError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{id} kept changing while recording the approval; run again")
}

pub async fn deny(args: ApproveArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let user = whoami(&client)
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    let id = &args.workload;
    for _ in 0..ATTEMPTS {
        let (workload, approvals) = read(&client, id).await?;
        let proposal = approvals::open_proposal(&approvals, args.version.as_deref())
            .map_err(|why| anyhow::anyhow!("{id}: {why}"))?
            .clone();
        // The same guarded write as a rollback's rejection: the version is never applied, and
        // the proposal is gone (a newer version proposes afresh).
        let mut state = State::of(&workload);
        for (container, version) in &proposal.versions {
            state.reject(container, version.clone());
        }
        state.extra.insert(keys::PROPOSAL.into(), None);
        match write_guarded(&client, &workload, &[], &state).await {
            Ok(_) => {
                let label = proposal.label();
                println!("{id}: {label} denied by {user}; it will not be applied");
                let recorder = Recorder::new(
                    client.clone(),
                    Reporter {
                        controller: "tagwatch".into(),
                        instance: None,
                    },
                );
                publish(
                    &recorder,
                    &reference(id, workload.uid.as_deref()),
                    EventType::Normal,
                    "ApprovalDenied",
                    "Deny",
                    format!("{label} denied by {user}; rejected (tagwatch.dev/rejected)"),
                )
                .await;
                return Ok(());
            }
            Err(ApplyError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{id} kept changing while recording the denial; run again")
}
