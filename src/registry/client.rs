//! The only code that talks to registries: the OCI distribution API's tag listing and manifest
//! endpoints, with the Bearer/Basic auth dance, token reuse, `Link` paging and per-request metrics.
//!
//! Why not oci-client's `list_tags`: it cannot follow `Link` headers, drops `Retry-After`, keeps one
//! credential per registry host per client (pull secrets differ per namespace), and hides the token
//! requests from our metrics. oci-client still parses every image reference.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sha2::Digest;

use super::challenge::{next_link, parse_challenge, retry_after, Challenge};
use super::credentials::{Credentials, Secret};
use super::error::RegistryError;
use super::tokens::{TokenCache, TokenKey};
use crate::metrics::{Metrics, RegistryOp};
use crate::model::image::Repository;

/// All four manifest media types: without them distribution answers HEAD for an OCI manifest with
/// 404 and converts a Docker v2 manifest to schema1 (another digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A tag listing larger than this is refused rather than held in memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Paging guard: a registry that keeps sending `next` links is broken, not large.
const MAX_PAGES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP; all others use verified TLS.
    pub insecure_registries: Vec<String>,
    pub timeout: Duration,
    pub page_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(30),
            page_size: 1000,
        }
    }
}

/// A manifest as stored: exact bytes, media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: Arc<HashSet<String>>,
    tokens: Arc<TokenCache>,
    metrics: Metrics,
    page_size: usize,
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Whether an operation needs write access: it changes the token scope asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

