//! Why a workload was left alone, worded so the person who owns it knows what to change.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::model::alias::AliasError;
use crate::model::channels::ChannelsError;
use crate::model::filter::FilterError;
use crate::model::policy::PolicyError;

/// Bad input is a value: every way a workload cannot be resolved ends here, never in a panic.
///
/// Serialized as `{"kind": "...", "message": "..."}`: `kind` is a small fixed set fit for a metric
/// label, `message` is the `Display` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `tagwatch.dev/policy: off`.
    PolicyOff,
    /// `tagwatch.dev/policy` does not parse; `message` names the value and the valid forms.
    InvalidPolicy { message: String },
    /// `tagwatch.dev/prerelease` does not parse.
    InvalidChannels { message: String },
    /// `tagwatch.dev/match` is not a valid regex.
    InvalidFilter { message: String },
    /// `tagwatch.dev/track` is not an alias.
    InvalidTrack { message: String },
    /// The image names no tag (`app` or `app@sha256:...`), so there is nothing to move from.
    MissingTag,
    /// Under a semver policy, the current tag is neither a version nor an alias (`latest`).
    CurrentNotAVersion { tag: String, policy: String },
    /// The image names an alias (`app:1`) and no tag inside it may be chosen.
    AliasUnmatched {
        alias: String,
        /// Versions inside the alias that exist but were excluded (channel, filter, rejected).
        excluded: usize,
    },
    /// Under the digest policy, the current tag is not in the registry's listing.
    TagNotInRegistry { tag: String },
    /// The registry reported a digest that is not `algorithm:hex`.
    InvalidDigest { digest: String },
    /// The digest policy follows a tag's moves, but a verification policy applies: a moved tag's
    /// new digest would be written unverified.
    VerifyWithDigestPolicy,
}

impl SkipReason {
    /// A stable kebab-case name, from a small fixed set (usable as a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::PolicyOff => "policy-off",
            SkipReason::InvalidPolicy { .. } => "invalid-policy",
            SkipReason::InvalidChannels { .. } => "invalid-channels",
            SkipReason::InvalidFilter { .. } => "invalid-filter",
            SkipReason::InvalidTrack { .. } => "invalid-track",
            SkipReason::MissingTag => "missing-tag",
            SkipReason::CurrentNotAVersion { .. } => "current-not-a-version",
            SkipReason::AliasUnmatched { .. } => "alias-unmatched",
            SkipReason::TagNotInRegistry { .. } => "tag-not-in-registry",
            SkipReason::InvalidDigest { .. } => "invalid-digest",
            SkipReason::VerifyWithDigestPolicy => "verify-with-digest-policy",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::PolicyOff => f.write_str(
                "updates are off (tagwatch.dev/policy: off); set major, minor, patch, digest, glob:<pattern> or regex:<pattern> to enable them",
            ),
            SkipReason::InvalidPolicy { message } => {
                write!(f, "tagwatch.dev/policy: {message}")
            }
            SkipReason::InvalidChannels { message } => {
                write!(f, "tagwatch.dev/prerelease: {message}")
            }
            SkipReason::InvalidFilter { message } => write!(f, "tagwatch.dev/match: {message}"),
            SkipReason::InvalidTrack { message } => write!(
                f,
                "tagwatch.dev/track: {message}; remove the annotation or set the image to an alias such as app:1"
            ),
            SkipReason::MissingTag => f.write_str(
                "the image names no tag; set a version (app:1.2.3) or an alias (app:1) to update from",
            ),
            SkipReason::CurrentNotAVersion { tag, policy } => write!(
                f,
                "current tag `{tag}` is neither a version (1.2.3) nor an alias (1, 1.2), so policy `{policy}` has nothing to compare with; set the image to a version or an alias, or use policy digest, glob:<pattern> or regex:<pattern>"
            ),
            SkipReason::AliasUnmatched { alias, excluded: 0 } => write!(
                f,
                "no version inside alias `{alias}` exists in the registry; push one or point the image at an alias or version that exists"
            ),
            SkipReason::AliasUnmatched { alias, excluded } => write!(
                f,
                "all {excluded} versions inside alias `{alias}` were excluded (prerelease channel not listed in tagwatch.dev/prerelease, tagwatch.dev/match filter, or rejected); list the channel, loosen the filter, or push a new version"
            ),
            SkipReason::TagNotInRegistry { tag } => write!(
                f,
                "tag `{tag}` is not in the registry; push it or point the image at a tag that exists"
            ),
            SkipReason::InvalidDigest { digest } => write!(
                f,
                "the registry reported digest `{digest}`, which is not algorithm:hex (sha256:...); check the registry"
            ),
            SkipReason::VerifyWithDigestPolicy => f.write_str(
                "policy digest follows a tag's moves, which signature verification (tagwatch.dev/verify or an enforced policy) cannot check yet; use a version policy (major, minor, patch) with verified images",
            ),
        }
    }
}

impl Serialize for SkipReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("SkipReason", 2)?;
        fields.serialize_field("kind", self.kind())?;
        fields.serialize_field("message", &self.to_string())?;
        fields.end()
    }
}

impl From<PolicyError> for SkipReason {
    fn from(error: PolicyError) -> SkipReason {
        SkipReason::InvalidPolicy {
            message: error.to_string(),
        }
    }
}

impl From<ChannelsError> for SkipReason {
    fn from(error: ChannelsError) -> SkipReason {
        SkipReason::InvalidChannels {
            message: error.to_string(),
        }
    }
}

impl From<FilterError> for SkipReason {
    fn from(error: FilterError) -> SkipReason {
        SkipReason::InvalidFilter {
            message: error.to_string(),
        }
    }
}

impl From<AliasError> for SkipReason {
    fn from(error: AliasError) -> SkipReason {
        SkipReason::InvalidTrack {
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::model::alias::Alias;
    use crate::model::channels::Channels;
    use crate::model::filter::parse_filter;
    use crate::model::policy::Policy;

    #[test]
    fn parse_errors_become_reasons_that_name_the_annotation_and_value() {
        let cases: [(SkipReason, &str, &str); 4] = [
            (
                "minr".parse::<Policy>().unwrap_err().into(),
                "invalid-policy",
                "tagwatch.dev/policy: unknown update policy `minr`",
            ),
            (
                "r c".parse::<Channels>().unwrap_err().into(),
                "invalid-channels",
                "tagwatch.dev/prerelease: prerelease channel `r c`",
            ),
            (
                parse_filter("(").unwrap_err().into(),
                "invalid-filter",
                "tagwatch.dev/match: tag filter `(`",
            ),
            (
                "1.2.3".parse::<Alias>().unwrap_err().into(),
                "invalid-track",
                "tagwatch.dev/track: `1.2.3` is not an alias",
            ),
        ];
        for (reason, kind, start) in cases {
            assert_eq!(reason.kind(), kind);
            assert!(reason.to_string().starts_with(start), "{reason}");
        }
    }

    #[test]
    fn serializes_kind_and_message() {
        let reason = SkipReason::CurrentNotAVersion {
            tag: "latest".into(),
            policy: "minor".into(),
        };
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["kind"], "current-not-a-version");
        assert_eq!(json["message"], reason.to_string());
        assert!(reason.to_string().contains("`latest`"));
    }
}
