//! Webhook credentials: one shared secret, presented as a token or as an HMAC of the body.
//!
//! - registry, dockerhub, quay: `Authorization: Bearer <secret>`, or `?token=<secret>`;
//! - harbor: the same, or `Authorization: <secret>` (Harbor's "Auth Header" is sent verbatim);
//! - github: only `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//! - generic: `X-Tagwatch-Signature` (same format as GitHub's), a Bearer token, or `?token=`.
//!
//! Prefer a header: a query token ends up in access logs of every proxy on the way. Docker Hub and
//! Quay can only be given a URL, hence the query form. The query value is percent-decoded; `+` is
//! taken literally (a base64 secret pasted unencoded still matches). Any one matching credential
//! is enough. Comparisons are constant-time; no error mentions the secret or what was received.

use hmac::{Hmac, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Source;

/// GitHub's body signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// tagwatch's body signature header for the generic source (same format as GitHub's).
pub const TAGWATCH_SIGNATURE: &str = "x-tagwatch-signature";

/// Why a webhook was refused; the caller answers 401 to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("webhook request carries no credential this source accepts")]
    Missing,
    #[error("webhook credential does not match the configured secret")]
    Mismatch,
}

/// Checks the credential of one webhook request. `query` is the raw query string (without `?`).
/// An empty `secret` refuses everything: a webhook route without a secret must not exist.
pub fn authenticate(
    source: Source,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    secret: &str,
) -> Result<(), AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Mismatch);
    }
    let mut verdict = Verdict::default();
    let signature_header = match source {
        Source::GitHub => Some(GITHUB_SIGNATURE),
        Source::Generic => Some(TAGWATCH_SIGNATURE),
        _ => None,
    };
    if let Some(name) = signature_header {
        for value in headers.get_all(name) {
            verdict.record(signature_matches(value, body, secret));
        }
    }
    // GitHub always signs when a secret is set: a replayable token would only weaken it.
    if source != Source::GitHub {
        for value in headers.get_all(AUTHORIZATION) {
            let value = value.to_str().unwrap_or_default().trim();
            let bearer = bearer_token(value).is_some_and(|t| token_matches(t.as_bytes(), secret));
            let verbatim = source == Source::Harbor && token_matches(value.as_bytes(), secret);
            verdict.record(bearer || verbatim);
        }
        for token in query_tokens(query) {
            verdict.record(token_matches(&token, secret));
        }
    }
    verdict.finish()
}

#[derive(Default)]
struct Verdict {
    presented: bool,
    matched: bool,
}

impl Verdict {
    fn record(&mut self, matched: bool) {
        self.presented = true;
        self.matched |= matched;
    }

    fn finish(self) -> Result<(), AuthError> {
        match (self.matched, self.presented) {
            (true, _) => Ok(()),
            (false, true) => Err(AuthError::Mismatch),
            (false, false) => Err(AuthError::Missing),
        }
    }
}

