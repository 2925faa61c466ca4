//! What release gates judge a candidate on, read from the registry: one manifest GET (an index
//! lists its platforms), plus the config blob of a single-platform image (its `os/architecture`
//! and `created`). Read once per candidate tag; the loop caches the result.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::fanout::Fanout;
use super::Credentials;
use crate::model::gates::Platform;
use crate::model::image::Repository;
use crate::plan::gates::Facts;

/// A manifest as the gates see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Index {
        platforms: BTreeSet<Platform>,
        created: Option<Timestamp>,
    },
    Image {
        config: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    media_type: Option<String>,
    manifests: Option<Vec<RawEntry>>,
    config: Option<RawDescriptor>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawEntry {
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
}

#[derive(Deserialize)]
struct RawConfig {
    os: Option<String>,
    architecture: Option<String>,
    created: Option<String>,
}

const OCI_CREATED: &str = "org.opencontainers.image.created";

/// An image config is kilobytes (its history can make it hundreds); past this it is refused.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Reads a manifest's shape from its bytes (the media type from the answer's Content-Type, or
/// the manifest's own `mediaType`).
pub fn parse_manifest(bytes: &[u8], media_type: &str) -> Result<Shape, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media_type = raw.media_type.as_deref().unwrap_or(media_type);
    let is_index = media_type.contains("index") || media_type.contains("manifest.list");
    if is_index || raw.manifests.is_some() {
        let platforms = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.platform)
            .map(|p| Platform::new(&p.os, &p.architecture))
            .collect();
        let created = raw
            .annotations
            .as_ref()
            .and_then(|a| a.get(OCI_CREATED))
            .and_then(|t| t.parse().ok());
        return Ok(Shape::Index { platforms, created });
    }
    match raw.config {
        Some(config) => Ok(Shape::Image {
            config: config.digest,
        }),
        None => Err(format!(
            "manifest of type {media_type} names no config and lists no manifests"
        )),
    }
}

/// A config blob's platform and `created` time (an unparsable time counts as absent: it can
/// only ever make a release younger).
pub fn parse_config(bytes: &[u8]) -> Result<(Option<Platform>, Option<Timestamp>), String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("image config is not JSON: {e}"))?;
    let platform = match (raw.os, raw.architecture) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
            Some(Platform::new(&os, &arch))
        }
        _ => None,
    };
    Ok((platform, raw.created.and_then(|t| t.parse().ok())))
}

/// Reads the facts of `repo:tag`. An error is a value (the gates then fail closed).
pub async fn read(
    fanout: &Fanout,
    repo: &Repository,
    tag: &str,
    credentials: &Credentials,
) -> Result<Facts, String> {
    let client = fanout.client();
    let manifest = fanout
        .bounded(&repo.registry, || {
            client.get_manifest(repo, tag, credentials)
        })
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{repo}:{tag} is gone from the registry"))?;
    match parse_manifest(&manifest.bytes, &manifest.media_type)? {
        Shape::Index { platforms, created } => Ok(Facts {
            digest: manifest.digest,
            platforms,
            index: true,
            created,
            signatures: Default::default(),
        }),
        Shape::Image { config } => {
            let bytes = fanout
                .bounded(&repo.registry, || {
                    client.get_blob(repo, &config, MAX_CONFIG_BYTES, credentials)
                })
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the config blob {config} of {repo}:{tag} is missing"))?;
            let (platform, created) = parse_config(&bytes)?;
            Ok(Facts {
                digest: manifest.digest,
                platforms: platform.into_iter().collect(),
                index: false,
                created,
                signatures: Default::default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn manifests_and_configs() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
                         {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
                         {"digest":"sha256:c","annotations":{"vnd.docker.reference.type":"attestation-manifest"}}],
            "annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(
            parse_manifest(index, "application/vnd.oci.image.index.v1+json").unwrap(),
            Shape::Index {
                platforms: [
                    Platform::new("linux", "amd64"),
                    Platform::new("linux", "arm64")
                ]
                .into(),
                created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            }
        );
        let list = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(
            parse_manifest(list, "application/vnd.docker.distribution.manifest.list.v2+json").unwrap(),
            Shape::Index { platforms, created: None } if platforms.len() == 1
        ));
        let image = br#"{"schemaVersion":2,"config":{"digest":"sha256:cfg"},"layers":[]}"#;
        assert_eq!(
            parse_manifest(image, "application/vnd.oci.image.manifest.v1+json").unwrap(),
            Shape::Image {
                config: "sha256:cfg".into()
            }
        );
        assert!(parse_manifest(b"<html>", "text/html").is_err());
        assert!(parse_manifest(br#"{"schemaVersion":2}"#, "application/json").is_err());
        let config =
            br#"{"os":"linux","architecture":"arm64","created":"2026-02-03T04:05:06.123456789Z"}"#;
        let (platform, created) = parse_config(config).unwrap();
        assert_eq!(platform, Some(Platform::new("linux", "arm64")));
        assert_eq!(
            created,
            Some("2026-02-03T04:05:06.123456789Z".parse().unwrap())
        );
        let (platform, created) = parse_config(br#"{"created":"yesterday"}"#).unwrap();
        assert_eq!((platform, created), (None, None));
    }
}
