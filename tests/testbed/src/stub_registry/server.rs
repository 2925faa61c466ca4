//! The stub's HTTP side: one fallback handler, since repository names contain slashes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use super::paging::page;
use super::reply::{next, Reply, Step};
use super::{lock, Shared, StubRequest};
use crate::cosign::referrer_descriptor;
use crate::registry::OCI_INDEX;

const SERVICE: &str = "tagwatch-stub-registry";

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, addr: SocketAddr) {
    let app = Router::new()
        .fallback(handle)
        .with_state(Ctx { shared, addr });
    let _ = axum::serve(listener, app).await;
}

async fn handle(State(ctx): State<Ctx>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    lock(&ctx.shared.requests).push(StubRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        host: headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: headers.clone(),
    });
    let path = uri.path();
    if path == "/token" {
        return token(&ctx);
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return error(StatusCode::NOT_FOUND, "UNSUPPORTED", "not a registry path");
    };
    let has_bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    let repo_of_path = rest
        .trim_start_matches('/')
        .split_once("/tags/list")
        .map(|(repo, _)| repo);
    if ctx.shared.require_token.load(Ordering::Relaxed) && !has_bearer {
        return challenge(&ctx, repo_of_path);
    }
    if rest.is_empty() || rest == "/" {
        return (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response();
    }
    let rest = rest.trim_start_matches('/');
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return tags_list(&ctx, repo, uri.query()).await;
    }
    if let Some((repo, digest)) = rest.rsplit_once("/referrers/") {
        return referrers(&ctx, repo, digest, uri.query());
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        return blob(&ctx, &method, repo, digest);
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return manifest(&ctx, &method, repo, reference, &headers);
    }
    error(
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
        "the stub does not serve this path",
    )
}

async fn tags_list(ctx: &Ctx, repo: &str, query: Option<&str>) -> Response {
    let (n, last) = page_params(query);
    let decided = {
        let mut repos = lock(&ctx.shared.repos);
        repos.get_mut(repo).map(|r| {
            let step = next(&mut r.script, &r.default, last.is_some());
            let hostile = Hostile {
                endless: r.endless,
                page_delay: r.page_delay,
                link_base: r.link_base.clone(),
                redirect_to: r.redirect_to.clone(),
            };
            let n = if r.ignore_n { None } else { n };
            (step, r.tags.clone(), r.page_size, hostile, n)
        })
    };
    let Some((step, tags, page_size, hostile, n)) = decided else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
    };
    if let Some(delay) = hostile.page_delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(location) = &hostile.redirect_to {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(http::header::LOCATION, location.as_str())
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let with_link = |mut response: Response, link: Option<String>| {
        let link = link.map(|l| match &hostile.link_base {
            Some(base) => l.replacen("</", &format!("<{base}/"), 1),
            None => l,
        });
        if let Some(link) = link.and_then(|l| l.parse().ok()) {
            response.headers_mut().insert(http::header::LINK, link);
        }
        response
    };
    if let Some(per_page) = hostile.endless {
        let page: u64 = last
            .as_deref()
            .and_then(|l| l.strip_prefix('p'))
            .and_then(|l| l.split('.').next())
            .and_then(|k| k.parse().ok())
            .map_or(0, |k: u64| k.saturating_add(1));
        let tags: Vec<String> = (0..per_page).map(|i| format!("p{page}.{i}")).collect();
        let body = json!({ "name": repo, "tags": tags }).to_string();
        let link = format!(
            "</v2/{repo}/tags/list?last=p{page}.{}&n={per_page}>; rel=\"next\"",
            per_page.saturating_sub(1)
        );
        return with_link(json_response(StatusCode::OK, body), Some(link));
    }
    let reply = match step {
        Step::Serve(reply) => reply,
        Step::ServeAndKeep => Reply::Ok,
    };
    let serve_page = || match &tags {
        None => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        ),
        Some(tags) => {
            let page = page(repo, tags, n, last.as_deref(), page_size);
            let body = json!({ "name": repo, "tags": page.tags }).to_string();
            with_link(json_response(StatusCode::OK, body), page.link)
        }
    };
    match reply {
        Reply::Ok | Reply::PageFailure => serve_page(),
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            serve_page()
        }
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "UNKNOWN", "scripted failure")
        }
        Reply::TooManyRequests { retry_after_secs } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "rate limited",
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, retry_after_secs.into());
            response
        }
        Reply::TooManyRequestsRaw(value) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "rate limited",
            );
            if let Ok(value) = value.parse() {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        Reply::Truncated => {
            let body = json!({ "name": repo, "tags": tags.unwrap_or_default() }).to_string();
            json_response(StatusCode::OK, body[..body.len() / 2].to_string())
        }
        Reply::Garbage => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway (not a registry)</body></html>",
        )
            .into_response(),
        Reply::Unauthorized => challenge(ctx, Some(repo)),
    }
}

