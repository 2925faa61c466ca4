//! Cosign signatures with real crypto, in the exact wire formats cosign writes, for signature
//! verification tests against [`crate::registry::Registry`] and [`crate::stub_registry::StubRegistry`].
//!
//! - [`SigningKey`]: ECDSA P-256 (cosign's default, `cosign generate-key-pair`) or Ed25519.
//! - [`CosignSignature`]: a simple-signing payload and its signature, plus the keyless material
//!   (Fulcio-like certificate, chain, Rekor bundle) that cosign puts in layer annotations.
//! - [`TestCa`]: a root CA issuing Fulcio-like leaf certificates; [`TestRekor`]: a transparency log
//!   key signing bundles (SignedEntryTimestamp).
//! - Pushing: [`crate::registry::Registry::push_signature_tag`] (`sha256-<hex>.sig`, cosign's classic
//!   layout) and [`crate::registry::Registry::push_signature_referrer`] (OCI 1.1 `subject`, with the
//!   referrers tag schema fallback); the stub serves the Referrers API
//!   ([`crate::stub_registry::StubRegistry::enable_referrers`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tagwatch_testbed::cosign::{CosignSignature, SigningKey};
//! use tagwatch_testbed::registry::{ImageKind, Registry};
//! let registry = Registry::anonymous().await?;
//! let digest = registry.push_image("app", "1.0.0", ImageKind::OciManifest).await?;
//! let key = SigningKey::generate_p256();
//! let reference = format!("{}/app", registry.host());
//! let sig = CosignSignature::with_key(&key, &reference, &digest);
//! registry.push_signature_tag("app", &digest, &[sig]).await?;
//! // give key.public_key_pem() to the product as cosign.pub
//! # Ok(()) }
//! ```

use std::time::SystemTime;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::registry::{sha256_digest, OCI_INDEX, OCI_MANIFEST};

/// The media type of each signature layer (the payload blob).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The `artifactType` of a cosign signature pushed as an OCI 1.1 referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The OCI empty descriptor's media type (the config of a referrer).
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// sha256 of `{}`, the OCI empty blob.
pub const OCI_EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The config media type of a signature image (`sha256-<hex>.sig`).
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layer annotation: the base64 signature over the payload blob.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation: the leaf certificate PEM (keyless).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation: the chain PEM, intermediates then root (keyless).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Layer annotation: the Rekor bundle JSON.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Fulcio's deprecated OIDC issuer extension: the value is the raw URL bytes.
pub const FULCIO_ISSUER_V1_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
/// Fulcio's OIDC issuer extension: the value is a DER UTF8String.
pub const FULCIO_ISSUER_V2_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];
/// The timestamp cosign-style referrers carry in `org.opencontainers.image.created` (fixed, so
/// digests are reproducible).
const REFERRER_CREATED: &str = "2026-01-01T00:00:00Z";

/// `sha256-<hex>.sig`: the tag cosign stores an image's signatures under.
pub fn signature_tag(image_digest: &str) -> String {
    format!("{}.sig", referrers_tag(image_digest))
}

/// `sha256-<hex>`: the OCI referrers tag schema fallback tag for `image_digest`.
pub fn referrers_tag(image_digest: &str) -> String {
    image_digest.replacen(':', "-", 1)
}

/// A manifest descriptor (what an index or a `subject` lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    /// The descriptor of these exact manifest bytes.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
        }
    }

    /// `{"mediaType":..,"digest":..,"size":..}`.
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

enum KeyKind {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A private signing key: ECDSA P-256 (what `cosign generate-key-pair` makes) or Ed25519.
pub struct SigningKey(KeyKind);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            KeyKind::P256(_) => "P-256",
            KeyKind::Ed25519(_) => "Ed25519",
        };
        write!(f, "SigningKey({kind}, <redacted>)")
    }
}

impl SigningKey {
    /// A fresh random ECDSA P-256 key.
    pub fn generate_p256() -> SigningKey {
        loop {
            // Almost every 32-byte string is a valid scalar; retry the rare one that is not.
            let bytes: [u8; 32] = rand::random();
            if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(&bytes.into()) {
                return SigningKey(KeyKind::P256(key));
            }
        }
    }

