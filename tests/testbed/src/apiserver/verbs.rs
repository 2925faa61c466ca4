//! The REST verbs on stored objects: get, list, create, replace, patch, delete.
//! Writes follow the real registry: preconditions, defaulting, decoding, validation,
//! generation bookkeeping, then the store write and the controller's reaction.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{json, Value};

use super::defaults;
use super::managed::{self, Writer};
use super::patch::{self, PatchType};
use super::resources::{
    Resource, StatusPolicy, Target, CUSTOM_RESOURCE_DEFINITIONS, DAEMONSETS, NAMESPACES, PODS,
};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::random_suffix;
use super::{crd, daemonset, workloads, Cluster};

/// Where an update may write: the whole object, or only `status` (the `/status` subresource).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Scope {
    Main,
    Status,
}

/// How a write's field ownership is recorded.
#[derive(Clone, Copy)]
pub(crate) enum Owner<'a> {
    /// An ordinary write: the writer takes the fields it changed.
    Writer(&'a Writer),
    /// Server-side apply already computed `managedFields` on the object.
    Applied,
}

impl Scope {
    pub fn of(target: &Target) -> Result<Scope, ApiError> {
        let resource = target.resource;
        match target.subresource.as_deref() {
            None => Ok(Scope::Main),
            Some("status") if resource.has_status() => Ok(Scope::Status),
            // The CRD handler answers a subresource it does not serve as a missing object.
            Some(_) if resource.custom => Err(ApiError::not_found(
                resource,
                target.name.as_deref().unwrap_or_default(),
            )),
            Some(_) => Err(ApiError::unknown_resource()),
        }
    }
}

fn namespace_of(target: &Target) -> &str {
    target.namespace.as_deref().unwrap_or_default()
}

pub(crate) fn get(cluster: &Cluster, target: &Target, name: &str) -> Result<Value, ApiError> {
    cluster
        .store
        .get(target.resource, namespace_of(target), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(target.resource, name))
}

/// The continue token the real server hands out: base64 JSON naming the key to resume at.
fn continue_token(rv: u64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((value["rv"].as_u64()?, value["start"].as_str()?.to_string()))
}

fn sort_key(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "{}/{}",
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default()
    )
}

pub(crate) fn list(
    cluster: &Cluster,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        resource,
    )?;
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(ApiError::bad_request("limit must be a number")),
    };
    let start = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => {
            let (rv, start) = decode_continue(token).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            if rv < cluster.store.oldest_rv() {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    json!({}),
                ));
            }
            Some(start)
        }
    };
    // etcd orders by key string, which is what continue tokens resume on.
    let mut items: Vec<(String, &Value)> = cluster
        .store
        .list(resource, target.namespace.as_deref())
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| (sort_key(o), o))
        .filter(|(key, _)| start.as_ref().is_none_or(|s| key.as_str() >= s.as_str()))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));

    let rv = cluster.store.resource_version();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit.filter(|l| *l < items.len()) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(|(key, _)| key.clone()).unwrap_or_default();
        metadata["continue"] = json!(continue_token(rv, &last));
        // The server can only count what is left when no selector filters it.
        if !query.contains_key("labelSelector") && !query.contains_key("fieldSelector") {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items = items
        .into_iter()
        .map(|(_, object)| object.clone())
        .collect();
    Ok(list_of(resource, metadata, items))
}

/// A `<Kind>List`. Items of built-in kinds carry no kind (02); custom ones are served as
/// stored, kind and all.
fn list_of(resource: &Resource, metadata: Value, mut items: Vec<Value>) -> Value {
    if !resource.custom {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            item.remove("kind");
            item.remove("apiVersion");
        }
    }
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items
    })
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(&format!(
            "the body of the request could not be decoded: {e}"
        ))
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "the body of the request was in an unknown format",
        ))
    }
}

/// Rejects an object whose kind or apiVersion names another resource.
fn check_type(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let kind_ok = object["kind"].as_str().is_none_or(|k| k == resource.kind);
    let version_ok = object["apiVersion"]
        .as_str()
        .is_none_or(|v| v == resource.api_version());
    if kind_ok && version_ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(&format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            object["apiVersion"].as_str().unwrap_or_default(),
            resource.api_version()
        )))
    }
}

