//! Finding the cosign signatures of a digest: the classic `sha256-<hex>.sig` tag first (one
//! manifest GET answers it, and most signers still write it), else the OCI 1.1 referrers — the
//! Referrers API, or its tag-schema fallback `sha256-<hex>` when the registry has no such API.
//! Then one blob GET per signature payload. Everything is bounded: a registry cannot make
//! tagwatch read or verify without end.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fanout::Fanout;
use super::Credentials;
use crate::model::image::Repository;
use crate::plan::signatures::{Material, MAX_SIGNATURES};

/// cosign's signature artifact type (OCI 1.1 referrers).
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Referrer manifests read per digest.
const MAX_REFERRERS: usize = 4;
/// A simple-signing payload is a few hundred bytes; a layer claiming more is skipped.
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: Option<u64>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A signature layer: its payload still to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub payload_digest: String,
    pub signature: String,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub bundle: Option<String>,
}

/// The signature layers of a signature manifest (others are ignored).
pub fn signature_layers(bytes: &[u8]) -> Result<Vec<Layer>, String> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("a signature manifest is not JSON: {e}"))?;
    Ok(raw
        .layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_LAYER)
        .filter(|l| l.size.is_none_or(|s| s <= MAX_PAYLOAD_BYTES))
        .filter_map(|mut l| {
            Some(Layer {
                signature: l.annotations.remove(SIGNATURE_ANNOTATION)?,
                certificate: l.annotations.remove(CERTIFICATE_ANNOTATION),
                chain: l.annotations.remove(CHAIN_ANNOTATION),
                bundle: l.annotations.remove(BUNDLE_ANNOTATION),
                payload_digest: l.digest,
            })
        })
        .take(MAX_SIGNATURES)
        .collect())
}

/// The signature manifests an index of referrers lists (a registry may not have filtered).
pub fn signature_referrers(bytes: &[u8]) -> Result<Vec<String>, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("a referrers index is not JSON: {e}"))?;
    Ok(raw
        .manifests
        .into_iter()
        .filter(|m| m.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT))
        .map(|m| m.digest)
        .filter(|d| d.starts_with("sha256:"))
        .take(MAX_REFERRERS)
        .collect())
}

/// `sha256:abc` → `sha256-abc`, the tag form cosign and the referrers fallback use.
fn tag_of(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256-{hex}"))
}

/// Every cosign signature of `digest` the registry holds. An empty list is an answer (nothing
/// signed it); an error means the registry could not be read (the gate then fails closed).
pub async fn find(
    fanout: &Fanout,
    repo: &Repository,
    digest: &str,
    credentials: &Credentials,
) -> Result<Vec<Material>, String> {
    let client = fanout.client();
    let Some(tag) = tag_of(digest) else {
        return Err(format!("`{digest}` is not a sha256 digest"));
    };
    let get_manifest = |reference: String| async move {
        fanout
            .bounded(&repo.registry, || {
                client.get_manifest(repo, &reference, credentials)
            })
            .await
            .map_err(|e| e.to_string())
    };
    // A signature manifest or index that does not parse holds no signature: the version is then
    // unsigned (and checked again later), not undecidable forever.
    let mut layers = match get_manifest(format!("{tag}.sig")).await? {
        Some(manifest) => signature_layers(&manifest.bytes).unwrap_or_default(),
        None => Vec::new(),
    };
    if layers.is_empty() {
        let index = match fanout
            .bounded(&repo.registry, || {
                client.get_referrers(repo, digest, SIGNATURE_ARTIFACT, credentials)
            })
            .await
            .map_err(|e| e.to_string())?
        {
            Some(index) => Some(index),
            None => get_manifest(tag.clone()).await?,
        };
        let referrers = match index {
            Some(index) => signature_referrers(&index.bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        for referrer in referrers {
            if let Some(manifest) = get_manifest(referrer).await? {
                layers.extend(signature_layers(&manifest.bytes).unwrap_or_default());
            }
            if layers.len() >= MAX_SIGNATURES {
                break;
            }
        }
    }
    let mut found = Vec::new();
    for layer in layers.into_iter().take(MAX_SIGNATURES) {
        let payload = fanout
            .bounded(&repo.registry, || {
                client.get_blob(
                    repo,
                    &layer.payload_digest,
                    MAX_PAYLOAD_BYTES as usize,
                    credentials,
                )
            })
            .await;
        // A payload that is gone, or too large, makes that one signature unusable; a registry
        // that cannot answer makes the check undecided.
        let payload = match payload {
            Ok(Some(payload)) => payload,
            Ok(None) | Err(crate::registry::RegistryError::Malformed { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        };
        found.push(Material {
            payload: payload.to_vec(),
            signature: layer.signature,
            certificate: layer.certificate,
            chain: layer.chain,
            bundle: layer.bundle,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layers_and_referrers() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":2},
          "layers":[
            {"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:p1","size":200,
             "annotations":{"dev.cosignproject.cosign/signature":"MEUC","dev.sigstore.cosign/certificate":"PEM"}},
            {"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:p2","size":200,
             "annotations":{}},
            {"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:p3","size":99999999,
             "annotations":{"dev.cosignproject.cosign/signature":"huge"}},
            {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:l","size":1}]}"#;
        let layers = signature_layers(manifest).unwrap();
        assert_eq!(
            layers,
            vec![Layer {
                payload_digest: "sha256:p1".into(),
                signature: "MEUC".into(),
                certificate: Some("PEM".into()),
                chain: None,
                bundle: None,
            }]
        );
        assert!(signature_layers(b"<html>").is_err());
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:s","size":1,
             "artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:sbom","size":1,
             "artifactType":"application/spdx+json"}]}"#;
        assert_eq!(signature_referrers(index).unwrap(), ["sha256:s"]);
        assert_eq!(
            tag_of(&format!("sha256:{}", "a".repeat(64))),
            Some(format!("sha256-{}", "a".repeat(64)))
        );
        assert_eq!(tag_of("sha256:../../x"), None);
    }
}
