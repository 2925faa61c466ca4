//! Classifying a registry tag: a semver version, an alias (`1`, `v1.2`), or anything else.
//!
//! Every classification keeps the exact original string, because the tag written back to a
//! Deployment must be the one that exists in the registry (`v1.2.4` stays `v1.2.4`).

use std::fmt;

use semver::Version;

use super::alias::Alias;

/// The optional letter in front of a version or alias (`v1.2.3`, `V1`).
///
/// Kept so ties between `v1.2.4` and `1.2.4` can prefer the style the workload already uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    None,
    LowerV,
    UpperV,
}

impl Prefix {
    /// Splits a leading `v`/`V` off `text`.
    pub fn split(text: &str) -> (Prefix, &str) {
        match text.as_bytes().first() {
            Some(b'v') => (Prefix::LowerV, &text[1..]),
            Some(b'V') => (Prefix::UpperV, &text[1..]),
            _ => (Prefix::None, text),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::None => "",
            Prefix::LowerV => "v",
            Prefix::UpperV => "V",
        }
    }
}

/// A registry tag, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// `MAJOR.MINOR.PATCH[-pre][+build]`, optionally `v`-prefixed.
    Version(VersionTag),
    /// `MAJOR` or `MAJOR.MINOR`, optionally `v`-prefixed: a moving pointer the user means to follow.
    Alias(AliasTag),
    /// Anything else (`latest`, `main-3f2a1c`, `2024.01.15`, `01.2.3`).
    Other(String),
}

impl Tag {
    pub fn parse(text: &str) -> Tag {
        if let Some(version) = VersionTag::parse(text) {
            Tag::Version(version)
        } else if let Some(alias) = AliasTag::parse(text) {
            Tag::Alias(alias)
        } else {
            Tag::Other(text.to_owned())
        }
    }

    /// The exact string this tag was parsed from.
    pub fn as_str(&self) -> &str {
        match self {
            Tag::Version(version) => version.as_str(),
            Tag::Alias(alias) => alias.as_str(),
            Tag::Other(text) => text,
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tag that is a semver version, with its original spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTag {
    text: String,
    prefix: Prefix,
    version: Version,
}

impl VersionTag {
    pub fn parse(text: &str) -> Option<VersionTag> {
        let (prefix, version) = parse_version(text)?;
        Some(VersionTag {
            text: text.to_owned(),
            prefix,
            version,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    pub fn version(&self) -> &Version {
        &self.version
    }
}

/// A tag that is an alias, with its original spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTag {
    text: String,
    prefix: Prefix,
    alias: Alias,
}

impl AliasTag {
    pub fn parse(text: &str) -> Option<AliasTag> {
        let (prefix, alias) = Alias::parse_with_prefix(text)?;
        Some(AliasTag {
            text: text.to_owned(),
            prefix,
            alias,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    pub fn alias(&self) -> Alias {
        self.alias
    }
}

/// Parses a version tag without copying the string; the resolver calls this for every tag in a
/// listing, so it must not allocate beyond what `semver` needs for prerelease/build identifiers.
///
/// `semver` already rejects leading zeros in numeric identifiers and anything outside the grammar.
pub fn parse_version(text: &str) -> Option<(Prefix, Version)> {
    let (prefix, rest) = Prefix::split(text);
    // Cheap rejection of `latest`, `main-3f2a1c` and the like before the full parser runs.
    if !rest.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Version::parse(rest).ok().map(|version| (prefix, version))
}

/// The prerelease channel of a version: its first prerelease identifier (`rc` in `rc.2`), or
/// `None` for a GA version.
pub fn channel(version: &Version) -> Option<&str> {
    let pre = version.pre.as_str();
    if pre.is_empty() {
        None
    } else {
        pre.split('.').next()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::cmp::Ordering;

    fn cmp_precedence(a: &Version, b: &Version) -> Ordering {
        a.cmp_precedence(b)
    }

    #[test]
    fn classifies_tags() {
        let versions = [
            "1.2.3",
            "v1.2.3",
            "V1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "1.2.3-rc.1+build.5",
            "1.2.3+001",
            "10.20.30",
        ];
        for text in versions {
            assert!(
                matches!(Tag::parse(text), Tag::Version(_)),
                "{text} should be a version"
            );
        }
        let aliases = ["1", "v1", "V1", "1.2", "v1.2", "0", "0.0", "10.0"];
        for text in aliases {
            assert!(
                matches!(Tag::parse(text), Tag::Alias(_)),
                "{text} should be an alias"
            );
        }
        let others = [
            "latest",
            "main-3f2a1c",
            "2024.01.15",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "01",
            "1.02",
            "1.2.3-rc.01",
            "1.2.3.4",
            "vv1.2.3",
            "v",
            "",
            " 1.2.3",
            "1.2.3-",
            "1.2.3+",
            "1.",
            "1.2.",
            "-1",
            "99999999999999999999",
        ];
        for text in others {
            assert!(
                matches!(Tag::parse(text), Tag::Other(_)),
                "{text:?} should be neither a version nor an alias"
            );
        }
    }

    #[test]
    fn keeps_the_original_string() {
        for text in ["v1.2.3", "V1.2.3+b", "v1.2", "1", "latest"] {
            assert_eq!(Tag::parse(text).as_str(), text);
            assert_eq!(Tag::parse(text).to_string(), text);
        }
        let Tag::Version(tag) = Tag::parse("v1.2.3-rc.1") else {
            panic!("not a version")
        };
        assert_eq!(tag.prefix(), Prefix::LowerV);
        assert_eq!(tag.version(), &Version::parse("1.2.3-rc.1").unwrap());
        let Tag::Alias(tag) = Tag::parse("V1.2") else {
            panic!("not an alias")
        };
        assert_eq!(tag.prefix(), Prefix::UpperV);
        assert_eq!(tag.alias().to_string(), "1.2");
    }

    #[test]
    fn precedence_ignores_build_and_orders_numeric_prerelease_numerically() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            cmp_precedence(&v("1.2.3+build.5"), &v("1.2.3")),
            Ordering::Equal
        );
        assert_eq!(
            cmp_precedence(&v("1.3.0-rc.10"), &v("1.3.0-rc.9")),
            Ordering::Greater
        );
        assert_eq!(
            cmp_precedence(&v("1.3.0-rc.1"), &v("1.3.0")),
            Ordering::Less
        );
        assert_eq!(cmp_precedence(&v("1.10.0"), &v("1.9.3")), Ordering::Greater);
    }

    #[test]
    fn channel_is_the_first_prerelease_identifier() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(channel(&v("1.0.0")), None);
        assert_eq!(channel(&v("1.0.0-rc.2")), Some("rc"));
        assert_eq!(channel(&v("1.0.0-beta")), Some("beta"));
        assert_eq!(channel(&v("1.0.0-beta.1+b")), Some("beta"));
    }
}
