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

/// `Retry-After` in seconds; HTTP dates are rare from registries and are treated as absent.
pub fn retry_after(header: &str) -> Option<Duration> {
    header.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
