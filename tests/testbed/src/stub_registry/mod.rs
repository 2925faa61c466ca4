//! A scripted registry for what the real one cannot do: paginated `tags/list` with `Link`, 429 with
//! `Retry-After`, 5xx, slow, truncated or garbage answers, a 401 loop, and chosen manifest digests.
//!
//! And hostile answers: endless pages (`Link` forever), slow pages, `Link` targets and redirects
//! to another origin, a token realm anywhere, any `Retry-After` or `expires_in`. Every request is
//! recorded with its `Host` and headers, so a test can assert e.g. that another host saw no
//! `Authorization`.
//!
//! And what distribution 2.8 lacks: the OCI Referrers API (`enable_referrers`), with real manifest
//! and blob bytes (`put_manifest_bytes`, `put_blob`, `put_image`, `push_signature_referrer`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tagwatch_testbed::stub_registry::{Reply, StubRegistry};
//! let stub = StubRegistry::start().await?;
//! stub.set_tags("app", ["1.0.0", "1.1.0", "2.0.0"]);
//! stub.set_page_size("app", 2);
//! stub.script("app", vec![Reply::TooManyRequests { retry_after_secs: 1 }, Reply::Ok]);
//! // ... point the client at stub.host() ...
//! assert_eq!(stub.count("GET", "/v2/app/tags/list"), 3);
//! # Ok(()) }
//! ```

mod paging;
mod reply;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinHandle;

use crate::cosign::{self, CosignSignature, Descriptor};
use crate::registry::images;
use crate::registry::{sha256_digest, ImageKind, OCI_MANIFEST};
pub use paging::{page, Page};
pub use reply::Reply;

/// One request the stub received, with all its headers (to check `Accept` or `Authorization`).
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The `Host` header: tells `127.0.0.1:P` from `localhost:P` on the same stub.
    pub host: Option<String>,
    pub headers: http::HeaderMap,
}

impl StubRequest {
    pub fn has_authorization(&self) -> bool {
        self.headers.contains_key(http::header::AUTHORIZATION)
    }
}

#[derive(Debug, Clone)]
struct StubManifest {
    digest: String,
    media_type: String,
    /// The exact bytes served (`put_manifest_bytes`); `None`: a stand-in body (`set_manifest`).
    bytes: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Repo {
    /// `None` until set: `tags/list` then answers 404 NAME_UNKNOWN.
    tags: Option<Vec<String>>,
    page_size: Option<usize>,
    script: VecDeque<Reply>,
    default: Reply,
    /// By tag and by digest.
    manifests: HashMap<String, StubManifest>,
    /// By digest.
    blobs: HashMap<String, Vec<u8>>,
    /// `GET /v2/<repo>/referrers/<digest>` is served (else 404, as distribution 2.8 answers).
    referrers: bool,
    /// `Some(n)`: every page holds `n` new tags and links to one more, for ever.
    endless: Option<usize>,
    /// Every `tags/list` answer waits this long first.
    page_delay: Option<std::time::Duration>,
    /// `Link` targets are absolute URLs on this base (`http://other:port`) instead of paths.
    link_base: Option<String>,
    /// `tags/list` answers `307 Location: <this URL>`.
    redirect_to: Option<String>,
    /// Ignore the client's `n`, as distribution 2.8.2 does.
    ignore_n: bool,
}

impl Default for Repo {
    fn default() -> Repo {
        Repo {
            tags: None,
            page_size: None,
            script: VecDeque::new(),
            default: Reply::Ok,
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            referrers: false,
            endless: None,
            page_delay: None,
            link_base: None,
            redirect_to: None,
            ignore_n: false,
        }
    }
}

#[derive(Default)]
struct Shared {
    repos: Mutex<HashMap<String, Repo>>,
    requests: Mutex<Vec<StubRequest>>,
    require_token: AtomicBool,
    /// The challenge's realm instead of this stub's own `/token`.
    token_realm: Mutex<Option<String>>,
    /// The raw JSON of `expires_in` in `/token` answers instead of `300`.
    token_expires_in: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running stub; the server stops when this is dropped.
pub struct StubRegistry {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for StubRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubRegistry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl StubRegistry {
    /// Starts the stub on a free loopback port.
    pub async fn start() -> anyhow::Result<StubRegistry> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(server::serve(listener, shared.clone(), addr));
        Ok(StubRegistry {
            shared,
            addr,
            server,
        })
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The tags `GET /v2/<repo>/tags/list` serves, in this order.
    pub fn set_tags<I, S>(&self, repo: &str, tags: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with_repo(repo, |r| {
            r.tags = Some(tags.into_iter().map(Into::into).collect())
        });
    }

