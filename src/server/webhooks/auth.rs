//! Webhook credentials: one shared secret, presented as a token or as an HMAC of the body.
//!
//! - registry, dockerhub, quay: `Authorization: Bearer <secret>`, or `?token=<secret>`;
//! - harbor: the same, or `Authorization: <secret>` (Harbor's "Auth Header" is sent verbatim);
//! - github: only `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//! - generic: `X-Tagwatch-Signature` (same format as GitHub's), a Bearer token, or `?token=`.
//!
//! Tokens are decided from the headers and the query alone ([`check_headers`]), before a byte of
//! the body is read; a body is read (bounded) and hashed only behind a well-formed signature
//! header ([`verify_signature`]).
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

/// What the headers and query alone say about a request that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A token (header or query) matched: the body may be read.
    Authenticated,
    /// No token matched, but a well-formed body signature is present: read the body (bounded)
    /// and call [`verify_signature`] before using it.
    NeedsBody,
}

/// Checks the credential of one webhook request from its headers and query only, before any of
/// the body is read. `query` is the raw query string (without `?`). A sender whose token does
/// not match, or whose signature header is absent or malformed, is refused here: only a
/// well-formed signature makes the body worth reading. An empty `secret` refuses everything: a
/// webhook route without a secret must not exist.
pub fn check_headers(
    source: Source,
    headers: &HeaderMap,
    query: Option<&str>,
    secret: &str,
) -> Result<HeaderCheck, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Mismatch);
    }
    let mut verdict = Verdict::default();
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
    if verdict.matched {
        return Ok(HeaderCheck::Authenticated);
    }
    let mut signed = false;
    if let Some(name) = signature_header(source) {
        for value in headers.get_all(name) {
            let well_formed = parse_signature(value).is_some();
            signed |= well_formed;
            // A malformed signature is a wrong credential, refused without the body.
            verdict.record(false);
        }
    }
    if signed {
        return Ok(HeaderCheck::NeedsBody);
    }
    verdict.finish()
}

/// The second half of [`check_headers`]' `NeedsBody`: does any well-formed signature header
/// match the HMAC of `body`? The HMAC is computed once, however many headers there are.
pub fn verify_signature(
    source: Source,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> Result<(), AuthError> {
    let Some(name) = signature_header(source) else {
        return Err(AuthError::Missing);
    };
    if secret.is_empty() {
        return Err(AuthError::Mismatch);
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Err(AuthError::Mismatch);
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let mut matched = false;
    for signature in headers.get_all(name).iter().filter_map(parse_signature) {
        matched |= bool::from(signature.as_slice().ct_eq(expected.as_slice()));
    }
    if matched {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// Both steps at once, for callers that already hold the body.
pub fn authenticate(
    source: Source,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    secret: &str,
) -> Result<(), AuthError> {
    match check_headers(source, headers, query, secret)? {
        HeaderCheck::Authenticated => Ok(()),
        HeaderCheck::NeedsBody => verify_signature(source, headers, body, secret),
    }
}

/// The body signature header a source may send, if any.
fn signature_header(source: Source) -> Option<&'static str> {
    match source {
        Source::GitHub => Some(GITHUB_SIGNATURE),
        Source::Generic => Some(TAGWATCH_SIGNATURE),
        _ => None,
    }
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

    fn finish(self) -> Result<HeaderCheck, AuthError> {
        match (self.matched, self.presented) {
            (true, _) => Ok(HeaderCheck::Authenticated),
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

/// `sha256=<64 hex digits>` (either case) as the 32 bytes of an HMAC-SHA256; any other shape is
/// `None` (and counts as a wrong signature).
fn parse_signature(value: &HeaderValue) -> Option<[u8; 32]> {
    let value = value.to_str().ok()?.trim();
    let (algorithm, hex_digest) = value.split_once('=')?;
    if !algorithm.eq_ignore_ascii_case("sha256") || hex_digest.len() != 64 {
        return None;
    }
    let mut signature = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut signature).ok()?;
    Some(signature)
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

    type Case<'a, T> = (
        Source,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        Result<T, AuthError>,
    );

    #[test]
    fn tokens_and_malformed_signatures_are_decided_before_the_body() {
        use AuthError::{Mismatch, Missing};
        use HeaderCheck::{Authenticated, NeedsBody};
        use Source::*;
        let good_sig = sign(SECRET, BODY);
        let bearer = format!("Bearer {SECRET}");
        let (auth, gh, tw) = (
            "authorization",
            "x-hub-signature-256",
            "x-tagwatch-signature",
        );
        let short = "sha256=00";
        let long = format!("{good_sig}00");
        let other_secret = sign("not-it", BODY);
        #[rustfmt::skip]
        let cases: Vec<Case<HeaderCheck>> = vec![
            (Registry, vec![(auth, &bearer)], None, Ok(Authenticated)),
            (Registry, vec![(auth, "Bearer nope")], None, Err(Mismatch)),
            (Registry, vec![(gh, &good_sig)], None, Err(Missing)),
            (Quay, vec![], Some("token=nope"), Err(Mismatch)),
            (Harbor, vec![(auth, SECRET)], None, Ok(Authenticated)),
            (GitHub, vec![], None, Err(Missing)),
            (GitHub, vec![(auth, &bearer)], None, Err(Missing)),
            (GitHub, vec![(gh, short)], None, Err(Mismatch)),
            (GitHub, vec![(gh, &long)], None, Err(Mismatch)),
            (GitHub, vec![(gh, "sha1=0123")], None, Err(Mismatch)),
            (GitHub, vec![(gh, &good_sig)], None, Ok(NeedsBody)),
            // Whether it matches is only known with the body.
            (GitHub, vec![(gh, &other_secret)], None, Ok(NeedsBody)),
            (Generic, vec![(auth, &bearer), (tw, short)], None, Ok(Authenticated)),
            (Generic, vec![(auth, "Bearer nope"), (tw, &good_sig)], None, Ok(NeedsBody)),
            (Generic, vec![(auth, "Bearer nope"), (tw, short)], None, Err(Mismatch)),
            (Generic, vec![], None, Err(Missing)),
        ];
        for (source, pairs, query, expected) in cases {
            let got = check_headers(source, &headers(&pairs), query, SECRET);
            assert_eq!(got, expected, "{source} {pairs:?} {query:?}");
        }
    }

    #[test]
    fn any_well_formed_signature_may_match() {
        let good = sign(SECRET, BODY);
        let other = sign(SECRET, b"{}");
        let pairs = [
            ("x-hub-signature-256", "garbage"),
            ("x-hub-signature-256", other.as_str()),
            ("x-hub-signature-256", good.as_str()),
        ];
        let map = headers(&pairs);
        assert_eq!(verify_signature(Source::GitHub, &map, BODY, SECRET), Ok(()));
        assert_eq!(
            verify_signature(Source::GitHub, &map, b"tampered", SECRET),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify_signature(Source::Registry, &map, BODY, SECRET),
            Err(AuthError::Missing)
        );
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
