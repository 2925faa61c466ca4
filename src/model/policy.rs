//! The update policy (`tagwatch.dev/policy`): which newer tags a workload may move to.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

/// How far a workload may move.
///
/// Parses from and displays as the annotation value; `Display` round-trips through `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Any newer version.
    Major,
    /// Newer versions with the same major.
    Minor,
    /// Newer versions with the same major.minor.
    Patch,
    /// The tag stays; only a changed digest behind it matters (see `plan::digest`).
    Digest,
    /// Tags matching a shell-style pattern (`glob:build-*`), ordered by version or naturally.
    Glob(GlobPattern),
    /// Tags matching a regex (`regex:^build-\d+$`), ordered by version or naturally.
    Regex(TagRegex),
    /// Never update.
    Off,
}

const VALID_FORMS: &str = "major, minor, patch, digest, glob:<pattern>, regex:<pattern> or off";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown update policy `{value}`: expected {VALID_FORMS}")]
    Unknown { value: String },
    #[error("update policy `{value}` has an empty pattern: write e.g. glob:v1.* or regex:^v1\\.")]
    EmptyPattern { value: String },
    #[error("update policy `{value}` has an invalid glob pattern: {message}")]
    InvalidGlob { value: String, message: String },
    #[error("update policy `{value}` has an invalid regex: {message}")]
    InvalidRegex { value: String, message: String },
}

impl Policy {
    /// Whether tags are ordered by semver and the alias/track rules apply.
    pub fn is_semver(&self) -> bool {
        matches!(self, Policy::Major | Policy::Minor | Policy::Patch)
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Keywords are matched case-insensitively and surrounding blanks ignored, because annotation
    /// values are typed by hand; patterns are taken verbatim.
    fn from_str(value: &str) -> Result<Policy, PolicyError> {
        let trimmed = value.trim();
        if let Some((kind, pattern)) = trimmed.split_once(':') {
            let empty = || PolicyError::EmptyPattern {
                value: value.to_owned(),
            };
            if kind.eq_ignore_ascii_case("glob") {
                if pattern.is_empty() {
                    return Err(empty());
                }
                return GlobPattern::new(pattern)
                    .map(Policy::Glob)
                    .map_err(|message| PolicyError::InvalidGlob {
                        value: value.to_owned(),
                        message,
                    });
            }
            if kind.eq_ignore_ascii_case("regex") {
                if pattern.is_empty() {
                    return Err(empty());
                }
                return TagRegex::new(pattern)
                    .map(Policy::Regex)
                    .map_err(|message| PolicyError::InvalidRegex {
                        value: value.to_owned(),
                        message,
                    });
            }
        }
        let keywords = [
            ("major", Policy::Major),
            ("minor", Policy::Minor),
            ("patch", Policy::Patch),
            ("digest", Policy::Digest),
            ("off", Policy::Off),
        ];
        keywords
            .into_iter()
            .find(|(keyword, _)| trimmed.eq_ignore_ascii_case(keyword))
            .map(|(_, policy)| policy)
            .ok_or_else(|| PolicyError::Unknown {
                value: value.to_owned(),
            })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Major => f.write_str("major"),
            Policy::Minor => f.write_str("minor"),
            Policy::Patch => f.write_str("patch"),
            Policy::Digest => f.write_str("digest"),
            Policy::Glob(pattern) => write!(f, "glob:{}", pattern.as_str()),
            Policy::Regex(regex) => write!(f, "regex:{}", regex.as_str()),
            Policy::Off => f.write_str("off"),
        }
    }
}

/// A glob over whole tag strings (`*`, `?`, `[...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobPattern(glob::Pattern);