    /// Paginates `tags/list` with at most `n` tags a page (fewer if the client asks `n`), with a
    /// `Link: <...?last=X&n=N>; rel="next"` header while tags remain.
    pub fn set_page_size(&self, repo: &str, n: usize) {
        self.with_repo(repo, |r| r.page_size = Some(n));
    }

    /// The next answers for `tags/list` of `repo`, in order; then the default reply (`Reply::Ok`).
    pub fn script(&self, repo: &str, replies: Vec<Reply>) {
        self.with_repo(repo, |r| r.script = replies.into());
    }

    /// The answer once the script is used up, e.g. `Reply::Unauthorized` for a 401 loop.
    pub fn set_default_reply(&self, repo: &str, reply: Reply) {
        self.with_repo(repo, |r| r.default = reply);
    }

    /// `HEAD`/`GET /v2/<repo>/manifests/<reference or digest>` answers `Docker-Content-Digest: digest`,
    /// but only when `Accept` lists `media_type`, as the real registry does. The GET body is a stand-in:
    /// its bytes do not hash to `digest`.
    pub fn set_manifest(&self, repo: &str, reference: &str, digest: &str, media_type: &str) {
        let manifest = StubManifest {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            bytes: None,
        };
        self.with_repo(repo, |r| {
            r.manifests.insert(reference.to_string(), manifest.clone());
            r.manifests.insert(digest.to_string(), manifest);
        });
    }

    /// Serves `bytes` at `GET`/`HEAD /v2/<repo>/blobs/<digest>`; returns the digest (sha256).
    pub fn put_blob(&self, repo: &str, bytes: impl Into<Vec<u8>>) -> String {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        self.with_repo(repo, |r| {
            r.blobs.insert(digest.clone(), bytes);
        });
        digest
    }

    /// Serves these exact manifest `bytes` at `GET`/`HEAD /v2/<repo>/manifests/<reference>` and
    /// `.../manifests/<digest>`, with `Content-Type: media_type` and `Docker-Content-Digest`, when
    /// `Accept` lists `media_type` (as [`StubRegistry::set_manifest`]). `reference` is a tag, or
    /// the digest itself for a push by digest. Returns the digest (sha256 of `bytes`).
    pub fn put_manifest_bytes(
        &self,
        repo: &str,
        reference: &str,
        bytes: impl Into<Vec<u8>>,
        media_type: &str,
    ) -> String {
        let bytes = bytes.into();
        let manifest = StubManifest {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_string(),
            bytes: Some(bytes),
        };
        let digest = manifest.digest.clone();
        self.with_repo(repo, |r| {
            r.manifests.insert(reference.to_string(), manifest.clone());
            r.manifests.insert(manifest.digest.clone(), manifest);
        });
        digest
    }

    /// Puts a real image under `repo:tag`, as [`crate::registry::Registry::push_image_with`] pushes
    /// it: config blobs (`architecture`, `os: linux`, `created` when given), the layer, platform
    /// manifests by digest and the top manifest by tag. Returns the top manifest's descriptor.
    pub fn put_image(
        &self,
        repo: &str,
        tag: &str,
        kind: ImageKind,
        architectures: &[&str],
        created: Option<&str>,
    ) -> Descriptor {
        let image = images::build_with(repo, tag, "", kind, architectures, created);
        for blob in image.blobs {
            self.put_blob(repo, blob.bytes);
        }
        for manifest in image.platforms {
            let digest = manifest.blob.digest.clone();
            self.put_manifest_bytes(repo, &digest, manifest.blob.bytes, manifest.media_type);
        }
        let descriptor = Descriptor::of(image.top.media_type, &image.top.blob.bytes);
        self.put_manifest_bytes(repo, tag, image.top.blob.bytes, image.top.media_type);
        descriptor
    }

    /// Serves the OCI Referrers API for `repo`: `GET /v2/<repo>/referrers/<digest>` answers 200
    /// `application/vnd.oci.image.index.v1+json` listing every manifest put in `repo` whose
    /// `subject.digest` is `<digest>` (mediaType, digest, size, artifactType, annotations; sorted by
    /// digest; an empty list if none), filtered by `?artifactType=X` (then with
    /// `OCI-Filters-Applied: artifactType`). Without this the path answers what distribution 2.8
    /// answers: `404`, `text/plain; charset=utf-8`, `404 page not found`.
    pub fn enable_referrers(&self, repo: &str) {
        self.with_repo(repo, |r| r.referrers = true);
    }

    /// cosign's classic layout: the signature payload and config blobs, and the signature manifest
    /// under the tag `sha256-<hex>.sig`. Returns the signature manifest's digest.
    pub fn push_signature_tag(
        &self,
        repo: &str,
        image_digest: &str,
        signatures: &[CosignSignature],
    ) -> String {
        let manifest = cosign::signature_tag_manifest(signatures);
        for blob in manifest.blobs {
            self.put_blob(repo, blob);
        }
        let tag = cosign::signature_tag(image_digest);
        self.put_manifest_bytes(repo, &tag, manifest.bytes, OCI_MANIFEST)
    }

