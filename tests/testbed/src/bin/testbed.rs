//! A test bed to run `tagwatch run` against by hand or from `bench/idle.sh`: the in-process API
//! server seeded with opted-in Deployments and a real anonymous registry holding their tags.
//!
//! Every Deployment already runs its repository's newest tag, so tagwatch has nothing to patch:
//! what it costs is the cost of watching. Prints `READY registry=<host> kubeconfig=<path>` once
//! seeded, waits for SIGINT or SIGTERM, then prints `REQUESTS tags_list=<n> apiserver=<n>`.
//!
//! ```text
//! testbed --kubeconfig /tmp/k [--deployments 1000] [--repositories 100] [--tags 20]
//!         [--namespace bench] [--ready-file /tmp/ready]
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use tagwatch_testbed::apiserver::ApiServer;
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::seed::kubectl_deployment;

/// Pushes in flight at once: the registry's disk and the 2 cores, not the network, are the limit.
const PUSH_CONCURRENCY: usize = 8;

const USAGE: &str = "usage: testbed --kubeconfig PATH [--deployments N] [--repositories M] \
                     [--tags T] [--namespace NS] [--ready-file PATH]";

#[derive(Debug)]
struct Args {
    deployments: usize,
    repositories: usize,
    tags: usize,
    namespace: String,
    kubeconfig: PathBuf,
    ready_file: Option<PathBuf>,
}

impl Args {
    fn parse(mut raw: impl Iterator<Item = String>) -> anyhow::Result<Args> {
        let mut deployments = 1000;
        let mut repositories = 100;
        let mut tags = 20;
        let mut namespace = "bench".to_string();
        let mut kubeconfig = None;
        let mut ready_file = None;
        while let Some(flag) = raw.next() {
            if flag == "-h" || flag == "--help" {
                anyhow::bail!(USAGE);
            }
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (flag, None),
            };
            let value = match inline {
                Some(value) => value,
                None => raw
                    .next()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))?,
            };
            match name.as_str() {
                "--deployments" => deployments = count(&name, &value)?,
                "--repositories" => repositories = count(&name, &value)?,
                "--tags" => tags = count(&name, &value)?,
                "--namespace" => namespace = value,
                "--kubeconfig" => kubeconfig = Some(PathBuf::from(value)),
                "--ready-file" => ready_file = Some(PathBuf::from(value)),
                _ => anyhow::bail!("unknown argument {name}\n{USAGE}"),
            }
        }
        Ok(Args {
            deployments,
            repositories,
            tags,
            namespace,
            kubeconfig: kubeconfig.with_context(|| format!("--kubeconfig is required\n{USAGE}"))?,
            ready_file,
        })
    }
}

/// A positive number.
fn count(flag: &str, value: &str) -> anyhow::Result<usize> {
    let n: usize = value
        .parse()
        .with_context(|| format!("{flag}: {value:?} is not a number"))?;
    anyhow::ensure!(n > 0, "{flag} must be at least 1");
    Ok(n)
}

fn repository(i: usize) -> String {
    format!("bench/app-{i}")
}

fn tag(patch: usize) -> String {
    format!("1.0.{patch}")
}

/// Pushes `tags` tags to each of `repositories` repositories; one small layer per image.
async fn push_tags(registry: &Registry, repositories: usize, tags: usize) -> anyhow::Result<()> {
    let pushes = (0..repositories).flat_map(|i| (0..tags).map(move |t| (repository(i), tag(t))));
    futures::stream::iter(pushes)
        .map(|(repo, tag)| async move {
            registry
                .push_image(&repo, &tag, ImageKind::OciManifest)
                .await
                .with_context(|| format!("pushing {repo}:{tag}"))
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Prints a line at once, even when stdout is a file another process polls.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;

    let apiserver = ApiServer::start().await?;
    let registry = Registry::anonymous().await?;

    let started = Instant::now();
    push_tags(&registry, args.repositories, args.tags).await?;
    say(&format!(
        "SEEDED repositories={} tags={} pushes={} seconds={:.1}",
        args.repositories,
        args.tags,
        args.repositories * args.tags,
        started.elapsed().as_secs_f64()
    ))?;

    let newest = tag(args.tags - 1);
    for j in 0..args.deployments {
        let image = format!(
            "{}/{}:{newest}",
            registry.host(),
            repository(j % args.repositories)
        );
        apiserver
            .put_deployment(&kubectl_deployment(
                &args.namespace,
                &format!("app-{j}"),
                &image,
            )?)
            .with_context(|| format!("seeding deployment app-{j}"))?;
    }

    apiserver.write_kubeconfig(&args.kubeconfig)?;
    // The seeding pushes are not tagwatch's: count from here on.
    registry.sync_log().await?;
    let seeded_tag_lists = registry.count("GET", "/tags/list");
    apiserver.clear_requests();

    say(&format!(
        "READY registry={} kubeconfig={}",
        registry.host(),
        args.kubeconfig.display()
    ))?;
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"")
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }

    terminated().await?;

    registry.sync_log().await?;
    let tags_list = registry
        .count("GET", "/tags/list")
        .saturating_sub(seeded_tag_lists);
    say(&format!(
        "REQUESTS tags_list={tags_list} apiserver={}",
        apiserver.requests().len()
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Args> {
        Args::parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn defaults_need_only_a_kubeconfig() -> anyhow::Result<()> {
        let args = parse("--kubeconfig /tmp/k")?;
        assert_eq!(
            (args.deployments, args.repositories, args.tags),
            (1000, 100, 20)
        );
        assert_eq!(args.namespace, "bench");
        assert_eq!(args.ready_file, None);
        Ok(())
    }

    #[test]
    fn flags_take_separate_or_inline_values() -> anyhow::Result<()> {
        let args = parse("--deployments=10 --repositories 2 --tags 3 -n x --kubeconfig k");
        assert!(args.is_err(), "-n is not a flag of the test bed");
        let args = parse("--deployments=10 --repositories 2 --tags 3 --namespace x --kubeconfig k --ready-file r")?;
        assert_eq!((args.deployments, args.repositories, args.tags), (10, 2, 3));
        assert_eq!(args.namespace, "x");
        assert_eq!(args.ready_file, Some(PathBuf::from("r")));
        Ok(())
    }

    #[test]
    fn refuses_a_missing_kubeconfig_and_zero_counts() {
        assert!(parse("").is_err());
        assert!(parse("--kubeconfig k --tags 0").is_err());
        assert!(parse("--kubeconfig k --tags").is_err());
    }
}
