//! Why each candidate tag was chosen or passed over, so a person can see why `1.10.0` was (or
//! was not) picked over `1.9.3`.

use std::fmt;

use serde::Serialize;

/// One tag from the registry listing and what the resolver made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub tag: String,
    pub verdict: Verdict,
}

/// The first rule a tag failed, in the order the resolver checks them (the order of the variants
/// below, after `Chosen` and `Superseded`), or why it passed.
///
/// Serialized and displayed as kebab-case (`not-newer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The tag written to the workload.
    Chosen,
    /// Passed every rule, but a newer tag (or a preferred spelling of the same version) was chosen.
    Superseded,
    /// Excluded by the `tagwatch.dev/match` filter.
    Filtered,
    /// Under a semver policy: not `MAJOR.MINOR.PATCH` (aliases like `1.2`, `latest`, leading zeros).
    NotAVersion,
    /// Orders at or below the current tag (same version with another spelling included).
    NotNewer,
    /// Outside the tracked alias (`tagwatch.dev/track`, or the alias the image names).
    OutsideAlias,
    /// Crosses a major/minor boundary the policy forbids, or does not match the glob/regex.
    OutsidePolicy,
    /// A prerelease whose channel is neither listed nor the one the workload is running.
    PrereleaseChannel,
    /// The version is on the rejected list (rolled back from, or a failed canary).
    Rejected,
    /// Held back by a release gate (`tagwatch.dev/platforms`, `tagwatch.dev/min-age`).
    Gated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Chosen => "chosen",
            Verdict::Superseded => "superseded",
            Verdict::Filtered => "filtered",
            Verdict::NotAVersion => "not-a-version",
            Verdict::NotNewer => "not-newer",
            Verdict::OutsideAlias => "outside-alias",
            Verdict::OutsidePolicy => "outside-policy",
            Verdict::PrereleaseChannel => "prerelease-channel",
            Verdict::Rejected => "rejected",
            Verdict::Gated => "gated",
        }
    }

    /// A sentence for people reading an Event or the CLI.
    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Chosen => "the newest tag allowed by every rule",
            Verdict::Superseded => {
                "allowed, but a newer tag (or a preferred spelling of the same version) was chosen"
            }
            Verdict::Filtered => "does not match the tagwatch.dev/match filter",
            Verdict::NotAVersion => "not a MAJOR.MINOR.PATCH version",
            Verdict::NotNewer => "not newer than the current tag",
            Verdict::OutsideAlias => "outside the tracked alias (tagwatch.dev/track)",
            Verdict::OutsidePolicy => "outside what tagwatch.dev/policy allows",
            Verdict::PrereleaseChannel => {
                "a prerelease whose channel is not listed in tagwatch.dev/prerelease"
            }
            Verdict::Rejected => "on the rejected list",
            Verdict::Gated => "held back by a release gate",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn display_and_serde_agree_on_kebab_case() {
        let all = [
            (Verdict::Chosen, "chosen"),
            (Verdict::Superseded, "superseded"),
            (Verdict::Filtered, "filtered"),
            (Verdict::NotAVersion, "not-a-version"),
            (Verdict::NotNewer, "not-newer"),
            (Verdict::OutsideAlias, "outside-alias"),
            (Verdict::OutsidePolicy, "outside-policy"),
            (Verdict::PrereleaseChannel, "prerelease-channel"),
            (Verdict::Rejected, "rejected"),
        ];
        for (verdict, text) in all {
            assert_eq!(verdict.to_string(), text);
            assert_eq!(
                serde_json::to_string(&verdict).unwrap(),
                format!("\"{text}\"")
            );
        }
        let candidate = Candidate {
            tag: "1.10.0".into(),
            verdict: Verdict::Chosen,
        };
        assert_eq!(
            serde_json::to_value(&candidate).unwrap(),
            serde_json::json!({"tag": "1.10.0", "verdict": "chosen"})
        );
    }
}
