//! Cosign signatures judged against a verification policy's trust. Pure: the signatures found in
//! the registry, the trust (public keys, or certificate authorities with transparency-log keys
//! and the identities allowed to sign) and the clock come in; who signed the exact digest, or
//! why nobody did, goes out. The cryptography is sigstore-rs's (`CosignVerificationKey`) and
//! rustls-webpki's (certificate paths), never hand-rolled.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};
use x509_cert::der::asn1::{ObjectIdentifier, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::model::verify::Identity;

/// The simple-signing payload type cosign signs.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// Signatures looked at per candidate: a registry cannot make tagwatch verify without end.
pub const MAX_SIGNATURES: usize = 16;

const OID_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// Fulcio's OIDC issuer extensions: the deprecated raw form and the DER UTF8String form.
const OID_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const OID_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER content octets, as webpki wants them.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// One signature as cosign stores it: a layer of a signature manifest (its payload blob and
/// annotations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub payload: Vec<u8>,
    /// `dev.cosignproject.cosign/signature`, base64.
    pub signature: String,
    /// `dev.sigstore.cosign/certificate` (keyless), PEM.
    pub certificate: Option<String>,
    /// `dev.sigstore.cosign/chain`, PEM.
    pub chain: Option<String>,
    /// `dev.sigstore.cosign/bundle`: the Rekor entry and its signed timestamp.
    pub bundle: Option<String>,
}

/// What a policy trusts, read from its files and Secrets.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys with where they came from (for the reason shown).
    pub keys: Vec<(String, CosignVerificationKey)>,
    pub keyless: Option<KeylessTrust>,
}

#[derive(Debug, Clone)]
pub struct KeylessTrust {
    pub identities: Vec<Identity>,
    pub root: TrustRoot,
    pub tlog_required: bool,
}

/// Certificate authorities and transparency logs (a Sigstore `trusted_root.json`).
#[derive(Debug, Clone, Default)]
pub struct TrustRoot {
    pub anchors: Vec<CertificateDer<'static>>,
    pub intermediates: Vec<CertificateDer<'static>>,
    /// Rekor keys by log ID (hex SHA-256 of the key's DER).
    pub logs: BTreeMap<String, CosignVerificationKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrustedRoot {
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    public_key: RawBytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    cert_chain: RawChain,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))
}

