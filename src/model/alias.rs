//! An alias (`1`, `1.2`): the version range a person meant when they wrote `app:1`.
//!
//! The resolver remembers it as `tagwatch.dev/track` so that after `app:1` has been replaced by
//! `app:1.10.1`, updates still stay inside `1.x.y`.

use std::fmt;
use std::str::FromStr;

use semver::Version;
use serde::{Serialize, Serializer};

use super::tag::Prefix;

/// `MAJOR` or `MAJOR.MINOR`. Displays without a prefix (`1`, `1.2`); parses with or without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alias {
    major: u64,
    minor: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not an alias: expected MAJOR or MAJOR.MINOR without leading zeros, optionally prefixed with v (1, v1, 1.2, v1.2)")]
pub struct AliasError {
    pub value: String,
}

impl Alias {
    pub fn new(major: u64, minor: Option<u64>) -> Alias {
        Alias { major, minor }
    }

    pub fn major(&self) -> u64 {
        self.major
    }

    pub fn minor(&self) -> Option<u64> {
        self.minor
    }

    /// Whether `version` lies inside this alias: `1` holds every `1.x.y`, `1.2` every `1.2.z`,
    /// prereleases included (whether a prerelease may be chosen is the channel rule's business).
    pub fn contains(&self, version: &Version) -> bool {
        version.major == self.major && self.minor.is_none_or(|minor| version.minor == minor)
    }

    pub(crate) fn parse_with_prefix(text: &str) -> Option<(Prefix, Alias)> {
        let (prefix, rest) = Prefix::split(text);
        let mut parts = rest.split('.');
        let major = parse_number(parts.next()?)?;
        let minor = match parts.next() {
            Some(part) => Some(parse_number(part)?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some((prefix, Alias { major, minor }))
    }
}

/// A semver numeric identifier: digits only, no leading zero unless it is `0`.
fn parse_number(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    text.parse().ok()
}

impl FromStr for Alias {
    type Err = AliasError;

    fn from_str(text: &str) -> Result<Alias, AliasError> {
        Alias::parse_with_prefix(text.trim())
            .map(|(_, alias)| alias)
            .ok_or_else(|| AliasError {
                value: text.to_owned(),
            })
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            Some(minor) => write!(f, "{}.{}", self.major, minor),
            None => write!(f, "{}", self.major),
        }
    }
}

/// Serialized as its display string (`"1.2"`), the same text the caller stores in the annotation.
impl Serialize for Alias {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_and_displays() {
        let cases = [
            ("1", "1"),
            ("v1", "1"),
            ("V1", "1"),
            ("1.2", "1.2"),
            ("v1.2", "1.2"),
            ("0", "0"),
            ("0.0", "0.0"),
            (" 2 ", "2"),
        ];
        for (input, shown) in cases {
            let alias: Alias = input.parse().unwrap();
            assert_eq!(alias.to_string(), shown, "{input}");
            assert_eq!(alias.to_string().parse::<Alias>().unwrap(), alias);
        }
    }

    #[test]
    fn rejects_non_aliases() {
        for input in [
            "", "v", "01", "1.02", "1.2.3", "1.", ".1", "a", "1.x", "-1", "vv1",
        ] {
            let error = input.parse::<Alias>().unwrap_err();
            assert!(error.to_string().contains(&format!("`{input}`")), "{error}");
        }
    }

    #[test]
    fn contains_versions_inside_it() {
        let v = |s: &str| Version::parse(s).unwrap();
        let one: Alias = "1".parse().unwrap();
        let one_two: Alias = "1.2".parse().unwrap();
        assert!(one.contains(&v("1.0.0")));
        assert!(one.contains(&v("1.10.1")));
        assert!(one.contains(&v("1.3.0-rc.1")));
        assert!(!one.contains(&v("2.0.0")));
        assert!(!one.contains(&v("0.9.0")));
        assert!(one_two.contains(&v("1.2.9")));
        assert!(!one_two.contains(&v("1.3.0")));
        assert!(!one_two.contains(&v("2.2.0")));
    }

    #[test]
    fn serializes_as_its_display_string() {
        let alias: Alias = "v1.2".parse().unwrap();
        assert_eq!(serde_json::to_string(&alias).unwrap(), "\"1.2\"");
    }
}