    /// A fresh random Ed25519 key.
    pub fn generate_ed25519() -> SigningKey {
        SigningKey(KeyKind::Ed25519(ed25519_dalek::SigningKey::from_bytes(
            &rand::random(),
        )))
    }

    /// The public key as an SPKI `-----BEGIN PUBLIC KEY-----` PEM, as cosign writes `cosign.pub`.
    pub fn public_key_pem(&self) -> String {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        let pem = match &self.0 {
            KeyKind::P256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            KeyKind::Ed25519(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
        };
        pem.unwrap_or_else(|e| unreachable!("encoding a public key: {e}"))
    }

    /// The public key as DER SPKI.
    pub fn public_key_der(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey as _;
        let der = match &self.0 {
            KeyKind::P256(key) => key.verifying_key().to_public_key_der(),
            KeyKind::Ed25519(key) => key.verifying_key().to_public_key_der(),
        };
        der.map(|d| d.into_vec())
            .unwrap_or_else(|e| unreachable!("encoding a public key: {e}"))
    }

    /// Signs `msg` as cosign does: P-256 gives an ASN.1 DER ECDSA signature over SHA-256(msg),
    /// Ed25519 the raw 64-byte signature over msg.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match &self.0 {
            KeyKind::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(msg);
                signature.to_der().as_bytes().to_vec()
            }
            KeyKind::Ed25519(key) => key.sign(msg).to_bytes().to_vec(),
        }
    }

    /// Whether `signature` (in [`SigningKey::sign`]'s format) is valid for `msg` under this key.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match &self.0 {
            KeyKind::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| key.verifying_key().verify(msg, &s).is_ok()),
            KeyKind::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verifying_key().verify(msg, &s).is_ok()),
        }
    }

    /// The PKCS#8 DER of a P-256 key (for rcgen), `None` for Ed25519.
    fn p256_pkcs8_der(&self) -> Option<Vec<u8>> {
        use p256::pkcs8::EncodePrivateKey as _;
        match &self.0 {
            KeyKind::P256(key) => key.to_pkcs8_der().ok().map(|d| d.as_bytes().to_vec()),
            KeyKind::Ed25519(_) => None,
        }
    }
}

/// cosign's simple-signing payload, byte for byte:
/// `{"critical":{"identity":{"docker-reference":REF},"image":{"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}`.
///
/// `docker_reference` is the repository without tag or digest (`127.0.0.1:5000/app`), as cosign writes it.
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":"cosign container image signature"}},"optional":null}}"#,
        Value::from(docker_reference),
        Value::from(digest),
    )
    .into_bytes()
}

/// One cosign signature: a layer of a signature manifest. Fields are public so a test can tamper
/// (another payload, a broken signature, a missing certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignSignature {
    /// The layer blob: a [`simple_signing_payload`].
    pub payload: Vec<u8>,
    /// `dev.cosignproject.cosign/signature`: base64 of the signature over `payload`.
    pub signature_b64: String,
    /// `dev.sigstore.cosign/certificate`: the leaf PEM (keyless).
    pub certificate_pem: Option<String>,
    /// `dev.sigstore.cosign/chain`: the chain PEM (keyless).
    pub chain_pem: Option<String>,
    /// `dev.sigstore.cosign/bundle`: the Rekor bundle JSON ([`TestRekor::bundle`]).
    pub bundle_json: Option<String>,
}

impl CosignSignature {
    /// A key-pair signature (`cosign sign --key`): payload for `docker_reference` + `digest`, signed by `key`.
    pub fn with_key(key: &SigningKey, docker_reference: &str, digest: &str) -> CosignSignature {
        let payload = simple_signing_payload(docker_reference, digest);
        CosignSignature {
            signature_b64: BASE64.encode(key.sign(&payload)),
            payload,
            certificate_pem: None,
            chain_pem: None,
            bundle_json: None,
        }
    }

    /// A keyless signature: signed by the leaf's `key` (from [`TestCa::issue`]), with the leaf as
    /// certificate and `ca`'s root as chain, as cosign writes them. Add a bundle with
    /// [`CosignSignature::with_bundle`].
    pub fn keyless(
        ca: &TestCa,
        leaf_pem: &str,
        key: &SigningKey,
        docker_reference: &str,
        digest: &str,
    ) -> CosignSignature {
        CosignSignature {
            certificate_pem: Some(leaf_pem.to_string()),
            chain_pem: Some(ca.root_pem()),
            ..CosignSignature::with_key(key, docker_reference, digest)
        }
    }

