//! Pushing, re-tagging and listing through oci-client, the client tagwatch itself uses.

use anyhow::Context as _;
use http::HeaderValue;

use super::images::{self, ImageKind, ALL_MANIFEST_TYPES};
use super::Registry;

impl Registry {
    /// Pushes a real image (blobs, platform manifests, then the tagged manifest) and returns the
    /// manifest digest, checked against what the registry answers on HEAD.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        kind: ImageKind,
    ) -> anyhow::Result<String> {
        self.push_image_variant(repo, tag, kind, "").await
    }

    /// Like [`Registry::push_image`], with `variant` in the config: pushing the same tag again with
    /// another variant moves the tag to a new digest.
    pub async fn push_image_variant(
        &self,
        repo: &str,
        tag: &str,
        kind: ImageKind,
        variant: &str,
    ) -> anyhow::Result<String> {
        self.push_built(repo, tag, images::build(repo, tag, variant, kind))
            .await
    }

    /// Pushes an image of the given linux architectures (an index lists them all; a single image
    /// is the first) whose configs say `created` (RFC 3339); returns the top manifest's digest.
    pub async fn push_image_with(
        &self,
        repo: &str,
        tag: &str,
        kind: ImageKind,
        architectures: &[&str],
        created: Option<&str>,
    ) -> anyhow::Result<String> {
        let image = images::build_with(repo, tag, "", kind, architectures, created);
        self.push_built(repo, tag, image).await
    }

    async fn push_built(
        &self,
        repo: &str,
        tag: &str,
        image: images::Image,
    ) -> anyhow::Result<String> {
        let reference = self.reference(repo, tag);
        // push_blob and push_manifest_raw take no credentials: they use the ones stored per host.
        self.oci
            .store_auth_if_needed(&self.host(), &self.oci_auth())
            .await;
        for blob in &image.blobs {
            self.oci
                .push_blob(&reference, blob.bytes.clone(), &blob.digest)
                .await
                .with_context(|| format!("pushing blob {} to {repo}", blob.digest))?;
        }
        for manifest in &image.platforms {
            let by_digest = oci_client::Reference::with_digest(
                self.host(),
                repo.to_string(),
                manifest.blob.digest.clone(),
            );
            self.oci
                .push_manifest_raw(
                    &by_digest,
                    manifest.blob.bytes.clone(),
                    HeaderValue::from_static(manifest.media_type),
                )
                .await
                .with_context(|| {
                    format!(
                        "pushing platform manifest {} to {repo}",
                        manifest.blob.digest
                    )
                })?;
        }
        self.oci
            .push_manifest_raw(
                &reference,
                image.top.blob.bytes.clone(),
                HeaderValue::from_static(image.top.media_type),
            )
            .await
            .with_context(|| format!("pushing manifest {repo}:{tag}"))?;
        self.expect_digest(repo, tag, &image.top.blob.digest)
            .await?;
        Ok(image.top.blob.digest)
    }

    /// Puts the exact manifest bytes of `existing` (a tag or a digest) under `new_tag`; returns the digest.
    pub async fn tag(&self, repo: &str, existing: &str, new_tag: &str) -> anyhow::Result<String> {
        let source = if existing.contains(':') {
            oci_client::Reference::with_digest(self.host(), repo.to_string(), existing.to_string())
        } else {
            self.reference(repo, existing)
        };
        let (bytes, digest) = self
            .oci
            .pull_manifest_raw(&source, &self.oci_auth(), &ALL_MANIFEST_TYPES)
            .await
            .with_context(|| format!("reading manifest {repo}:{existing}"))?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)?
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .with_context(|| format!("manifest {repo}:{existing} names no mediaType"))?;
        self.oci
            .push_manifest_raw(
                &self.reference(repo, new_tag),
                bytes,
                HeaderValue::from_str(&media_type)?,
            )
            .await
            .with_context(|| format!("pushing manifest {repo}:{new_tag}"))?;
        self.expect_digest(repo, new_tag, &digest).await?;
        Ok(digest)
    }

    /// The repository's tags as the registry lists them (unsorted: distribution 2.8 does not sort).
    pub async fn list_tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        let response = self
            .oci
            .list_tags(
                &self.reference(repo, "latest"),
                &self.oci_auth(),
                None,
                None,
            )
            .await
            .with_context(|| format!("listing tags of {repo}"))?;
        Ok(response.tags)
    }

    pub(super) async fn expect_digest(
        &self,
        repo: &str,
        tag: &str,
        expected: &str,
    ) -> anyhow::Result<()> {
        let served = self.manifest_digest(repo, tag).await?;
        anyhow::ensure!(
            served.as_deref() == Some(expected),
            "{repo}:{tag}: the registry serves digest {served:?}, the pushed bytes hash to {expected}"
        );
        Ok(())
    }
}
