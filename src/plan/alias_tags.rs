//! Which alias tags a repository should have, and which version each should name.
//!
//! Pure: given the tag list, `X.Y` names the newest GA `X.Y.*`, `X` the newest GA `X.*.*`, and
//! `latest` (only when asked) the newest GA overall. Prereleases never move an alias; a tag with
//! build metadata (`1.2.3+build`) is skipped too, since semver gives it no order against
//! `1.2.3`. Each prefix style is its own family (`v1.2.3` feeds `v1.2` and `v1`), so a
//! repository that mixes styles never has one style's alias point at the other's version.

use std::collections::BTreeMap;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::model::tag::{Prefix, VersionTag};

/// The alias levels maintained for a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Levels {
    pub major: bool,
    pub minor: bool,
    pub latest: bool,
}

impl Levels {
    /// What `--maintain-aliases` means: major and minor.
    pub const MAJOR_MINOR: Levels = Levels {
        major: true,
        minor: true,
        latest: false,
    };

    /// Parses `major,minor,latest` (any subset, at least one).
    pub fn parse(text: &str) -> Result<Levels, String> {
        let mut levels = Levels::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "major" => levels.major = true,
                "minor" => levels.minor = true,
                "latest" => levels.latest = true,
                other => {
                    return Err(format!(
                        "`{other}` is not an alias level (major, minor, latest)"
                    ))
                }
            }
        }
        if levels == Levels::default() {
            return Err("name at least one alias level (major, minor, latest)".into());
        }
        Ok(levels)
    }
}

/// An alias tag and the version tag it should name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Desired {
    pub alias: String,
    pub target: String,
}

pub fn desired(tags: &[String], levels: Levels) -> Vec<Desired> {
    let mut newest: BTreeMap<String, (Version, Prefix, &str)> = BTreeMap::new();
    for tag in tags {
        let Some(parsed) = VersionTag::parse(tag) else {
            continue;
        };
        let version = parsed.version();
        if !version.pre.is_empty() || !version.build.is_empty() {
            continue;
        }
        let prefix = parsed.prefix();
        let p = prefix.as_str();
        let mut names = Vec::with_capacity(3);
        if levels.major {
            names.push(format!("{p}{}", version.major));
        }
        if levels.minor {
            names.push(format!("{p}{}.{}", version.major, version.minor));
        }
        if levels.latest {
            names.push("latest".to_string());
        }
        for name in names {
            let better = match newest.get(&name) {
                None => true,
                // For `latest` across styles, a tie prefers the unprefixed tag.
                Some((v, pr, _)) => version > v || (version == v && prefix < *pr),
            };
            if better {
                newest.insert(name, (version.clone(), prefix, tag.as_str()));
            }
        }
    }
    newest
        .into_iter()
        .map(|(alias, (_, _, target))| Desired {
            alias,
            target: target.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn map(levels: Levels, list: &[&str]) -> Vec<(String, String)> {
        desired(&tags(list), levels)
            .into_iter()
            .map(|d| (d.alias, d.target))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn aliases_name_the_newest_ga_of_their_line() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                &["1.2.3", "1.2.4", "1.1.9", "2.0.0-rc.1", "1.3.0-beta.1"],
                &[("1", "1.2.4"), ("1.1", "1.1.9"), ("1.2", "1.2.4")],
            ),
            // A hotfix on an older line moves only that line.
            (
                &["1.2.3", "1.1.8", "1.1.9"],
                &[("1", "1.2.3"), ("1.1", "1.1.9"), ("1.2", "1.2.3")],
            ),
            // The v style gets v aliases; styles never cross.
            (
                &["v1.2.3", "1.2.4", "latest", "1", "1.2", "main-abc"],
                &[
                    ("1", "1.2.4"),
                    ("1.2", "1.2.4"),
                    ("v1", "v1.2.3"),
                    ("v1.2", "v1.2.3"),
                ],
            ),
            // Prereleases and build metadata never move anything.
            (&["1.0.0-rc.1", "1.0.0+build.5"], &[]),
            // Semver order, not string order.
            (
                &["1.9.0", "1.10.0", "1.10.1"],
                &[("1", "1.10.1"), ("1.10", "1.10.1"), ("1.9", "1.9.0")],
            ),
        ];
        for (list, want) in cases {
            assert_eq!(map(Levels::MAJOR_MINOR, list), pairs(want), "{list:?}");
        }
    }

    #[test]
    fn deleting_the_newest_moves_the_alias_back() {
        let before = map(Levels::MAJOR_MINOR, &["1.2.3", "1.2.4"]);
        let after = map(Levels::MAJOR_MINOR, &["1.2.3"]);
        assert_eq!(before, pairs(&[("1", "1.2.4"), ("1.2", "1.2.4")]));
        assert_eq!(after, pairs(&[("1", "1.2.3"), ("1.2", "1.2.3")]));
    }

    #[test]
    fn latest_only_when_asked_and_prefers_the_plain_style_on_a_tie() {
        let levels = Levels {
            major: false,
            minor: false,
            latest: true,
        };
        assert_eq!(
            map(levels, &["v2.0.0", "2.0.0", "1.9.9", "3.0.0-rc.1"]),
            pairs(&[("latest", "2.0.0")])
        );
        assert!(map(Levels::MAJOR_MINOR, &["2.0.0"])
            .iter()
            .all(|(a, _)| a != "latest"));
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Levels::parse("major,minor").unwrap(), Levels::MAJOR_MINOR);
        assert!(Levels::parse("latest").unwrap().latest);
        assert!(Levels::parse("patch").unwrap_err().contains("`patch`"));
        assert!(Levels::parse("").is_err());
    }
}
