//! The `digest` policy: the tag stays, and the workload follows the digest the registry serves
//! for it (e.g. a rebuilt `app:1.2`).

use serde::Serialize;

use super::skip::SkipReason;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum DigestDecision {
    /// The pinned digest is the registry's: nothing to do.
    Unchanged,
    /// Pin `digest` (`app:1.2@sha256:...`): the registry's digest differs, or none was pinned yet.
    Changed {
        digest: String,
    },
    Skip {
        reason: SkipReason,
    },
}

/// Compares the digest the workload pins (if any) with the one the registry serves for its tag.
///
/// Digests are compared exactly: OCI digests are case-sensitive content addresses.
pub fn resolve_digest(current_digest: Option<&str>, registry_digest: &str) -> DigestDecision {
    if !is_digest(registry_digest) {
        return DigestDecision::Skip {
            reason: SkipReason::InvalidDigest {
                digest: registry_digest.to_owned(),
            },
        };
    }
    if current_digest == Some(registry_digest) {
        DigestDecision::Unchanged
    } else {
        DigestDecision::Changed {
            digest: registry_digest.to_owned(),
        }
    }
}

/// The OCI grammar: `algorithm ":" encoded`, algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`,
/// encoded `[a-zA-Z0-9=_-]+`.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn table() {
        let changed = |digest: &str| DigestDecision::Changed {
            digest: digest.to_owned(),
        };
        let cases = [
            (Some(A), A, DigestDecision::Unchanged),
            (Some(A), B, changed(B)),
            (None, A, changed(A)),
            (Some("garbage"), A, changed(A)),
        ];
        for (current, registry, expected) in cases {
            assert_eq!(
                resolve_digest(current, registry),
                expected,
                "{current:?} {registry}"
            );
        }
    }

    #[test]
    fn a_malformed_registry_digest_is_a_skip() {
        for bad in [
            "",
            "sha256:",
            ":abc",
            "sha256",
            "SHA256:abc",
            "sha256:ab/c",
            "sha256+:ab",
        ] {
            let decision = resolve_digest(Some(A), bad);
            assert!(
                matches!(&decision, DigestDecision::Skip { reason: SkipReason::InvalidDigest { digest } } if digest == bad),
                "{bad:?} gave {decision:?}"
            );
        }
        assert!(is_digest("sha256+b64u.x_y-z:abc=_-"));
    }
}
