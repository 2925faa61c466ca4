//! The only code that talks to registries: the OCI distribution API's tag listing and manifest
//! endpoints, with the Bearer/Basic auth dance, token reuse, `Link` paging and per-request metrics.
//!
//! Why not oci-client's `list_tags`: it cannot follow `Link` headers, drops `Retry-After`, keeps one
//! credential per registry host per client (pull secrets differ per namespace), and hides the token
//! requests from our metrics. oci-client still parses every image reference.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use sha2::Digest;

use super::challenge::{next_link, parse_challenge, retry_after, Challenge};
use super::credentials::{Credentials, Secret};
use super::egress::{self, AllowList, GuardedResolver};
use super::error::RegistryError;
use super::tag_page::{parse_tag_page, PageError};
use super::tokens::{parse_token_answer, TokenCache, TokenKey};
use crate::metrics::{Metrics, RegistryOp};
use crate::model::image::Repository;

/// All four manifest media types: without them distribution answers HEAD for an OCI manifest with
/// 404 and converts a Docker v2 manifest to schema1 (another digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// One answer (a tag page, a manifest, a token) larger than this is refused rather than held
/// in memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Paging guard: a registry that keeps sending `next` links is broken, not large.
const MAX_PAGES: usize = 10_000;
/// Same-origin redirects followed for one request (cross-origin ones never are).
const MAX_REDIRECTS: usize = 5;

/// Deadline of one whole listing (all pages, token requests included) unless configured.
pub const DEFAULT_LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// Tags one listing may hold unless configured.
pub const DEFAULT_MAX_TAGS: usize = 100_000;
/// The range `listTimeout` is clamped to.
pub const LIST_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
/// The range `maxTags` is clamped to.
pub const MAX_TAGS_RANGE: (usize, usize) = (1, 10_000_000);

/// Per-registry overrides of the listing bounds; `None` keeps the client-wide value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListLimits {
    pub list_timeout: Option<Duration>,
    pub max_tags: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP; all others use verified TLS.
    pub insecure_registries: Vec<String>,
    /// One request, from connecting to the end of its body.
    pub timeout: Duration,
    pub page_size: usize,
    /// One whole listing, every page together (clamped to 1 s ..= 1 h).
    pub list_timeout: Duration,
    /// Tags one listing may hold; more fails the listing (clamped to 1 ..= 10,000,000).
    pub max_tags: usize,
    /// `host[:port]` (as in image references) → its own `list_timeout` / `max_tags`.
    pub host_limits: HashMap<String, ListLimits>,
    /// Allow link-local addresses (169.254.0.0/16, fe80::/10) as registry or realm hosts and
    /// as what a registry name resolves to. Off: cloud metadata endpoints stay out of reach.
    pub allow_link_local: bool,
    /// Only these registries are contacted; `None`: any.
    pub allowed_registries: Option<AllowList>,
    /// Name → address entries answered before DNS (like /etc/hosts), under the same rules.
    pub fixed_addresses: Vec<(String, IpAddr)>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(30),
            page_size: 1000,
            list_timeout: DEFAULT_LIST_TIMEOUT,
            max_tags: DEFAULT_MAX_TAGS,
            host_limits: HashMap::new(),
            allow_link_local: false,
            allowed_registries: None,
            fixed_addresses: Vec::new(),
        }
    }
}

/// The bounds one listing runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    timeout: Duration,
    max_tags: usize,
}

fn clamp_timeout(timeout: Duration) -> Duration {
    timeout.clamp(LIST_TIMEOUT_RANGE.0, LIST_TIMEOUT_RANGE.1)
}

