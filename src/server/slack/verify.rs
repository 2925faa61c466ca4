//! Slack's request signing (pure): `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
//! "v0:" + X-Slack-Request-Timestamp + ":" + body)>`.
//!
//! In two steps, like the webhooks' credentials: [`check_headers`] before a byte of the body is
//! read (both headers present, well formed, and the timestamp within [`MAX_SKEW`] of now, so a
//! recorded request cannot be replayed later), then [`verify`] over the exact bytes received,
//! before they are parsed. The comparison is constant-time; no error quotes the secret or what
//! was received.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SIGNATURE: &str = "x-slack-signature";
pub const TIMESTAMP: &str = "x-slack-request-timestamp";

/// Slack's own advice: a request whose timestamp is further than this from now is refused,
/// whichever way (a clock ahead of ours is no more trustworthy than a replay).
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was refused; the caller answers 401 to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Slack-Request-Timestamp or X-Slack-Signature header")]
    Missing,
    #[error("X-Slack-Request-Timestamp or X-Slack-Signature is malformed (or sent twice)")]
    Malformed,
    #[error("X-Slack-Request-Timestamp is more than 5 minutes from now")]
    Stale,
    #[error("X-Slack-Signature does not match the signing secret")]
    Mismatch,
}

/// The headers of a request that may be worth reading: its timestamp as sent (it is signed as
/// text) and the signature's 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    timestamp: String,
    signature: [u8; 32],
}

/// Checks the two headers at `now` (Unix seconds), before the body is read.
pub fn check_headers(headers: &HeaderMap, now: i64) -> Result<Signed, SignatureError> {
    let timestamp = single(headers, TIMESTAMP)?;
    let signature = single(headers, SIGNATURE)?;
    // Digits only, and few: the text is signed as sent, and a sign or spaces would let two
    // spellings of one number through.
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::Malformed);
    }
    let seconds: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    let hex_digest = signature
        .strip_prefix("v0=")
        .filter(|h| h.len() == 64)
        .ok_or(SignatureError::Malformed)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut bytes).map_err(|_| SignatureError::Malformed)?;
    if now.saturating_sub(seconds).saturating_abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(Signed {
        timestamp: timestamp.to_string(),
        signature: bytes,
    })
}

/// Whether `body` is what Slack signed under `secret`. An empty secret matches nothing.
pub fn verify(signed: &Signed, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(signed.timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(signed.signature.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `v0=<hex>` for `body` sent at `timestamp`: what Slack sends (for tests and tools).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The one value of header `name`: absent is `Missing`; twice, or not text, `Malformed`.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::Missing)?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed);
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| SignatureError::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: i64 = 1_531_420_618;
    const BODY: &[u8] = b"payload=%7B%22type%22%3A%22block_actions%22%7D";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn judge(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
        check_headers(headers, NOW).and_then(|signed| verify(&signed, body, secret))
    }

    #[test]
    fn signatures_are_judged_on_headers_then_body() {
        let at = |offset: i64| (NOW + offset).to_string();
        let good = sign(SECRET, &at(0), BODY);
        let ts = at(0);
        let old = at(-MAX_SKEW_SECS - 1);
        let old_sig = sign(SECRET, &old, BODY);
        let edge = at(-MAX_SKEW_SECS);
        let edge_sig = sign(SECRET, &edge, BODY);
        let future = at(MAX_SKEW_SECS + 1);
        let future_sig = sign(SECRET, &future, BODY);
        let wrong_secret = sign(b"another secret", &ts, BODY);
        let upper = format!("v0={}", good.trim_start_matches("v0=").to_uppercase());
        let not_hex = format!("v0={}", "zz".repeat(32));
        let other_form = good.replace("v0=", "sha256=");
        type Case<'a> = (
            &'a str,
            Vec<(&'static str, &'a str)>,
            &'a [u8],
            Result<(), SignatureError>,
        );
        let cases: Vec<Case> = vec![
            (
                "valid",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &good)],
                BODY,
                Ok(()),
            ),
            (
                "hex in capitals",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &upper)],
                BODY,
                Ok(()),
            ),
            (
                "at the 5 minute edge",
                vec![(TIMESTAMP, &edge), (SIGNATURE, &edge_sig)],
                BODY,
                Ok(()),
            ),
            (
                "wrong secret",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &wrong_secret)],
                BODY,
                Err(SignatureError::Mismatch),
            ),
            (
                "tampered body",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &good)],
                b"payload=%7B%7D",
                Err(SignatureError::Mismatch),
            ),
            // The timestamp is signed: moving it breaks the signature even when fresh.
            (
                "another timestamp",
                vec![(TIMESTAMP, &edge), (SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Mismatch),
            ),
            (
                "stale, signed correctly",
                vec![(TIMESTAMP, &old), (SIGNATURE, &old_sig)],
                BODY,
                Err(SignatureError::Stale),
            ),
            (
                "future, signed correctly",
                vec![(TIMESTAMP, &future), (SIGNATURE, &future_sig)],
                BODY,
                Err(SignatureError::Stale),
            ),
            ("no headers", vec![], BODY, Err(SignatureError::Missing)),
            (
                "no signature",
                vec![(TIMESTAMP, &ts)],
                BODY,
                Err(SignatureError::Missing),
            ),
            (
                "no timestamp",
                vec![(SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Missing),
            ),
            (
                "v1 scheme",
                vec![(TIMESTAMP, &ts), (SIGNATURE, "v1=00")],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "short hex",
                vec![(TIMESTAMP, &ts), (SIGNATURE, "v0=abcd")],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "not hex",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &not_hex)],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "sha256= form",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &other_form)],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "timestamp not a number",
                vec![(TIMESTAMP, "soon"), (SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "negative timestamp",
                vec![(TIMESTAMP, "-1"), (SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "huge timestamp",
                vec![(TIMESTAMP, "99999999999999999999"), (SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Malformed),
            ),
            (
                "two signatures",
                vec![(TIMESTAMP, &ts), (SIGNATURE, &good), (SIGNATURE, &good)],
                BODY,
                Err(SignatureError::Malformed),
            ),
        ];
        for (name, pairs, body, want) in cases {
            assert_eq!(judge(&headers(&pairs), body, SECRET), want, "{name}");
        }
        // An empty secret matches nothing, not even a signature made with it.
        let empty = sign(b"", &ts, BODY);
        assert_eq!(
            judge(
                &headers(&[(TIMESTAMP, &ts), (SIGNATURE, &empty)]),
                BODY,
                b""
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // The example in Slack's "Verifying requests from Slack" guide.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let headers = headers(&[(TIMESTAMP, "1531420618"), (SIGNATURE, signature)]);
        let signed = check_headers(&headers, NOW).unwrap();
        assert_eq!(verify(&signed, body, SECRET), Ok(()));
        assert_eq!(sign(SECRET, "1531420618", body), signature);
    }
}
