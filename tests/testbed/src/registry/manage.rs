//! Reading digests and deleting, with plain HTTP where oci-client has no call for it.

use anyhow::Context as _;
use reqwest::StatusCode;

use super::images::ALL_MANIFEST_TYPES;
use super::token::Access;
use super::{Auth, Registry};

impl Registry {
    /// The digest `repo:tag` resolves to (HEAD with all four manifest types in `Accept`), `None` if unknown.
    pub async fn manifest_digest(&self, repo: &str, tag: &str) -> anyhow::Result<Option<String>> {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.url());
        let request = self
            .http
            .head(&url)
            .header(http::header::ACCEPT, ALL_MANIFEST_TYPES.join(", "));
        let response = self.authorize(request, repo, &["pull"])?.send().await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let digest = response
                    .headers()
                    .get("Docker-Content-Digest")
                    .and_then(|v| v.to_str().ok())
                    .with_context(|| {
                        format!("HEAD {url} answered without Docker-Content-Digest")
                    })?;
                Ok(Some(digest.to_string()))
            }
            status => anyhow::bail!("HEAD {url} answered {status}"),
        }
    }

    /// The config blob digest of the single-platform image `repo:tag` (plain HTTP: not logged).
    pub async fn config_digest(&self, repo: &str, tag: &str) -> anyhow::Result<String> {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.url());
        let request = self
            .http
            .get(&url)
            .header(http::header::ACCEPT, ALL_MANIFEST_TYPES.join(", "));
        let response = self.authorize(request, repo, &["pull"])?.send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {url} answered {}",
            response.status()
        );
        let manifest: serde_json::Value = response.json().await?;
        manifest["config"]["digest"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{repo}:{tag} is not a single-platform image"))
    }

    /// Deletes a blob (an image config, say): its manifests stay, but cannot be read whole.
    pub async fn delete_blob(&self, repo: &str, digest: &str) -> anyhow::Result<()> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.url());
        let response = self
            .authorize(self.http.delete(&url), repo, &["delete"])?
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::ACCEPTED,
            "DELETE {url} answered {}",
            response.status()
        );
        Ok(())
    }

    /// Deletes a manifest by digest through the API; every tag pointing to it goes too.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> anyhow::Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.url());
        let response = self
            .authorize(self.http.delete(&url), repo, &["delete"])?
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::ACCEPTED,
            "DELETE {url} answered {}",
            response.status()
        );
        Ok(())
    }

    /// Removes only `tag`: distribution 2.8 has no API for that (DELETE by tag is refused), so the tag
    /// goes from storage, then the registry is checked to no longer list it.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> anyhow::Result<()> {
        let dir = self.storage_root().join(format!(
            "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}"
        ));
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        let tags = self.list_tags(repo).await?;
        anyhow::ensure!(
            !tags.iter().any(|t| t == tag),
            "{repo} still lists {tag} after its removal: {tags:?}"
        );
        Ok(())
    }

    /// Adds this registry's credentials to a request the harness makes itself.
    pub(super) fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        repo: &str,
        actions: &[&str],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(match (&self.auth, &self.issuer) {
            (Auth::Basic { username, password }, _) => request.basic_auth(username, Some(password)),
            // Minted in process so token_requests() counts only what clients asked for.
            (Auth::Token { .. }, Some(issuer)) => {
                let mut granted = vec!["pull", "push"];
                for action in actions {
                    if !granted.contains(action) {
                        granted.push(action);
                    }
                }
                request.bearer_auth(issuer.mint(&[Access::repository(repo, &granted)])?)
            }
            _ => request,
        })
    }
}