fn decode(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    (resource.decode)(object).map_err(|e| {
        ApiError::bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })
}

pub(crate) fn create(
    cluster: &mut Cluster,
    target: &Target,
    mut object: Value,
    owner: Owner,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    check_type(resource, &object)?;
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let meta = &mut object["metadata"];
    if let Some(namespace) = &target.namespace {
        match meta["namespace"].as_str() {
            Some(given) if !given.is_empty() && given != namespace => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => meta["namespace"] = json!(namespace),
        }
    }
    if meta["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: resourceVersion should not be set on objects to be created",
            json!({}),
        ));
    }
    if meta["name"].as_str().unwrap_or_default().is_empty() {
        if let Some(prefix) = meta["generateName"].as_str() {
            meta["name"] = json!(format!("{prefix}{}", random_suffix(5)));
        }
    }
    if let Some(map) = meta.as_object_mut() {
        map.remove("uid");
        map.remove("creationTimestamp");
        map.remove("generation");
    }
    let name = meta["name"].as_str().unwrap_or_default().to_string();
    if resource.generation {
        object["metadata"]["generation"] = json!(1);
    }
    if let StatusPolicy::Subresource(empty) = resource.status {
        // Status belongs to the controller: a create never sets it.
        set_or_remove(&mut object, "status", empty());
    }
    if resource.same(&DAEMONSETS) {
        daemonset::stamp_template_generation(None, &mut object);
    }
    defaults::apply(resource, &mut object);
    decode(resource, &object)?;
    super::validation::validate(resource, &object)?;
    if cluster
        .store
        .get(resource, namespace_of(target), &name)
        .is_some()
    {
        return Err(ApiError::already_exists(resource, &name));
    }
    if let Owner::Writer(writer) = owner {
        object["apiVersion"] = json!(resource.api_version());
        managed::record_update(None, &mut object, writer);
    }
    let created = cluster.store.insert(resource, object);
    react(cluster, resource, &created, true);
    Ok(created)
}

/// The controllers' reaction to a write through the API.
fn react(cluster: &mut Cluster, resource: &Resource, written: &Value, desired_changed: bool) {
    if resource.same(&CUSTOM_RESOURCE_DEFINITIONS) {
        crd::installed(cluster, written);
    }
    workloads::written(cluster, resource, written, desired_changed);
}

fn set_or_remove(object: &mut Value, key: &str, value: Option<Value>) {
    match (value.filter(|v| !v.is_null()), object.as_object_mut()) {
        (Some(value), Some(map)) => {
            map.insert(key.to_string(), value);
        }
        (None, Some(map)) => {
            map.remove(key);
        }
        (_, None) => {}
    }
}

/// What `metadata.generation` counts: everything but metadata, and but status where `/status`
/// owns it (for built-in kinds that is `spec`; 28 shows it for a custom resource).
fn desired_state(resource: &Resource, object: &Value) -> Value {
    let mut desired = object.clone();
    if let Some(map) = desired.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
        if resource.has_status() {
            map.remove("status");
        }
    }
    desired
}