fn token_matches(token: &[u8], secret: &str) -> bool {
    token.ct_eq(secret.as_bytes()).into()
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `sha256=<hex>`; a header in any other shape counts as a wrong signature.
fn signature_matches(value: &HeaderValue, body: &[u8], secret: &str) -> bool {
    let value = value.to_str().unwrap_or_default().trim();
    let Some(hex_digest) = value
        .split_once('=')
        .filter(|(algorithm, _)| algorithm.eq_ignore_ascii_case("sha256"))
        .map(|(_, digest)| digest)
    else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn query_tokens(query: Option<&str>) -> impl Iterator<Item = Vec<u8>> + '_ {
    query
        .unwrap_or_default()
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
}

/// `%XX` escapes become bytes; anything else, `+` included, stays as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(|hex| hex::decode(hex).ok()),
            _ => None,
        };
        match escaped.as_deref() {
            Some([byte]) => {
                decoded.push(*byte);
                i += 3;
            }
            _ => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "wh-s3cret/42+x";
    const BODY: &[u8] = br#"{"action":"published"}"#;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn credentials_per_source() {
        use AuthError::{Mismatch, Missing};
        use Source::*;
        let good_sig = sign(SECRET, BODY);
        let other_body = sign(SECRET, b"{}");
        let other_secret = sign("not-it", BODY);
        let upper = good_sig.to_uppercase();
        let bearer = format!("Bearer {SECRET}");
        let lower_bearer = format!("bearer  {SECRET} ");
        let encoded = "token=wh-s3cret%2F42%2Bx";
        let literal = format!("token={SECRET}");
        let amid = format!("x=1&{encoded}&y=2");
        type Case<'a> = (
            Source,
            Vec<(&'a str, &'a str)>,
            Option<&'a str>,
            Result<(), AuthError>,
        );
        let (auth, gh, tw) = (
            "authorization",
            "x-hub-signature-256",
            "x-tagwatch-signature",
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (Registry, vec![(auth, &bearer)], None, Ok(())),
            (Registry, vec![(auth, &lower_bearer)], None, Ok(())),
            (Registry, vec![(auth, "Bearer nope")], None, Err(Mismatch)),
            (Registry, vec![(auth, SECRET)], None, Err(Mismatch)),
            (Registry, vec![(auth, "Basic dTpw")], None, Err(Mismatch)),
            (Registry, vec![], None, Err(Missing)),
            (Registry, vec![(gh, &good_sig)], None, Err(Missing)),
            (Registry, vec![], Some(encoded), Ok(())),
            (Harbor, vec![(auth, SECRET)], None, Ok(())),
            (Harbor, vec![(auth, &bearer)], None, Ok(())),
            (Harbor, vec![(auth, "wrong")], None, Err(Mismatch)),
            (DockerHub, vec![], Some(encoded), Ok(())),
            (DockerHub, vec![], Some(&literal), Ok(())),
            (DockerHub, vec![], Some(&amid), Ok(())),
            (DockerHub, vec![], Some("token=wh-s3cret"), Err(Mismatch)),
            (DockerHub, vec![], Some("tokens=x&a=b"), Err(Missing)),
            (Quay, vec![], Some(encoded), Ok(())),
            // Any one matching credential is enough.
            (Quay, vec![(auth, "Bearer nope")], Some(encoded), Ok(())),
            (GitHub, vec![(gh, &good_sig)], None, Ok(())),
            (GitHub, vec![(gh, &upper)], None, Ok(())),
            (GitHub, vec![(gh, &other_body)], None, Err(Mismatch)),
            (GitHub, vec![(gh, &other_secret)], None, Err(Mismatch)),
            (GitHub, vec![(gh, "sha256=zz12")], None, Err(Mismatch)),
            (GitHub, vec![(gh, "sha256=")], None, Err(Mismatch)),
            (GitHub, vec![(gh, &good_sig[7..])], None, Err(Mismatch)),
            (GitHub, vec![("x-hub-signature", "sha1=00")], None, Err(Missing)),
            (GitHub, vec![(auth, &bearer)], Some(encoded), Err(Missing)),
            (Generic, vec![(tw, &good_sig)], None, Ok(())),
            (Generic, vec![(tw, &other_body)], None, Err(Mismatch)),
            (Generic, vec![(auth, &bearer)], None, Ok(())),
            (Generic, vec![], Some(encoded), Ok(())),
            (Generic, vec![(gh, &good_sig)], None, Err(Missing)),
        ];
        for (source, pairs, query, expected) in cases {
            let got = authenticate(source, &headers(&pairs), query, BODY, SECRET);
            assert_eq!(got, expected, "{source} {pairs:?} {query:?}");
        }
    }

    #[test]
    fn an_empty_secret_refuses_everything() {
        let pairs = [("authorization", "Bearer "), ("authorization", "")];
        for source in Source::ALL {
            let got = authenticate(source, &headers(&pairs), Some("token="), BODY, "");
            assert_eq!(got, Err(AuthError::Mismatch), "{source}");
        }
    }

    #[test]
    fn errors_never_show_secret_or_token() {
        let wrong = "Bearer wrong-token-value";
        for source in Source::ALL {
            let pairs = [
                ("authorization", wrong),
                ("x-hub-signature-256", "sha256=00"),
            ];
            for (pairs, query) in [(&pairs[..], Some("token=wrong-token-value")), (&[], None)] {
                let err = authenticate(source, &headers(pairs), query, BODY, SECRET).unwrap_err();
                for text in [err.to_string(), format!("{err:?}")] {
                    assert!(
                        !text.contains(SECRET) && !text.contains("wrong-token"),
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn percent_decoding_keeps_stray_percent_signs() {
        assert_eq!(percent_decode("a%2Fb%2fc"), b"a/b/c");
        assert_eq!(percent_decode("50%+%zz%4"), b"50%+%zz%4");
    }
}