/// The per-repository hostile behaviours, read under the lock and used after it.
struct Hostile {
    endless: Option<usize>,
    page_delay: Option<std::time::Duration>,
    link_base: Option<String>,
    redirect_to: Option<String>,
}

fn manifest(
    ctx: &Ctx,
    method: &Method,
    repo: &str,
    reference: &str,
    headers: &HeaderMap,
) -> Response {
    let found = lock(&ctx.shared.repos)
        .get(repo)
        .and_then(|r| r.manifests.get(reference).cloned());
    let accepted: Vec<String> = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .collect();
    let Some(manifest) = found.filter(|m| accepted.contains(&m.media_type)) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    let body = match manifest.bytes {
        Some(bytes) => bytes,
        None => json!({ "schemaVersion": 2, "mediaType": manifest.media_type })
            .to_string()
            .into_bytes(),
    };
    let length = body.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, manifest.media_type)
        .header(http::header::CONTENT_LENGTH, length)
        .header("Docker-Content-Digest", manifest.digest)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn blob(ctx: &Ctx, method: &Method, repo: &str, digest: &str) -> Response {
    let found = lock(&ctx.shared.repos)
        .get(repo)
        .and_then(|r| r.blobs.get(digest).cloned());
    let Some(bytes) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        );
    };
    let length = bytes.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, length)
        .header("Docker-Content-Digest", digest)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The OCI Referrers API when enabled for `repo`; otherwise distribution 2.8's answer to a path
/// that matches no route.
fn referrers(ctx: &Ctx, repo: &str, subject: &str, query: Option<&str>) -> Response {
    let listed = lock(&ctx.shared.repos)
        .get(repo)
        .filter(|r| r.referrers)
        .map(|r| {
            let mut listed: Vec<(String, serde_json::Value)> = r
                .manifests
                .iter()
                // Each manifest is stored under its digest (and maybe a tag): list it once.
                .filter(|(key, m)| **key == m.digest)
                .filter_map(|(_, m)| {
                    let bytes = m.bytes.as_deref()?;
                    let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
                    (manifest["subject"]["digest"] == subject).then_some(())?;
                    Some((m.digest.clone(), referrer_descriptor(&m.media_type, bytes)?))
                })
                .collect();
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            listed
        });
    let Some(listed) = listed else {
        return (
            StatusCode::NOT_FOUND,
            [
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    http::header::HeaderName::from_static("docker-distribution-api-version"),
                    "registry/2.0",
                ),
            ],
            "404 page not found\n",
        )
            .into_response();
    };
    let wanted = query_param(query, "artifactType");
    let manifests: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| wanted.as_deref().is_none_or(|w| d["artifactType"] == w))
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut response = (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if wanted.is_some() {
        response.headers_mut().insert(
            "OCI-Filters-Applied",
            http::HeaderValue::from_static("artifactType"),
        );
    }
    response
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://stub/?{}", query?)).ok()?;
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

fn token(ctx: &Ctx) -> Response {
    let expires_in = lock(&ctx.shared.token_expires_in)
        .clone()
        .unwrap_or_else(|| "300".to_string());
    // Written by hand so any raw JSON (even beyond u64) reaches the client as sent.
    let body = format!(
        r#"{{"token":"stub-token","access_token":"stub-token","expires_in":{expires_in},"issued_at":"2026-01-01T00:00:00Z"}}"#
    );
    json_response(StatusCode::OK, body)
}

fn challenge(ctx: &Ctx, repo: Option<&str>) -> Response {
    let realm = lock(&ctx.shared.token_realm)
        .clone()
        .unwrap_or_else(|| format!("http://{}/token", ctx.addr));
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"");
    if let Some(repo) = repo {
        value.push_str(&format!(",scope=\"repository:{repo}:pull\""));
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    if let Ok(value) = value.parse() {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!({ "errors": [{ "code": code, "message": message }] }).to_string(),
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn page_params(query: Option<&str>) -> (Option<usize>, Option<String>) {
    let Some(query) = query else {
        return (None, None);
    };
    let Ok(url) = reqwest::Url::parse(&format!("http://stub/?{query}")) else {
        return (None, None);
    };
    let mut n = None;
    let mut last = None;
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "n" => n = value.parse().ok(),
            "last" => last = Some(value.into_owned()),
            _ => {}
        }
    }
    (n, last)
}
