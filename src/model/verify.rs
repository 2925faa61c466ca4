//! Signature verification policies: what a workload's `tagwatch.dev/verify` names, and what the
//! operator's `verification.policies[]` says a signature must prove. Parsed and checked here;
//! their keys and trust roots are read by [`crate::act::verify`], signatures judged by
//! [`crate::plan::signatures`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::image::Repository;

/// A policy's name as written in `tagwatch.dev/verify` (DNS-label-like, so it reads well in
/// Events and metric-free logs).
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a policy name (lowercase letters, digits, `-`, `_`; at most 63)"
        ))
    }
}

/// `tagwatch.dev/verify: release, team-keys`: every named policy must pass.
pub fn parse_names(text: &str) -> Result<BTreeSet<String>, String> {
    let names: BTreeSet<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err("names no verification policy".into());
    }
    for name in &names {
        check_name(name)?;
    }
    Ok(names)
}

/// One entry of `verification.policies[]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyEntry {
    pub name: String,
    /// `REGISTRY/PATH` globs (`registry.example.com/team/*`) whose images must pass this policy
    /// whatever their workloads' annotations say.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Public keys (cosign.pub: ECDSA P-256/P-384, Ed25519 or RSA); a signature by any passes.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    pub keyless: Option<KeylessEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyEntry {
    /// A PEM file (a mounted Secret or ConfigMap).
    pub file: Option<PathBuf>,
    /// A Secret in tagwatch's own namespace, read when a new version is checked (so a rotated
    /// key counts without a restart).
    pub secret: Option<String>,
    /// The Secret's key; default `cosign.pub`.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessEntry {
    /// Who may sign; a certificate matching any entry passes.
    pub identities: Vec<IdentityEntry>,
    /// A Sigstore `trusted_root.json` (Fulcio CAs and Rekor keys, as `cosign --trusted-root`
    /// reads); default: the Sigstore public-good instance's, built in.
    pub trusted_root: Option<PathBuf>,
    /// `required` (default): the signature must come with a Rekor entry signed by a log of the
    /// trust root; `off`: no transparency log is consulted.
    pub tlog: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentityEntry {
    /// The certificate's identity (an email or a URI such as a workflow ref), exact.
    pub subject: Option<String>,
    /// … or a regular expression it must match whole.
    #[serde(rename = "subjectRegExp")]
    pub subject_regexp: Option<String>,
    /// The OIDC issuer, exact …
    pub issuer: Option<String>,
    /// … or a regular expression it must match whole.
    #[serde(rename = "issuerRegExp")]
    pub issuer_regexp: Option<String>,
}

/// A checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub repositories: Vec<glob::Pattern>,
    pub keys: Vec<KeySource>,
    pub keyless: Option<KeylessPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Secret { name: String, key: String },
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "file {}", path.display()),
            KeySource::Secret { name, key } => write!(f, "Secret {name} key {key}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeylessPolicy {
    pub identities: Vec<Identity>,
    pub trusted_root: Option<PathBuf>,
    pub tlog_required: bool,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: Matcher,
    pub issuer: Matcher,
}

/// Exact text or a whole-string regular expression.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Pattern(regex::Regex),
}

impl Matcher {
    fn new(exact: Option<&str>, pattern: Option<&str>, what: &str) -> Result<Matcher, String> {
        match (exact, pattern) {
            (Some(exact), None) if !exact.is_empty() => Ok(Matcher::Exact(exact.to_string())),
            (None, Some(pattern)) => regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(Matcher::Pattern)
                .map_err(|e| format!("`{pattern}` is not a regular expression: {e}")),
            _ => Err(format!("give exactly one of `{what}` or `{what}RegExp`")),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(exact) => exact == text,
            Matcher::Pattern(pattern) => pattern.is_match(text),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(exact) => f.write_str(exact),
            Matcher::Pattern(pattern) => write!(f, "/{}/", pattern.as_str()),
        }
    }
}

impl Identity {
    pub fn new(
        subject: Option<&str>,
        subject_regexp: Option<&str>,
        issuer: Option<&str>,
        issuer_regexp: Option<&str>,
    ) -> Result<Identity, String> {
        Ok(Identity {
            subject: Matcher::new(subject, subject_regexp, "subject")?,
            issuer: Matcher::new(issuer, issuer_regexp, "issuer")?,
        })
    }
}

