//! Body formats of the supported senders → hints.
//!
//! Only pushes and deletions become hints (a deleted tag must re-list so aliases move back);
//! pulls, mounts, blob uploads, scans and pings are ignored with `Ok` and no hints. Everything a
//! hint holds comes from the body, normalised through [`Repository`]'s parser.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{Hint, Source};
use crate::model::image::{ImageRef, Repository};

/// A body tagwatch cannot read; the caller answers 400.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{sender} webhook: body does not parse: {reason}")]
    Malformed { sender: Source, reason: String },
    #[error("{sender} webhook: {field} is missing")]
    Missing { sender: Source, field: &'static str },
    #[error("{sender} webhook: {field} is invalid: {reason}")]
    Invalid {
        sender: Source,
        field: &'static str,
        reason: String,
    },
}

impl PayloadError {
    /// A small fixed set, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadError::Malformed { .. } => "malformed",
            PayloadError::Missing { .. } => "missing_field",
            PayloadError::Invalid { .. } => "invalid_field",
        }
    }
}

/// Reads one webhook body. `registry_hint` is the registry host to assume when the body names none
/// (a distribution or Harbor event without host information); hints come back deduplicated, in
/// body order.
pub fn parse(
    source: Source,
    body: &[u8],
    registry_hint: Option<&str>,
) -> Result<Vec<Hint>, PayloadError> {
    let hints = match source {
        Source::Registry => distribution(body, registry_hint)?,
        Source::DockerHub => docker_hub(body)?,
        Source::Harbor => harbor(body, registry_hint)?,
        Source::Quay => quay(body, registry_hint)?,
        Source::GitHub => github(body)?,
        Source::Generic => generic(body)?,
    };
    let mut seen = HashSet::new();
    Ok(hints
        .into_iter()
        .filter(|h| seen.insert(h.clone()))
        .collect())
}

#[derive(Deserialize)]
struct DistributionEnvelope {
    events: Vec<DistributionEvent>,
}

#[derive(Deserialize)]
struct DistributionEvent {
    action: String,
    target: DistributionTarget,
    request: Option<HostOnly>,
}

#[derive(Deserialize)]
struct DistributionTarget {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    repository: String,
    tag: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct HostOnly {
    host: Option<String>,
}

fn distribution(body: &[u8], registry_hint: Option<&str>) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::Registry;
    let envelope: DistributionEnvelope = decode(SENDER, body)?;
    let mut hints = Vec::new();
    for event in envelope.events {
        if !matches!(event.action.as_str(), "push" | "delete") || !is_manifest(&event.target) {
            continue;
        }
        // The Host the pushing client used is the name Deployments use too.
        let host = non_empty(event.request.and_then(|r| r.host))
            .or_else(|| {
                event
                    .target
                    .url
                    .as_deref()
                    .and_then(url_host)
                    .map(String::from)
            })
            .or_else(|| registry_hint.map(String::from))
            .ok_or(PayloadError::Missing {
                sender: SENDER,
                field: "events[].request.host",
            })?;
        let field = "events[].target.repository";
        hints.push(Hint {
            repository: repository(SENDER, field, &host, &event.target.repository)?,
            tag: non_empty(event.target.tag),
        });
    }
    Ok(hints)
}

/// Manifest and index events count; blob and config uploads do not. Deletions carry neither a
/// media type nor a URL, and count.
fn is_manifest(target: &DistributionTarget) -> bool {
    if target.tag.as_deref().is_some_and(|t| !t.is_empty()) {
        return true;
    }
    if let Some(media_type) = target.media_type.as_deref().filter(|m| !m.is_empty()) {
        let m = media_type.to_ascii_lowercase();
        let blob = m == "application/octet-stream"
            || [".layer.", ".config.", ".rootfs.", ".container.image."]
                .iter()
                .any(|part| m.contains(part));
        return !blob && (m.contains("manifest") || m.contains(".index."));
    }
    target
        .url
        .as_deref()
        .is_none_or(|u| u.contains("/manifests/"))
}

#[derive(Deserialize)]
struct DockerHubBody {
    push_data: DockerHubPush,
    repository: RepositoryNames,
}

#[derive(Deserialize)]
struct DockerHubPush {
    tag: Option<String>,
}

