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
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use tagwatch_testbed::apiserver::ApiServer;
use tagwatch_testbed::registry::{ImageKind, Registry};

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

/// One container on `image`, opted in with policy `minor`, shaped like a Deployment applied with
/// kubectl from a typical chart: probes, resources, a few variables, and kubectl's last-applied
/// copy of the whole manifest (the API server adds `managedFields`), so the benchmark's watch
/// caches hold what a real cluster's would. `replicas: 0`: no pods to simulate.
fn deployment(namespace: &str, name: &str, image: &str) -> anyhow::Result<Deployment> {
    let env: Vec<serde_json::Value> = (0..8)
        .map(|i| json!({ "name": format!("SETTING_{i}"), "value": format!("value-{i}-of-{name}") }))
        .collect();
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": 8080 }, "periodSeconds": 10, "timeoutSeconds": 2 });
    let mut manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": { "tagwatch.dev/policy": "minor" },
            "labels": {
                "app": name,
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": "bench",
                "app.kubernetes.io/managed-by": "kubectl",
            },
        },
        "spec": {
            "replicas": 0,
            "revisionHistoryLimit": 10,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } },
            "template": {
                "metadata": { "labels": { "app": name, "app.kubernetes.io/name": name } },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                        "env": env,
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "128Mi" },
                            "limits": { "cpu": "500m", "memory": "256Mi" },
                        },
                        "readinessProbe": probe("/ready"),
                        "livenessProbe": probe("/healthz"),
                        "securityContext": {
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                        },
                    }],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    });
    let last_applied = serde_json::to_string(&manifest)?;
    manifest["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(last_applied);
    Ok(serde_json::from_value(manifest)?)
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
            .put_deployment(&deployment(&args.namespace, &format!("app-{j}"), &image)?)
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

    #[test]
    fn deployments_opt_in_with_one_container() -> anyhow::Result<()> {
        let d = deployment("bench", "app-7", "127.0.0.1:5000/bench/app-7:1.0.19")?;
        let annotations = d.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("tagwatch.dev/policy").map(String::as_str),
            Some("minor")
        );
        let containers = d
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers)
            .unwrap_or_default();
        assert_eq!(containers.len(), 1);
        Ok(())
    }
}