impl RegistryClient {
    pub fn new(options: ClientOptions, metrics: Metrics) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("tagwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::transport("(client setup)", &e))?;
        Ok(RegistryClient {
            http,
            insecure: Arc::new(
                options
                    .insecure_registries
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
            tokens: Arc::new(TokenCache::default()),
            metrics,
            page_size: options.page_size.max(1),
        })
    }

    fn base_url(&self, repo: &Repository) -> String {
        let host = repo.api_host();
        let scheme = if self.insecure.contains(&host.to_ascii_lowercase())
            || self.insecure.contains(&repo.registry.to_ascii_lowercase())
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/{}", repo.path)
    }

    /// Every tag of the repository, following `Link` pages to the end. All or nothing: a page
    /// that fails fails the listing, so no decision is ever made on part of the tags.
    pub async fn list_tags(
        &self,
        repo: &Repository,
        credentials: &Credentials,
    ) -> Result<Vec<String>, RegistryError> {
        let first = format!("{}/tags/list?n={}", self.base_url(repo), self.page_size);
        let mut url = parse_url(&first)?;
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(RegistryError::Malformed {
                    url: url.to_string(),
                    reason: "pagination loops back to a page already read".into(),
                });
            }
            let response = self
                .send(RegistryOp::Tags, repo, credentials, Access::Pull, || {
                    self.http.get(url.clone())
                })
                .await?;
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = read_body(response, url.as_str()).await?;
            let page: TagsPage =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Malformed {
                    url: url.to_string(),
                    reason: format!("tag list is not the expected JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => {
                    url = url.join(&next).map_err(|e| RegistryError::Malformed {
                        url: url.to_string(),
                        reason: format!("bad Link target {next:?}: {e}"),
                    })?
                }
                None => return Ok(tags),
            }
        }
        Err(RegistryError::Malformed {
            url: first,
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The digest a tag (or digest) names, read with one HEAD request. `None` when it does not exist.
    pub async fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Option<String>, RegistryError> {
        let Some((url, response)) = self
            .manifest_request(RegistryOp::ManifestHead, repo, reference, credentials)
            .await?
        else {
            return Ok(None);
        };
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match digest {
            Some(digest) if digest.starts_with("sha256:") => Ok(Some(digest)),
            _ => Err(RegistryError::Malformed {
                url: url.to_string(),
                reason: "HEAD answer carries no sha256 Docker-Content-Digest".into(),
            }),
        }
    }

    /// A manifest's exact bytes and media type (for re-putting it under an alias tag).
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Option<Manifest>, RegistryError> {
        let Some((url, response)) = self
            .manifest_request(RegistryOp::ManifestGet, repo, reference, credentials)
            .await?
        else {
            return Ok(None);
        };
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Malformed {
                url: url.to_string(),
                reason: "manifest answer has no Content-Type".into(),
            })?;
        let bytes = read_body(response, url.as_str()).await?.to_vec();
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// HEAD or GET of a manifest with every manifest type accepted; `None` on 404.
    async fn manifest_request(
        &self,
        op: RegistryOp,
        repo: &Repository,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Option<(Url, reqwest::Response)>, RegistryError> {
        let url = parse_url(&format!("{}/manifests/{reference}", self.base_url(repo)))?;
        let method = if op == RegistryOp::ManifestHead {
            Method::HEAD
        } else {
            Method::GET
        };
        let response = self
            .send(op, repo, credentials, Access::Pull, || {
                self.http
                    .request(method.clone(), url.clone())
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await;
        match response {
            Ok(response) => Ok(Some((url, response))),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `manifest` under `tag`; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        tag: &str,
        manifest: &Manifest,
        credentials: &Credentials,
    ) -> Result<String, RegistryError> {
        let url = parse_url(&format!("{}/manifests/{tag}", self.base_url(repo)))?;
        let response = self
            .send(
                RegistryOp::ManifestPut,
                repo,
                credentials,
                Access::Push,
                || {
                    self.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, manifest.media_type.as_str())
                        .body(manifest.bytes.clone())
                },
            )
            .await?;
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| manifest.digest.clone()))
    }

    /// Sends a request with cached authorization; on a 401 answers the challenge once and retries.
    async fn send(
        &self,
        op: RegistryOp,
        repo: &Repository,
        credentials: &Credentials,
        access: Access,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let actions = match access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        let scope = format!("repository:{}:{actions}", repo.path);
        let key = TokenKey::new(repo.api_host(), &scope, credentials);
        let cached = self.tokens.get(&key, Instant::now());
        let response = self.execute(op, repo, build(), cached.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check_status(response);
        }
        let url = response.url().to_string();
        if cached.is_some() {
            self.tokens.forget(&key);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let (authorization, lifetime) = match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => {
                // Our own scope, not the challenge's: a push needs `pull,push` even when the 401
                // came from a read.
                let (token, lifetime) = self
                    .fetch_token(repo, &realm, service.as_deref(), &scope, credentials)
                    .await?;
                (
                    Secret::new(format!("Bearer {}", token.expose())),
                    Some(lifetime),
                )
            }
            Some(Challenge::Basic) => match credentials {
                Credentials::Basic { username, password } => {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose()));
                    (Secret::new(format!("Basic {encoded}")), None)
                }
                _ => return Err(RegistryError::Unauthorized { url, status: 401 }),
            },
            None => return Err(RegistryError::Unauthorized { url, status: 401 }),
        };
        let response = self
            .execute(op, repo, build(), Some(&authorization))
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                url: response.url().to_string(),
                status: 401,
            });
        }
        self.tokens
            .put(key, authorization, Instant::now(), lifetime);
        check_status(response)
    }

    async fn execute(
        &self,
        op: RegistryOp,
        repo: &Repository,
        request: reqwest::RequestBuilder,
        authorization: Option<&Secret>,
    ) -> Result<reqwest::Response, RegistryError> {
        let request = match authorization.map(|a| HeaderValue::from_str(a.expose())) {
            Some(Ok(mut value)) => {
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
            Some(Err(_)) => {
                return Err(RegistryError::Token {
                    url: repo.to_string(),
                    reason: "token is not a valid header value".into(),
                })
            }
            None => request,
        };
        let started = Instant::now();
        let result = request.send().await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(response) => {
                self.metrics.observe_registry_request(
                    &repo.registry,
                    op,
                    Some(response.status().as_u16()),
                    seconds,
                );
                Ok(response)
            }
            Err(e) => {
                self.metrics
                    .observe_registry_request(&repo.registry, op, None, seconds);
                let url = e
                    .url()
                    .map(Url::to_string)
                    .unwrap_or_else(|| repo.to_string());
                Err(RegistryError::transport(&url, &e))
            }
        }
    }

    async fn fetch_token(
        &self,
        repo: &Repository,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<(Secret, Duration), RegistryError> {
        let token_error = |reason: String| RegistryError::Token {
            url: realm.to_string(),
            reason,
        };
        let realm_url = Url::parse(realm).map_err(|e| token_error(format!("bad realm: {e}")))?;
        let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let request = match credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", "tagwatch"),
                    ("refresh_token", refresh.expose()),
                ];
                form.extend(query.iter().copied());
                self.http.request(Method::POST, realm_url).form(&form)
            }
            Credentials::Basic { username, password } => self
                .http
                .get(realm_url)
                .query(&query)
                .basic_auth(username, Some(password.expose())),
            Credentials::Anonymous => self.http.get(realm_url).query(&query),
        };
        let started = Instant::now();
        let result = request.send().await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        self.metrics.observe_registry_request(
            &repo.registry,
            RegistryOp::Token,
            status,
            started.elapsed().as_secs_f64(),
        );
        let response = result.map_err(|e| token_error(format!("request failed: {e}")))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                url: realm.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(token_error(format!("HTTP {}", status.as_u16())));
        }
        let body = read_body(response, realm).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| token_error(format!("answer is not token JSON: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("answer holds no token".into()))?;
        // The distribution token spec's default lifetime when `expires_in` is absent.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(1));
        Ok((Secret::new(token), lifetime))
    }
}

fn parse_url(url: &str) -> Result<Url, RegistryError> {
    Url::parse(url).map_err(|e| RegistryError::Malformed {
        url: url.to_string(),
        reason: format!("not a URL: {e}"),
    })
}

fn check_status(response: reqwest::Response) -> Result<reqwest::Response, RegistryError> {
    let status = response.status();
    let url = response.url().to_string();
    match status.as_u16() {
        200..=299 => Ok(response),
        401 | 403 => Err(RegistryError::Unauthorized {
            url,
            status: status.as_u16(),
        }),
        404 => Err(RegistryError::NotFound { url }),
        429 => Err(RegistryError::RateLimited {
            url,
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after),
        }),
        500..=599 => Err(RegistryError::Server {
            url,
            status: status.as_u16(),
        }),
        other => Err(RegistryError::Status { url, status: other }),
    }
}

async fn read_body(
    mut response: reqwest::Response,
    url: &str,
) -> Result<bytes::Bytes, RegistryError> {
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(RegistryError::Malformed {
                        url: url.to_string(),
                        reason: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            // A connection cut mid-body is a transport failure, not a short tag list.
            Err(e) => return Err(RegistryError::transport(url, &e)),
        }
    }
}