impl GlobPattern {
    pub fn new(pattern: &str) -> Result<GlobPattern, String> {
        glob::Pattern::new(pattern)
            .map(GlobPattern)
            .map_err(|error| error.to_string())
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.0.matches(tag)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A regex over tags, searched anywhere in the tag unless anchored (`^...$`), as regexes usually
/// are. A named group `version` selects the part of the tag that orders it (`^app-(?P<version>.+)$`).
#[derive(Debug, Clone)]
pub struct TagRegex {
    regex: Regex,
    has_version_group: bool,
}

impl TagRegex {
    pub fn new(pattern: &str) -> Result<TagRegex, String> {
        let regex = Regex::new(pattern).map_err(|error| error.to_string())?;
        let has_version_group = regex.capture_names().any(|name| name == Some("version"));
        Ok(TagRegex {
            regex,
            has_version_group,
        })
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// `None` when the tag does not match; otherwise the text that orders it: the `version`
    /// group when the regex has one and it took part in the match, else the whole tag.
    pub fn ordering_text<'t>(&self, tag: &'t str) -> Option<&'t str> {
        if !self.has_version_group {
            return self.regex.is_match(tag).then_some(tag);
        }
        let captures = self.regex.captures(tag)?;
        Some(captures.name("version").map_or(tag, |group| group.as_str()))
    }
}

/// Two regexes are the same policy when they were written the same way.
impl PartialEq for TagRegex {
    fn eq(&self, other: &TagRegex) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TagRegex {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let cases = [
            ("major", "major"),
            ("minor", "minor"),
            ("patch", "patch"),
            ("digest", "digest"),
            ("off", "off"),
            (" Minor ", "minor"),
            ("PATCH", "patch"),
            ("glob:v1.*", "glob:v1.*"),
            ("glob:build-[0-9]*", "glob:build-[0-9]*"),
            ("regex:^build-\\d+$", "regex:^build-\\d+$"),
            ("REGEX:^v(?P<version>.*)$", "regex:^v(?P<version>.*)$"),
            ("regex:a:b", "regex:a:b"),
        ];
        for (input, shown) in cases {
            let policy: Policy = input.parse().unwrap();
            assert_eq!(policy.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<Policy>().unwrap(), policy);
        }
    }

    #[test]
    fn errors_name_the_value_and_list_valid_forms() {
        for input in ["", "minr", "semver", "latest", "glob", "minor:1"] {
            let error = input.parse::<Policy>().unwrap_err();
            assert_eq!(
                error,
                PolicyError::Unknown {
                    value: input.to_owned()
                }
            );
            let message = error.to_string();
            assert!(message.contains(&format!("`{input}`")), "{message}");
            assert!(message.contains("glob:<pattern>"), "{message}");
        }
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(matches!(
            "regex:(".parse::<Policy>(),
            Err(PolicyError::InvalidRegex { .. })
        ));
        assert!(matches!(
            "glob:[".parse::<Policy>(),
            Err(PolicyError::InvalidGlob { .. })
        ));
        assert!(matches!(
            "glob:".parse::<Policy>(),
            Err(PolicyError::EmptyPattern { .. })
        ));
        assert!(matches!(
            "regex:".parse::<Policy>(),
            Err(PolicyError::EmptyPattern { .. })
        ));
        let message = "regex:(".parse::<Policy>().unwrap_err().to_string();
        assert!(message.contains("`regex:(`"), "{message}");
    }

    #[test]
    fn regex_ordering_text_uses_the_version_group() {
        let Policy::Regex(regex) = "regex:^app-(?P<version>.+)$".parse().unwrap() else {
            panic!("not a regex policy")
        };
        assert_eq!(regex.ordering_text("app-1.2.3"), Some("1.2.3"));
        assert_eq!(regex.ordering_text("web-1.2.3"), None);
        let Policy::Regex(plain) = "regex:build-".parse().unwrap() else {
            panic!("not a regex policy")
        };
        assert_eq!(plain.ordering_text("x-build-7"), Some("x-build-7"));
        let Policy::Regex(optional) = "regex:^b(?P<version>-\\d+)?$".parse().unwrap() else {
            panic!("not a regex policy")
        };
        assert_eq!(optional.ordering_text("b"), Some("b"));
    }

    #[test]
    fn glob_matches_whole_tags() {
        let Policy::Glob(glob) = "glob:v1.*".parse().unwrap() else {
            panic!("not a glob policy")
        };
        assert!(glob.matches("v1.2.3"));
        assert!(!glob.matches("xv1.2.3"));
        assert!(!glob.matches("v2.0.0"));
    }
}