    /// The same signature with `dev.sigstore.cosign/bundle` set to `json`.
    pub fn with_bundle(self, json: String) -> CosignSignature {
        CosignSignature {
            bundle_json: Some(json),
            ..self
        }
    }

    /// The layer descriptor: the payload blob with the cosign annotations.
    pub fn layer(&self) -> Value {
        let mut annotations = serde_json::Map::new();
        annotations.insert(SIGNATURE_ANNOTATION.into(), json!(self.signature_b64));
        for (name, value) in [
            (CERTIFICATE_ANNOTATION, &self.certificate_pem),
            (CHAIN_ANNOTATION, &self.chain_pem),
            (BUNDLE_ANNOTATION, &self.bundle_json),
        ] {
            if let Some(value) = value {
                annotations.insert(name.into(), json!(value));
            }
        }
        json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "digest": sha256_digest(&self.payload),
            "size": self.payload.len(),
            "annotations": annotations,
        })
    }
}

/// What a leaf certificate names as its subject (Fulcio puts it in the SAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An rfc822Name SAN: `alice@example.com`.
    Email(String),
    /// A URI SAN: `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`.
    Uri(String),
}

/// A test Fulcio: a self-signed ECDSA P-256 root CA issuing Fulcio-shaped leaf certificates.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A root CA with subject `O=tagwatch test, CN=<name>`, valid from a day ago for ten years
    /// (basicConstraints CA, keyUsage keyCertSign + cRLSign).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "tagwatch test");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key)
            .context("self-signing the test root CA")?;
        Ok(TestCa { issuer })
    }

    /// The root certificate PEM (what a verifier trusts, and what cosign writes as the chain).
    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a Fulcio-shaped leaf for a fresh P-256 key, returned so the test can sign with it:
    /// empty subject, critical SAN (`identity`), critical keyUsage digitalSignature,
    /// extendedKeyUsage codeSigning, no basicConstraints, subject and authority key identifiers,
    /// and both OIDC issuer extensions (1.3.6.1.4.1.57264.1.1 raw URL bytes, .1.8 UTF8String).
    /// `validity` is (notBefore, notAfter); Fulcio's are 10 minutes apart.
    pub fn issue(
        &self,
        identity: Identity,
        oidc_issuer: &str,
        validity: (SystemTime, SystemTime),
    ) -> anyhow::Result<(String, SigningKey)> {
        let key = SigningKey::generate_p256();
        let pkcs8 = key
            .p256_pkcs8_der()
            .context("a P-256 key has a PKCS#8 form")?;
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_slice().into(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![match identity {
            Identity::Email(email) => rcgen::SanType::Rfc822Name(email.try_into()?),
            Identity::Uri(uri) => rcgen::SanType::URI(uri.try_into()?),
        }];
        params.is_ca = rcgen::IsCa::NoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.0.into();
        params.not_after = validity.1.into();
        params.custom_extensions = vec![
            // rcgen writes a subject key identifier only along with basicConstraints, which
            // Fulcio leaves out: the method of RFC 7093 (truncated SHA-256 of the public key).
            rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 14],
                der_octet_string(&Sha256::digest(key_pair.public_key_raw())[..20]),
            ),
            rcgen::CustomExtension::from_oid_content(
                FULCIO_ISSUER_V1_OID,
                oidc_issuer.as_bytes().to_vec(),
            ),
            rcgen::CustomExtension::from_oid_content(
                FULCIO_ISSUER_V2_OID,
                der_utf8_string(oidc_issuer),
            ),
        ];
        let leaf = params
            .signed_by(&key_pair, &*self.issuer)
            .context("signing a leaf certificate")?;
        Ok((leaf.pem(), key))
    }
}

/// DER `UTF8String` (tag 12) of `text`.
fn der_utf8_string(text: &str) -> Vec<u8> {
    der_tlv(0x0c, text.as_bytes())
}