/// Docker Hub's and Harbor's repository objects (`repo_name` / `repo_full_name`).
#[derive(Deserialize)]
struct RepositoryNames {
    #[serde(alias = "repo_full_name")]
    repo_name: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

impl RepositoryNames {
    fn path(self) -> Option<String> {
        non_empty(self.repo_name).or_else(|| match (self.namespace, self.name) {
            (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
            (None, name) => non_empty(name),
            (Some(_), None) => None,
        })
    }
}

fn docker_hub(body: &[u8]) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::DockerHub;
    let body: DockerHubBody = decode(SENDER, body)?;
    let field = "repository.repo_name";
    let path = body.repository.path().ok_or(PayloadError::Missing {
        sender: SENDER,
        field,
    })?;
    Ok(vec![Hint {
        repository: repository(SENDER, field, "docker.io", &path)?,
        tag: non_empty(body.push_data.tag),
    }])
}

#[derive(Deserialize)]
struct HarborType {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct HarborBody {
    event_data: HarborEventData,
}

#[derive(Deserialize)]
struct HarborEventData {
    #[serde(default)]
    resources: Vec<HarborResource>,
    repository: RepositoryNames,
}

#[derive(Deserialize)]
struct HarborResource {
    tag: Option<String>,
    resource_url: Option<String>,
}

fn harbor(body: &[u8], registry_hint: Option<&str>) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::Harbor;
    let HarborType { kind } = decode(SENDER, body)?;
    if !matches!(kind.as_str(), "PUSH_ARTIFACT" | "DELETE_ARTIFACT") {
        return Ok(Vec::new());
    }
    let HarborBody { event_data } = decode(SENDER, body)?;
    let field = "event_data.repository.repo_full_name";
    let path = event_data.repository.path().ok_or(PayloadError::Missing {
        sender: SENDER,
        field,
    })?;
    if event_data.resources.is_empty() {
        let repository = repository(SENDER, field, harbor_host(None, registry_hint)?, &path)?;
        return Ok(vec![Hint {
            repository,
            tag: None,
        }]);
    }
    let mut hints = Vec::new();
    for resource in &event_data.resources {
        hints.push(Hint {
            repository: repository(
                SENDER,
                field,
                harbor_host(Some(resource), registry_hint)?,
                &path,
            )?,
            tag: non_empty(resource.tag.clone()),
        });
    }
    Ok(hints)
}

fn harbor_host<'a>(
    resource: Option<&'a HarborResource>,
    registry_hint: Option<&'a str>,
) -> Result<&'a str, PayloadError> {
    resource
        .and_then(|r| r.resource_url.as_deref())
        .and_then(url_host)
        .or(registry_hint)
        .ok_or(PayloadError::Missing {
            sender: Source::Harbor,
            field: "event_data.resources[].resource_url",
        })
}

#[derive(Deserialize)]
struct QuayBody {
    repository: String,
    docker_url: Option<String>,
    updated_tags: Option<Vec<String>>,
}

fn quay(body: &[u8], registry_hint: Option<&str>) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::Quay;
    let body: QuayBody = decode(SENDER, body)?;
    // Build and vulnerability notifications share the repository fields but not `updated_tags`.
    let Some(tags) = body.updated_tags else {
        return Ok(Vec::new());
    };
    let host = body
        .docker_url
        .as_deref()
        .and_then(url_host)
        .or(registry_hint)
        .ok_or(PayloadError::Missing {
            sender: SENDER,
            field: "docker_url",
        })?;
    let repository = repository(SENDER, "repository", host, &body.repository)?;
    let tags: Vec<Option<String>> = if tags.is_empty() {
        vec![None]
    } else {
        tags.into_iter().map(|t| non_empty(Some(t))).collect()
    };
    Ok(tags
        .into_iter()
        .map(|tag| Hint {
            repository: repository.clone(),
            tag,
        })
        .collect())
}

/// A `registry_package` event or its newer twin, the `package` event: same package object.
#[derive(Deserialize)]
struct GitHubBody {
    action: Option<String>,
    registry_package: Option<GitHubPackage>,
    package: Option<GitHubPackage>,
}

#[derive(Deserialize)]
struct GitHubPackage {
    name: String,
    namespace: Option<String>,
    owner: Option<GitHubOwner>,
    package_type: Option<String>,
    package_version: Option<GitHubVersion>,
    registry: Option<GitHubRegistry>,
}