/// Reads a Sigstore `trusted_root.json`: each authority's chain lists the issuing certificate
/// first and its root last; each log is known by the SHA-256 of its key.
pub fn parse_trusted_root(bytes: &[u8]) -> Result<TrustRoot, String> {
    let raw: RawTrustedRoot =
        serde_json::from_slice(bytes).map_err(|e| format!("not a trusted_root.json: {e}"))?;
    let mut root = TrustRoot::default();
    for authority in raw.certificate_authorities {
        let mut chain = authority
            .cert_chain
            .certificates
            .iter()
            .map(|c| b64(&c.raw_bytes).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(anchor) = chain.pop() {
            root.anchors.push(anchor);
            root.intermediates.extend(chain);
        }
    }
    for log in raw.tlogs {
        let der = b64(&log.public_key.raw_bytes)?;
        let key = CosignVerificationKey::try_from_der(&der)
            .map_err(|e| format!("a transparency log key does not parse: {e}"))?;
        root.logs.insert(hex::encode(Sha256::digest(&der)), key);
    }
    if root.anchors.is_empty() {
        return Err("names no certificate authority".into());
    }
    Ok(root)
}

/// The Sigstore public-good trust root (Fulcio and Rekor), as sigstore-rs ships it.
pub fn public_good_root() -> Result<TrustRoot, String> {
    parse_trusted_root(include_bytes!("../../config/sigstore/trusted_root.json"))
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Who signed `digest` under `trust` (`key file /k.pub`, or the certificate's identity and
/// issuer), or why no signature found does.
pub fn verify(
    trust: &Trust,
    digest: &str,
    found: &[Material],
    now: Timestamp,
) -> Result<String, String> {
    if found.is_empty() {
        return Err("no cosign signature found".into());
    }
    let mut reasons = Vec::new();
    for material in found.iter().take(MAX_SIGNATURES) {
        match verify_one(trust, digest, material, now) {
            Ok(who) => return Ok(who),
            Err(why) => {
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
            }
        }
    }
    reasons.truncate(3);
    Err(format!(
        "no signature verifies ({} found: {})",
        found.len(),
        reasons.join("; ")
    ))
}

fn verify_one(
    trust: &Trust,
    digest: &str,
    material: &Material,
    now: Timestamp,
) -> Result<String, String> {
    let payload: Payload = serde_json::from_slice(&material.payload)
        .map_err(|_| "a payload is not a cosign simple-signing document".to_string())?;
    if payload.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(format!("a payload is of type `{}`", payload.critical.kind));
    }
    if payload.critical.image.digest != digest {
        return Err(format!(
            "a signature covers {}, not this digest",
            payload.critical.image.digest
        ));
    }
    let signature = Signature::Base64Encoded(material.signature.trim().as_bytes());
    for (label, key) in &trust.keys {
        let signature = Signature::Base64Encoded(material.signature.trim().as_bytes());
        if key.verify_signature(signature, &material.payload).is_ok() {
            return Ok(format!("signed by key {label}"));
        }
    }
    let Some(keyless) = &trust.keyless else {
        return Err("no signature by a trusted key".into());
    };
    let Some(certificate) = &material.certificate else {
        return Err("no signature by a trusted key, and none with a certificate".into());
    };
    let leaf = CertificateDer::from_pem_slice(certificate.as_bytes())
        .map_err(|_| "a signing certificate is not PEM".to_string())?;
    // The moment the certificate must have been valid: when the log recorded the signature
    // (Fulcio certificates live minutes), or now when no log is consulted.
    let at = match (&material.bundle, keyless.tlog_required) {
        (Some(bundle), _) => verify_bundle(&keyless.root, bundle, material, &leaf)?,
        (None, true) => return Err("a keyless signature has no transparency log entry".into()),
        (None, false) => now.as_second().max(0) as u64,
    };
    let mut intermediates = keyless.root.intermediates.clone();
    if let Some(chain) = &material.chain {
        intermediates.extend(
            CertificateDer::pem_slice_iter(chain.as_bytes())
                .filter_map(Result::ok)
                .take(8),
        );
    }
    let anchors: Vec<_> = keyless
        .root
        .anchors
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| format!("a signing certificate does not parse: {e:?}"))?;
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(at)),
            webpki::KeyUsage::required(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| format!("a signing certificate is not trusted: {e:?}"))?;
    let parsed = Certificate::from_der(&leaf)
        .map_err(|e| format!("a signing certificate does not parse: {e}"))?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("a signing certificate's key does not encode: {e}"))?;
    let key = CosignVerificationKey::try_from_der(&spki)
        .map_err(|e| format!("a signing certificate's key is unsupported: {e}"))?;
    key.verify_signature(signature, &material.payload)
        .map_err(|_| "a signature does not match its certificate's key".to_string())?;
    let (subjects, issuer) = identity_of(&parsed);
    let issuer = issuer.ok_or("a signing certificate names no OIDC issuer")?;
    let allowed = keyless.identities.iter().any(|identity| {
        identity.issuer.matches(&issuer) && subjects.iter().any(|s| identity.subject.matches(s))
    });
    if !allowed {
        return Err(format!(
            "signed by {} (issuer {issuer}), not an allowed identity",
            subjects.join(", ")
        ));
    }
    Ok(format!(
        "signed by {} (issuer {issuer})",
        subjects.first().map_or("?", String::as_str)
    ))
}