/// DER `OCTET STRING` (tag 4) of `bytes`.
fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    der_tlv(0x04, bytes)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_length(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// A test Rekor: its own P-256 key signs the SignedEntryTimestamp of the bundles it makes.
pub struct TestRekor {
    key: SigningKey,
}

impl std::fmt::Debug for TestRekor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRekor")
            .field("log_id", &self.log_id_hex())
            .finish_non_exhaustive()
    }
}

impl Default for TestRekor {
    fn default() -> TestRekor {
        TestRekor::new()
    }
}

impl TestRekor {
    /// A log with a fresh P-256 key.
    pub fn new() -> TestRekor {
        TestRekor {
            key: SigningKey::generate_p256(),
        }
    }

    /// The log's public key, SPKI PEM (what a verifier trusts as the Rekor key).
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// The log ID: hex SHA-256 of the DER SPKI of the public key.
    pub fn log_id_hex(&self) -> String {
        hex(&Sha256::digest(self.key.public_key_der()))
    }

    /// cosign's `dev.sigstore.cosign/bundle` for a keyless `sig`: a hashedrekord entry whose
    /// publicKey is `sig.certificate_pem`. Panics when `sig` has no certificate: use
    /// [`TestRekor::bundle_for_key`] for key-pair signatures.
    pub fn bundle(&self, sig: &CosignSignature, integrated_time: i64, log_index: i64) -> String {
        let certificate = sig.certificate_pem.as_deref().unwrap_or_else(|| {
            panic!("TestRekor::bundle needs a keyless signature; use bundle_for_key")
        });
        self.bundle_for_key(sig, certificate, integrated_time, log_index)
    }

    /// As [`TestRekor::bundle`], with `verifier_pem` (a certificate or a public key PEM) as the
    /// entry's publicKey.
    ///
    /// `{"SignedEntryTimestamp":B64,"Payload":{"body":B64(entry),"integratedTime":N,"logIndex":N,"logID":HEX}}`,
    /// the SET being the log key's ECDSA signature over the canonical JSON of
    /// `{"body","integratedTime","logID","logIndex"}` (keys sorted, no whitespace).
    pub fn bundle_for_key(
        &self,
        sig: &CosignSignature,
        verifier_pem: &str,
        integrated_time: i64,
        log_index: i64,
    ) -> String {
        let entry = format!(
            r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{}"}}}},"signature":{{"content":{},"publicKey":{{"content":"{}"}}}}}}}}"#,
            hex(&Sha256::digest(&sig.payload)),
            Value::from(sig.signature_b64.as_str()),
            BASE64.encode(verifier_pem),
        );
        let body = BASE64.encode(entry);
        let log_id = self.log_id_hex();
        let set =
            BASE64.encode(
                self.key
                    .sign(&set_message(&body, integrated_time, &log_id, log_index)),
            );
        format!(
            r#"{{"SignedEntryTimestamp":"{set}","Payload":{{"body":"{body}","integratedTime":{integrated_time},"logIndex":{log_index},"logID":"{log_id}"}}}}"#
        )
    }
}

/// The canonical JSON the SignedEntryTimestamp signs: keys sorted, no whitespace. `body` (base64)
/// and `log_id` (hex) need no escaping.
pub fn set_message(body: &str, integrated_time: i64, log_id: &str, log_index: i64) -> Vec<u8> {
    format!(
        r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":{log_index}}}"#
    )
    .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A manifest to push: the blobs it needs first, then its exact bytes.
pub(crate) struct SignatureManifest {
    pub blobs: Vec<Vec<u8>>,
    pub bytes: Vec<u8>,
}

/// cosign's classic signature image: an OCI manifest whose config is a small image config and
/// whose layers are the signatures.
pub(crate) fn signature_tag_manifest(signatures: &[CosignSignature]) -> SignatureManifest {
    let diff_ids: Vec<String> = signatures
        .iter()
        .map(|s| sha256_digest(&s.payload))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": {},
    }))
    .unwrap_or_default();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG_MEDIA_TYPE, &config).to_json(),
        "layers": signatures.iter().map(CosignSignature::layer).collect::<Vec<_>>(),
    });
    let mut blobs: Vec<Vec<u8>> = signatures.iter().map(|s| s.payload.clone()).collect();
    blobs.push(config);
    SignatureManifest {
        blobs,
        bytes: serde_json::to_vec(&manifest).unwrap_or_default(),
    }
}