/// Replaces an object (PUT, and the end of every PATCH).
pub(crate) fn update(
    cluster: &mut Cluster,
    target: &Target,
    name: &str,
    scope: Scope,
    mut object: Value,
    owner: Owner,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    check_type(resource, &object)?;
    let current = get(cluster, target, name)?;
    if object["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let current_rv = &current["metadata"]["resourceVersion"];
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
        if !rv.is_empty() && Some(rv) != current_rv.as_str() {
            return Err(ApiError::conflict(resource, name));
        }
    }
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    for immutable in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
    ] {
        object["metadata"][immutable] = current["metadata"][immutable].clone();
    }
    object["metadata"]["resourceVersion"] = current_rv.clone();
    if let Owner::Writer(_) = owner {
        // Ownership is the server's bookkeeping, whatever managedFields the client sent back.
        object["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
    }
    if resource.has_status() {
        match scope {
            // The main resource cannot change status, and /status can change nothing else.
            Scope::Main => set_or_remove(&mut object, "status", current.get("status").cloned()),
            Scope::Status => {
                let status = object.get("status").cloned();
                object = current.clone();
                set_or_remove(&mut object, "status", status);
            }
        }
    }
    if let Some(map) = object["metadata"].as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    if resource.same(&DAEMONSETS) {
        daemonset::stamp_template_generation(Some(&current), &mut object);
    }
    defaults::apply(resource, &mut object);
    decode(resource, &object)?;
    super::validation::validate(resource, &object)?;
    let desired_changed = desired_state(resource, &object) != desired_state(resource, &current);
    if resource.generation && desired_changed {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
        object["metadata"]["generation"] = json!(generation + 1);
    }
    let mut comparable = object.clone();
    comparable["apiVersion"] = current["apiVersion"].clone();
    comparable["kind"] = current["kind"].clone();
    let mut unchanged = current.clone();
    for side in [&mut comparable, &mut unchanged] {
        if let Some(meta) = side["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    }
    if comparable == unchanged {
        // A no-op write keeps its resourceVersion and emits no event, like the real server.
        return Ok(current);
    }
    if let Owner::Writer(writer) = owner {
        let writer = match scope {
            Scope::Status => writer.clone().status(),
            Scope::Main => writer.clone(),
        };
        object["apiVersion"] = json!(resource.api_version());
        managed::record_update(Some(&current), &mut object, &writer);
    }
    let updated = cluster.store.update(resource, object);
    react(cluster, resource, &updated, desired_changed);
    Ok(updated)
}

/// What a PATCH request carries besides its body.
pub(crate) struct PatchRequest<'a> {
    pub content_type: Option<&'a str>,
    pub writer: &'a Writer,
    /// `fieldManager` was given (server-side apply requires it).
    pub named_manager: bool,
    pub force: bool,
}

/// Returns the patched object and whether it was created (server-side apply upserts).
pub(crate) fn patch(
    cluster: &mut Cluster,
    target: &Target,
    name: &str,
    request: &PatchRequest,
    body: &[u8],
) -> Result<(Value, bool), ApiError> {
    let kind = PatchType::from_content_type(request.content_type)?;
    let scope = Scope::of(target)?;
    if kind == PatchType::Apply {
        return server_side_apply(cluster, target, name, scope, request, body);
    }
    let current = get(cluster, target, name)?;
    let patched = patch::apply(kind, &current, body)?;
    let updated = update(
        cluster,
        target,
        name,
        scope,
        patched,
        Owner::Writer(request.writer),
    )?;
    Ok((updated, false))
}

fn server_side_apply(
    cluster: &mut Cluster,
    target: &Target,
    name: &str,
    scope: Scope,
    request: &PatchRequest,
    body: &[u8],
) -> Result<(Value, bool), ApiError> {
    if !request.named_manager {
        return Err(ApiError::bad_request(
            "fieldManager is required for apply requests",
        ));
    }
    let applied = patch::parse_apply(body)?;
    check_type(target.resource, &applied)?;
    if applied["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            applied["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let writer = match scope {
        Scope::Status => request.writer.clone().status(),
        Scope::Main => request.writer.clone(),
    };
    match cluster
        .store
        .get(target.resource, namespace_of(target), name)
        .cloned()
    {
        None if scope == Scope::Main => {
            let mut object = managed::apply(None, &applied, &writer, request.force)?;
            object["metadata"]["name"] = json!(name);
            let created = create(cluster, target, object, Owner::Applied)?;
            Ok((created, true))
        }
        None => Err(ApiError::not_found(target.resource, name)),
        Some(current) => {
            let merged = managed::apply(Some(&current), &applied, &writer, request.force)?;
            let updated = update(cluster, target, name, scope, merged, Owner::Applied)?;
            Ok((updated, false))
        }
    }
}

/// DELETE of one object. `options` is the request's `DeleteOptions` (`Null` without a body):
/// `preconditions` (uid, resourceVersion) must hold or nothing is deleted (409, as the real
/// registry answers); `propagationPolicy: Orphan` keeps what the object owned.
pub(crate) fn delete(
    cluster: &mut Cluster,
    target: &Target,
    name: &str,
    options: &Value,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let namespace = namespace_of(target).to_string();
    if resource.same(&NAMESPACES) {
        return delete_namespace(cluster, name);
    }
    let current = cluster
        .store
        .get(resource, &namespace, name)
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    check_preconditions(
        resource,
        &namespace,
        name,
        current,
        &options["preconditions"],
    )?;
    let mut removed = cluster
        .store
        .remove(resource, &namespace, name)
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    if resource.same(&CUSTOM_RESOURCE_DEFINITIONS) {
        crd::removed(cluster, &removed);
    }
    let orphan = options["propagationPolicy"] == "Orphan";
    workloads::deleted(cluster, resource, &removed, orphan);
    if resource.same(&PODS) {
        return Ok(removed);
    }
    if resource.same(&CUSTOM_RESOURCE_DEFINITIONS) {
        // The real server answers with the CRD, finalizing while its objects are deleted.
        removed["metadata"]["deletionTimestamp"] = json!(super::store::now());
        return Ok(removed);
    }
    let uid = removed["metadata"]["uid"].as_str().unwrap_or_default();
    Ok(status::deleted(resource, name, uid))
}

/// A DELETE body: `DeleteOptions`, or `Null` when there is none.
pub(crate) fn delete_options(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    parse_body(body)
}

/// The registry's precondition check: a mismatch is a storage "invalid object" error that the
/// delete handler turns into 409 Conflict, its text kept in the message.
fn check_preconditions(
    resource: &Resource,
    namespace: &str,
    name: &str,
    current: &Value,
    preconditions: &Value,
) -> Result<(), ApiError> {
    let meta = &current["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let failed = [("UID", "uid"), ("ResourceVersion", "resourceVersion")]
        .into_iter()
        .find_map(|(label, field)| {
            let wanted = preconditions[field].as_str()?;
            let actual = text(&meta[field]);
            (wanted != actual).then(|| {
                format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                )
            })
        });
    let Some(failed) = failed else {
        return Ok(());
    };
    let key = match (resource.custom, namespace) {
        (true, "") => format!("/registry/{}/{}/{name}", resource.group, resource.plural),
        (true, ns) => format!(
            "/registry/{}/{}/{ns}/{name}",
            resource.group, resource.plural
        ),
        (false, "") => format!("/registry/{}/{name}", resource.plural),
        (false, ns) => format!("/registry/{}/{ns}/{name}", resource.plural),
    };
    Err(ApiError::precondition_failed(resource, name, &key, &failed))
}

/// DELETE on a collection: every object the selectors match goes, and the answer lists them.
pub(crate) fn delete_collection(
    cluster: &mut Cluster,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    if !resource.verbs.contains(&"deletecollection") {
        return Err(ApiError::method_not_allowed());
    }
    let matching = list(cluster, target, query)?;
    let mut deleted = Vec::new();
    for item in matching["items"].as_array().into_iter().flatten() {
        let (namespace, name) = workloads::namespace_and_name(item);
        let each = Target {
            resource,
            namespace: resource.namespaced.then_some(namespace),
            name: Some(name.clone()),
            subresource: None,
        };
        match delete(cluster, &each, &name, &Value::Null) {
            Ok(_) => deleted.push(item.clone()),
            // Collected with an owner deleted just before.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let metadata = json!({"resourceVersion": cluster.store.resource_version().to_string()});
    Ok(list_of(resource, metadata, deleted))
}

/// Namespaces go away at once with everything in them; the answer shows them Terminating.
fn delete_namespace(cluster: &mut Cluster, name: &str) -> Result<Value, ApiError> {
    let mut namespace = cluster
        .store
        .get(&NAMESPACES, "", name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&NAMESPACES, name))?;
    cluster.store.remove_namespace_contents(name);
    cluster.forget_namespace(name);
    cluster.store.remove(&NAMESPACES, "", name);
    namespace["metadata"]["deletionTimestamp"] = json!(super::store::now());
    namespace["status"]["phase"] = json!("Terminating");
    Ok(namespace)
}
