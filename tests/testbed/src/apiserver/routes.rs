//! The HTTP edge: every request is logged, checked against injected faults, then dispatched.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use super::discovery;
use super::faults::{self, Fault};
use super::managed::Writer;
use super::resources::{parse_path, Discovery, Route, Target};
use super::status::ApiError;
use super::verbs::{self, Owner, Scope};
use super::{lock, watch, RecordedRequest, Shared};

const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();

    let fault = faults::take(&mut lock(&shared.faults), parts.method.as_str(), &path);
    // The rules' lock is released by now: other requests go on while this one waits.
    if let Some(Fault::Delay(wait)) = fault {
        tokio::time::sleep(wait).await;
    }
    let response = match &fault {
        Some(Fault::Status(code)) => error_response(ApiError::injected(*code)),
        Some(Fault::Drop) => dropped_connection(),
        Some(Fault::AdmissionDenied(message)) => {
            error_response(ApiError::admission_denied(&path, message))
        }
        Some(Fault::Delay(_)) | None => dispatch(
            &shared,
            &Incoming {
                method: &parts.method,
                uri: &parts.uri,
                content_type: content_type.as_deref(),
                user_agent: user_agent.as_deref(),
                authorization: authorization.as_deref(),
                host: &host,
                body: &body,
            },
        )
        .unwrap_or_else(error_response),
    };
    let status = match &fault {
        Some(Fault::Drop) => 0,
        _ => response.status().as_u16(),
    };
    lock(&shared.log).push(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    response
}

/// One request, as the verbs need it.
struct Incoming<'a> {
    method: &'a Method,
    uri: &'a http::Uri,
    content_type: Option<&'a str>,
    user_agent: Option<&'a str>,
    /// `Bearer <token>`: the token names the user (see [`super::ApiServer::write_kubeconfig_as`]).
    authorization: Option<&'a str>,
    host: &'a str,
    body: &'a [u8],
}

fn dispatch(shared: &Arc<Shared>, request: &Incoming) -> Result<Response, ApiError> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(request.uri)
        .map_err(|e| ApiError::bad_request(&e.to_string()))?;
    if request.uri.path() == SELF_SUBJECT_REVIEWS {
        return self_subject_review(request);
    }
    let route = parse_path(request.uri.path(), &lock(&shared.cluster).catalog);
    let target = match route {
        Route::Version if request.method == Method::GET => {
            return Ok(json_response(200, &version()))
        }
        Route::Discovery(wanted) if request.method == Method::GET => {
            return Ok(json_response(200, &discover(shared, wanted, request.host)))
        }
        Route::Discovery(_) => return Err(ApiError::method_not_allowed()),
        Route::Resource(target) => target,
        Route::NotServed => return Ok(page_not_found()),
        Route::Version | Route::UnknownResource => return Err(ApiError::unknown_resource()),
    };
    let field_manager = query.get("fieldManager").map(String::as_str);
    let writer = Writer::from_request(field_manager, request.user_agent);
    match target.name.clone() {
        None => collection(shared, request, &target, &query, &writer),
        Some(name) => object(shared, request, &target, &name, &query, &writer),
    }
}

