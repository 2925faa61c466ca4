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
use super::resources::{parse_path, Discovery, Route, Target};
use super::status::ApiError;
use super::verbs::{self, Scope};
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
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();

    let fault = faults::take(&mut lock(&shared.faults), parts.method.as_str(), &path);
    let response = match fault {
        Some(Fault::Status(code)) => error_response(ApiError::injected(code)),
        Some(Fault::Drop) => dropped_connection(),
        None => dispatch(
            &shared,
            &parts.method,
            &parts.uri,
            content_type.as_deref(),
            &host,
            &body,
        )
        .unwrap_or_else(error_response),
    };
    let status = match fault {
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

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &http::Uri,
    content_type: Option<&str>,
    host: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(&e.to_string()))?;
    let route = parse_path(uri.path(), &lock(&shared.cluster).catalog);
    let target = match route {
        Route::Version if method == Method::GET => return Ok(json_response(200, &version())),
        Route::Discovery(wanted) if method == Method::GET => {
            return Ok(json_response(200, &discover(shared, wanted, host)))
        }
        Route::Discovery(_) => return Err(ApiError::method_not_allowed()),
        Route::Resource(target) => target,
        Route::NotServed => return Ok(page_not_found()),
        Route::Version | Route::UnknownResource => return Err(ApiError::unknown_resource()),
    };
    match target.name.clone() {
        None => collection(shared, method, &target, &query, body),
        Some(name) => object(shared, method, &target, &name, content_type, body),
    }
}

fn collection(
    shared: &Arc<Shared>,
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match *method {
        Method::GET if watching => {
            let stream = watch::start(shared, target, query)?;
            Ok(streaming_response(stream))
        }
        Method::GET => Ok(json_response(
            200,
            &verbs::list(&lock(&shared.cluster), target, query)?,
        )),
        Method::POST if target.namespace.is_some() || !target.resource.namespaced => {
            let object = verbs::parse_body(body)?;
            let created = verbs::create(&mut lock(&shared.cluster), target, object)?;
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
    method: &Method,
    target: &Target,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let scope = Scope::of(target)?;
    let mut cluster = lock(&shared.cluster);
    let answer = match *method {
        Method::GET => verbs::get(&cluster, target, name)?,
        Method::PUT => {
            let object = verbs::parse_body(body)?;
            verbs::update(&mut cluster, target, name, scope, object)?
        }
        Method::PATCH => verbs::patch(&mut cluster, target, name, content_type, body)?,
        Method::DELETE if scope == Scope::Main => verbs::delete(&mut cluster, target, name)?,
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
        "minor": "33",
        "gitVersion": "v1.33.0-tagwatch-testbed",
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
