//! Cosign signatures pushed the two ways cosign does: the `sha256-<hex>.sig` tag, and an OCI 1.1
//! referrer (`subject`) with the referrers tag schema fallback, since distribution 2.8 has no
//! Referrers API.

use anyhow::Context as _;
use http::HeaderValue;
use reqwest::StatusCode;

use super::images::{sha256_digest, ALL_MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST};
use super::Registry;
use crate::cosign::{self, CosignSignature, Descriptor, SignatureManifest};

impl Registry {
    /// The exact bytes and Content-Type of manifest `repo:reference` (a tag or a digest), `None`
    /// if unknown. Plain HTTP with every manifest type in `Accept`: not in `requests()`.
    pub async fn manifest_bytes(
        &self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let request = self
            .http
            .get(&url)
            .header(http::header::ACCEPT, ALL_MANIFEST_TYPES.join(", "));
        let response = self.authorize(request, repo, &["pull"])?.send().await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let media_type = response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                Ok(Some((response.bytes().await?.to_vec(), media_type)))
            }
            status => anyhow::bail!("GET {url} answered {status}"),
        }
    }

    /// The descriptor (media type, digest, size) of manifest `repo:reference`, e.g. to pass an
    /// image as the `subject` of [`Registry::push_signature_referrer`].
    pub async fn manifest_descriptor(
        &self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Descriptor> {
        let (bytes, media_type) = self
            .manifest_bytes(repo, reference)
            .await?
            .with_context(|| format!("no manifest {repo}:{reference}"))?;
        Ok(Descriptor::of(&media_type, &bytes))
    }

    /// cosign's classic layout: one OCI image manifest under the tag `sha256-<hex>.sig` (see
    /// [`cosign::signature_tag`]) with a small image config and one layer per signature (the
    /// payload blob, annotated with signature, certificate, chain, bundle). Replaces what the tag
    /// held, so pass every signature at once. Returns the signature manifest's digest.
    pub async fn push_signature_tag(
        &self,
        repo: &str,
        image_digest: &str,
        signatures: &[CosignSignature],
    ) -> anyhow::Result<String> {
        let manifest = cosign::signature_tag_manifest(signatures);
        let tag = cosign::signature_tag(image_digest);
        self.push_signature_manifest(repo, &tag, &manifest, OCI_MANIFEST)
            .await
    }

    /// The OCI 1.1 way (`cosign sign --registry-referrers-mode=oci-1-1`): an OCI image manifest with
    /// `artifactType` [`cosign::SIGNATURE_ARTIFACT_TYPE`], the empty config, the signature layers and
    /// `subject` = the image, pushed by digest. Then the referrers tag schema fallback: the OCI index
    /// under `sha256-<hex>` (see [`cosign::referrers_tag`]) gets the referrer's descriptor appended.
    /// Returns the referrer manifest's digest.
    pub async fn push_signature_referrer(
        &self,
        repo: &str,
        image_digest: &str,
        image_manifest_size: u64,
        image_media_type: &str,
        signatures: &[CosignSignature],
    ) -> anyhow::Result<String> {
        let subject = Descriptor {
            media_type: image_media_type.to_string(),
            digest: image_digest.to_string(),
            size: image_manifest_size,
        };
        let manifest = cosign::referrer_manifest(&subject, signatures);
        let digest = sha256_digest(&manifest.bytes);
        self.push_signature_manifest(repo, &digest, &manifest, OCI_MANIFEST)
            .await?;

        let fallback_tag = cosign::referrers_tag(image_digest);
        let mut listed = match self.manifest_bytes(repo, &fallback_tag).await? {
            Some((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|index| index["manifests"].as_array().cloned())
                .with_context(|| format!("{repo}:{fallback_tag} is not an index"))?,
            None => Vec::new(),
        };
        if !listed.iter().any(|d| d["digest"] == digest.as_str()) {
            listed.extend(cosign::referrer_descriptor(OCI_MANIFEST, &manifest.bytes));
        }
        let index = SignatureManifest {
            blobs: Vec::new(),
            bytes: cosign::index(listed),
        };
        self.push_signature_manifest(repo, &fallback_tag, &index, OCI_INDEX)
            .await?;
        Ok(digest)
    }

    /// Pushes the blobs, then the manifest under `reference` (a tag, or its own digest).
    async fn push_signature_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &SignatureManifest,
        media_type: &'static str,
    ) -> anyhow::Result<String> {
        let target = if reference.starts_with("sha256:") {
            oci_client::Reference::with_digest(self.host(), repo.to_string(), reference.to_string())
        } else {
            self.reference(repo, reference)
        };
        self.oci
            .store_auth_if_needed(&self.host(), &self.oci_auth())
            .await;
        for blob in &manifest.blobs {
            let digest = sha256_digest(blob);
            self.oci
                .push_blob(&target, blob.clone(), &digest)
                .await
                .with_context(|| format!("pushing blob {digest} to {repo}"))?;
        }
        self.oci
            .push_manifest_raw(
                &target,
                manifest.bytes.clone(),
                HeaderValue::from_static(media_type),
            )
            .await
            .with_context(|| format!("pushing manifest {repo}:{reference}"))?;
        let digest = sha256_digest(&manifest.bytes);
        self.expect_digest(repo, reference, &digest).await?;
        Ok(digest)
    }
}
