//! A Deployment's canary settings, from its annotations.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::query::{check_template, Threshold};

use super::annotations as keys;

#[derive(Debug, Clone, PartialEq)]
pub struct CanarySpec {
    pub replicas: i32,
    /// Every canary pod must be Ready within this.
    pub timeout: Duration,
    /// ... and stay Ready, without restarts, for this.
    pub bake: Duration,
    /// PromQL with `{{namespace}}`, `{{deployment}}`, `{{track}}`, and the bound it must hold.
    pub query: Option<(String, Threshold)>,
    /// Failed query checks tolerated during the bake.
    pub failures: u32,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_BAKE: Duration = Duration::from_secs(120);

/// `Ok(None)`: no canary (the annotation is absent or `false`). An error names the annotation.
pub fn parse(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<CanarySpec>, (&'static str, String)> {
    let get = |key: &str| annotations.get(key).map(|v| v.trim());
    match get(keys::CANARY) {
        None | Some("false") => return Ok(None),
        Some("true") => {}
        Some(other) => return Err((keys::CANARY, format!("`{other}` is not `true` or `false`"))),
    }
    let replicas = match get(keys::CANARY_REPLICAS) {
        None => 1,
        Some(text) => match text.parse::<i32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err((
                    keys::CANARY_REPLICAS,
                    format!("`{text}` is not a replica count from 1 to 100"),
                ))
            }
        },
    };
    let duration = |key: &'static str, default: Duration| match get(key) {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err((key, format!("`{text}` is not a duration such as `2m`"))),
        },
    };
    let timeout = duration(keys::CANARY_TIMEOUT, DEFAULT_TIMEOUT)?;
    let bake = duration(keys::CANARY_BAKE, DEFAULT_BAKE)?;
    let query = match (get(keys::CANARY_QUERY), get(keys::CANARY_THRESHOLD)) {
        (None, None) => None,
        (Some(query), Some(threshold)) => {
            check_template(query).map_err(|e| (keys::CANARY_QUERY, e))?;
            let threshold = threshold
                .parse::<Threshold>()
                .map_err(|e| (keys::CANARY_THRESHOLD, e))?;
            Some((query.to_string(), threshold))
        }
        (Some(_), None) => {
            return Err((
                keys::CANARY_THRESHOLD,
                "is required with tagwatch.dev/canary-query (e.g. `< 0.05`)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                keys::CANARY_QUERY,
                "is required with tagwatch.dev/canary-threshold".into(),
            ))
        }
    };
    let failures = match get(keys::CANARY_FAILURES) {
        None => 0,
        Some(text) => text.parse::<u32>().map_err(|_| {
            (
                keys::CANARY_FAILURES,
                format!("`{text}` is not a count of tolerated failed checks"),
            )
        })?,
    };
    Ok(Some(CanarySpec {
        replicas,
        timeout,
        bake,
        query,
        failures,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_full_settings() {
        assert_eq!(parse(&annotations(&[])).unwrap(), None);
        assert_eq!(
            parse(&annotations(&[(keys::CANARY, "false")])).unwrap(),
            None
        );
        let spec = parse(&annotations(&[(keys::CANARY, "true")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (spec.replicas, spec.timeout, spec.bake, spec.failures),
            (1, DEFAULT_TIMEOUT, DEFAULT_BAKE, 0)
        );
        assert!(spec.query.is_none());
        let spec = parse(&annotations(&[
            (keys::CANARY, "true"),
            (keys::CANARY_REPLICAS, "2"),
            (keys::CANARY_TIMEOUT, "30s"),
            (keys::CANARY_BAKE, "1m"),
            (
                keys::CANARY_QUERY,
                "max(errors{deployment=\"{{deployment}}\"})",
            ),
            (keys::CANARY_THRESHOLD, "< 0.05"),
            (keys::CANARY_FAILURES, "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.bake, Duration::from_secs(60));
        let (_, threshold) = spec.query.unwrap();
        assert!(threshold.holds(0.01) && !threshold.holds(0.05));
        assert_eq!(spec.failures, 1);
    }

    #[test]
    fn bad_settings_name_their_annotation() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(keys::CANARY, "yes")], keys::CANARY),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_REPLICAS, "0")],
                keys::CANARY_REPLICAS,
            ),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_BAKE, "soon")],
                keys::CANARY_BAKE,
            ),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_TIMEOUT, "0s")],
                keys::CANARY_TIMEOUT,
            ),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_QUERY, "up")],
                keys::CANARY_THRESHOLD,
            ),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_THRESHOLD, "< 1")],
                keys::CANARY_QUERY,
            ),
            (
                &[
                    (keys::CANARY, "true"),
                    (keys::CANARY_QUERY, "up"),
                    (keys::CANARY_THRESHOLD, "about 1"),
                ],
                keys::CANARY_THRESHOLD,
            ),
            (
                &[
                    (keys::CANARY, "true"),
                    (keys::CANARY_QUERY, "x{a=\"{{pod}}\"}"),
                    (keys::CANARY_THRESHOLD, "< 1"),
                ],
                keys::CANARY_QUERY,
            ),
            (
                &[(keys::CANARY, "true"), (keys::CANARY_FAILURES, "-1")],
                keys::CANARY_FAILURES,
            ),
        ];
        for (pairs, field) in cases {
            let (got, _) = parse(&annotations(pairs)).unwrap_err();
            assert_eq!(got, *field, "{pairs:?}");
        }
    }
}
