//! Cosign signatures in the real docker-registry (distribution 2.8) and in the stub's Referrers API.

use serde_json::Value;
use tagwatch_testbed::cosign::{
    self, CosignSignature, SigningKey, SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
};
use tagwatch_testbed::registry::{ImageKind, Registry, OCI_INDEX, OCI_MANIFEST};

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn the_real_registry_stores_a_signature_tag_and_a_referrer_with_its_fallback_index() {
    let registry = Registry::anonymous().await.unwrap();
    let digest = registry
        .push_image("app", "1.0.0", ImageKind::OciManifest)
        .await
        .unwrap();
    let key = SigningKey::generate_p256();
    let reference = format!("{}/app", registry.host());
    let sig = CosignSignature::with_key(&key, &reference, &digest);

    let sig_digest = registry
        .push_signature_tag("app", &digest, std::slice::from_ref(&sig))
        .await
        .unwrap();
    let (bytes, media_type) = registry
        .manifest_bytes("app", &cosign::signature_tag(&digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(
        tagwatch_testbed::registry::sha256_digest(&bytes),
        sig_digest
    );
    let manifest = json(&bytes);
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
    assert_eq!(
        layer["annotations"][SIGNATURE_ANNOTATION],
        sig.signature_b64.as_str()
    );

    let image = registry.manifest_descriptor("app", "1.0.0").await.unwrap();
    assert_eq!(
        (image.digest.as_str(), image.media_type.as_str()),
        (digest.as_str(), OCI_MANIFEST)
    );
    let referrer = registry
        .push_signature_referrer(
            "app",
            &digest,
            image.size,
            &image.media_type,
            &[sig.clone()],
        )
        .await
        .unwrap();
    let second = registry
        .push_signature_referrer(
            "app",
            &digest,
            image.size,
            &image.media_type,
            &[CosignSignature::with_key(
                &SigningKey::generate_p256(),
                &reference,
                &digest,
            )],
        )
        .await
        .unwrap();
    let (bytes, _) = registry
        .manifest_bytes("app", &referrer)
        .await
        .unwrap()
        .unwrap();
    let stored = json(&bytes);
    assert_eq!(stored["artifactType"], SIGNATURE_ARTIFACT_TYPE);
    assert_eq!(stored["subject"]["digest"], digest.as_str());

    let (bytes, media_type) = registry
        .manifest_bytes("app", &cosign::referrers_tag(&digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(media_type, OCI_INDEX);
    let index = json(&bytes);
    let listed: Vec<(&str, &str)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap(),
                d["artifactType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (referrer.as_str(), SIGNATURE_ARTIFACT_TYPE),
            (second.as_str(), SIGNATURE_ARTIFACT_TYPE)
        ]
    );

    // Distribution 2.8 has no Referrers API: the path matches no route (mux's plain-text 404).
    let answer = reqwest::get(format!("{}/v2/app/referrers/{digest}", registry.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer.text().await.unwrap(), "404 page not found\n");
}
