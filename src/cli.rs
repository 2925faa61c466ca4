//! Command-line flags (each also an environment variable), parsed by clap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, FileConfig, LeaderSection, LeaderSettings, Settings};
use crate::model::image::Repository;
use crate::plan::alias_tags::Levels;

#[derive(Debug, Parser)]
#[command(
    name = "tagwatch",
    version,
    about = "Keeps opted-in Kubernetes workloads (Deployments, StatefulSets, DaemonSets, CronJobs, \
             Argo Rollouts) on the newest allowed image tag"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Configuration file (YAML, see config/tagwatch.yaml); flags and environment win over it.
    #[arg(long, env = "TAGWATCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "TAGWATCH_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (`info`, `tagwatch=debug`) [default: info].
    #[arg(long, env = "TAGWATCH_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
}

pub use crate::config::LogFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The service: watch workloads, poll registries, apply updates.
    Run(Box<RunArgs>),
    /// One read-only pass: print each opted-in container's decision and exit. Writes nothing.
    Plan(PlanArgs),
    /// Resolve the next tag for one image reference against its registry (or a tag list).
    Resolve(ResolveArgs),
    /// Compute (and apply) the alias tags of one repository once: `1.2` and `1` onto the newest
    /// release. Exit 0 when nothing had to move, 1 when aliases moved (or would), 2 on error.
    Alias(AliasArgs),
    /// Print the image changes tagwatch recorded on one workload (`tagwatch.dev/history`),
    /// newest last, and any canary or rollout in progress. Exit 2 when it does not exist.
    History(HistoryArgs),
    /// Roll one workload back to the image before (from its history) or to `--to VERSION`,
    /// and reject the version left so tagwatch never applies it again. Exit 2 when refused.
    Rollback(RollbackArgs),
    /// Stop updates from starting now (an incident freeze), in every namespace or those given,
    /// until `tagwatch unfreeze` (or `--for` has passed). Rollbacks still run.
    Freeze(FreezeArgs),
    /// Lift the incident freeze. Exit 1 when there was none.
    Unfreeze(StateArgs),
    /// What waits and why: the freezes, and each update held by a freeze, a window or the
    /// rollout limit.
    Pending(PendingArgs),
    /// Approve the update proposed on a workload (`tagwatch.dev/approvals`), as the identity
    /// the API server reports for you. Exit 2 when there is nothing to approve.
    Approve(ApproveArgs),
    /// Deny the update proposed on a workload: its version is rejected (never applied).
    Deny(ApproveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ApproveArgs {
    /// The workload: `NAMESPACE/NAME` for a Deployment, else `NAMESPACE/KIND/NAME` with KIND
    /// one of deploy, sts, ds, cj, rollout (or kubectl's other names for them).
    #[arg(value_name = "NAMESPACE/[KIND/]NAME", value_parser = parse_workload)]
    pub workload: crate::model::workload::WorkloadId,
    /// The version you reviewed; refused when the proposal is for another (a newer version
    /// superseded it). Default: whatever is proposed.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "TAGWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// Where tagwatch keeps its state (the `tagwatch-state` ConfigMap).
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "TAGWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// tagwatch's own namespace (where its Lease and state ConfigMap live).
    #[arg(long, env = "TAGWATCH_STATE_NAMESPACE", default_value = "tagwatch")]
    pub state_namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct FreezeArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Why (shown in Events, `pending` and logs).
    #[arg(long)]
    pub reason: String,
    /// Only these namespaces (repeatable); default: all.
    #[arg(long = "only-namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Lift it by itself after this long (`2h`); default: until `tagwatch unfreeze`.
    #[arg(long = "for", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct PendingArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// tagwatch's own namespace (where its state ConfigMap with the incident freeze lives).
    #[arg(long, env = "TAGWATCH_STATE_NAMESPACE", default_value = "tagwatch")]
    pub state_namespace: String,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The workload: `NAMESPACE/NAME` for a Deployment, else `NAMESPACE/KIND/NAME` with KIND
    /// one of deploy, sts, ds, cj, rollout (or kubectl's other names for them).
    #[arg(value_name = "NAMESPACE/[KIND/]NAME", value_parser = parse_workload)]
    pub workload: crate::model::workload::WorkloadId,
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "TAGWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The workload: `NAMESPACE/NAME` for a Deployment, else `NAMESPACE/KIND/NAME` with KIND
    /// one of deploy, sts, ds, cj, rollout (or kubectl's other names for them).
    #[arg(value_name = "NAMESPACE/[KIND/]NAME", value_parser = parse_workload)]
    pub workload: crate::model::workload::WorkloadId,
    /// Roll back to this tag instead of the image before the current one in the history.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Only this container; default: every container tagwatch watches.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "TAGWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AliasArgs {
    /// `REGISTRY/REPO` (`ghcr.io/org/app`).
    pub repository: crate::model::image::Repository,
    /// Alias levels: any of major, minor, latest.
    #[arg(long, default_value = "major,minor", value_parser = crate::plan::alias_tags::Levels::parse)]
    pub levels: crate::plan::alias_tags::Levels,
    /// Show what would move; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
    /// A docker config.json with credentials (push scope) for the registry.
    #[arg(long, env = "TAGWATCH_REGISTRY_CREDENTIALS")]
    pub registry_credentials: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long, env = "TAGWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace to watch (repeatable); default: all namespaces.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "TAGWATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Label selector narrowing the workloads considered (`team=web`).
    #[arg(long, env = "TAGWATCH_SELECTOR")]
    pub selector: Option<String>,
    /// Default poll interval per repository (`30s`, `1m`; at least 1s) [default: 1m].
    #[arg(long, env = "TAGWATCH_INTERVAL", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Registry (`host[:port]`) reached over plain HTTP (repeatable).
    #[arg(
        long = "insecure-registry",
        env = "TAGWATCH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// A docker config.json with credentials, used after the workloads' pull secrets.
    #[arg(long, env = "TAGWATCH_REGISTRY_CREDENTIALS")]
    pub registry_credentials: Option<PathBuf>,
    /// Keep the alias tags `X.Y` and `X` of REGISTRY/REPO on the newest release (repeatable).
    #[arg(
        long = "maintain-aliases",
        env = "TAGWATCH_MAINTAIN_ALIASES",
        value_delimiter = ',',
        value_name = "REGISTRY/REPO"
    )]
    pub maintain_aliases: Vec<crate::model::image::Repository>,
    /// Prometheus base URL for canary queries (`http://prometheus.monitoring:9090`).
    #[arg(long, env = "TAGWATCH_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Concurrent requests per registry [default: 4].
    #[arg(long, env = "TAGWATCH_REGISTRY_CONCURRENCY", value_parser = parse_concurrency)]
    pub registry_concurrency: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Address for /metrics, /healthz and /readyz [default: 0.0.0.0:9809].
    #[arg(long, env = "TAGWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Shared secret webhook senders present (bearer token or HMAC key); without one every
    /// webhook is refused.
    #[arg(long, env = "TAGWATCH_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// /healthz fails once the control loop has not completed a turn for this long (it turns
    /// at least every 5s) [default: 60s, 2s to 1h].
    #[arg(long, env = "TAGWATCH_LIVENESS_TIMEOUT", value_parser = parse_liveness)]
    pub liveness_timeout: Option<Duration>,
    /// How often to ask discovery whether Argo Rollouts' CRD was installed, while it is not
    /// [default: 30s, 1s to 1h].
    #[arg(long, env = "TAGWATCH_CRD_RECHECK", value_parser = parse_crd_recheck)]
    pub crd_recheck: Option<Duration>,
    /// The pod's name (the downward API's `POD_NAME`): names this replica in the Lease and Events.
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,
    /// The pod's namespace (`POD_NAMESPACE`): where the Lease lives unless configured.
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,
}

