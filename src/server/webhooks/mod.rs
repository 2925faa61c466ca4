//! Registry webhooks, turned into hints: "this repository (and maybe this tag) changed".
//!
//! Pure: headers and body in, [`Hint`]s or typed errors out. The HTTP route lives elsewhere; it
//! calls [`check_headers`] before reading any of the body (401 on error), refuses bodies over
//! [`MAX_BODY`] (413), checks a body signature with [`verify_signature`] when the headers asked
//! for it (401), and then [`parse`]s (400 on error). A hint only says where to look: the cycle
//! still lists the repository's tags (not before the end of its backoff), so a stale hint can at
//! worst cause one extra listing.
//!
//! Hints carry the same [`Repository`] tagwatch computes from a Deployment's image string
//! (`docker.io` + `library/nginx` for `nginx`), so the caller can match them with `==`.

mod auth;
mod payload;

use std::fmt;

use crate::model::image::Repository;

pub use auth::{authenticate, check_headers, verify_signature, AuthError, HeaderCheck};
pub use payload::{parse, PayloadError};

/// Largest body a webhook route should read; larger requests deserve a 413 before any parsing.
pub const MAX_BODY: usize = 1024 * 1024;

/// Which sender (and so which body format and credential form) a webhook route expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// CNCF distribution (`registry:2`, Debian `docker-registry`) notifications.
    Registry,
    DockerHub,
    /// Harbor v2 webhooks, "Default" payload format.
    Harbor,
    /// Quay "Push to Repository" notifications.
    Quay,
    /// GitHub `registry_package` (or `package`) events for ghcr.io.
    GitHub,
    /// tagwatch's own format for CI jobs: `{"image": "ghcr.io/org/app", "tag": "1.2.4"}`.
    Generic,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Registry,
        Source::DockerHub,
        Source::Harbor,
        Source::Quay,
        Source::GitHub,
        Source::Generic,
    ];

    /// The route segment (`/webhooks/<segment>`), also usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Registry => "registry",
            Source::DockerHub => "dockerhub",
            Source::Harbor => "harbor",
            Source::Quay => "quay",
            Source::GitHub => "github",
            Source::Generic => "generic",
        }
    }

    /// `None` for an unknown segment (the caller answers 404).
    pub fn from_path_segment(segment: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == segment)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository that changed; `tag` is `None` for pushes by digest and for deletions without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Hint {
    pub repository: Repository,
    pub tag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_round_trip() {
        for source in Source::ALL {
            assert_eq!(Source::from_path_segment(source.as_str()), Some(source));
            assert_eq!(source.to_string(), source.as_str());
        }
        for unknown in ["", "Registry", "gitlab", "github/"] {
            assert_eq!(Source::from_path_segment(unknown), None, "{unknown}");
        }
    }
}
