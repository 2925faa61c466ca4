//! The configuration file (`config/tagwatch.yaml`) and how it meets flags and environment.
//!
//! Precedence is flag > environment > file > default. clap already folds flags and environment
//! into one `Option` per setting, so a setting here is "what clap saw, else the file, else the
//! default". A file that does not parse or validate refuses start-up with the file, the field and
//! the problem: tagwatch never starts half-configured.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::image::Repository;
use crate::plan::alias_tags::Levels;
use crate::registry::client::{LIST_TIMEOUT_RANGE, MAX_TAGS_RANGE};
use crate::registry::{AllowList, ClientOptions, ListLimits};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9809";
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_LEASE_NAME: &str = "tagwatch";
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The file as written. Every key is optional; unknown keys are an error (a typo must not be
/// silently ignored).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    pub namespaces: Option<Vec<String>>,
    pub selector: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub log: LogSection,
    /// A docker config.json used for any registry after the workloads' pull secrets.
    pub registry_credentials: Option<PathBuf>,
    /// Concurrent requests per registry unless its entry says otherwise.
    pub registry_concurrency: Option<usize>,
    #[serde(default)]
    pub registries: Vec<RegistryEntry>,
    /// Registry hosts tagwatch may contact (globs such as `*.example.com`); absent: any.
    pub allowed_registries: Option<Vec<String>>,
    /// Allow link-local addresses (169.254.0.0/16, fe80::/10) as registry or token hosts.
    pub allow_link_local: Option<bool>,
    #[serde(default)]
    pub leader_election: LeaderSection,
    /// Repositories whose alias tags tagwatch keeps on the newest release.
    #[serde(default)]
    pub aliases: Vec<AliasEntry>,
    #[serde(default)]
    pub webhooks: WebhookSection,
    /// Where canary queries (`tagwatch.dev/canary-query`) are evaluated.
    pub prometheus_url: Option<String>,
    /// Signature verification policies (`tagwatch.dev/verify`, and those enforced on
    /// repositories).
    #[serde(default)]
    pub verification: VerificationSection,
    /// Scheduled freezes: no update starts between `from` and `to` in `namespaces` (all when
    /// empty). Rollbacks and a person's changes are never held.
    #[serde(default)]
    pub freezes: Vec<crate::plan::holds::Freeze>,
    /// At most this many workloads rolling out at once (patched and not yet complete, or in
    /// canary); the rest wait, first come first served.
    pub max_concurrent_rollouts: Option<usize>,
    /// The same limit per namespace.
    pub max_concurrent_rollouts_per_namespace: Option<usize>,
    /// Where notices of updates, canaries, rollbacks and refusals are sent.
    #[serde(default)]
    pub notifications: crate::notify::NotificationSection,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerificationSection {
    #[serde(default)]
    pub policies: Vec<crate::model::verify::PolicyEntry>,
}

impl FileConfig {
    /// The verification policy each maintained repository's alias targets must pass.
    pub fn alias_policies(&self) -> std::collections::HashMap<Repository, String> {
        self.aliases
            .iter()
            .filter_map(|entry| {
                let repo = entry.repository.parse().ok()?;
                Some((repo, entry.verify.clone()?))
            })
            .collect()
    }
}

impl VerificationSection {
    /// The checked policies (the file was validated at load: this only fails for a section
    /// built by hand).
    pub fn policies(&self) -> Result<crate::model::verify::Policies, ConfigError> {
        crate::model::verify::Policies::new(&self.policies).map_err(|(field, problem)| {
            ConfigError {
                file: None,
                field: format!("verification.{field}"),
                problem,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AliasEntry {
    /// `REGISTRY/PATH` (`registry.internal:5000/team/app`).
    pub repository: String,
    /// Any of `major`, `minor`, `latest`; default major and minor.
    pub levels: Option<Vec<String>>,
    /// A verification policy (`verification.policies[].name`): aliases move only onto versions
    /// whose signatures pass it.
    pub verify: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSection {
    /// The shared secret senders present (prefer `secretFile` to keep it out of the ConfigMap).
    pub secret: Option<String>,
    /// A file holding the secret (a mounted Secret); surrounding whitespace is ignored.
    pub secret_file: Option<PathBuf>,
    /// How long bursts of webhooks for one repository are gathered into one re-listing.
    #[serde(default, deserialize_with = "duration")]
    pub debounce: Option<Duration>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogSection {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderSection {
    pub enabled: Option<bool>,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub lease_duration: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub renew_deadline: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub retry_period: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryEntry {
    /// `host[:port]` as in image references (`ghcr.io`, `registry.internal:5000`).
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    pub concurrency: Option<usize>,
    pub credentials: Option<CredentialSource>,
    /// Deadline of one whole tag listing (every page) of a repository on this registry.
    #[serde(default, deserialize_with = "duration")]
    pub list_timeout: Option<Duration>,
    /// A repository with more tags than this fails its listing.
    pub max_tags: Option<usize>,
}

/// Where a registry's credentials come from: `secret: {namespace, name}` or `file: PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "CredentialFields")]
pub enum CredentialSource {
    /// A `kubernetes.io/dockerconfigjson` (or `dockercfg`) Secret, read with `get` at start.
    Secret(SecretRef),
    /// A docker config.json on disk (a mounted Secret).
    File(PathBuf),
}

/// The written form; YAML has no natural "one of" map, so exactly one key is checked here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFields {
    secret: Option<SecretRef>,
    file: Option<PathBuf>,
}

impl TryFrom<CredentialFields> for CredentialSource {
    type Error = String;

    fn try_from(fields: CredentialFields) -> Result<Self, String> {
        match (fields.secret, fields.file) {
            (Some(secret), None) => Ok(CredentialSource::Secret(secret)),
            (None, Some(file)) => Ok(CredentialSource::File(file)),
            _ => Err("give exactly one of `secret: {namespace, name}` or `file: PATH`".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| {
        humantime::parse_duration(&t)
            .map_err(|e| serde::de::Error::custom(format!("`{t}` is not a duration ({e})")))
    })
    .transpose()
}

/// A refused configuration: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) if self.field.is_empty() => {
                write!(f, "config file {}: {}", file.display(), self.problem)
            }
            Some(file) => write!(
                f,
                "config file {}: field `{}`: {}",
                file.display(),
                self.field,
                self.problem
            ),
            None => write!(f, "setting `{}`: {}", self.field, self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

impl FileConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            field: String::new(),
            problem: format!("cannot read it: {e}"),
        })?;
        FileConfig::parse(&text).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        // An empty file (or only comments) is a valid "all defaults".
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            return Ok(FileConfig::default());
        }
        let deserializer = serde_norway::Deserializer::from_str(text);
        let config: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = field_path(e.path());
            let message = e.into_inner().to_string();
            // serde_norway prefixes the path itself; it is already in `field`.
            let problem = match message.split_once(": ") {
                Some((head, rest)) if !head.is_empty() && field.starts_with(head) => {
                    rest.to_string()
                }
                _ => message,
            };
            ConfigError {
                file: None,
                field,
                problem,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |field: &str, problem: String| {
            Err(ConfigError {
                file: None,
                field: field.into(),
                problem,
            })
        };
        if let Some(interval) = self.interval {
            check_interval(interval).or_else(|p| refuse("interval", p))?;
        }
        if let Some(level) = &self.log.level {
            check_log_level(level).or_else(|p| refuse("log.level", p))?;
        }
        if self.registry_concurrency == Some(0) {
            return refuse("registryConcurrency", "must be at least 1".into());
        }
        if let Some(namespaces) = &self.namespaces {
            if let Some(i) = namespaces.iter().position(|n| n.trim().is_empty()) {
                return refuse(&format!("namespaces[{i}]"), "is empty".into());
            }
        }
        let mut hosts = BTreeSet::new();
        for (i, entry) in self.registries.iter().enumerate() {
            let host = entry.host.trim();
            if host.is_empty() || host.contains('/') || host.contains("://") {
                return refuse(
                    &format!("registries[{i}].host"),
                    format!("`{}` is not a registry host[:port]", entry.host),
                );
            }
            if !hosts.insert(host.to_ascii_lowercase()) {
                return refuse(
                    &format!("registries[{i}].host"),
                    format!("`{host}` is listed twice"),
                );
            }
            if entry.concurrency == Some(0) {
                return refuse(
                    &format!("registries[{i}].concurrency"),
                    "must be at least 1".into(),
                );
            }
            if let Some(timeout) = entry.list_timeout {
                let (min, max) = LIST_TIMEOUT_RANGE;
                if timeout < min || timeout > max {
                    return refuse(
                        &format!("registries[{i}].listTimeout"),
                        format!(
                            "must be between {} and {} (got {})",
                            humantime::format_duration(min),
                            humantime::format_duration(max),
                            humantime::format_duration(timeout)
                        ),
                    );
                }
            }
            if let Some(max_tags) = entry.max_tags {
                let (min, max) = MAX_TAGS_RANGE;
                if max_tags < min || max_tags > max {
                    return refuse(
                        &format!("registries[{i}].maxTags"),
                        format!("must be between {min} and {max} (got {max_tags})"),
                    );
                }
            }
        }
        if let Some(patterns) = &self.allowed_registries {
            if patterns.is_empty() {
                return refuse(
                    "allowedRegistries",
                    "is empty, which would allow no registry: omit it to allow every registry"
                        .into(),
                );
            }
            if let Err((i, problem)) = AllowList::new(patterns) {
                return refuse(&format!("allowedRegistries[{i}]"), problem);
            }
        }
        for (i, freeze) in self.freezes.iter().enumerate() {
            if let (Some(from), Some(to)) = (freeze.from, freeze.to) {
                if to <= from {
                    return refuse(&format!("freezes[{i}].to"), "must be after `from`".into());
                }
            }
            if freeze.from.is_none() || freeze.to.is_none() {
                return refuse(
                    &format!("freezes[{i}]"),
                    "needs `from` and `to` (RFC 3339); for an open-ended freeze use `tagwatch freeze`"
                        .into(),
                );
            }
        }
        if self.max_concurrent_rollouts == Some(0) {
            return refuse("maxConcurrentRollouts", "must be at least 1".into());
        }
        if self.max_concurrent_rollouts_per_namespace == Some(0) {
            return refuse(
                "maxConcurrentRolloutsPerNamespace",
                "must be at least 1".into(),
            );
        }
        let policies = self.verification.policies()?;
        for (i, entry) in self.aliases.iter().enumerate() {
            if let Some(name) = &entry.verify {
                if policies.get(name).is_none() {
                    return refuse(
                        &format!("aliases[{i}].verify"),
                        format!("`{name}` is not a policy of verification.policies"),
                    );
                }
            }
            alias_entry(entry).map_err(|(field, problem)| ConfigError {
                file: None,
                field: format!("aliases[{i}].{field}"),
                problem,
            })?;
        }
        if self.webhooks.secret.is_some() && self.webhooks.secret_file.is_some() {
            return refuse(
                "webhooks.secretFile",
                "give `secret` or `secretFile`, not both".into(),
            );
        }
        if self
            .webhooks
            .secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return refuse("webhooks.secret", "is empty".into());
        }
        self.notifications
            .validate()
            .or_else(|(field, problem)| refuse(&format!("notifications.{field}"), problem))?;
        let leader = &self.leader_election;
        check_leader_durations(
            leader.lease_duration.unwrap_or(DEFAULT_LEASE_DURATION),
            leader.renew_deadline.unwrap_or(DEFAULT_RENEW_DEADLINE),
            leader.retry_period.unwrap_or(DEFAULT_RETRY_PERIOD),
        )
        .map_err(|(field, problem)| ConfigError {
            file: None,
            field: format!("leaderElection.{field}"),
            problem,
        })
    }
}

pub(crate) fn alias_entry(
    entry: &AliasEntry,
) -> Result<(Repository, Levels), (&'static str, String)> {
    let repo: Repository = entry
        .repository
        .parse()
        .map_err(|e: crate::model::image::ImageRefError| ("repository", e.to_string()))?;
    let levels = match &entry.levels {
        None => Levels::MAJOR_MINOR,
        Some(list) => Levels::parse(&list.join(",")).map_err(|e| ("levels", e))?,
    };
    Ok((repo, levels))
}

/// `registries[1].host` rather than serde_path_to_error's `registries[1].host` with a leading `.`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        String::new()
    } else {
        text
    }
}

pub fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < Duration::from_secs(1) {
        return Err("the interval must be at least 1s".into());
    }
    if interval > crate::plan::schedule::MAX_INTERVAL {
        return Err("the interval must be at most 24h".into());
    }
    Ok(())
}

fn check_log_level(level: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("`{level}` is not a log level or filter ({e})"))
}

/// Losing the lease must stop writes before another replica can take over: a leader gives up
/// after `renewDeadline` without a renewal, while the others wait a full `leaseDuration`.
pub(crate) fn check_leader_durations(
    lease: Duration,
    renew: Duration,
    retry: Duration,
) -> Result<(), (&'static str, String)> {
    if lease < Duration::from_secs(1) {
        return Err(("leaseDuration", "must be at least 1s".into()));
    }
    if renew >= lease {
        return Err((
            "renewDeadline",
            format!(
                "must be shorter than leaseDuration ({} >= {})",
                humantime::format_duration(renew),
                humantime::format_duration(lease)
            ),
        ));
    }
    if retry.is_zero() || retry >= renew {
        return Err((
            "retryPeriod",
            format!(
                "must be above zero and shorter than renewDeadline ({} vs {})",
                humantime::format_duration(retry),
                humantime::format_duration(renew)
            ),
        ));
    }
    Ok(())
}

/// Everything the cluster commands need, after flags, environment, file and defaults met.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
    pub interval: Duration,
    pub registries: RegistrySettings,
    /// Repositories whose alias tags are maintained, with their levels.
    pub aliases: Vec<(Repository, Levels)>,
    pub prometheus_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistrySettings {
    pub insecure: Vec<String>,
    pub concurrency: usize,
    /// Per-host concurrency overrides.
    pub limits: Vec<(String, usize)>,
    /// The docker config.json given for every registry.
    pub credentials_file: Option<PathBuf>,
    /// Per-host credentials.
    pub credentials: Vec<(String, CredentialSource)>,
    /// Every host named in `registries[]` or `--insecure-registry`: these keep their own
    /// `registry` metric label value.
    pub hosts: Vec<String>,
    /// Per-host listing bounds (`listTimeout`, `maxTags`).
    pub list_limits: Vec<(String, ListLimits)>,
    pub allow_link_local: bool,
    /// `None`: every registry may be contacted.
    pub allowed_registries: Option<AllowList>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    pub enabled: bool,
    pub lease_name: String,
    /// None: the pod's namespace, else the kubeconfig's.
    pub lease_namespace: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl RegistrySettings {
    /// The file's per-registry entries with the flags' values: flags add plain-HTTP hosts to
    /// the file's (a registry is a keyed entry, not a single value) and win for the rest.
    pub fn resolve(
        file: &FileConfig,
        insecure_flags: &[String],
        concurrency: Option<usize>,
        credentials_file: Option<PathBuf>,
    ) -> RegistrySettings {
        let mut insecure: Vec<String> = file
            .registries
            .iter()
            .filter(|r| r.insecure)
            .map(|r| r.host.trim().to_string())
            .collect();
        for host in insecure_flags {
            if !insecure.contains(host) {
                insecure.push(host.clone());
            }
        }
        let mut hosts: Vec<String> = file
            .registries
            .iter()
            .map(|r| r.host.trim().to_string())
            .chain(insecure.iter().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        RegistrySettings {
            insecure,
            concurrency: concurrency
                .or(file.registry_concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY)
                .max(1),
            limits: file
                .registries
                .iter()
                .filter_map(|r| Some((r.host.trim().to_string(), r.concurrency?)))
                .collect(),
            credentials_file: credentials_file.or_else(|| file.registry_credentials.clone()),
            credentials: file
                .registries
                .iter()
                .filter_map(|r| Some((r.host.trim().to_string(), r.credentials.clone()?)))
                .collect(),
            hosts,
            list_limits: file
                .registries
                .iter()
                .filter(|r| r.list_timeout.is_some() || r.max_tags.is_some())
                .map(|r| {
                    (
                        r.host.trim().to_string(),
                        ListLimits {
                            list_timeout: r.list_timeout,
                            max_tags: r.max_tags,
                        },
                    )
                })
                .collect(),
            allow_link_local: file.allow_link_local.unwrap_or(false),
            // Validated on load; patterns that fail here cannot come from a file.
            allowed_registries: file
                .allowed_registries
                .as_ref()
                .and_then(|patterns| AllowList::new(patterns).ok()),
        }
    }

    /// Whether `host` (`host[:port]` as in image references) may be contacted: always without
    /// `allowedRegistries`, else when one of its globs matches.
    pub fn allowed(&self, host: &str) -> bool {
        self.allowed_registries
            .as_ref()
            .is_none_or(|list| list.allows(host))
    }

    /// The registry client's options from these settings.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            insecure_registries: self.insecure.clone(),
            host_limits: self
                .list_limits
                .iter()
                .map(|(host, limits)| (host.to_ascii_lowercase(), *limits))
                .collect(),
            allow_link_local: self.allow_link_local,
            allowed_registries: self.allowed_registries.clone(),
            ..ClientOptions::default()
        }
    }
}

/// The listen address: flag/env, else file, else the default (9809: clear of Prometheus' 9090).
pub fn listen(flag: Option<SocketAddr>, file: &FileConfig) -> SocketAddr {
    flag.or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9809)))
}

