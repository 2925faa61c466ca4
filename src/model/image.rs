//! Container image references as written in a pod spec.
//!
//! Parsing is the distribution grammar's ([`super::reference`], Docker Hub defaults included);
//! what this adds is keeping the text the user wrote, so an update to `nginx:1.2.3` is written as `nginx:1.2.4` and not as
//! `docker.io/library/nginx:1.2.4`.

use std::fmt;

/// A registry repository, normalised: `nginx` → `docker.io` + `library/nginx`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Repository {
    /// Registry host as written in references (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Path inside the registry (`library/nginx`, `org/app`).
    pub path: String,
}

impl Repository {
    /// Host to send API requests to: Docker Hub's API does not live at `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl std::str::FromStr for Repository {
    type Err = ImageRefError;

    /// Parses `REGISTRY/PATH` or a Docker Hub short name, without tag or digest.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let image = ImageRef::parse(s)?;
        if image.tag.is_some() || image.digest.is_some() {
            return Err(ImageRefError::Invalid {
                image: s.to_string(),
                reason: "a repository takes no tag or digest".to_string(),
            });
        }
        Ok(image.repository)
    }
}

/// The tag of an image string, if it parses and has one.
pub fn tag_of(image: &str) -> Option<String> {
    ImageRef::parse(image).ok().and_then(|i| i.tag)
}

/// An image reference from a container spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The name exactly as written, without tag and digest (`nginx`, `ghcr.io/org/app`).
    pub name: String,
    pub repository: Repository,
    /// The tag as written; `None` when the reference has none (Docker would pull `latest`).
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image reference {image:?} does not parse: {reason}")]
    Invalid { image: String, reason: String },
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef, ImageRefError> {
        let invalid = |reason: String| ImageRefError::Invalid {
            image: image.to_string(),
            reason,
        };
        let parsed = super::reference::parse(image).map_err(|e| invalid(e.to_string()))?;
        Ok(ImageRef {
            name: parsed.name.to_string(),
            repository: Repository {
                registry: parsed.registry,
                path: parsed.repository,
            },
            tag: parsed.tag.map(str::to_string),
            digest: parsed.digest.map(str::to_string),
        })
    }

    /// The same image with another tag (and optionally a digest pin), in the user's notation.
    pub fn with_tag(&self, tag: &str, digest: Option<&str>) -> String {
        match digest {
            Some(digest) => format!("{}:{tag}@{digest}", self.name),
            None => format!("{}:{tag}", self.name),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_keeps_the_written_name() {
        let cases = [
            (
                "nginx:1.2.3",
                "nginx",
                "docker.io",
                "library/nginx",
                Some("1.2.3"),
            ),
            ("nginx", "nginx", "docker.io", "library/nginx", None),
            ("org/app:v1", "org/app", "docker.io", "org/app", Some("v1")),
            (
                "127.0.0.1:5000/app:1.2",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("1.2"),
            ),
            (
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                None,
            ),
            (
                "ghcr.io/o/a:1.0.0",
                "ghcr.io/o/a",
                "ghcr.io",
                "o/a",
                Some("1.0.0"),
            ),
        ];
        for (input, name, registry, path, tag) in cases {
            let image = ImageRef::parse(input).unwrap();
            assert_eq!(image.name, name, "{input}");
            assert_eq!(image.repository.registry, registry, "{input}");
            assert_eq!(image.repository.path, path, "{input}");
            assert_eq!(image.tag.as_deref(), tag, "{input}");
            assert_eq!(image.to_string(), input);
        }
    }

    #[test]
    fn digest_is_kept_apart_from_the_tag() {
        let image = ImageRef::parse(&format!("127.0.0.1:5000/app:1.2.3@{DIGEST}")).unwrap();
        assert_eq!(image.tag.as_deref(), Some("1.2.3"));
        assert_eq!(image.digest.as_deref(), Some(DIGEST));
        assert_eq!(image.with_tag("1.2.4", None), "127.0.0.1:5000/app:1.2.4");
        assert_eq!(
            image.with_tag("1.2.4", Some(DIGEST)),
            format!("127.0.0.1:5000/app:1.2.4@{DIGEST}")
        );
    }

    #[test]
    fn bad_references_are_errors_naming_the_image() {
        for bad in ["", "app:", "app:bad tag", "a@sha256:12", "app@@x", "-app:1"] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn repositories_parse_without_tags_only() {
        let repo: Repository = "127.0.0.1:5000/team/app".parse().unwrap();
        assert_eq!(repo.to_string(), "127.0.0.1:5000/team/app");
        assert_eq!("nginx".parse::<Repository>().unwrap().path, "library/nginx");
        assert!("app:1".parse::<Repository>().is_err());
        assert_eq!(
            "nginx".parse::<Repository>().unwrap().api_host(),
            "registry-1.docker.io"
        );
    }
}
