//! Times one signature judgement (`plan::signatures::verify`) as a policy makes it once per new
//! version: a key-based ECDSA P-256 and Ed25519 signature, and a keyless one (certificate path to
//! the CA, identity, and the Rekor bundle's signed entry timestamp).
//!
//! A self-timing harness (`harness = false`), reporting median and p99 per judgement.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sigstore::crypto::CosignVerificationKey;
use tagwatch::model::verify::Identity;
use tagwatch::plan::signatures::{verify, KeylessTrust, Material, Trust, TrustRoot};
use tagwatch_testbed::cosign::{
    CosignSignature, Identity as Signer, SigningKey, TestCa, TestRekor,
};

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn material(sig: &CosignSignature) -> Vec<Material> {
    vec![Material {
        payload: sig.payload.clone(),
        signature: sig.signature_b64.clone(),
        certificate: sig.certificate_pem.clone(),
        chain: sig.chain_pem.clone(),
        bundle: sig.bundle_json.clone(),
    }]
}

fn key_trust(key: &SigningKey) -> Trust {
    let pem = key.public_key_pem();
    match CosignVerificationKey::try_from_pem(pem.as_bytes()) {
        Ok(parsed) => Trust {
            keys: vec![("bench".into(), parsed)],
            keyless: None,
        },
        Err(e) => panic!("bench key: {e}"),
    }
}

fn time(name: &str, iterations: usize, trust: &Trust, found: &[Material]) {
    let now = Timestamp::now();
    assert!(
        verify(trust, DIGEST, found, now).is_ok(),
        "{name} must verify"
    );
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let _ = black_box(verify(trust, DIGEST, black_box(found), now));
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<28} median {:>8.1} µs   p99 {:>8.1} µs   ({iterations} judgements)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

fn main() {
    let iterations = std::env::var("ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let p256 = SigningKey::generate_p256();
    time(
        "key, ECDSA P-256",
        iterations,
        &key_trust(&p256),
        &material(&CosignSignature::with_key(&p256, "reg.io/app", DIGEST)),
    );
    let ed = SigningKey::generate_ed25519();
    time(
        "key, Ed25519",
        iterations,
        &key_trust(&ed),
        &material(&CosignSignature::with_key(&ed, "reg.io/app", DIGEST)),
    );

    let ca = match TestCa::new("bench fulcio") {
        Ok(ca) => ca,
        Err(e) => panic!("test CA: {e}"),
    };
    let rekor = TestRekor::new();
    let now = SystemTime::now();
    let validity = (
        now - Duration::from_secs(60),
        now + Duration::from_secs(600),
    );
    let (leaf, key) = match ca.issue(Signer::Email("ci@example.com".into()), ISSUER, validity) {
        Ok(issued) => issued,
        Err(e) => panic!("leaf: {e}"),
    };
    let signature = CosignSignature::keyless(&ca, &leaf, &key, "reg.io/app", DIGEST);
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let bundle = rekor.bundle(&signature, unix, 1);
    let anchor = match CertificateDer::from_pem_slice(ca.root_pem().as_bytes()) {
        Ok(anchor) => anchor.into_owned(),
        Err(e) => panic!("root: {e}"),
    };
    let log = match CosignVerificationKey::try_from_pem(rekor.public_key_pem().as_bytes()) {
        Ok(log) => log,
        Err(e) => panic!("log key: {e}"),
    };
    let identity = match Identity::new(Some("ci@example.com"), None, Some(ISSUER), None) {
        Ok(identity) => identity,
        Err(e) => panic!("identity: {e}"),
    };
    let trust = Trust {
        keys: Vec::new(),
        keyless: Some(KeylessTrust {
            identities: vec![identity],
            root: TrustRoot {
                anchors: vec![anchor],
                intermediates: Vec::new(),
                logs: [(rekor.log_id_hex(), log)].into(),
            },
            tlog_required: true,
        }),
    };
    time(
        "keyless, with Rekor bundle",
        iterations,
        &trust,
        &material(&signature.with_bundle(bundle)),
    );
}