#[derive(Deserialize)]
struct GitHubOwner {
    login: String,
}

#[derive(Deserialize)]
struct GitHubVersion {
    container_metadata: Option<GitHubContainerMetadata>,
}

#[derive(Deserialize)]
struct GitHubContainerMetadata {
    tag: Option<GitHubTag>,
}

#[derive(Deserialize)]
struct GitHubTag {
    name: Option<String>,
}

#[derive(Deserialize)]
struct GitHubRegistry {
    url: Option<String>,
}

/// Pings and other events (whose bodies carry no package) yield no hints, as do npm, Maven and
/// other non-container packages an organisation-wide hook also reports.
fn github(body: &[u8]) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::GitHub;
    let body: GitHubBody = decode(SENDER, body)?;
    let Some(package) = body.registry_package.or(body.package) else {
        return Ok(Vec::new());
    };
    let action = body.action.ok_or(PayloadError::Missing {
        sender: SENDER,
        field: "action",
    })?;
    let container = package
        .package_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("container"));
    if !container || !matches!(action.as_str(), "published" | "updated") {
        return Ok(Vec::new());
    }
    let owner = non_empty(package.namespace)
        .or(package.owner.map(|o| o.login))
        .ok_or(PayloadError::Missing {
            sender: SENDER,
            field: "registry_package.namespace",
        })?;
    let host = package
        .registry
        .and_then(|r| r.url)
        .as_deref()
        .and_then(url_host)
        .unwrap_or("ghcr.io")
        .to_ascii_lowercase();
    // ghcr.io lower-cases owner and name; the API reports them as the owner spells them.
    let path = format!("{owner}/{}", package.name).to_lowercase();
    let tag = package
        .package_version
        .and_then(|v| v.container_metadata)
        .and_then(|m| m.tag)
        .and_then(|t| non_empty(t.name));
    Ok(vec![Hint {
        repository: repository(SENDER, "registry_package.name", &host, &path)?,
        tag,
    }])
}

#[derive(Deserialize)]
struct GenericBody {
    image: String,
    tag: Option<String>,
}

fn generic(body: &[u8]) -> Result<Vec<Hint>, PayloadError> {
    const SENDER: Source = Source::Generic;
    let body: GenericBody = decode(SENDER, body)?;
    let invalid = |field, reason| PayloadError::Invalid {
        sender: SENDER,
        field,
        reason,
    };
    let image = ImageRef::parse(body.image.trim()).map_err(|e| invalid("image", e.to_string()))?;
    let tag = match (non_empty(body.tag), image.tag) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "tag",
                format!("{a:?} differs from the image's {b:?}"),
            ));
        }
        (Some(tag), _) | (None, Some(tag)) => Some(tag),
        (None, None) => None,
    };
    Ok(vec![Hint {
        repository: image.repository,
        tag,
    }])
}

fn decode<T: DeserializeOwned>(sender: Source, body: &[u8]) -> Result<T, PayloadError> {
    let malformed = |reason| PayloadError::Malformed { sender, reason };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => malformed(e.into_inner().to_string()),
            _ => malformed(format!("at {path}: {}", e.into_inner())),
        }
    })?;
    deserializer.end().map_err(|e| malformed(e.to_string()))?;
    Ok(value)
}

/// Parses `host/path` the way a Deployment's image would be, refusing a "host" the reference
/// grammar would read as part of a Docker Hub path (`registry/app` is Docker Hub's `registry/app`).
fn repository(
    sender: Source,
    field: &'static str,
    host: &str,
    path: &str,
) -> Result<Repository, PayloadError> {
    let invalid = |reason| PayloadError::Invalid {
        sender,
        field,
        reason,
    };
    let host = host.trim().trim_end_matches('/');
    let path = path.trim().trim_matches('/');
    if path.is_empty() {
        return Err(invalid("the repository name is empty".to_string()));
    }
    let repository: Repository = format!("{host}/{path}")
        .parse()
        .map_err(|e: crate::model::image::ImageRefError| invalid(e.to_string()))?;
    let expected = if host == "index.docker.io" {
        "docker.io"
    } else {
        host
    };
    if repository.registry != expected {
        return Err(invalid(format!(
            "{host:?} is not a registry host (needs a '.', a port or \"localhost\")"
        )));
    }
    Ok(repository)
}