impl Policy {
    /// Checks one entry; the error names the field (relative to the entry) and the problem.
    pub fn from_entry(entry: &PolicyEntry) -> Result<Policy, (String, String)> {
        check_name(&entry.name).map_err(|e| ("name".to_string(), e))?;
        let repositories = entry
            .repositories
            .iter()
            .enumerate()
            .map(|(i, glob)| {
                glob::Pattern::new(glob.trim()).map_err(|e| {
                    (
                        format!("repositories[{i}]"),
                        format!("`{glob}` is not a glob: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = entry
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| match (&key.file, &key.secret) {
                (Some(file), None) if key.key.is_none() => Ok(KeySource::File(file.clone())),
                (None, Some(name)) if !name.trim().is_empty() => Ok(KeySource::Secret {
                    name: name.trim().to_string(),
                    key: key.key.clone().unwrap_or_else(|| "cosign.pub".into()),
                }),
                _ => Err((
                    format!("keys[{i}]"),
                    "give `file: PATH` or `secret: NAME` (with an optional `key`)".to_string(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keyless = match &entry.keyless {
            None => None,
            Some(keyless) => {
                if keyless.identities.is_empty() {
                    return Err((
                        "keyless.identities".into(),
                        "lists no identity: anyone with a certificate would pass".into(),
                    ));
                }
                let identities = keyless
                    .identities
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        Identity::new(
                            id.subject.as_deref(),
                            id.subject_regexp.as_deref(),
                            id.issuer.as_deref(),
                            id.issuer_regexp.as_deref(),
                        )
                        .map_err(|e| (format!("keyless.identities[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let tlog_required = match keyless.tlog.as_deref().map(str::trim) {
                    None | Some("required") => true,
                    Some("off") => false,
                    Some(other) => {
                        return Err((
                            "keyless.tlog".into(),
                            format!("`{other}` is not `required` or `off`"),
                        ))
                    }
                };
                Some(KeylessPolicy {
                    identities,
                    trusted_root: keyless.trusted_root.clone(),
                    tlog_required,
                })
            }
        };
        if keys.is_empty() && keyless.is_none() {
            return Err((
                "keys".into(),
                "a policy needs `keys` or `keyless`: with neither nothing could pass".into(),
            ));
        }
        Ok(Policy {
            name: entry.name.clone(),
            repositories,
            keys,
            keyless,
        })
    }
}

/// Every configured policy, by name.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    by_name: BTreeMap<String, Policy>,
}

impl Policies {
    /// Checks every entry; the error names the field (`policies[1].keys[0]`) and the problem.
    pub fn new(entries: &[PolicyEntry]) -> Result<Policies, (String, String)> {
        let mut by_name = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let policy = Policy::from_entry(entry)
                .map_err(|(field, problem)| (format!("policies[{i}].{field}"), problem))?;
            if by_name.insert(policy.name.clone(), policy).is_some() {
                return Err((
                    format!("policies[{i}].name"),
                    format!("`{}` is used twice", entry.name),
                ));
            }
        }
        Ok(Policies { by_name })
    }

    pub fn from_policies(policies: impl IntoIterator<Item = Policy>) -> Policies {
        Policies {
            by_name: policies.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The policies the operator enforces on `repo`: a workload's annotations cannot take them
    /// off.
    pub fn enforced<'a>(&'a self, repo: &'a Repository) -> impl Iterator<Item = &'a str> + 'a {
        let text = repo.to_string();
        self.by_name
            .values()
            .filter(move |p| p.repositories.iter().any(|g| g.matches(&text)))
            .map(|p| p.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries(yaml: &str) -> Vec<PolicyEntry> {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_names(" release, team-keys ,").unwrap(),
            BTreeSet::from(["release".to_string(), "team-keys".to_string()])
        );
        assert!(parse_names("").is_err());
        assert!(parse_names("Release").is_err());
        assert!(parse_names("a b").is_err());
    }

    #[test]
    fn policies_are_checked() {
        let ok = entries(
            "- name: release\n  repositories: ['reg.io/team/*']\n  keys: [{file: /k.pub}, {secret: keys}]\n\
             - name: ci\n  keyless:\n    identities: [{subjectRegExp: 'https://github.com/org/.*', issuer: https://token.actions.githubusercontent.com}]\n    tlog: 'off'\n",
        );
        let policies = Policies::new(&ok).unwrap();
        let release = policies.get("release").unwrap();
        assert_eq!(
            release.keys[1],
            KeySource::Secret {
                name: "keys".into(),
                key: "cosign.pub".into()
            }
        );
        let ci = policies.get("ci").unwrap().keyless.as_ref().unwrap();
        assert!(!ci.tlog_required);
        assert!(ci.identities[0]
            .subject
            .matches("https://github.com/org/repo/.github/workflows/r.yml@refs/heads/main"));
        assert!(!ci.identities[0]
            .subject
            .matches("https://github.com/other/x"));
        let team: Repository = "reg.io/team/app".parse().unwrap();
        let other: Repository = "reg.io/other/app".parse().unwrap();
        assert_eq!(policies.enforced(&team).collect::<Vec<_>>(), ["release"]);
        assert_eq!(policies.enforced(&other).count(), 0);

        #[rustfmt::skip]
        let bad: &[(&str, &str)] = &[
            ("- name: a\n", "policies[0].keys"),
            ("- name: A\n  keys: [{file: /k}]\n", "policies[0].name"),
            ("- name: a\n  keys: [{file: /k, secret: s}]\n", "policies[0].keys[0]"),
            ("- name: a\n  keys: [{}]\n", "policies[0].keys[0]"),
            ("- name: a\n  keyless: {identities: []}\n", "policies[0].keyless.identities"),
            ("- name: a\n  keyless: {identities: [{subject: x}]}\n", "policies[0].keyless.identities[0]"),
            ("- name: a\n  keyless: {identities: [{subject: x, subjectRegExp: y, issuer: i}]}\n", "policies[0].keyless.identities[0]"),
            ("- name: a\n  keyless: {identities: [{subjectRegExp: '(', issuer: i}]}\n", "policies[0].keyless.identities[0]"),
            ("- name: a\n  keyless: {identities: [{subject: x, issuer: i}], tlog: maybe}\n", "policies[0].keyless.tlog"),
            ("- name: a\n  repositories: ['[']\n  keys: [{file: /k}]\n", "policies[0].repositories[0]"),
            ("- name: a\n  keys: [{file: /k}]\n- name: a\n  keys: [{file: /k}]\n", "policies[1].name"),
        ];
        for (yaml, field) in bad {
            let err = Policies::new(&entries(yaml)).unwrap_err();
            assert_eq!(err.0, *field, "{yaml}: {}", err.1);
        }
    }
}