fn parse_liveness(text: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value < Duration::from_secs(2) || value > Duration::from_secs(3600) {
        return Err("the liveness timeout must be between 2s and 1h".into());
    }
    Ok(value)
}

fn parse_crd_recheck(text: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value < Duration::from_secs(1) || value > Duration::from_secs(3600) {
        return Err("the CRD recheck interval must be between 1s and 1h".into());
    }
    Ok(value)
}

/// Leader election on a `coordination.k8s.io/v1` Lease: only the leader polls and patches.
#[derive(Debug, Clone, Default, Args)]
pub struct LeaderArgs {
    /// Elect a leader among replicas (`true`/`false`) [default: true].
    #[arg(long, env = "TAGWATCH_LEADER_ELECTION", value_name = "BOOL")]
    pub leader_election: Option<bool>,
    /// Lease name [default: tagwatch].
    #[arg(long, env = "TAGWATCH_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Lease namespace [default: $POD_NAMESPACE, else the kubeconfig's namespace].
    #[arg(long, env = "TAGWATCH_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease holds without renewal [default: 15s].
    #[arg(long, env = "TAGWATCH_LEASE_DURATION", value_parser = parse_duration)]
    pub lease_duration: Option<Duration>,
    /// A leader that could not renew for this long stops writing [default: 10s].
    #[arg(long, env = "TAGWATCH_RENEW_DEADLINE", value_parser = parse_duration)]
    pub renew_deadline: Option<Duration>,
    /// Time between acquire/renew attempts [default: 2s].
    #[arg(long, env = "TAGWATCH_RETRY_PERIOD", value_parser = parse_duration)]
    pub retry_period: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct ResolveArgs {
    /// Image reference with its current tag (`ghcr.io/org/app:1.2.3`).
    pub image: String,
    /// Update policy: major, minor, patch, digest, glob:<pattern>, regex:<pattern>.
    #[arg(long, default_value = "minor")]
    pub policy: String,
    /// Prerelease channels a GA version may move to (`rc,beta`, `*`).
    #[arg(long, default_value = "")]
    pub prerelease: String,
    /// Regex every candidate tag must match.
    #[arg(long = "match")]
    pub filter: Option<String>,
    /// Alias the image tracks (as `tagwatch.dev/track`).
    #[arg(long)]
    pub track: Option<String>,
    /// Print why each tag was chosen or rejected.
    #[arg(long)]
    pub explain: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[arg(long, env = "TAGWATCH_USERNAME")]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
    /// Resolve against the tags in FILE (one per line) instead of the registry.
    #[arg(long)]
    pub tags_file: Option<PathBuf>,
    /// Release gate: platforms every candidate must cover (`linux/amd64,linux/arm64`), read
    /// from each candidate's manifest (as `tagwatch.dev/platforms`; `auto` needs a cluster).
    #[arg(long)]
    pub platforms: Option<String>,
    /// Release gate: how old a candidate must be (`24h`), by its image config's `created`; an
    /// image without one counts as created now (no listing history here).
    #[arg(long)]
    pub min_age: Option<String>,
    /// Release gate: a cosign public key (PEM) a candidate's signature must verify with
    /// (repeatable: any of them); the written image then carries its digest.
    #[arg(long = "verify-key", value_name = "FILE")]
    pub verify_keys: Vec<PathBuf>,
    /// Release gate, keyless: the signing certificate's identity (email or URI), exact.
    #[arg(long, conflicts_with = "certificate_identity_regexp")]
    pub certificate_identity: Option<String>,
    /// … or a regular expression the whole identity must match.
    #[arg(long)]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer of the signing certificate, exact.
    #[arg(long, conflicts_with = "certificate_oidc_issuer_regexp")]
    pub certificate_oidc_issuer: Option<String>,
    /// … or a regular expression the whole issuer must match.
    #[arg(long)]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Keyless: a Sigstore trusted_root.json (default: the public-good instance's, built in).
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// Keyless: accept signatures without a transparency log entry (`tlog: off`).
    #[arg(long)]
    pub insecure_ignore_tlog: bool,
}

/// `NAMESPACE/NAME` (a Deployment) or `NAMESPACE/KIND/NAME`.
fn parse_workload(text: &str) -> Result<crate::model::workload::WorkloadId, String> {
    crate::model::workload::WorkloadId::parse(text)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    crate::config::check_interval(interval)?;
    Ok(interval)
}

impl ClusterArgs {
    /// These flags over `file` over the defaults.
    pub fn resolve(&self, file: &FileConfig) -> Settings {
        // The file was validated on load; an entry that fails here cannot come from a file.
        let mut aliases: Vec<(Repository, Levels)> = file
            .aliases
            .iter()
            .filter_map(|e| config::alias_entry(e).ok())
            .collect();
        for repo in &self.maintain_aliases {
            match aliases.iter_mut().find(|(r, _)| r == repo) {
                Some(entry) => entry.1 = Levels::MAJOR_MINOR,
                None => aliases.push((repo.clone(), Levels::MAJOR_MINOR)),
            }
        }
        Settings {
            kubeconfig: self.kubeconfig.clone(),
            namespaces: if self.namespaces.is_empty() {
                file.namespaces.clone().unwrap_or_default()
            } else {
                self.namespaces.clone()
            },
            selector: self.selector.clone().or_else(|| file.selector.clone()),
            interval: self
                .interval
                .or(file.interval)
                .unwrap_or(config::DEFAULT_INTERVAL),
            registries: config::RegistrySettings::resolve(
                file,
                &self.insecure_registries,
                self.registry_concurrency,
                self.registry_credentials.clone(),
            ),
            aliases,
            prometheus_url: self
                .prometheus_url
                .clone()
                .or_else(|| file.prometheus_url.clone()),
        }
    }
}

impl LeaderArgs {
    /// These flags over the file's `leaderElection` over the defaults, checked together.
    pub fn resolve(&self, file: &LeaderSection) -> Result<LeaderSettings, ConfigError> {
        let settings = LeaderSettings {
            enabled: self.leader_election.or(file.enabled).unwrap_or(true),
            lease_name: self
                .lease_name
                .clone()
                .or_else(|| file.lease_name.clone())
                .unwrap_or_else(|| config::DEFAULT_LEASE_NAME.into()),
            lease_namespace: self
                .lease_namespace
                .clone()
                .or_else(|| file.lease_namespace.clone()),
            lease_duration: self
                .lease_duration
                .or(file.lease_duration)
                .unwrap_or(config::DEFAULT_LEASE_DURATION),
            renew_deadline: self
                .renew_deadline
                .or(file.renew_deadline)
                .unwrap_or(config::DEFAULT_RENEW_DEADLINE),
            retry_period: self
                .retry_period
                .or(file.retry_period)
                .unwrap_or(config::DEFAULT_RETRY_PERIOD),
        };
        // Flags can break what the file's validation allowed: check the merged result too.
        config::check_leader_durations(
            settings.lease_duration,
            settings.renew_deadline,
            settings.retry_period,
        )
        .map_err(|(field, problem)| ConfigError {
            file: None,
            field: format!("leader election {field}"),
            problem,
        })?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DEFAULT_CONCURRENCY, DEFAULT_INTERVAL};
    use crate::registry::ListLimits;

