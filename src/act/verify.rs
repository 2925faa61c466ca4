//! Signature checks of a candidate: its policies' keys and trust roots read (files, Secrets in
//! tagwatch's namespace — read at each check, so a rotated key counts without a restart), its
//! cosign signatures found in the registry, and each policy judged by
//! [`crate::plan::signatures::verify`]. Runs only for a tag not checked before: results are
//! kept with the tag's facts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use sigstore::crypto::CosignVerificationKey;

use crate::model::image::Repository;
use crate::model::verify::{KeySource, Policies, Policy};
use crate::plan::gates::SignatureCheck;
use crate::plan::signatures::{self, KeylessTrust, Trust, TrustRoot};
use crate::registry::fanout::Fanout;
use crate::registry::Credentials;

/// A key or trust root file larger than this is refused (a PEM key is a few hundred bytes, a
/// trusted_root.json a few kilobytes).
const MAX_TRUST_FILE: u64 = 1024 * 1024;
const SECRET_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured policies and where their Secrets live.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub policies: Policies,
    /// tagwatch's own namespace (`None`: Secret-held keys cannot be read).
    pub namespace: Option<String>,
    /// `aliases[].verify`: the policy each maintained repository's alias targets must pass.
    pub aliases: std::collections::HashMap<Repository, String>,
}

impl Verification {
    /// Adds the policies the operator enforces on each container's repository to its gates.
    pub fn enforce(&self, workload: &mut crate::model::workload::Workload) {
        if self.policies.is_empty() {
            return;
        }
        for container in &mut workload.containers {
            let enforced: Vec<String> = self
                .policies
                .enforced(&container.image.repository)
                .map(str::to_string)
                .collect();
            container.gates.verify.extend(enforced);
        }
    }
}

/// Judges `digest`'s signatures under each of `names`. A policy that is not configured blocks
/// (the annotation names something the operator never set up); one whose keys cannot be read,
/// or signatures the registry would not give, is undecided (blocked, read again later).
pub async fn check(
    client: Option<&Client>,
    verification: &Verification,
    fanout: &Fanout,
    repo: &Repository,
    digest: &str,
    names: &BTreeSet<String>,
    credentials: &Credentials,
) -> BTreeMap<String, SignatureCheck> {
    let mut checks = BTreeMap::new();
    if names.is_empty() {
        return checks;
    }
    let found = crate::registry::signatures::find(fanout, repo, digest, credentials).await;
    for name in names {
        let check = match (verification.policies.get(name), &found) {
            (None, _) => SignatureCheck::Unverified(format!(
                "no verification policy `{name}` is configured (verification.policies)"
            )),
            (Some(_), Err(why)) => {
                SignatureCheck::Undecided(format!("signatures cannot be read: {why}"))
            }
            (Some(policy), Ok(found)) => match trust(client, verification, policy).await {
                Err(why) => SignatureCheck::Undecided(why),
                Ok(trust) => match signatures::verify(&trust, digest, found, Timestamp::now()) {
                    Ok(who) => SignatureCheck::Verified(who),
                    Err(why) => SignatureCheck::Unverified(why),
                },
            },
        };
        match &check {
            SignatureCheck::Verified(who) => {
                tracing::info!(repository = %repo, %digest, policy = %name, %who, "signature verified")
            }
            SignatureCheck::Unverified(why) => {
                tracing::warn!(repository = %repo, %digest, policy = %name, reason = %why, "signature not verified")
            }
            SignatureCheck::Undecided(why) => {
                tracing::warn!(repository = %repo, %digest, policy = %name, reason = %why, "signature cannot be checked; the version stays blocked")
            }
        }
        checks.insert(name.clone(), check);
    }
    checks
}

/// A policy's keys and trust root, read now.
pub async fn trust(
    client: Option<&Client>,
    verification: &Verification,
    policy: &Policy,
) -> Result<Trust, String> {
    let mut keys = Vec::new();
    for source in &policy.keys {
        let pem = match source {
            KeySource::File(path) => read_file(path).await?,
            KeySource::Secret { name, key } => {
                read_secret(client, verification.namespace.as_deref(), name, key).await?
            }
        };
        let key = CosignVerificationKey::try_from_pem(&pem)
            .map_err(|e| format!("the key in {source} does not parse: {e}"))?;
        keys.push((source.to_string(), key));
    }
    let keyless = match &policy.keyless {
        None => None,
        Some(keyless) => {
            let root = match &keyless.trusted_root {
                Some(path) => signatures::parse_trusted_root(&read_file(path).await?)
                    .map_err(|e| format!("trusted root {}: {e}", path.display()))?,
                None => public_good()?,
            };
            Some(KeylessTrust {
                identities: keyless.identities.clone(),
                root,
                tlog_required: keyless.tlog_required,
            })
        }
    };
    Ok(Trust { keys, keyless })
}

fn public_good() -> Result<TrustRoot, String> {
    signatures::public_good_root().map_err(|e| format!("the built-in Sigstore trust root: {e}"))
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_TRUST_FILE {
        return Err(format!("{shown} is larger than {MAX_TRUST_FILE} bytes"));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

async fn read_secret(
    client: Option<&Client>,
    namespace: Option<&str>,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let (Some(client), Some(namespace)) = (client, namespace) else {
        return Err(format!("Secret {name}: no cluster to read it from"));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = tokio::time::timeout(SECRET_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| format!("Secret {namespace}/{name}: no answer within {SECRET_TIMEOUT:?}"))?
        .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {namespace}/{name} does not exist"))?;
    secret
        .data
        .and_then(|mut data| data.remove(key))
        .map(|bytes| bytes.0)
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key `{key}`"))
}
