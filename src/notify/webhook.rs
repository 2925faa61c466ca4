//! The generic webhook body and the signature every signed sink sends (pure).
//!
//! `X-Tagwatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>` over the exact bytes sent, so
//! a receiver verifies before parsing (and compares in constant time).

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::Notice;

pub const SIGNATURE_HEADER: &str = "X-Tagwatch-Signature";

pub fn body(notice: &Notice) -> Value {
    json!({
        "id": notice.id,
        "event": notice.event.name(),
        "reason": notice.reason,
        "type": notice.type_,
        "workload": workload(notice),
        "message": notice.message,
        "time": notice.time.to_string(),
    })
}

pub(super) fn workload(notice: &Notice) -> Value {
    json!({
        "namespace": notice.regarding.namespace,
        "kind": notice.regarding.kind,
        "name": notice.regarding.name,
    })
}

/// The header value: `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::notice;
    use crate::notify::Event;

    #[test]
    fn the_body_names_event_workload_and_time() {
        let body = body(&notice(Event::UpdateApplied, "shop"));
        assert_eq!(
            body,
            json!({
                "id": "0123",
                "event": "update.applied",
                "reason": "ImageUpdated",
                "type": "Normal",
                "workload": {"namespace": "shop", "kind": "Deployment", "name": "web"},
                "message": "web: r.io/app:1.0.0 → r.io/app:1.1.0",
                "time": "2025-03-04T05:06:07Z",
            })
        );
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
