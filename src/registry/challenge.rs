//! Reading registry answers that steer the protocol: `WWW-Authenticate` challenges,
//! `Link` pagination and `Retry-After`.

use std::time::Duration;

use http_auth::parser::ChallengeParser;

/// What a 401 asks the client to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// The first challenge this client can answer; Bearer preferred over Basic.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = false;
    for challenge in ChallengeParser::new(header).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                return Some(Challenge::Bearer {
                    realm,
                    service: param("service"),
                    scope: param("scope"),
                });
            }
        } else if challenge.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as written (often relative).
pub fn next_link(header: &str) -> Option<String> {
    for link in header.split(',') {
        let link = link.trim();
        let Some(end) = link.find('>') else { continue };
        let Some(target) = link[..end].strip_prefix('<') else {
            continue;
        };
        let is_next = link[end + 1..].split(';').any(|param| {
            let param = param.trim();
            param.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r == "next")
            })
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

/// The longest wait a registry may ask for: a `Retry-After` of 2^64-1 seconds is a registry
/// that is broken or hostile, not a schedule (and would overflow any `Instant` it is added to).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (a number too large for `u64` counts as
/// the maximum); HTTP dates are rare from registries and are treated as absent.
pub fn retry_after(header: &str) -> Option<Duration> {
    let digits = header.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bearer_challenges_carry_realm_service_and_scope() {
        let header =
            r#"Bearer realm="http://127.0.0.1:9/token",service="reg",scope="repository:app:pull""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:app:pull".into()),
            })
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge(r#"Negotiate"#), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("garbage \"\"\" ,,"), None);
    }

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(
                r#"<https://x/prev>; rel="prev", <https://x/v2/a/tags/list?n=1&last=z>; rel=next"#
            )
            .as_deref(),
            Some("https://x/v2/a/tags/list?n=1&last=z")
        );
        assert_eq!(next_link(r#"<https://x/prev>; rel="prev""#), None);
        assert_eq!(next_link("nonsense"), None);
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("+5"), None);
    }

    #[test]
    fn huge_retry_after_is_clamped_to_an_hour() {
        assert_eq!(retry_after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("99999999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after("3601"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("3600"), Some(Duration::from_secs(3600)));
        let wait = retry_after("18446744073709551615").unwrap_or_default();
        assert!(std::time::Instant::now().checked_add(wait).is_some());
    }

    proptest! {
        #[test]
        fn any_challenge_header_parses_without_panic(header in any::<String>()) {
            let _ = parse_challenge(&header);
        }

        #[test]
        fn challenge_shaped_headers_parse_without_panic(
            header in r#"(Bearer|Basic|bearer|Negotiate|)( |,)*((realm|service|scope|x)=("[^"]{0,20}"|[a-z:/.0-9]{0,10}|"\\"|")(,| )*){0,4}"#,
        ) {
            if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(&header) {
                prop_assert!(realm.len() <= header.len());
            }
        }

        #[test]
        fn any_link_header_parses_without_panic(header in any::<String>()) {
            if let Some(target) = next_link(&header) {
                prop_assert!(header.contains(target.as_str()));
            }
        }

        #[test]
        fn link_shaped_headers_parse_without_panic(
            header in r#"((<[^>]{0,20}>?|[a-z<>;="]{0,6})(;? ?(rel|REL|x) ?= ?"?(next|prev|next prev)?"?)*,? ?){0,4}"#,
        ) {
            let _ = next_link(&header);
        }

        #[test]
        fn any_retry_after_is_at_most_an_hour(header in any::<String>()) {
            if let Some(wait) = retry_after(&header) {
                prop_assert!(wait <= MAX_RETRY_AFTER);
            }
        }

        #[test]
        fn numeric_retry_after_is_at_most_an_hour(header in " ?[0-9]{1,40} ?") {
            let wait = retry_after(&header);
            prop_assert!(wait.is_some_and(|w| w <= MAX_RETRY_AFTER));
        }
    }
}
