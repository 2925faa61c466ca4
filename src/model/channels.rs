//! The prerelease channels (`tagwatch.dev/prerelease`) a GA deployment may move to.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of prerelease channels: none (the default), a list (`rc,beta`), or any (`*`).
///
/// A channel is the first prerelease identifier of a version (`rc` in `1.3.0-rc.2`). Names are
/// compared exactly, as semver compares identifiers: `RC` does not allow `rc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Channels {
    #[default]
    None,
    Listed(BTreeSet<String>),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prerelease channel `{channel}` in `{value}` is not valid: expected a comma list of prerelease identifiers made of [0-9A-Za-z-] (rc,beta), `*` for any, or nothing")]
pub struct ChannelsError {
    pub value: String,
    pub channel: String,
}

impl Channels {
    /// Whether a GA deployment may move to a prerelease of `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        match self {
            Channels::None => false,
            Channels::Listed(channels) => channels.contains(channel),
            Channels::Any => true,
        }
    }
}

impl FromStr for Channels {
    type Err = ChannelsError;

    /// Blank items are ignored so `rc,` or ` rc , beta ` read as intended; `*` anywhere means any.
    fn from_str(value: &str) -> Result<Channels, ChannelsError> {
        let mut channels = BTreeSet::new();
        let mut any = false;
        for item in value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            if item == "*" {
                any = true;
            } else if item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                channels.insert(item.to_owned());
            } else {
                return Err(ChannelsError {
                    value: value.to_owned(),
                    channel: item.to_owned(),
                });
            }
        }
        Ok(if any {
            Channels::Any
        } else if channels.is_empty() {
            Channels::None
        } else {
            Channels::Listed(channels)
        })
    }
}

/// Round-trips through `FromStr`: `""`, `"*"`, or the sorted list `"beta,rc"`.
impl fmt::Display for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channels::None => Ok(()),
            Channels::Any => f.write_str("*"),
            Channels::Listed(channels) => {
                for (index, channel) in channels.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(channel)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_lists() {
        let cases = [
            ("", Channels::None, ""),
            ("  ", Channels::None, ""),
            (",", Channels::None, ""),
            ("*", Channels::Any, "*"),
            ("rc,*", Channels::Any, "*"),
            ("rc", Channels::Listed(["rc".to_owned()].into()), "rc"),
            (
                " rc , beta ,",
                Channels::Listed(["rc".to_owned(), "beta".to_owned()].into()),
                "beta,rc",
            ),
        ];
        for (input, expected, shown) in cases {
            let channels: Channels = input.parse().unwrap();
            assert_eq!(channels, expected, "{input:?}");
            assert_eq!(channels.to_string(), shown);
            assert_eq!(shown.parse::<Channels>().unwrap(), channels);
        }
    }

    #[test]
    fn rejects_bad_names() {
        let error = "rc,be ta".parse::<Channels>().unwrap_err();
        assert_eq!(error.channel, "be ta");
        assert!(error.to_string().contains("`be ta`"), "{error}");
        assert!("rc.1".parse::<Channels>().is_err());
        assert!("rc;beta".parse::<Channels>().is_err());
    }

    #[test]
    fn allows() {
        let listed: Channels = "rc,beta".parse().unwrap();
        assert!(listed.allows("rc"));
        assert!(listed.allows("beta"));
        assert!(!listed.allows("alpha"));
        assert!(!listed.allows("RC"));
        assert!(Channels::Any.allows("nightly"));
        assert!(!Channels::None.allows("rc"));
    }
}