/// The certificate's subject alternative names (emails, URIs) and Fulcio OIDC issuer.
fn identity_of(certificate: &Certificate) -> (Vec<String>, Option<String>) {
    let mut subjects = Vec::new();
    let mut issuer_v1 = None;
    let mut issuer_v2 = None;
    for extension in certificate.tbs_certificate.extensions.iter().flatten() {
        let value = extension.extn_value.as_bytes();
        if extension.extn_id == OID_SAN {
            if let Ok(names) = SubjectAltName::from_der(value) {
                for name in names.0 {
                    match name {
                        GeneralName::Rfc822Name(text)
                        | GeneralName::UniformResourceIdentifier(text) => {
                            subjects.push(text.to_string())
                        }
                        _ => {}
                    }
                }
            }
        } else if extension.extn_id == OID_ISSUER_V2 {
            issuer_v2 = Utf8StringRef::from_der(value).ok().map(|s| s.to_string());
        } else if extension.extn_id == OID_ISSUER_V1 {
            issuer_v1 = std::str::from_utf8(value).ok().map(str::to_string);
        }
    }
    (subjects, issuer_v2.or(issuer_v1))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Bundle {
    signed_entry_timestamp: String,
    payload: BundlePayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundlePayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct Entry {
    spec: EntrySpec,
}

#[derive(Deserialize)]
struct EntrySpec {
    data: EntryData,
    signature: EntrySignature,
}

#[derive(Deserialize)]
struct EntryData {
    hash: EntryHash,
}

#[derive(Deserialize)]
struct EntryHash {
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntrySignature {
    content: String,
    public_key: EntryKey,
}

#[derive(Deserialize)]
struct EntryKey {
    content: String,
}

/// Checks a cosign bundle (Rekor's signed promise that the signature is in its log): signed by
/// a log of the trust root, recording this payload's hash, this signature and this certificate.
/// Returns when the log recorded it (Unix seconds).
fn verify_bundle(
    root: &TrustRoot,
    bundle: &str,
    material: &Material,
    leaf: &CertificateDer<'_>,
) -> Result<u64, String> {
    let bundle: Bundle = serde_json::from_str(bundle)
        .map_err(|_| "a transparency log bundle does not parse".to_string())?;
    let payload = &bundle.payload;
    let key = root
        .logs
        .get(&payload.log_id.to_ascii_lowercase())
        .ok_or_else(|| {
            format!(
                "a transparency log entry is from log {}, not one of the trust root",
                payload.log_id
            )
        })?;
    // The signed entry timestamp covers the payload as canonical JSON: keys sorted, no spaces.
    let canonical = format!(
        r#"{{"body":{},"integratedTime":{},"logID":{},"logIndex":{}}}"#,
        serde_json::Value::String(payload.body.clone()),
        payload.integrated_time,
        serde_json::Value::String(payload.log_id.clone()),
        payload.log_index
    );
    key.verify_signature(
        Signature::Base64Encoded(bundle.signed_entry_timestamp.trim().as_bytes()),
        canonical.as_bytes(),
    )
    .map_err(|_| "a transparency log entry's signed timestamp does not verify".to_string())?;
    let body = b64(&payload.body)?;
    let entry: Entry = serde_json::from_slice(&body)
        .map_err(|_| "a transparency log entry is not a hashedrekord".to_string())?;
    let hash = hex::encode(Sha256::digest(&material.payload));
    let logged_key = b64(&entry.spec.signature.public_key.content)?;
    let logged_leaf = CertificateDer::from_pem_slice(&logged_key).ok();
    if !entry.spec.data.hash.value.eq_ignore_ascii_case(&hash)
        || entry.spec.signature.content.trim() != material.signature.trim()
        || logged_leaf.as_ref().map(|c| c.as_ref()) != Some(leaf.as_ref())
    {
        return Err("a transparency log entry records another signature".into());
    }
    u64::try_from(payload.integrated_time)
        .map_err(|_| "a transparency log entry has a negative time".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration as StdDuration, SystemTime};

    use tagwatch_testbed::cosign::{
        CosignSignature, Identity as SignerId, SigningKey, TestCa, TestRekor,
    };

    use super::*;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const REF: &str = "reg.io/app";
    const ISSUER: &str = "https://token.actions.githubusercontent.com";
    const WHO: &str = "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1";

    fn material(sig: &CosignSignature) -> Material {
        Material {
            payload: sig.payload.clone(),
            signature: sig.signature_b64.clone(),
            certificate: sig.certificate_pem.clone(),
            chain: sig.chain_pem.clone(),
            bundle: sig.bundle_json.clone(),
        }
    }

    fn key_trust(keys: &[&SigningKey]) -> Trust {
        Trust {
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let pem = k.public_key_pem();
                    (
                        format!("k{i}"),
                        CosignVerificationKey::try_from_pem(pem.as_bytes()).unwrap(),
                    )
                })
                .collect(),
            keyless: None,
        }
    }

    fn keyless_trust(ca: &TestCa, rekor: &TestRekor, tlog_required: bool) -> Trust {
        let anchor = CertificateDer::from_pem_slice(ca.root_pem().as_bytes()).unwrap();
        let key = CosignVerificationKey::try_from_pem(rekor.public_key_pem().as_bytes()).unwrap();
        Trust {
            keys: Vec::new(),
            keyless: Some(KeylessTrust {
                identities: vec![Identity::new(
                    None,
                    Some("https://github.com/org/.*"),
                    Some(ISSUER),
                    None,
                )
                .unwrap()],
                root: TrustRoot {
                    anchors: vec![anchor.into_owned()],
                    intermediates: Vec::new(),
                    logs: [(rekor.log_id_hex(), key)].into(),
                },
                tlog_required,
            }),
        }
    }

    fn around(now: SystemTime) -> (SystemTime, SystemTime) {
        (
            now - StdDuration::from_secs(60),
            now + StdDuration::from_secs(600),
        )
    }

    fn unix(at: SystemTime) -> i64 {
        at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    /// A case: its name, the trust, the signatures found, and part of who signed or why not.
    type Row<'a> = (
        &'a str,
        &'a Trust,
        Vec<CosignSignature>,
        Result<&'a str, &'a str>,
    );

    /// Each way a signature passes or fails a policy: keys (P-256, Ed25519), the digest it
    /// covers, keyless identity, issuer, trust root, transparency log and certificate time.
    #[test]
    fn signatures_table() {
        let now = Timestamp::now();
        let sys = SystemTime::now();
        let p256 = SigningKey::generate_p256();
        let ed = SigningKey::generate_ed25519();
        let stranger = SigningKey::generate_p256();
        let ca = TestCa::new("test fulcio").unwrap();
        let other_ca = TestCa::new("other").unwrap();
        let rekor = TestRekor::new();
        let other_rekor = TestRekor::new();

        let keyless = |ca: &TestCa, who: SignerId, issuer: &str, validity| {
            let (leaf, key) = ca.issue(who, issuer, validity).unwrap();
            CosignSignature::keyless(ca, &leaf, &key, REF, DIGEST)
        };
        let good = keyless(&ca, SignerId::Uri(WHO.into()), ISSUER, around(sys));
        let logged = good.clone().with_bundle(rekor.bundle(&good, unix(sys), 7));
        let wrong_log = good
            .clone()
            .with_bundle(other_rekor.bundle(&good, unix(sys), 7));
        let another = keyless(&ca, SignerId::Uri(WHO.into()), ISSUER, around(sys));
        // A genuine log entry, but of another signature.
        let swapped = good
            .clone()
            .with_bundle(rekor.bundle(&another, unix(sys), 8));
        let mut tampered_set = logged.clone();
        tampered_set.bundle_json = Some(
            logged
                .bundle_json
                .clone()
                .unwrap()
                .replace("\"logIndex\":7", "\"logIndex\":9"),
        );
        let past = sys - StdDuration::from_secs(3 * 86_400);
        let expired = keyless(&ca, SignerId::Uri(WHO.into()), ISSUER, around(past));
        let expired_logged = expired
            .clone()
            .with_bundle(rekor.bundle(&expired, unix(past), 3));
        let mut other_digest = CosignSignature::with_key(&p256, REF, OTHER);
        other_digest.payload = tagwatch_testbed::cosign::simple_signing_payload(REF, OTHER);
        let mut garbage = CosignSignature::with_key(&p256, REF, DIGEST);
        garbage.payload = b"{}".to_vec();

        let keys = key_trust(&[&p256, &ed]);
        let with_log = keyless_trust(&ca, &rekor, true);
        let without_log = keyless_trust(&ca, &rekor, false);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("P-256 key", &keys, vec![CosignSignature::with_key(&p256, REF, DIGEST)], Ok("signed by key k0")),
            ("Ed25519 key", &keys, vec![CosignSignature::with_key(&ed, REF, DIGEST)], Ok("signed by key k1")),
            ("unknown key", &keys, vec![CosignSignature::with_key(&stranger, REF, DIGEST)], Err("no signature by a trusted key")),
            ("any of several", &keys, vec![CosignSignature::with_key(&stranger, REF, DIGEST), CosignSignature::with_key(&ed, REF, DIGEST)], Ok("k1")),
            ("another digest", &keys, vec![other_digest], Err("covers sha256:bbbb")),
            ("not simple signing", &keys, vec![garbage], Err("payload")),
            ("none", &keys, vec![], Err("no cosign signature found")),
            ("keyless, logged", &with_log, vec![logged.clone()], Ok(WHO)),
            ("keyless, no log asked", &without_log, vec![good.clone()], Ok(WHO)),
            ("keyless, log required", &with_log, vec![good.clone()], Err("no transparency log entry")),
            ("keyless, unknown log", &with_log, vec![wrong_log], Err("not one of the trust root")),
            ("keyless, entry of another signature", &with_log, vec![swapped], Err("records another signature")),
            ("keyless, forged timestamp", &with_log, vec![tampered_set], Err("signed timestamp does not verify")),
            ("keyless, other identity", &without_log, vec![keyless(&ca, SignerId::Email("eve@example.com".into()), ISSUER, around(sys))], Err("eve@example.com (issuer https://token.actions.githubusercontent.com), not an allowed identity")),
            ("keyless, other issuer", &without_log, vec![keyless(&ca, SignerId::Uri(WHO.into()), "https://evil.example", around(sys))], Err("not an allowed identity")),
            ("keyless, other CA", &without_log, vec![keyless(&other_ca, SignerId::Uri(WHO.into()), ISSUER, around(sys))], Err("not trusted")),
            ("keyless, expired now", &without_log, vec![expired], Err("not trusted")),
            ("keyless, expired but logged in time", &with_log, vec![expired_logged], Ok(WHO)),
            ("a key signature under keyless only", &with_log, vec![CosignSignature::with_key(&p256, REF, DIGEST)], Err("none with a certificate")),
        ];
        for (name, trust, sigs, expected) in rows {
            let found: Vec<Material> = sigs.iter().map(material).collect();
            let got = verify(trust, DIGEST, &found, now);
            match (&got, expected) {
                (Ok(who), Ok(part)) => assert!(who.contains(part), "{name}: {who}"),
                (Err(why), Err(part)) => assert!(why.contains(part), "{name}: {why}"),
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_built_in_trust_root_parses() {
        let root = public_good_root().unwrap();
        assert!(!root.anchors.is_empty());
        assert!(!root.logs.is_empty());
        assert!(parse_trusted_root(b"{}").is_err());
        assert!(parse_trusted_root(b"garbage").is_err());
    }
}
