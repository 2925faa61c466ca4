//! Release gates a workload asks for (`tagwatch.dev/platforms`, `tagwatch.dev/min-age`): what a
//! candidate version must prove before it may be written. Parsed here, judged in
//! [`crate::plan::gates`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// The longest `tagwatch.dev/min-age` honoured; longer values are clamped to it (a release that
/// must wait a quarter is better pinned by hand).
pub const MAX_MIN_AGE: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// An `os/architecture` pair, as Nodes report it and image indexes list it. A variant
/// (`linux/arm64/v8`) is accepted in annotations but not compared: Nodes do not report one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: architecture.to_ascii_lowercase(),
        }
    }

    /// `os/architecture[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform::new(os, arch))
            }
            _ => Err(format!(
                "`{text}` is not os/architecture (like linux/arm64)"
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// `tagwatch.dev/platforms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    Listed(BTreeSet<Platform>),
    /// Every `os/architecture` the cluster's Nodes report.
    Auto,
}

impl Platforms {
    pub fn parse(text: &str) -> Result<Platforms, String> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(Platforms::Auto);
        }
        let listed = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Platform::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if listed.is_empty() {
            return Err("lists no platform: expected `auto` or `linux/amd64,linux/arm64`".into());
        }
        Ok(Platforms::Listed(listed))
    }
}

/// The gates one workload asks for. Empty: no gate, no extra registry request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GateSpec {
    /// Verification policies (`tagwatch.dev/verify`, plus those the operator enforces on the
    /// repository): a signature must pass every one.
    pub verify: BTreeSet<String>,
    pub platforms: Option<Platforms>,
    pub min_age: Option<Duration>,
}

impl GateSpec {
    pub fn is_empty(&self) -> bool {
        self.verify.is_empty() && self.platforms.is_none() && self.min_age.is_none()
    }

    /// The gates asked for, in the order they are judged.
    pub fn gates(&self) -> impl Iterator<Item = crate::plan::gates::Gate> + '_ {
        use crate::plan::gates::Gate;
        [
            (!self.verify.is_empty()).then_some(Gate::Signature),
            self.platforms.as_ref().map(|_| Gate::Platforms),
            self.min_age.map(|_| Gate::MinAge),
        ]
        .into_iter()
        .flatten()
    }

    pub fn wants_nodes(&self) -> bool {
        matches!(self.platforms, Some(Platforms::Auto))
    }
}

/// `tagwatch.dev/min-age`: a duration, clamped to [`MAX_MIN_AGE`]; `0s` asks for no gate.
pub fn parse_min_age(text: &str) -> Result<Option<Duration>, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d.min(MAX_MIN_AGE))),
        Err(e) => Err(format!("`{text}` is not a duration like 24h or 7d: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn platforms_parse() {
        let listed = |items: &[(&str, &str)]| {
            Ok(Platforms::Listed(
                items.iter().map(|(o, a)| Platform::new(o, a)).collect(),
            ))
        };
        #[rustfmt::skip]
        let rows: &[(&str, Result<Platforms, ()>)] = &[
            ("auto", Ok(Platforms::Auto)),
            (" AUTO ", Ok(Platforms::Auto)),
            ("linux/amd64", listed(&[("linux", "amd64")])),
            ("linux/amd64, linux/arm64/v8", listed(&[("linux", "amd64"), ("linux", "arm64")])),
            ("Linux/AMD64,", listed(&[("linux", "amd64")])),
            ("", Err(())),
            ("amd64", Err(())),
            ("linux/", Err(())),
            ("linux/amd64,arm64", Err(())),
            ("a/b/c/d", Err(())),
        ];
        for (text, expected) in rows {
            assert_eq!(
                Platforms::parse(text).map_err(|_| ()),
                *expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn min_age_is_clamped() {
        assert_eq!(parse_min_age("24h"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_min_age("0s"), Ok(None));
        assert_eq!(parse_min_age("365d"), Ok(Some(MAX_MIN_AGE)));
        assert!(parse_min_age("soon").is_err());
        assert!(
            parse_min_age("18446744073709551615s").is_ok_and(|d| d <= Some(MAX_MIN_AGE))
                || parse_min_age("18446744073709551615s").is_err()
        );
    }
}
