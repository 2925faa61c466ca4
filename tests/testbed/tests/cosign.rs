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
            std::slice::from_ref(&sig),
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

#[tokio::test]
async fn a_keyless_signature_carries_certificate_chain_and_bundle_annotations() {
    use std::time::{Duration, SystemTime};
    use tagwatch_testbed::cosign::{
        Identity, TestCa, TestRekor, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION,
    };
    let registry = Registry::anonymous().await.unwrap();
    let digest = registry
        .push_image("app", "1.0.0", ImageKind::OciIndex)
        .await
        .unwrap();
    let ca = TestCa::new("tagwatch test fulcio").unwrap();
    let now = SystemTime::now();
    let (leaf, key) = ca
        .issue(
            Identity::Email("alice@example.com".into()),
            "https://accounts.example.com",
            (now, now + Duration::from_secs(600)),
        )
        .unwrap();
    let rekor = TestRekor::new();
    let sig = CosignSignature::keyless(
        &ca,
        &leaf,
        &key,
        &format!("{}/app", registry.host()),
        &digest,
    );
    let bundle = rekor.bundle(&sig, 1_767_225_600, 7);
    let sig = sig.with_bundle(bundle.clone());
    registry
        .push_signature_tag("app", &digest, &[sig])
        .await
        .unwrap();
    let (bytes, _) = registry
        .manifest_bytes("app", &cosign::signature_tag(&digest))
        .await
        .unwrap()
        .unwrap();
    let annotations = &json(&bytes)["layers"][0]["annotations"];
    assert_eq!(annotations[CERTIFICATE_ANNOTATION], leaf.as_str());
    assert_eq!(annotations[CHAIN_ANNOTATION], ca.root_pem().as_str());
    assert_eq!(annotations[BUNDLE_ANNOTATION], bundle.as_str());
}

mod stub {
    use super::*;
    use tagwatch_testbed::registry::sha256_digest;
    use tagwatch_testbed::stub_registry::StubRegistry;

    async fn get(url: String, accept: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(url)
            .header("accept", accept)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_referrers_api_lists_signatures_and_filters_by_artifact_type() {
        let stub = StubRegistry::start().await.unwrap();
        let image = stub.put_image(
            "app",
            "1.0.0",
            ImageKind::OciManifest,
            &["amd64"],
            Some("2026-01-01T00:00:00Z"),
        );
        stub.enable_referrers("app");
        let reference = format!("{}/app", stub.host());
        let sig =
            CosignSignature::with_key(&SigningKey::generate_p256(), &reference, &image.digest);
        let referrer = stub.push_signature_referrer(
            "app",
            &image.digest,
            image.size,
            &image.media_type,
            &[sig],
        );
        let sbom = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": { "mediaType": cosign::OCI_EMPTY_MEDIA_TYPE, "digest": cosign::OCI_EMPTY_DIGEST, "size": 2 },
            "layers": [],
            "subject": image.to_json(),
        });
        let sbom = stub.put_manifest_bytes(
            "app",
            &sha256_digest(sbom.to_string().as_bytes()),
            sbom.to_string(),
            OCI_MANIFEST,
        );

        let url = format!("{}/v2/app/referrers/{}", stub.url(), image.digest);
        let all = get(url.clone(), OCI_INDEX).await;
        assert_eq!(all.headers()["content-type"], OCI_INDEX);
        assert!(all.headers().get("oci-filters-applied").is_none());
        let all: Value = all.json().await.unwrap();
        let mut listed: Vec<&str> = all["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        listed.sort();
        let mut expected = vec![referrer.as_str(), sbom.as_str()];
        expected.sort();
        assert_eq!(listed, expected);

        let filtered = get(
            format!(
                "{url}?artifactType={}",
                SIGNATURE_ARTIFACT_TYPE.replace('+', "%2B")
            ),
            OCI_INDEX,
        )
        .await;
        assert_eq!(filtered.headers()["oci-filters-applied"], "artifactType");
        let filtered: Value = filtered.json().await.unwrap();
        let descriptor = &filtered["manifests"].as_array().unwrap()[..];
        assert_eq!(descriptor.len(), 1);
        assert_eq!(descriptor[0]["digest"], referrer.as_str());
        assert_eq!(descriptor[0]["artifactType"], SIGNATURE_ARTIFACT_TYPE);
        assert_eq!(descriptor[0]["mediaType"], OCI_MANIFEST);

        // The referrer, its payload blob and the image read back byte for byte.
        let manifest = get(
            format!("{}/v2/app/manifests/{referrer}", stub.url()),
            OCI_MANIFEST,
        )
        .await;
        assert_eq!(
            manifest.headers()["docker-content-digest"],
            referrer.as_str()
        );
        let manifest = manifest.bytes().await.unwrap();
        assert_eq!(sha256_digest(&manifest), referrer);
        let layer = &json(&manifest)["layers"][0];
        let payload = get(
            format!(
                "{}/v2/app/blobs/{}",
                stub.url(),
                layer["digest"].as_str().unwrap()
            ),
            "*/*",
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert_eq!(sha256_digest(&payload), layer["digest"].as_str().unwrap());
        let by_tag = get(
            format!("{}/v2/app/manifests/1.0.0", stub.url()),
            OCI_MANIFEST,
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert_eq!(sha256_digest(&by_tag), image.digest);
        assert_eq!(
            stub.count("GET", &format!("/v2/app/referrers/{}", image.digest)),
            2
        );
    }

    #[tokio::test]
    async fn without_referrers_the_stub_answers_like_distribution_2_8() {
        let stub = StubRegistry::start().await.unwrap();
        let image = stub.put_image("app", "1.0.0", ImageKind::OciManifest, &["amd64"], None);
        let answer = get(
            format!("{}/v2/app/referrers/{}", stub.url(), image.digest),
            OCI_INDEX,
        )
        .await;
        assert_eq!(answer.status(), 404);
        assert_eq!(
            answer.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(answer.text().await.unwrap(), "404 page not found\n");
        let missing = get(format!("{}/v2/app/blobs/sha256:00", stub.url()), "*/*").await;
        assert_eq!(missing.status(), 404);
    }

    #[tokio::test]
    async fn the_signature_tag_serves_the_signatures_with_their_annotations() {
        let stub = StubRegistry::start().await.unwrap();
        let image = stub.put_image(
            "app",
            "1.0.0",
            ImageKind::OciIndex,
            &["amd64", "arm64"],
            None,
        );
        let sig =
            CosignSignature::with_key(&SigningKey::generate_ed25519(), "r/app", &image.digest);
        let digest = stub.push_signature_tag("app", &image.digest, std::slice::from_ref(&sig));
        let served = get(
            format!(
                "{}/v2/app/manifests/{}",
                stub.url(),
                cosign::signature_tag(&image.digest)
            ),
            OCI_MANIFEST,
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert_eq!(sha256_digest(&served), digest);
        assert_eq!(
            json(&served)["layers"][0]["annotations"][SIGNATURE_ANNOTATION],
            sig.signature_b64.as_str()
        );
    }
}
