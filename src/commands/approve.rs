//! `tagwatch approve` and `tagwatch deny`: a person's decision on a proposed update, recorded
//! on the workload under the identity the API server reports (never one typed in). The writes
//! are [`crate::act::approvals`]' (shared with the Slack buttons).

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};

use crate::act::approvals::{self, whoami, Approved};
use crate::app;
use crate::cli::ApproveArgs;

pub async fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let user = whoami(&client)
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    if user.is_empty() {
        anyhow::bail!("the API server reports no user name for you; nothing recorded");
    }
    let id = &args.workload;
    match approvals::approve(&client, id, &user, args.version.as_deref()).await? {
        Approved::Already { label } => println!("{id}: {label} already approved by {user}"),
        Approved::Recorded {
            label,
            count,
            needed,
        } => println!("{id}: {label} approved by {user} ({count} of {needed} approvals)"),
    }
    Ok(())
}

pub async fn deny(args: ApproveArgs) -> anyhow::Result<()> {
    let client = app::kube_client(args.kubeconfig.as_deref()).await?;
    let user = whoami(&client)
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    let id = &args.workload;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tagwatch".into(),
            instance: None,
        },
    );
    let label = approvals::deny(&client, &recorder, id, &user, args.version.as_deref()).await?;
    println!("{id}: {label} denied by {user}; it will not be applied");
    Ok(())
}