fn clamp_max_tags(max_tags: usize) -> usize {
    max_tags.clamp(MAX_TAGS_RANGE.0, MAX_TAGS_RANGE.1)
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
    bounds: Bounds,
    host_bounds: Arc<HashMap<String, Bounds>>,
    allow_link_local: bool,
    allowed: Option<Arc<AllowList>>,
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
            .redirect(reqwest::redirect::Policy::custom(same_origin_redirects))
            .dns_resolver(GuardedResolver::new(
                options.allow_link_local,
                options.fixed_addresses.clone(),
            ))
            .build()
            .map_err(|e| RegistryError::transport("(client setup)", &e))?;
        let bounds = Bounds {
            timeout: clamp_timeout(options.list_timeout),
            max_tags: clamp_max_tags(options.max_tags),
        };
        let host_bounds = options
            .host_limits
            .iter()
            .map(|(host, limits)| {
                (
                    host.trim().to_ascii_lowercase(),
                    Bounds {
                        timeout: limits.list_timeout.map_or(bounds.timeout, clamp_timeout),
                        max_tags: limits.max_tags.map_or(bounds.max_tags, clamp_max_tags),
                    },
                )
            })
            .collect();
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
            bounds,
            host_bounds: Arc::new(host_bounds),
            allow_link_local: options.allow_link_local,
            allowed: options.allowed_registries.map(Arc::new),
        })
    }

    /// `scheme://host/v2/PATH` for the repository, or why no request may go there: not in
    /// `allowedRegistries`, or a link-local address literal.
    fn base_url(&self, repo: &Repository) -> Result<String, RegistryError> {
        if let Some(allowed) = &self.allowed {
            if !allowed.allows(&repo.registry) {
                return Err(RegistryError::NotAllowed {
                    registry: repo.registry.clone(),
                });
            }
        }
        let host = repo.api_host();
        let scheme = if self.insecure.contains(&host.to_ascii_lowercase())
            || self.insecure.contains(&repo.registry.to_ascii_lowercase())
        {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{host}/v2/{}", repo.path);
        if !self.allow_link_local && egress::url_is_link_local(&parse_url(&base)?) {
            return Err(RegistryError::UnsafeTarget {
                url: base,
                reason: format!("{host} is a link-local address (allowLinkLocal is off)"),
            });
        }
        Ok(base)
    }

    fn bounds(&self, repo: &Repository) -> Bounds {
        self.host_bounds
            .get(&repo.registry.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.bounds)
    }

    /// Every tag of the repository, following `Link` pages to the end. All or nothing: a page
    /// that fails fails the listing, so no decision is ever made on part of the tags. Bounded:
    /// the whole listing has a deadline (`listTimeout`) and a tag cap (`maxTags`), and pages stay
    /// on the registry's origin.
    pub async fn list_tags(
        &self,
        repo: &Repository,
        credentials: &Credentials,
    ) -> Result<Vec<String>, RegistryError> {
        let bounds = self.bounds(repo);
        match tokio::time::timeout(
            bounds.timeout,
            self.list_pages(repo, credentials, bounds.max_tags),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RegistryError::ListTimeout {
                repository: repo.to_string(),
                timeout: bounds.timeout,
            }),
        }
    }

    async fn list_pages(
        &self,
        repo: &Repository,
        credentials: &Credentials,
        max_tags: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let first = format!("{}/tags/list?n={}", self.base_url(repo)?, self.page_size);
        let origin = parse_url(&first)?;
        let mut url = origin.clone();
        // Hashes, not URLs: a registry choosing huge `Link` targets must not grow this set.
        let mut seen = HashSet::new();
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url_hash(&url)) {
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
            let next = match response.headers().get(reqwest::header::LINK) {
                None => None,
                Some(value) => match value.to_str() {
                    Ok(value) => next_link(value),
                    Err(_) => {
                        return Err(RegistryError::Malformed {
                            url: url.to_string(),
                            reason: "Link header is not visible ASCII".into(),
                        })
                    }
                },
            };
            let body = read_body(response, url.as_str()).await?;
            let room = max_tags.saturating_sub(tags.len());
            let page = parse_tag_page(&body, room).map_err(|e| match e {
                PageError::TooMany => RegistryError::TooManyTags {
                    repository: repo.to_string(),
                    max_tags,
                },
                PageError::Malformed(reason) => RegistryError::Malformed {
                    url: url.to_string(),
                    reason,
                },
            })?;
            tags.extend(page);
            match next {
                Some(next) => {
                    let target = url.join(&next).map_err(|e| RegistryError::Malformed {
                        url: url.to_string(),
                        reason: format!("bad Link target: {e}"),
                    })?;
                    if !egress::same_origin(&origin, &target) {
                        return Err(RegistryError::UnsafeTarget {
                            url: url.to_string(),
                            reason: format!(
                                "Link next page {} is not on the registry's origin {}",
                                egress::shown(&target),
                                origin_of(&origin)
                            ),
                        });
                    }
                    url = target;
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

    /// A blob's bytes (an image config, a signature payload), at most `max_bytes`, checked
    /// against its digest. `None` when it does not exist.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &str,
        max_bytes: usize,
        credentials: &Credentials,
    ) -> Result<Option<bytes::Bytes>, RegistryError> {
        let url = parse_url(&format!("{}/blobs/{digest}", self.base_url(repo)?))?;
        let response = self
            .send(RegistryOp::BlobGet, repo, credentials, Access::Pull, || {
                self.http.get(url.clone())
            })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = read_body_max(response, url.as_str(), max_bytes.min(MAX_BODY_BYTES)).await?;
        let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if digest.starts_with("sha256:") && actual != digest {
            return Err(RegistryError::Malformed {
                url: url.to_string(),
                reason: format!("blob content is {actual}, not the {digest} asked for"),
            });
        }
        Ok(Some(bytes))
    }

    /// The OCI 1.1 Referrers API's index of what refers to `digest`, filtered to `artifact_type`
    /// (a registry may ignore the filter). `None` when the registry has no such API (404, 405):
    /// the referrers tag schema is the fallback then.
    pub async fn get_referrers(
        &self,
        repo: &Repository,
        digest: &str,
        artifact_type: &str,
        credentials: &Credentials,
    ) -> Result<Option<Manifest>, RegistryError> {
        let mut url = parse_url(&format!("{}/referrers/{digest}", self.base_url(repo)?))?;
        url.query_pairs_mut()
            .append_pair("artifactType", artifact_type);
        let response = self
            .send(
                RegistryOp::Referrers,
                repo,
                credentials,
                Access::Pull,
                || {
                    self.http
                        .get(url.clone())
                        .header(ACCEPT, "application/vnd.oci.image.index.v1+json")
                },
            )
            .await;
        let response = match response {
            Ok(response) => response,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(RegistryError::Status { status: 405, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/vnd.oci.image.index.v1+json")
            .to_string();
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
        let url = parse_url(&format!("{}/manifests/{reference}", self.base_url(repo)?))?;
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
        let url = parse_url(&format!("{}/manifests/{tag}", self.base_url(repo)?))?;
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
        let realm_url = Url::parse(realm).map_err(|e| RegistryError::Token {
            url: repo.to_string(),
            reason: format!("the challenge's realm is not a URL: {e}"),
        })?;
        let realm = egress::shown(&realm_url);
        let realm = realm.as_str();
        let token_error = |reason: String| RegistryError::Token {
            url: realm.to_string(),
            reason,
        };
        // Checked before anything is sent: the realm receives the registry credentials.
        egress::check_realm(&realm_url, &self.insecure, self.allow_link_local).map_err(
            |reason| RegistryError::UnsafeTarget {
                url: realm.to_string(),
                reason,
            },
        )?;
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
        let response = result.map_err(|e| match RegistryError::transport(realm, &e) {
            refused @ RegistryError::UnsafeTarget { .. } => refused,
            _ => token_error(format!("request failed: {e}")),
        })?;
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
        parse_token_answer(&body).map_err(token_error)
    }
}

fn parse_url(url: &str) -> Result<Url, RegistryError> {
    Url::parse(url).map_err(|e| RegistryError::Malformed {
        url: url.to_string(),
        reason: format!("not a URL: {e}"),
    })
}

fn check_status(response: reqwest::Response) -> Result<reqwest::Response, RegistryError> {
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let location = header(reqwest::header::LOCATION);
    match status_error(
        response.status().as_u16(),
        response.url(),
        retry_after.as_deref(),
        location.as_deref(),
    ) {
        None => Ok(response),
        Some(error) => Err(error),
    }
}

/// What an answer's status (and, for 429 and 3xx, its `Retry-After` and `Location`) means; `None`
/// for success. Pure, so any status and header a registry may send is tested without a server.
pub fn status_error(
    status: u16,
    url: &Url,
    retry_after_header: Option<&str>,
    location: Option<&str>,
) -> Option<RegistryError> {
    let url_text = url.to_string();
    Some(match status {
        200..=299 => return None,
        // Same-origin redirects were followed already; this one leads elsewhere.
        300..=399 => match location.map(|l| url.join(l)) {
            Some(Ok(target)) if !egress::same_origin(url, &target) => RegistryError::UnsafeTarget {
                url: url_text,
                reason: format!(
                    "redirect (HTTP {status}) to {}, off the registry's origin {}",
                    egress::shown(&target),
                    origin_of(url)
                ),
            },
            _ => RegistryError::Status {
                url: url_text,
                status,
            },
        },
        401 | 403 => RegistryError::Unauthorized {
            url: url_text,
            status,
        },
        404 => RegistryError::NotFound { url: url_text },
        429 => RegistryError::RateLimited {
            url: url_text,
            retry_after: retry_after_header.and_then(retry_after),
        },
        500..=599 => RegistryError::Server {
            url: url_text,
            status,
        },
        other => RegistryError::Status {
            url: url_text,
            status: other,
        },
    })
}

/// Follows a redirect only to the same scheme, host and port, a few times: a redirect never
/// carries a request, and with it an `Authorization` header, to another host. The others are
/// handed back as the 3xx answer, which [`status_error`] reports.
fn same_origin_redirects(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let stays = attempt
        .previous()
        .last()
        .is_some_and(|from| egress::same_origin(from, attempt.url()));
    if stays && attempt.previous().len() <= MAX_REDIRECTS {
        attempt.follow()
    } else {
        attempt.stop()
    }
}

fn origin_of(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

fn url_hash(url: &Url) -> u64 {
    let mut hasher = DefaultHasher::new();
    url.as_str().hash(&mut hasher);
    hasher.finish()
}

async fn read_body(response: reqwest::Response, url: &str) -> Result<bytes::Bytes, RegistryError> {
    read_body_max(response, url, MAX_BODY_BYTES).await
}

async fn read_body_max(
    mut response: reqwest::Response,
    url: &str,
    max: usize,
) -> Result<bytes::Bytes, RegistryError> {
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > max {
                    return Err(RegistryError::Malformed {
                        url: url.to_string(),
                        reason: format!("answer larger than {max} bytes"),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn url() -> Url {
        Url::parse("https://r.io/v2/app/tags/list?n=10").unwrap()
    }

    #[test]
    fn statuses() {
        assert!(status_error(200, &url(), None, None).is_none());
        let limited = status_error(429, &url(), Some("18446744073709551615"), None).unwrap();
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3600)));
        let away =
            status_error(307, &url(), None, Some("http://evil.io/v2/app/tags/list")).unwrap();
        assert_eq!(away.kind(), "unsafe_target", "{away}");
        assert!(away.to_string().contains("evil.io"), "{away}");
        let home = status_error(307, &url(), None, Some("/v2/other/tags/list")).unwrap();
        assert_eq!(home.kind(), "unexpected_status", "{home}");
        assert_eq!(
            status_error(403, &url(), None, None).unwrap().kind(),
            "unauthorized"
        );
        assert_eq!(
            status_error(503, &url(), None, None).unwrap().kind(),
            "server_error"
        );
        assert_eq!(
            status_error(0, &url(), None, None).unwrap().kind(),
            "unexpected_status"
        );
    }

    #[test]
    fn limits_are_clamped_and_overridden_per_host() {
        let client = RegistryClient::new(
            ClientOptions {
                list_timeout: Duration::MAX,
                max_tags: 0,
                host_limits: HashMap::from([(
                    "Small.io:5000".to_string(),
                    ListLimits {
                        list_timeout: Some(Duration::ZERO),
                        max_tags: Some(10),
                    },
                )]),
                ..ClientOptions::default()
            },
            Metrics::unregistered().unwrap(),
        )
        .unwrap();
        let repo = |registry: &str| Repository {
            registry: registry.into(),
            path: "app".into(),
        };
        assert_eq!(
            client.bounds(&repo("other.io")),
            Bounds {
                timeout: Duration::from_secs(3600),
                max_tags: 1
            }
        );
        assert_eq!(
            client.bounds(&repo("small.io:5000")),
            Bounds {
                timeout: Duration::from_secs(1),
                max_tags: 10
            }
        );
    }

    proptest! {
        #[test]
        fn any_status_and_headers_map_without_panic(
            status in 0u16..1000,
            retry in proptest::option::of(any::<String>()),
            location in proptest::option::of(any::<String>()),
        ) {
            let error = status_error(status, &url(), retry.as_deref(), location.as_deref());
            prop_assert_eq!(error.is_none(), (200..=299).contains(&status));
            if let Some(wait) = error.as_ref().and_then(RegistryError::retry_after) {
                prop_assert!(wait <= Duration::from_secs(3600));
                prop_assert!(Instant::now().checked_add(wait).is_some());
            }
        }
    }
}