fn collection(
    shared: &Arc<Shared>,
    request: &Incoming,
    target: &Target,
    query: &HashMap<String, String>,
    writer: &Writer,
) -> Result<Response, ApiError> {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match *request.method {
        Method::GET if watching => {
            let stream = watch::start(shared, target, query)?;
            Ok(streaming_response(stream))
        }
        Method::GET => Ok(json_response(
            200,
            &verbs::list(&lock(&shared.cluster), target, query)?,
        )),
        Method::POST if target.namespace.is_some() || !target.resource.namespaced => {
            let object = verbs::parse_body(request.body)?;
            let created = verbs::create(
                &mut lock(&shared.cluster),
                target,
                object,
                Owner::Writer(writer),
            )?;
            Ok(json_response(201, &created))
        }
        Method::DELETE => Ok(json_response(
            200,
            &verbs::delete_collection(&mut lock(&shared.cluster), target, query)?,
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn object(
    shared: &Arc<Shared>,
    request: &Incoming,
    target: &Target,
    name: &str,
    query: &HashMap<String, String>,
    writer: &Writer,
) -> Result<Response, ApiError> {
    let scope = Scope::of(target)?;
    let mut cluster = lock(&shared.cluster);
    let answer = match *request.method {
        Method::GET => verbs::get(&cluster, target, name)?,
        Method::PUT => {
            let object = verbs::parse_body(request.body)?;
            verbs::update(
                &mut cluster,
                target,
                name,
                scope,
                object,
                Owner::Writer(writer),
            )?
        }
        Method::PATCH => {
            let patch = verbs::PatchRequest {
                content_type: request.content_type,
                writer,
                named_manager: query.get("fieldManager").is_some_and(|m| !m.is_empty()),
                force: matches!(query.get("force").map(String::as_str), Some("true" | "1")),
            };
            let (patched, created) =
                verbs::patch(&mut cluster, target, name, &patch, request.body)?;
            return Ok(json_response(if created { 201 } else { 200 }, &patched));
        }
        Method::DELETE if scope == Scope::Main => {
            let options = verbs::delete_options(request.body)?;
            verbs::delete(&mut cluster, target, name, &options)?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(200, &answer))
}

fn discover(shared: &Arc<Shared>, wanted: Discovery, host: &str) -> Value {
    let cluster = lock(&shared.cluster);
    let catalog = &cluster.catalog;
    match wanted {
        Discovery::CoreVersions => discovery::core_versions(host),
        Discovery::Groups => discovery::group_list(catalog),
        Discovery::Group(group) => discovery::group(catalog, &group),
        Discovery::Resources { group, version } => {
            discovery::resource_list(catalog, &group, &version)
        }
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "gitVersion": "v1.36.0-tagwatch-testbed",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn base_response(code: u16, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

/// What Go's `http.NotFound` answers for a path nothing serves (26): not a `Status`.
fn page_not_found() -> Response {
    let mut response = Response::new(Body::from("404 page not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn json_response(code: u16, body: &Value) -> Response {
    base_response(code, Body::from(body.to_string()))
}

fn streaming_response(body: Body) -> Response {
    base_response(200, body)
}

fn error_response(error: ApiError) -> Response {
    let mut response = json_response(error.code, &error.body);
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A body that fails at once: hyper then aborts the connection mid-response, which the client
/// sees as a transport error, the way a crashed or partitioned server looks.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection drop"))
    });
    let mut response = base_response(200, Body::from_stream(failing));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
    response
}

const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// The user a request is made as: the bearer token's text, or the test bed's administrator for
/// a request without one (as a kubeconfig written by `write_kubeconfig`).
pub(crate) const ADMIN_USER: &str = "testbed-admin";

fn user_of(request: &Incoming) -> (String, Vec<&'static str>) {
    match request
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(token) => (token.to_string(), vec!["system:authenticated"]),
        None => (
            ADMIN_USER.to_string(),
            vec!["system:masters", "system:authenticated"],
        ),
    }
}

/// `SelfSubjectReview` (authentication.k8s.io/v1): only `create`, answered with who the caller
/// is, as the API server does (201, `metadata.creationTimestamp: null`, nothing stored).
fn self_subject_review(request: &Incoming) -> Result<Response, ApiError> {
    if request.method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let body: serde_json::Value = serde_json::from_slice(request.body)
        .map_err(|e| ApiError::bad_request(&format!("decoding the body: {e}")))?;
    if body.get("kind").and_then(|k| k.as_str()) != Some("SelfSubjectReview") {
        return Err(ApiError::bad_request("the body is not a SelfSubjectReview"));
    }
    let (username, groups) = user_of(request);
    Ok(json_response(
        201,
        &serde_json::json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": username, "groups": groups}}
        }),
    ))
}
