//! The tag filter (`tagwatch.dev/match`): a regex every candidate tag must match, whatever the policy.

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag filter `{value}` is not a valid regex: {message}")]
pub struct FilterError {
    pub value: String,
    pub message: String,
}

/// Compiles the annotation value. Like `regex:` policies, the regex is searched anywhere in the
/// tag; anchor it (`^v1\.`) to match from the start.
pub fn parse_filter(value: &str) -> Result<Regex, FilterError> {
    Regex::new(value).map_err(|error| FilterError {
        value: value.to_owned(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn compiles_or_names_the_bad_value() {
        assert!(parse_filter("^v1\\.").unwrap().is_match("v1.2.3"));
        let error = parse_filter("v1[").unwrap_err();
        assert_eq!(error.value, "v1[");
        assert!(error.to_string().contains("`v1[`"), "{error}");
    }
}
