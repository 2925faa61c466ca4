//! Real images built in memory: config and layer blobs, platform manifests and the top manifest,
//! in the four media types a registry serves. Pure: pushing is `push.rs`'s job.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::layer::layer;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type, for `Accept`: without all four the registry hides or converts some.
pub const ALL_MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Which kind of image to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// `application/vnd.oci.image.manifest.v1+json`, single platform (linux/amd64).
    OciManifest,
    /// `application/vnd.docker.distribution.manifest.v2+json`, single platform (linux/amd64).
    DockerV2,
    /// `application/vnd.oci.image.index.v1+json` over linux/amd64 and linux/arm64 manifests.
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.list.v2+json` over linux/amd64 and linux/arm64.
    DockerManifestList,
}

impl ImageKind {
    /// The media type of the manifest a tag of this kind points to.
    pub fn media_type(self) -> &'static str {
        match self {
            ImageKind::OciManifest => OCI_MANIFEST,
            ImageKind::DockerV2 => DOCKER_MANIFEST,
            ImageKind::OciIndex => OCI_INDEX,
            ImageKind::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    fn format(self) -> Format {
        match self {
            ImageKind::OciManifest | ImageKind::OciIndex => Format::Oci,
            ImageKind::DockerV2 | ImageKind::DockerManifestList => Format::Docker,
        }
    }

    fn is_multi_arch(self) -> bool {
        matches!(self, ImageKind::OciIndex | ImageKind::DockerManifestList)
    }
}

#[derive(Clone, Copy)]
enum Format {
    Oci,
    Docker,
}

impl Format {
    fn config_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }
    fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
    fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    fn list_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        }
    }
}

/// Content-addressed bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }
}

/// A manifest's exact bytes: its digest is the sha256 of these bytes, as the registry computes it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: &'static str,
    pub blob: Blob,
}

/// Everything one push uploads, in upload order: blobs, then `platforms` by digest, then `top` by tag.
#[derive(Debug, Clone)]
pub struct Image {
    pub blobs: Vec<Blob>,
    pub platforms: Vec<Manifest>,
    pub top: Manifest,
}

/// Builds an image whose config names `repo`, `tag` and `variant`, so each gets its own digest.
/// A single image is linux/amd64, an index lists linux/amd64 and linux/arm64; configs carry no
/// `created`.
pub fn build(repo: &str, tag: &str, variant: &str, kind: ImageKind) -> Image {
    let architectures: &[&str] = if kind.is_multi_arch() {
        &["amd64", "arm64"]
    } else {
        &["amd64"]
    };
    build_with(repo, tag, variant, kind, architectures, None)
}

/// As [`build`], for the given linux architectures (a single image uses the first) and with
/// `created` (RFC 3339) in every config.
pub fn build_with(
    repo: &str,
    tag: &str,
    variant: &str,
    kind: ImageKind,
    architectures: &[&str],
    created: Option<&str>,
) -> Image {
    let format = kind.format();
    let layer = layer(
        "tagwatch.txt",
        format!("tagwatch test image {repo}:{tag} {variant}\n").as_bytes(),
    );
    let layer_blob = Blob::new(layer.gzip);
    let architectures = if kind.is_multi_arch() {
        architectures
    } else {
        &architectures[..architectures.len().min(1)]
    };

    let mut blobs = vec![layer_blob.clone()];
    let mut platforms = Vec::new();
    for arch in architectures {
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Labels": {
                    "org.tagwatch.repository": repo,
                    "org.tagwatch.tag": tag,
                    "org.tagwatch.variant": variant,
                }
            },
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        });
        if let Some(created) = created {
            config["created"] = json!(created);
        }
        let config = Blob::new(to_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_type(),
            "config": descriptor(format.config_type(), &config),
            "layers": [descriptor(format.layer_type(), &layer_blob)],
        });
        blobs.push(config);
        platforms.push((
            *arch,
            Manifest {
                media_type: format.manifest_type(),
                blob: Blob::new(to_bytes(&manifest)),
            },
        ));
    }

    if !kind.is_multi_arch() {
        let (_, top) = platforms.remove(0);
        return Image {
            blobs,
            platforms: Vec::new(),
            top,
        };
    }
    let entries: Vec<Value> = platforms
        .iter()
        .map(|(arch, manifest)| {
            let mut entry = descriptor(manifest.media_type, &manifest.blob);
            entry["platform"] = json!({ "architecture": arch, "os": "linux" });
            entry
        })
        .collect();
    let list = json!({
        "schemaVersion": 2,
        "mediaType": format.list_type(),
        "manifests": entries,
    });
    Image {
        blobs,
        platforms: platforms
            .into_iter()
            .map(|(_, manifest)| manifest)
            .collect(),
        top: Manifest {
            media_type: format.list_type(),
            blob: Blob::new(to_bytes(&list)),
        },
    }
}

fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.bytes.len() })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`, the digest form registries use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tag_has_its_own_digest() {
        let a = build("app", "1.0.0", "", ImageKind::OciManifest);
        let b = build("app", "1.0.1", "", ImageKind::OciManifest);
        assert_ne!(a.top.blob.digest, b.top.blob.digest);
    }

    #[test]
    fn an_index_lists_two_platform_manifests_by_digest() {
        let image = build("app", "1.0.0", "", ImageKind::OciIndex);
        let index: Value = serde_json::from_slice(&image.top.blob.bytes).unwrap_or_default();
        let listed: Vec<&str> = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["digest"].as_str())
            .collect();
        let pushed: Vec<&str> = image
            .platforms
            .iter()
            .map(|m| m.blob.digest.as_str())
            .collect();
        assert_eq!(listed, pushed);
        assert_eq!(pushed.len(), 2);
    }
}