    fn cluster_args(argv: &[&str]) -> ClusterArgs {
        use clap::Parser;
        let mut full = vec!["tagwatch", "plan"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Plan(plan) => plan.cluster,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = FileConfig::parse(
            "namespaces: [a]\ninterval: 5m\nregistryConcurrency: 2\nregistries:\n  - host: r.io:5000\n    insecure: true\n    concurrency: 9\n",
        )
        .unwrap();
        let from_file = cluster_args(&[]).resolve(&file);
        assert_eq!(from_file.namespaces, ["a"]);
        assert_eq!(from_file.interval, Duration::from_secs(300));
        assert_eq!(from_file.registries.concurrency, 2);
        assert_eq!(from_file.registries.insecure, ["r.io:5000"]);
        assert_eq!(from_file.registries.limits, [("r.io:5000".into(), 9)]);

        let flags = cluster_args(&[
            "-n",
            "b",
            "--interval",
            "10s",
            "--registry-concurrency",
            "7",
            "--insecure-registry",
            "s.io",
        ]);
        let from_flags = flags.resolve(&file);
        assert_eq!(from_flags.namespaces, ["b"]);
        assert_eq!(from_flags.interval, Duration::from_secs(10));
        assert_eq!(from_flags.registries.concurrency, 7);
        assert_eq!(from_flags.registries.insecure, ["r.io:5000", "s.io"]);

        let defaults = cluster_args(&[]).resolve(&FileConfig::default());
        assert!(defaults.namespaces.is_empty());
        assert_eq!(defaults.interval, DEFAULT_INTERVAL);
        assert_eq!(defaults.registries.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn registry_hardening_settings_resolve_into_client_options() {
        let file = FileConfig::parse(
            "allowLinkLocal: true\nallowedRegistries: [\"*.example.com\", ghcr.io, \"r.io:5000\"]\nregistries:\n  - host: R.io:5000\n    listTimeout: 2m\n    maxTags: 500\n  - host: ghcr.io\n    maxTags: 20\n  - host: plain.io\n",
        )
        .unwrap();
        let settings = cluster_args(&[]).resolve(&file).registries;
        assert!(settings.allow_link_local);
        assert_eq!(
            settings.list_limits,
            [
                (
                    "R.io:5000".to_string(),
                    ListLimits {
                        list_timeout: Some(Duration::from_secs(120)),
                        max_tags: Some(500)
                    }
                ),
                (
                    "ghcr.io".to_string(),
                    ListLimits {
                        list_timeout: None,
                        max_tags: Some(20)
                    }
                ),
            ]
        );
        assert_eq!(settings.hosts, ["R.io:5000", "ghcr.io", "plain.io"]);
        let options = settings.client_options();
        assert!(options.allow_link_local);
        assert_eq!(
            options
                .host_limits
                .get("r.io:5000")
                .and_then(|l| l.max_tags),
            Some(500)
        );
        assert_eq!(
            options.list_timeout,
            crate::registry::client::DEFAULT_LIST_TIMEOUT
        );
        assert_eq!(options.max_tags, crate::registry::client::DEFAULT_MAX_TAGS);
        assert!(options.allowed_registries.is_some());

        let defaults = cluster_args(&[]).resolve(&FileConfig::default()).registries;
        assert!(!defaults.allow_link_local);
        assert!(defaults.allowed_registries.is_none());
        assert!(!defaults.client_options().allow_link_local);
    }

    #[test]
    fn allowed_matches_the_allow_list_globs() {
        let with = |patterns: &str| {
            let file = FileConfig::parse(&format!("allowedRegistries: {patterns}\n")).unwrap();
            cluster_args(&[]).resolve(&file).registries
        };
        let settings = with(r#"["*.example.com", ghcr.io, "registry.internal:5000"]"#);
        let cases = [
            ("ghcr.io", true),
            ("GHCR.IO", true),
            ("ghcr.io:443", true),
            ("a.example.com", true),
            ("deep.a.example.com:5000", true),
            ("example.com", false),
            ("example.com.evil.io", false),
            ("registry.internal:5000", true),
            ("registry.internal:5001", false),
            ("registry.internal", false),
            ("docker.io", false),
            ("169.254.169.254", false),
        ];
        for (host, allowed) in cases {
            assert_eq!(settings.allowed(host), allowed, "{host}");
        }
        let everything = cluster_args(&[]).resolve(&FileConfig::default()).registries;
        assert!(everything.allowed("anything.io:1"));
    }

    #[test]
    fn leader_flags_are_checked_after_merging() {
        let file = LeaderSection {
            lease_duration: Some(Duration::from_secs(15)),
            ..LeaderSection::default()
        };
        let args = LeaderArgs {
            renew_deadline: Some(Duration::from_secs(20)),
            ..LeaderArgs::default()
        };
        let err = args.resolve(&file).unwrap_err();
        assert!(err.to_string().contains("renewDeadline"), "{err}");
        let ok = LeaderArgs::default().resolve(&file).unwrap();
        assert!(ok.enabled);
        assert_eq!(ok.lease_name, "tagwatch");
        assert_eq!(ok.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "tagwatch",
            "run",
            "--namespace",
            "a",
            "-n",
            "b",
            "--interval",
            "30s",
            "--insecure-registry",
            "127.0.0.1:5000",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.cluster.namespaces, vec!["a", "b"]);
        assert_eq!(run.cluster.interval, Some(Duration::from_secs(30)));
        assert_eq!(run.listen, None);
        assert_eq!(run.leader.leader_election, None);
    }

    #[test]
    fn intervals_below_a_second_are_refused() {
        let err = Cli::try_parse_from(["tagwatch", "run", "--interval", "10ms"]).unwrap_err();
        assert!(err.to_string().contains("at least 1s"), "{err}");
    }
}
