//! `Status` failure bodies, shaped like the recorded kube-apiserver answers.

use serde_json::{json, Map, Value};

use super::resources::Resource;

/// A failed request: the HTTP code and the `Status` body to send.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

/// One field-level reason a write was rejected.
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: &str, details: Value) -> ApiError {
        ApiError {
            code,
            body: failure(code, reason, message, details),
            retry_after: None,
        }
    }

    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" not found", resource.qualified_plural());
        ApiError::new(404, "NotFound", &message, plural_details(resource, name))
    }

    /// A path that names no resource this server serves.
    pub fn unknown_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        )
    }

    pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
        let message = format!("{} \"{name}\" already exists", resource.qualified_plural());
        ApiError::new(
            409,
            "AlreadyExists",
            &message,
            plural_details(resource, name),
        )
    }

    pub fn conflict(resource: &Resource, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            resource.qualified_plural()
        );
        ApiError::new(409, "Conflict", &message, plural_details(resource, name))
    }

    /// A write whose preconditions do not hold: the storage layer's "invalid object" error, as
    /// the registry wraps it in a Conflict (`key`: the object's etcd key).
    pub fn precondition_failed(
        resource: &Resource,
        name: &str,
        key: &str,
        failed: &str,
    ) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": StorageError: invalid object, \
             Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: {failed}",
            resource.qualified_plural()
        );
        ApiError::new(409, "Conflict", &message, plural_details(resource, name))
    }

    pub fn invalid(resource: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let described: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match described.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let message = format!(
            "{} \"{name}\" is invalid: {summary}",
            resource.qualified_kind()
        );
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        // Events are validated by the core Event strategy, so the real server names no group.
        if !resource.group.is_empty() && resource.kind != "Event" {
            details.insert("group".into(), json!(resource.group));
        }
        details.insert("kind".into(), json!(resource.kind));
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        details.insert("causes".into(), Value::Array(causes));
        ApiError::new(422, "Invalid", &message, Value::Object(details))
    }

    /// A patch that cannot be applied: the real server gives no detail (04, 07).
    pub fn patch_rejected() -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            json!({}),
        )
    }

    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            "415: Unsupported Media Type",
            json!({}),
        )
    }

    pub fn bad_request(message: &str) -> ApiError {
        ApiError::new(400, "BadRequest", message, json!({}))
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            json!({}),
        )
    }

    /// A write denied by a ValidatingAdmissionPolicy (15): 422 `Invalid`, like a failed `test`
    /// op, but with `details.causes`. `path` is the object's; the message names the policy.
    pub fn admission_denied(path: &str, reason: &str) -> ApiError {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, plural, name) = match segments.as_slice() {
            ["apis", group, _, "namespaces", _, plural, name, ..] => (*group, *plural, *name),
            ["api", _, "namespaces", _, plural, name, ..] => ("", *plural, *name),
            _ => ("", "", ""),
        };
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        let denial = format!(
            "ValidatingAdmissionPolicy 'testbed-deny' with binding 'testbed-deny' denied request: {reason}"
        );
        let message = format!("{resource} \"{name}\" is forbidden: {denial}");
        let mut details = json!({"name": name, "kind": plural, "causes": [{"message": denial}]});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError::new(422, "Invalid", &message, details)
    }

    /// What an injected fault answers: the reason the real server pairs with that code.
    pub fn injected(code: u16) -> ApiError {
        let (reason, message) = match code {
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected fault"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            409 => ("Conflict", "injected conflict"),
            410 => ("Expired", "injected: resource version too old"),
            429 => (
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted",
            ),
            _ => ("InternalError", "Internal error occurred: injected fault"),
        };
        let retry_after = (code == 429).then_some(1);
        let details = match retry_after {
            Some(seconds) => json!({"retryAfterSeconds": seconds}),
            None => json!({}),
        };
        ApiError {
            retry_after,
            ..ApiError::new(code, reason, message, details)
        }
    }
}

/// A watch `ERROR` event payload for a resourceVersion the server no longer remembers.
pub(crate) fn expired(requested: u64, oldest: u64) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {requested} ({oldest})"),
        "reason": "Expired",
        "code": 410
    })
}

/// The body DELETE answers with for resources that do not return the deleted object.
pub(crate) fn deleted(resource: &Resource, name: &str, uid: &str) -> Value {
    let mut details = plural_details(resource, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details
    })
}

fn failure(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code
    })
}

fn plural_details(resource: &Resource, name: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), json!(name));
    if !resource.group.is_empty() {
        details.insert("group".into(), json!(resource.group));
    }
    details.insert("kind".into(), json!(resource.plural));
    Value::Object(details)
}