    /// An OCI 1.1 signature referrer (as [`crate::registry::Registry::push_signature_referrer`]
    /// pushes it) put by digest, with its blobs, and no fallback tag: found only through the
    /// Referrers API ([`StubRegistry::enable_referrers`]). Returns the referrer manifest's digest.
    pub fn push_signature_referrer(
        &self,
        repo: &str,
        image_digest: &str,
        image_size: u64,
        image_media_type: &str,
        signatures: &[CosignSignature],
    ) -> String {
        let subject = Descriptor {
            media_type: image_media_type.to_string(),
            digest: image_digest.to_string(),
            size: image_size,
        };
        let manifest = cosign::referrer_manifest(&subject, signatures);
        for blob in manifest.blobs {
            self.put_blob(repo, blob);
        }
        let digest = sha256_digest(&manifest.bytes);
        self.put_manifest_bytes(repo, &digest, manifest.bytes, OCI_MANIFEST)
    }

    /// Ignore the client's `n` (as distribution 2.8.2 does): without `set_page_size`, every tag
    /// comes in one page, e.g. 200,000 of them.
    pub fn ignore_n(&self, repo: &str) {
        self.with_repo(repo, |r| r.ignore_n = true);
    }

    /// Endless paging: every `tags/list` page of `repo` holds `per_page` new tags (`p<page>.<i>`)
    /// and a `Link` to the next one, for ever. Overrides `set_tags`.
    pub fn set_endless(&self, repo: &str, per_page: usize) {
        self.with_repo(repo, |r| r.endless = Some(per_page));
    }

    /// Every `tags/list` answer of `repo` waits `delay` first (each page of a paged listing).
    pub fn set_page_delay(&self, repo: &str, delay: std::time::Duration) {
        self.with_repo(repo, |r| r.page_delay = Some(delay));
    }

    /// `Link` targets of `repo` become absolute URLs on `base` (e.g. another stub's `url()`, or
    /// this one's as `http://localhost:PORT`): a cross-origin `Link`.
    pub fn set_link_base(&self, repo: &str, base: &str) {
        let base = base.trim_end_matches('/').to_string();
        self.with_repo(repo, |r| r.link_base = Some(base));
    }

    /// `tags/list` of `repo` answers `307 Temporary Redirect` with `Location: url`.
    pub fn redirect_tags(&self, repo: &str, url: &str) {
        let url = url.to_string();
        self.with_repo(repo, |r| r.redirect_to = Some(url));
    }

    /// The realm the Bearer challenge names (any scheme, any host) instead of this stub's `/token`.
    pub fn set_token_realm(&self, realm: &str) {
        *lock(&self.shared.token_realm) = Some(realm.to_string());
    }

    /// The raw JSON value of `expires_in` in `/token` answers (e.g. `"18446744073709551615"`).
    pub fn set_token_expires_in(&self, raw_json: &str) {
        *lock(&self.shared.token_expires_in) = Some(raw_json.to_string());
    }

    /// When true, every `/v2/` request without `Authorization: Bearer` gets a 401 Bearer challenge that
    /// sends the client to this stub's `/token`.
    pub fn require_token(&self, required: bool) {
        self.shared.require_token.store(required, Ordering::Relaxed);
    }

    /// `/token` answers an opaque token that the stub accepts (except for `Reply::Unauthorized`).
    pub fn token_realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<StubRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests had `method` and exactly `path` (query not included).
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// How many requests `/token` received.
    pub fn token_requests(&self) -> usize {
        self.count("GET", "/token")
    }

    /// How many requests carried an `Authorization` header (any path, any `Host`).
    pub fn authorized_requests(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.has_authorization())
            .count()
    }

    /// How many requests named `host` (`localhost:PORT`) in their `Host` header, and how many
    /// of those carried `Authorization`.
    pub fn count_host(&self, host: &str) -> (usize, usize) {
        let requests = lock(&self.shared.requests);
        let on_host: Vec<&StubRequest> = requests
            .iter()
            .filter(|r| {
                r.host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
            .collect();
        let authorized = on_host.iter().filter(|r| r.has_authorization()).count();
        (on_host.len(), authorized)
    }

    /// `localhost:PORT`: the same server under another host name, so another origin.
    pub fn localhost(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    fn with_repo(&self, repo: &str, change: impl FnOnce(&mut Repo)) {
        change(
            lock(&self.shared.repos)
                .entry(repo.to_string())
                .or_default(),
        );
    }
}

impl Drop for StubRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}