/// The webhook secret: flag/env, else the file's `secret` or `secretFile`. None: webhooks refuse
/// every request (authentication is never off).
pub fn webhook_secret(
    flag: Option<&str>,
    file: &FileConfig,
    source: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(secret) = flag.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(Some(secret.to_string()));
    }
    if let Some(secret) = &file.webhooks.secret {
        return Ok(Some(secret.trim().to_string()));
    }
    let Some(path) = &file.webhooks.secret_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: source.map(Path::to_path_buf),
        field: "webhooks.secretFile".into(),
        problem: format!("cannot read {}: {e}", path.display()),
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError {
            file: source.map(Path::to_path_buf),
            field: "webhooks.secretFile".into(),
            problem: format!("{} is empty", path.display()),
        });
    }
    Ok(Some(secret.to_string()))
}

pub fn log_format(flag: Option<LogFormat>, file: &FileConfig) -> LogFormat {
    flag.or(file.log.format).unwrap_or(LogFormat::Text)
}

pub fn log_level(flag: Option<&str>, file: &FileConfig) -> String {
    flag.map(str::to_string)
        .or_else(|| file.log.level.clone())
        .unwrap_or_else(|| "info".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused(text: &str) -> ConfigError {
        FileConfig::parse(text).unwrap_err()
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../config/tagwatch.yaml");
        let config = FileConfig::parse(text).unwrap();
        assert_eq!(config.interval, Some(Duration::from_secs(60)));
        assert_eq!(config.leader_election.enabled, Some(true));
        assert!(!config.registries.is_empty());
    }

    #[test]
    fn a_full_file_parses() {
        let config = FileConfig::parse(
            r#"
namespaces: [apps, web]
selector: team=web
interval: 30s
listen: 127.0.0.1:9000
log: {format: json, level: "tagwatch=debug"}
registryConcurrency: 2
registries:
  - host: registry.internal:5000
    insecure: true
    concurrency: 8
    credentials:
      secret: {namespace: tagwatch, name: internal}
  - host: ghcr.io
    credentials:
      file: /etc/tagwatch/ghcr.json
leaderElection:
  enabled: false
  leaseName: tw
  leaseNamespace: ops
  leaseDuration: 20s
  renewDeadline: 15s
  retryPeriod: 3s
"#,
        )
        .unwrap();
        assert_eq!(config.namespaces.as_deref().unwrap(), ["apps", "web"]);
        assert_eq!(config.log.format, Some(LogFormat::Json));
        assert_eq!(
            config.registries[0].credentials,
            Some(CredentialSource::Secret(SecretRef {
                namespace: "tagwatch".into(),
                name: "internal".into()
            }))
        );
        assert_eq!(
            config.registries[1].credentials,
            Some(CredentialSource::File("/etc/tagwatch/ghcr.json".into()))
        );
        assert_eq!(
            config.leader_election.renew_deadline,
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(
            FileConfig::parse("# nothing\n\n").unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn bad_files_name_the_field_and_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            ("intervall: 1m\n", "intervall", "unknown field `intervall`"),
            ("interval: soon\n", "interval", "`soon` is not a duration"),
            ("interval: 10ms\n", "interval", "at least 1s"),
            ("interval: 25h\n", "interval", "at most 24h"),
            (
                "leaderElection:\n  leaseDuration: 10s\n  renewDeadline: 10s\n",
                "leaderElection.renewDeadline",
                "shorter than leaseDuration",
            ),
            (
                "leaderElection:\n  retryPeriod: 1m\n",
                "leaderElection.retryPeriod",
                "shorter than renewDeadline",
            ),
            (
                "leaderElection:\n  enabled: maybe\n",
                "leaderElection.enabled",
                "",
            ),
            (
                "registries:\n  - host: a.io\n  - host: https://b.io\n",
                "registries[1].host",
                "not a registry host",
            ),
            (
                "registries:\n  - host: a.io\n  - host: A.io\n",
                "registries[1].host",
                "listed twice",
            ),
            (
                "registries:\n  - host: a.io\n    credentials: {vault: x}\n",
                "registries[0].credentials.vault",
                "unknown field `vault`",
            ),
            (
                "registries:\n  - host: a.io\n    concurrency: 0\n",
                "registries[0].concurrency",
                "at least 1",
            ),
            ("log:\n  format: xml\n", "log.format", "unknown variant `xml`"),
            ("listen: nine\n", "listen", ""),
            (
                "aliases:\n  - repository: r.io/app:1\n",
                "aliases[0].repository",
                "no tag",
            ),
            (
                "aliases:\n  - repository: r.io/app\n    levels: [patch]\n",
                "aliases[0].levels",
                "`patch`",
            ),
            (
                "webhooks:\n  secret: a\n  secretFile: /b\n",
                "webhooks.secretFile",
                "not both",
            ),
            (
                "registries:\n  - host: a.io\n    credentials: {file: /a, secret: {namespace: n, name: s}}\n",
                "registries[0].credentials",
                "exactly one of",
            ),
            ("namespaces: apps\n", "namespaces", ""),
            (
                "registries:\n  - host: a.io\n    listTimeout: soon\n",
                "registries[0].listTimeout",
                "`soon` is not a duration",
            ),
            (
                "registries:\n  - host: a.io\n    listTimeout: 500ms\n",
                "registries[0].listTimeout",
                "between 1s and 1h",
            ),
            (
                "registries:\n  - host: a.io\n  - host: b.io\n    listTimeout: 2h\n",
                "registries[1].listTimeout",
                "between 1s and 1h",
            ),
            (
                "registries:\n  - host: a.io\n    maxTags: 0\n",
                "registries[0].maxTags",
                "between 1 and 10000000",
            ),
            (
                "registries:\n  - host: a.io\n    maxTags: 20000000\n",
                "registries[0].maxTags",
                "between 1 and 10000000",
            ),
            ("registries:\n  - host: a.io\n    maxTags: -1\n", "registries[0].maxTags", ""),
            ("allowedRegistries: []\n", "allowedRegistries", "omit it"),
            (
                "allowedRegistries: [ghcr.io, \"https://x.io\"]\n",
                "allowedRegistries[1]",
                "no scheme",
            ),
            ("allowedRegistries: ghcr.io\n", "allowedRegistries", ""),
            ("allowLinkLocal: sometimes\n", "allowLinkLocal", ""),
            (
                "notifications:\n  sinks:\n    - {name: a, type: email, url: {file: /u}}\n",
                "notifications.sinks[0].type",
                "unknown variant `email`",
            ),
            (
                "notifications:\n  sinks:\n    - {name: a, type: slack, url: {file: /u}, events: [deploy]}\n",
                "notifications.sinks[0].events[0]",
                "not an event",
            ),
            (
                "notifications:\n  sinks:\n    - {name: a, type: slack, url: {file: /u}}\n    - {name: a, type: teams, url: {file: /v}}\n",
                "notifications.sinks[1].name",
                "twice",
            ),
        ];
        for (text, field, problem) in cases {
            let err = refused(text);
            assert_eq!(&err.field, field, "{text:?}: {err}");
            assert!(err.problem.contains(problem), "{text:?}: {err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tagwatch.yaml");
        std::fs::write(&path, "leaderElection:\n  leaseName: [x]\n").unwrap();
        let message = FileConfig::load(&path).unwrap_err().to_string();
        assert!(message.starts_with("config file "), "{message}");
        assert!(message.contains("tagwatch.yaml"), "{message}");
        assert!(
            message.contains("field `leaderElection.leaseName`"),
            "{message}"
        );
        let missing = FileConfig::load(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
    }

    #[test]
    fn listen_defaults_clear_of_prometheus() {
        assert_eq!(listen(None, &FileConfig::default()).port(), 9809);
        assert_eq!(DEFAULT_LISTEN.parse::<SocketAddr>().unwrap().port(), 9809);
    }
}