/// An OCI 1.1 referrer as `cosign sign --registry-referrers-mode=oci-1-1` writes it:
/// `artifactType`, the empty config, the signature layers, `subject`, a created annotation.
pub(crate) fn referrer_manifest(
    subject: &Descriptor,
    signatures: &[CosignSignature],
) -> SignatureManifest {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "config": { "mediaType": OCI_EMPTY_MEDIA_TYPE, "digest": OCI_EMPTY_DIGEST, "size": 2 },
        "layers": signatures.iter().map(CosignSignature::layer).collect::<Vec<_>>(),
        "subject": subject.to_json(),
        "annotations": { "org.opencontainers.image.created": REFERRER_CREATED },
    });
    let mut blobs: Vec<Vec<u8>> = signatures.iter().map(|s| s.payload.clone()).collect();
    blobs.push(b"{}".to_vec());
    SignatureManifest {
        blobs,
        bytes: serde_json::to_vec(&manifest).unwrap_or_default(),
    }
}

/// The descriptor an index (Referrers API answer or fallback tag) lists for a referrer manifest:
/// mediaType, digest, size, artifactType (the manifest's, else its config's media type) and the
/// manifest's annotations. `None` when `bytes` is not a JSON object.
pub fn referrer_descriptor(media_type: &str, bytes: &[u8]) -> Option<Value> {
    let manifest: Value = serde_json::from_slice(bytes).ok()?;
    let manifest = manifest.as_object()?;
    let mut descriptor = Descriptor::of(media_type, bytes).to_json();
    let artifact_type = manifest
        .get("artifactType")
        .or_else(|| manifest.get("config").and_then(|c| c.get("mediaType")));
    if let Some(artifact_type) = artifact_type {
        descriptor["artifactType"] = artifact_type.clone();
    }
    if let Some(annotations) = manifest.get("annotations") {
        descriptor["annotations"] = annotations.clone();
    }
    Some(descriptor)
}