/// The host (with port) of `scheme://host/...` or of a scheme-less `host/path` reference.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    (!host.is_empty()).then_some(host)
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    /// distribution 2.8: a layer upload, the tagged manifest, a pull, a mount, an index pushed by
    /// digest into another repository, and a replayed event.
    fn registry_push() -> String {
        let event = |action: &str, media: &str, repo: &str, tag: &str, kind: &str| {
            format!(
                r#"{{"id":"4c5e","timestamp":"2024-05-02T10:00:00Z","action":"{action}",
                "target":{{"mediaType":"{media}","size":527,"digest":"{D}","length":527,
                "repository":"{repo}"{tag},"url":"http://127.0.0.1:5000/v2/{repo}/{kind}/{D}"}},
                "request":{{"id":"9f2a","addr":"127.0.0.1:53412","host":"127.0.0.1:5000",
                "method":"PUT","useragent":"skopeo/1.9.3"}},"actor":{{}},
                "source":{{"addr":"tagwatch-test:5000","instanceID":"d1c0"}}}}"#
            )
        };
        let tagged = r#","tag":"1.2.4""#;
        let (octet, layer) = (
            "application/octet-stream",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        let (oci, index) = (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        );
        let events = [
            event("push", octet, "app", "", "blobs"),
            event("push", layer, "app", "", "blobs"),
            event("push", oci, "app", tagged, "manifests"),
            event("pull", oci, "app", tagged, "manifests"),
            event("mount", octet, "app", "", "blobs"),
            event("push", index, "team/app", "", "manifests"),
            event("push", oci, "app", tagged, "manifests"),
        ];
        format!(r#"{{"events":[{}]}}"#, events.join(","))
    }

    const REGISTRY_NO_HOST: &str = r#"{"events":[{"action":"push","target":{
        "mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"app",
        "tag":"2.0.0","url":"https://registry.example.com:8443/v2/app/manifests/sha256:ab"}}]}"#;

    /// Deletions carry only the repository and a digest or tag.
    const REGISTRY_DELETE: &str = r#"{"events":[
        {"action":"delete","target":{"repository":"app","tag":"1.2.4"},"request":{"host":""}},
        {"action":"delete","target":{"repository":"app","digest":"sha256:ab"}}]}"#;

    const DOCKER_HUB: &str = r#"{"callback_url":"https://registry.hub.docker.com/u/user/app/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
        "push_data":{"pushed_at":1714644000,"pusher":"user","tag":"1.2.4"},
        "repository":{"comment_count":0,"date_created":1714600000,"description":"",
        "is_official":false,"is_private":false,"name":"app","namespace":"user","owner":"user",
        "repo_name":"user/app","repo_url":"https://hub.docker.com/r/user/app","star_count":3,
        "status":"Active"}}"#;

    const HARBOR_PUSH: &str = r#"{"type":"PUSH_ARTIFACT","occur_at":1714644000,"operator":"admin",
        "event_data":{"resources":[{"digest":"sha256:ab","tag":"1.2.4",
        "resource_url":"harbor.example.com/library/app:1.2.4"}],
        "repository":{"date_created":1714600000,"name":"app","namespace":"library",
        "repo_full_name":"library/app","repo_type":"private"}}}"#;

    const HARBOR_DELETE: &str = r#"{"type":"DELETE_ARTIFACT","occur_at":1714644000,"operator":"admin",
        "event_data":{"resources":[{"digest":"sha256:ab","tag":"",
        "resource_url":"harbor.example.com:8443/team/app@sha256:ab"}],
        "repository":{"name":"app","namespace":"team","repo_type":"public"}}}"#;

    const HARBOR_PULL: &str = r#"{"type":"PULL_ARTIFACT","occur_at":1,"operator":"robot",
        "event_data":{"resources":[{"tag":"1.2.4","resource_url":"harbor.example.com/library/app:1.2.4"}],
        "repository":{"repo_full_name":"library/app"}}}"#;

    const HARBOR_SCAN: &str = r#"{"type":"SCANNING_COMPLETED","occur_at":1,"operator":"auto",
        "event_data":{"resources":[{"scan_overview":{}}],"repository":{"repo_full_name":"library/app"}}}"#;

    const QUAY: &str = r#"{"name":"repository","repository":"org/app","namespace":"org",
        "docker_url":"quay.io/org/app","homepage":"https://quay.io/repository/org/app",
        "updated_tags":["1.2.4","latest"]}"#;

    const QUAY_BUILD: &str = r#"{"repository":"org/app","namespace":"org","name":"app",
        "docker_url":"quay.io/org/app","build_id":"296ec063","docker_tags":["latest"]}"#;

    const GITHUB: &str = r#"{"action":"published","registry_package":{"id":2104,"name":"App",
        "namespace":"Org","description":"","ecosystem":"CONTAINER","package_type":"CONTAINER",
        "html_url":"https://github.com/orgs/Org/packages/container/package/App",
        "owner":{"login":"Org","type":"Organization"},
        "package_version":{"id":9912,"version":"sha256:ab","name":"sha256:ab",
        "package_url":"ghcr.io/org/app:1.2.4","container_metadata":{"labels":{},
        "manifest":{},"tag":{"name":"1.2.4","digest":"sha256:ab"}}},
        "registry":{"about_url":"https://docs.github.com/packages","name":"GitHub CR",
        "type":"docker","url":"https://ghcr.io/org","vendor":"GitHub Inc"}},
        "repository":{"full_name":"Org/app"},"sender":{"login":"ci-bot"}}"#;

    const GITHUB_UNTAGGED: &str = r#"{"action":"published","package":{"name":"app",
        "owner":{"login":"someone"},"package_type":"container","package_version":{
        "container_metadata":{"tag":{"name":"","digest":"sha256:ab"}}}}}"#;

    const GITHUB_NPM: &str = r#"{"action":"published","registry_package":{"name":"lib",
        "namespace":"Org","package_type":"npm","package_version":{}}}"#;

    const GITHUB_PING: &str = r#"{"zen":"Keep it logically awesome.","hook_id":1,
        "hook":{"type":"Organization","events":["registry_package"]}}"#;

    const DOCKER_HUB_OFFICIAL: &str =
        r#"{"push_data":{"tag":"1.27"},"repository":{"name":"nginx"}}"#;

    /// A distribution push event with the given target fields and request host.
    fn push(target: &str, host: &str) -> String {
        let request = format!(r#"{{"host":"{host}"}}"#);
        format!(r#"{{"events":[{{"action":"push","target":{{{target}}},"request":{request}}}]}}"#)
    }

    /// Hints as `registry|path|tag` (`-` without tag), space-separated.
    fn render(hints: &[Hint]) -> String {
        let one = |h: &Hint| {
            let tag = h.tag.as_deref().unwrap_or("-");
            format!("{}|{}|{tag}", h.repository.registry, h.repository.path)
        };
        hints.iter().map(one).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn fixtures_become_hints() {
        use Source::*;
        let reg = registry_push();
        let local = "127.0.0.1:5000|app|1.2.4 127.0.0.1:5000|team/app|-";
        #[rustfmt::skip]
        let cases = [
            (Registry, reg.as_str(), None, local),
            (Registry, REGISTRY_NO_HOST, Some("no:5000"), "registry.example.com:8443|app|2.0.0"),
            (Registry, REGISTRY_DELETE, Some("r.lan:5000"), "r.lan:5000|app|1.2.4 r.lan:5000|app|-"),
            (DockerHub, DOCKER_HUB, None, "docker.io|user/app|1.2.4"),
            (DockerHub, DOCKER_HUB_OFFICIAL, None, "docker.io|library/nginx|1.27"),
            (Harbor, HARBOR_PUSH, None, "harbor.example.com|library/app|1.2.4"),
            (Harbor, HARBOR_DELETE, None, "harbor.example.com:8443|team/app|-"),
            (Harbor, HARBOR_PULL, None, ""),
            (Harbor, HARBOR_SCAN, None, ""),
            (Quay, QUAY, None, "quay.io|org/app|1.2.4 quay.io|org/app|latest"),
            (Quay, QUAY_BUILD, None, ""),
            (GitHub, GITHUB, None, "ghcr.io|org/app|1.2.4"),
            (GitHub, GITHUB_UNTAGGED, None, "ghcr.io|someone/app|-"),
            (GitHub, GITHUB_NPM, None, ""),
            (GitHub, GITHUB_PING, None, ""),
            (Generic, r#"{"image":"ghcr.io/o/app","tag":"1.2.4"}"#, None, "ghcr.io|o/app|1.2.4"),
            (Generic, r#"{"image":"127.0.0.1:5000/t/app:2"}"#, None, "127.0.0.1:5000|t/app|2"),
            (Generic, r#"{"image":"nginx","tag":""}"#, None, "docker.io|library/nginx|-"),
        ];
        for (source, body, hint, expected) in cases {
            let hints = parse(source, body.as_bytes(), hint).unwrap();
            assert_eq!(render(&hints), expected, "{source}: {body}");
        }
    }

    /// A hint must equal the repository tagwatch derives from the image a Deployment runs.
    #[test]
    fn hints_match_deployment_images() {
        let reg = registry_push();
        #[rustfmt::skip]
        let cases = [
            (Source::Registry, reg.as_str(), "127.0.0.1:5000/app:1.2.3"),
            (Source::DockerHub, DOCKER_HUB, "user/app:1.2.3"),
            (Source::DockerHub, DOCKER_HUB, "docker.io/user/app"),
            (Source::DockerHub, DOCKER_HUB_OFFICIAL, "nginx:1.25"),
            (Source::Harbor, HARBOR_PUSH, "harbor.example.com/library/app:1"),
            (Source::Quay, QUAY, "quay.io/org/app:1.2"),
            (Source::GitHub, GITHUB, "ghcr.io/org/app:1.2.3"),
            (Source::Generic, r#"{"image":"library/nginx"}"#, "nginx:1.25"),
        ];
        for (source, body, image) in cases {
            let hints = parse(source, body.as_bytes(), None).unwrap();
            let deployment = ImageRef::parse(image).unwrap().repository;
            assert_eq!(hints[0].repository, deployment, "{source} vs {image}");
        }
    }

    #[test]
    fn unreadable_bodies_are_errors() {
        use Source::*;
        let ghp =
            r#"{"action":"published","registry_package":{"name":"a","package_type":"CONTAINER"}}"#;
        #[rustfmt::skip]
        let cases: [(Source, String, &str, &str); 18] = [
            (Registry, "not json".into(), "malformed", "expected ident"),
            (Registry, "{}".into(), "malformed", "missing field `events`"),
            (Registry, r#"{"events":[]} x"#.into(), "malformed", "trailing"),
            (Registry, push(r#""repository":"a","tag":7"#, "r.lan"), "malformed", "events[0].target.tag"),
            (Registry, push(r#""repository":"a","tag":"1""#, ""), "missing_field", "request.host"),
            (Registry, push(r#""repository":"A b","tag":"1""#, "r.lan"), "invalid_field", "repository"),
            (Registry, push(r#""repository":"a","tag":"1""#, "registry"), "invalid_field", "not a registry"),
            (DockerHub, r#""text""#.into(), "malformed", "invalid type"),
            (DockerHub, r#"{"push_data":{},"repository":{"owner":"u"}}"#.into(), "missing_field", "repo_name"),
            (Harbor, r#"{"occur_at":1}"#.into(), "malformed", "`type`"),
            (Harbor, r#"{"type":"PUSH_ARTIFACT"}"#.into(), "malformed", "`event_data`"),
            (Quay, r#"{"updated_tags":["1"]}"#.into(), "malformed", "`repository`"),
            (Quay, r#"{"repository":"o/a","updated_tags":[]}"#.into(), "missing_field", "docker_url"),
            (GitHub, "".into(), "malformed", "EOF"),
            (GitHub, ghp.into(), "missing_field", "registry_package.namespace"),
            (Generic, r#"{"tag":"1"}"#.into(), "malformed", "`image`"),
            (Generic, r#"{"image":"Org/App"}"#.into(), "invalid_field", "image"),
            (Generic, r#"{"image":"o/a:1.0.0","tag":"2.0.0"}"#.into(), "invalid_field", "differs"),
        ];
        for (source, body, kind, message) in cases {
            let err = parse(source, body.as_bytes(), None).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), kind, "{source}: {body}: {text}");
            assert!(text.contains(message), "{source}: {body}: {text}");
            assert!(text.starts_with(&format!("{source} webhook: ")), "{text}");
        }
    }
}