/// An OCI index listing `manifests`.
pub(crate) fn index(manifests: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let payload = simple_signing_payload("registry.example/app", "sha256:abc");
        assert_eq!(
            String::from_utf8_lossy(&payload),
            r#"{"critical":{"identity":{"docker-reference":"registry.example/app"},"image":{"docker-manifest-digest":"sha256:abc"},"type":"cosign container image signature"},"optional":null}"#
        );
    }

    #[test]
    fn a_p256_signature_verifies_with_the_pem_public_key() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let key = SigningKey::generate_p256();
        let pem = key.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let sig = CosignSignature::with_key(&key, "r/app", "sha256:abc");
        let der = BASE64.decode(&sig.signature_b64).unwrap();
        let verifying = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
        let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert!(verifying.verify(&sig.payload, &signature).is_ok());
        assert!(verifying.verify(b"other", &signature).is_err());
        assert!(key.verify(&sig.payload, &der));
    }

    #[test]
    fn an_ed25519_signature_verifies_with_the_pem_public_key() {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        use ed25519_dalek::Verifier as _;
        let key = SigningKey::generate_ed25519();
        let sig = key.sign(b"payload");
        assert_eq!(sig.len(), 64);
        let verifying =
            ed25519_dalek::VerifyingKey::from_public_key_pem(&key.public_key_pem()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        assert!(verifying.verify(b"payload", &sig).is_ok());
        assert!(verifying.verify(b"other", &sig).is_err());
    }

    fn leaf(identity: Identity) -> (TestCa, String, SigningKey) {
        let ca = TestCa::new("tagwatch test root").unwrap();
        let now = SystemTime::now();
        let (pem, key) = ca
            .issue(
                identity,
                "https://token.actions.githubusercontent.com",
                (
                    now - Duration::from_secs(60),
                    now + Duration::from_secs(540),
                ),
            )
            .unwrap();
        (ca, pem, key)
    }

    #[test]
    fn the_leaf_is_fulcio_shaped_and_chains_to_the_root() {
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        let identity = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main";
        let (ca, leaf_pem, key) = leaf(Identity::Uri(identity.into()));
        let (_, leaf_der) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).unwrap();
        let leaf = leaf_der.parse_x509().unwrap();
        let root_pem = ca.root_pem();
        let (_, root_der) = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).unwrap();
        let root = root_der.parse_x509().unwrap();

        leaf.verify_signature(Some(root.public_key())).unwrap();
        root.verify_signature(None).unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        assert!(root.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.public_key().raw, key.public_key_der().as_slice());

        let key_usage = leaf.key_usage().unwrap().unwrap();
        assert!(key_usage.critical);
        assert!(key_usage.value.digital_signature() && !key_usage.value.key_cert_sign());
        assert!(
            leaf.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .code_signing
        );
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert!(
            san.critical,
            "Fulcio's subject is empty, so the SAN is critical"
        );
        assert_eq!(san.value.general_names, vec![GeneralName::URI(identity)]);

        let extension = |oid: &str| {
            leaf.extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == oid)
                .map(|e| e.value.to_vec())
        };
        let issuer = "https://token.actions.githubusercontent.com";
        assert_eq!(
            extension("1.3.6.1.4.1.57264.1.1").unwrap(),
            issuer.as_bytes()
        );
        let v2 = extension("1.3.6.1.4.1.57264.1.8").unwrap();
        assert_eq!(v2[..2], [0x0c, issuer.len() as u8]);
        assert_eq!(&v2[2..], issuer.as_bytes());
        assert!(leaf.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
    }

    #[test]
    fn an_email_leaf_has_an_rfc822_san() {
        use x509_parser::extensions::GeneralName;
        let (_, leaf_pem, _) = leaf(Identity::Email("alice@example.com".into()));
        let (_, der) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).unwrap();
        let leaf = der.parse_x509().unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::RFC822Name("alice@example.com")]
        );
    }

    #[test]
    fn the_bundle_set_verifies_with_the_rekor_key() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let (ca, leaf_pem, key) = leaf(Identity::Email("alice@example.com".into()));
        let rekor = TestRekor::new();
        let sig = CosignSignature::keyless(&ca, &leaf_pem, &key, "r/app", "sha256:abc");
        let bundle: Value = serde_json::from_str(&rekor.bundle(&sig, 1_767_225_600, 42)).unwrap();
        let payload = &bundle["Payload"];
        assert_eq!(payload["integratedTime"], 1_767_225_600);
        assert_eq!(payload["logIndex"], 42);
        assert_eq!(payload["logID"], rekor.log_id_hex().as_str());

        let body = payload["body"].as_str().unwrap();
        let entry: Value = serde_json::from_slice(&BASE64.decode(body).unwrap()).unwrap();
        assert_eq!(entry["kind"], "hashedrekord");
        assert_eq!(
            entry["spec"]["data"]["hash"]["value"],
            hex(&Sha256::digest(&sig.payload)).as_str()
        );
        assert_eq!(
            entry["spec"]["signature"]["content"],
            sig.signature_b64.as_str()
        );
        let cert = entry["spec"]["signature"]["publicKey"]["content"]
            .as_str()
            .unwrap();
        assert_eq!(BASE64.decode(cert).unwrap(), leaf_pem.as_bytes());

        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":1767225600,"logID":"{}","logIndex":42}}"#,
            rekor.log_id_hex()
        );
        let set = BASE64
            .decode(bundle["SignedEntryTimestamp"].as_str().unwrap())
            .unwrap();
        let verifying =
            p256::ecdsa::VerifyingKey::from_public_key_pem(&rekor.public_key_pem()).unwrap();
        let set = p256::ecdsa::Signature::from_der(&set).unwrap();
        assert!(verifying.verify(canonical.as_bytes(), &set).is_ok());
    }

    #[test]
    fn the_log_id_is_the_sha256_of_the_spki() {
        let rekor = TestRekor::new();
        let pem = rekor.public_key_pem();
        let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = BASE64.decode(base64).unwrap();
        assert_eq!(rekor.log_id_hex(), hex(&Sha256::digest(der)));
    }

    #[test]
    fn tags_follow_cosigns_naming() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
        assert_eq!(referrers_tag("sha256:abc"), "sha256-abc");
        assert_eq!(sha256_digest(b"{}"), OCI_EMPTY_DIGEST);
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127() {
        assert_eq!(der_utf8_string("a")[..2], [0x0c, 1]);
        let long = "a".repeat(200);
        assert_eq!(der_utf8_string(&long)[..3], [0x0c, 0x81, 200]);
    }
}
