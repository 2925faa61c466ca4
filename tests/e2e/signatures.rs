//! The signature gate end to end: cosign signatures made with real keys (and a test Fulcio CA
//! with a test Rekor), pushed into the real registry as `.sig` tags and as OCI 1.1 referrers
//! (distribution 2.8 has no Referrers API: the tag fallback is used there, and the stub registry
//! serves the API), judged by the poller, the service and `tagwatch resolve`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::Api;
use tagwatch::act::verify::Verification;
use tagwatch::model::image::Repository;
use tagwatch::model::verify::{Identity, KeySource, KeylessPolicy, Policies, Policy};
use tagwatch::plan::alias_tags::Levels;
use tagwatch::registry::DockerConfig;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::cosign::{
    CosignSignature, Identity as Signer, SigningKey, TestCa, TestRekor,
};
use tagwatch_testbed::registry::{ImageKind, Registry};
use tagwatch_testbed::stub_registry::StubRegistry;
use tagwatch_testbed::wait;

use crate::support::{deployment, events, image, poller_with, snapshot, Harness, Tagwatch};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1";

/// A policy trusting the public keys written into `dir`.
fn key_policy(name: &str, dir: &std::path::Path, keys: &[&SigningKey]) -> Policy {
    Policy {
        name: name.into(),
        repositories: Vec::new(),
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let path = dir.join(format!("{name}-{i}.pub"));
                std::fs::write(&path, key.public_key_pem()).expect("key file");
                KeySource::File(path)
            })
            .collect(),
        keyless: None,
    }
}

fn verification(policies: Vec<Policy>, namespace: &str) -> Arc<Verification> {
    Arc::new(Verification {
        policies: Policies::from_policies(policies),
        namespace: Some(namespace.to_string()),
        aliases: HashMap::new(),
    })
}

fn der_b64(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .or_else(|_| {
            rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
                .map(|k| k.to_vec())
        })
        .expect("PEM");
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// A Sigstore trusted_root.json naming the test CA and the test Rekor, as cosign reads one.
fn trusted_root(ca: &TestCa, rekor: &TestRekor) -> String {
    serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.test",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": der_b64(&rekor.public_key_pem()), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
            "logId": {"keyId": base64::engine::general_purpose::STANDARD.encode(hex::decode(rekor.log_id_hex()).expect("hex"))},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "test", "commonName": "test fulcio"},
            "uri": "https://fulcio.test",
            "certChain": {"certificates": [{"rawBytes": der_b64(&ca.root_pem())}]},
        }],
        "ctlogs": [],
    })
    .to_string()
}

async fn setup(
    adjust: impl FnOnce(&mut tagwatch::act::Context, &str),
) -> (TestCluster, Registry, Harness) {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let harness = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |ctx| adjust(ctx, &ns),
    );
    (cluster, registry, harness)
}

async fn push_one(registry: &Registry, repo: &str, tag: &str) -> String {
    registry
        .push_image(repo, tag, ImageKind::OciManifest)
        .await
        .expect("push")
}

async fn sign_tag(registry: &Registry, repo: &str, digest: &str, signatures: &[CosignSignature]) {
    registry
        .push_signature_tag(repo, digest, signatures)
        .await
        .expect("push signature");
}

async fn gate_notes(cluster: &TestCluster, ns: &str) -> Vec<String> {
    events(cluster, ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("GateBlocked"))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// Registry GETs since `from`, by kind of path.
async fn gets_since(registry: &Registry, from: usize) -> (usize, usize, usize) {
    registry.sync_log().await.expect("sync");
    let requests = registry.requests_since(from);
    let count = |what: &str| {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains(what))
            .count()
    };
    (count("/manifests/"), count("/blobs/"), count("/referrers/"))
}

#[tokio::test]
async fn the_newest_signed_version_is_written_by_digest_and_unsigned_newer_ones_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let stranger = SigningKey::generate_p256();
    let policy = key_policy("release", dir.path(), &[&key]);
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        ctx.verification = verification(vec![policy], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push_one(&registry, "app", "1.0.0").await;
    let signed = push_one(&registry, "app", "1.1.0").await;
    sign_tag(
        &registry,
        "app",
        &signed,
        &[CosignSignature::with_key(&key, &app, &signed)],
    )
    .await;
    push_one(&registry, "app", "1.2.0").await; // unsigned
    let by_stranger = push_one(&registry, "app", "1.3.0").await;
    sign_tag(
        &registry,
        "app",
        &by_stranger,
        &[CosignSignature::with_key(&stranger, &app, &by_stranger)],
    )
    .await;
    let copied = push_one(&registry, "app", "1.4.0").await;
    // A genuine signature, but of another digest, copied next to 1.4.0.
    sign_tag(
        &registry,
        "app",
        &copied,
        &[CosignSignature::with_key(&key, &app, &signed)],
    )
    .await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    registry.sync_log().await.expect("sync");
    let start = registry.requests().len();

    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.1.0@{signed}")
    );
    let notes = wait::until(
        "three GateBlocked Events",
        Duration::from_secs(10),
        || async {
            let notes = gate_notes(&cluster, &ns).await;
            (notes.len() >= 3).then_some(notes)
        },
    )
    .await
    .expect("events");
    let held =
        |version: &str, why: &str| notes.iter().any(|n| n.contains(version) && n.contains(why));
    assert!(held("1.2.0", "no cosign signature found"), "{notes:?}");
    assert!(held("1.3.0", "no signature by a trusted key"), "{notes:?}");
    assert!(held("1.4.0", &format!("covers {signed}")), "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| n.contains("signature") && n.contains("policy release")),
        "{notes:?}"
    );
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="signature",result="blocked"}"#),
        3.0
    );
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="signature",result="passed"}"#),
        1.0
    );
    // Per candidate: its manifest and config (facts), its .sig manifest; an unsigned one also the
    // Referrers API (404 here) and the referrers tag; a signed one its payload blob.
    let first = gets_since(&registry, start).await;
    assert_eq!(first, (4 + 4 + 1, 4 + 3, 1), "manifests, blobs, referrers");

    // Steady: judgements are kept, nothing is read again, nothing reported again.
    registry.sync_log().await.expect("sync");
    let steady = registry.requests().len();
    for _ in 0..2 {
        let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
        assert_eq!(report.applied, 0);
    }
    let after = gets_since(&registry, steady).await;
    assert_eq!(
        (after.1, after.2),
        (0, 0),
        "no blob or referrers read when steady"
    );
    assert_eq!(gate_notes(&cluster, &ns).await.len(), 3);

    // A newly signed release: one manifest and config, the .sig manifest and its payload.
    registry.sync_log().await.expect("sync");
    let before = registry.requests().len();
    let newest = push_one(&registry, "app", "1.5.0").await;
    sign_tag(
        &registry,
        "app",
        &newest,
        &[CosignSignature::with_key(&key, &app, &newest)],
    )
    .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.5.0@{newest}")
    );
    let (manifests, blobs, referrers) = gets_since(&registry, before).await;
    assert_eq!((blobs, referrers), (2, 0));
    // The listing's digest reads are not gate reads; the gate adds the two manifest GETs.
    assert!(manifests >= 2, "{manifests}");
}

#[tokio::test]
async fn signatures_are_found_as_oci_referrers_through_the_tag_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_ed25519();
    let policy = key_policy("release", dir.path(), &[&key]);
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        ctx.verification = verification(vec![policy], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push_one(&registry, "app", "2.0.0").await;
    let digest = push_one(&registry, "app", "2.1.0").await;
    let described = registry
        .manifest_descriptor("app", "2.1.0")
        .await
        .expect("descriptor");
    registry
        .push_signature_referrer(
            "app",
            &digest,
            described.size,
            &described.media_type,
            &[CosignSignature::with_key(&key, &app, &digest)],
        )
        .await
        .expect("referrer");
    deployment("web")
        .image(&format!("{app}:2.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    registry.sync_log().await.expect("sync");
    let start = registry.requests().len();
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:2.1.0@{digest}")
    );
    registry.sync_log().await.expect("sync");
    let requests = registry.requests_since(start);
    let tag = tagwatch_testbed::cosign::referrers_tag(&digest);
    let got = |suffix: &str| {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(suffix))
            .count()
    };
    // The Referrers API was asked (404 on distribution 2.8), then the fallback tag.
    assert_eq!(got(&format!("/referrers/{digest}")), 1);
    assert_eq!(got(&format!("/manifests/{tag}")), 1);
    assert_eq!(got(&format!("/manifests/{tag}.sig")), 1);
}

#[tokio::test]
async fn a_registry_with_the_referrers_api_is_asked_through_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let policy = key_policy("release", dir.path(), &[&key]);
    let cluster = TestCluster::start().await.expect("cluster");
    let stub = StubRegistry::start().await.expect("stub");
    let ns = cluster.namespace.clone();
    let mut h = poller_with(&cluster, &[stub.host()], DockerConfig::default(), |ctx| {
        ctx.verification = verification(vec![policy], &ns);
    });
    let app = format!("{}/app", stub.host());
    stub.set_tags("app", ["3.0.0", "3.1.0"]);
    stub.put_image("app", "3.0.0", ImageKind::OciManifest, &["amd64"], None);
    let image_3_1 = stub.put_image("app", "3.1.0", ImageKind::OciManifest, &["amd64"], None);
    stub.enable_referrers("app");
    stub.push_signature_referrer(
        "app",
        &image_3_1.digest,
        image_3_1.size,
        &image_3_1.media_type,
        &[CosignSignature::with_key(&key, &app, &image_3_1.digest)],
    );
    deployment("web")
        .image(&format!("{app}:3.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:3.1.0@{}", image_3_1.digest)
    );
    let referrers = format!("/v2/app/referrers/{}", image_3_1.digest);
    assert_eq!(stub.count("GET", &referrers), 1);
    let asked = stub.requests();
    let query = asked
        .iter()
        .find(|r| r.path == referrers)
        .and_then(|r| r.query.clone())
        .unwrap_or_default();
    assert!(
        query.contains("artifactType=application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson"),
        "{query}"
    );
    // No fallback tag when the API answers.
    let fallback = format!(
        "/v2/app/manifests/{}",
        tagwatch_testbed::cosign::referrers_tag(&image_3_1.digest)
    );
    assert_eq!(stub.count("GET", &fallback), 0);
}

#[tokio::test]
async fn keyless_signatures_pass_only_for_an_allowed_identity_with_a_log_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("test fulcio").expect("ca");
    let rekor = TestRekor::new();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, trusted_root(&ca, &rekor)).expect("root");
    let policy = Policy {
        name: "ci".into(),
        repositories: Vec::new(),
        keys: Vec::new(),
        keyless: Some(KeylessPolicy {
            identities: vec![Identity::new(
                None,
                Some("https://github.com/org/app/.*"),
                Some(ISSUER),
                None,
            )
            .expect("identity")],
            trusted_root: Some(root),
            tlog_required: true,
        }),
    };
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        ctx.verification = verification(vec![policy], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    let now = SystemTime::now();
    let validity = (
        now - Duration::from_secs(60),
        now + Duration::from_secs(600),
    );
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let sign = |who: Signer, digest: &str, logged: bool| {
        let (leaf, key) = ca.issue(who, ISSUER, validity).expect("leaf");
        let signature = CosignSignature::keyless(&ca, &leaf, &key, &app, digest);
        if logged {
            let bundle = rekor.bundle(&signature, unix, 1);
            signature.with_bundle(bundle)
        } else {
            signature
        }
    };
    push_one(&registry, "app", "1.0.0").await;
    let good = push_one(&registry, "app", "1.1.0").await;
    sign_tag(
        &registry,
        "app",
        &good,
        &[sign(Signer::Uri(WORKFLOW.into()), &good, true)],
    )
    .await;
    let by_eve = push_one(&registry, "app", "1.2.0").await;
    sign_tag(
        &registry,
        "app",
        &by_eve,
        &[sign(Signer::Email("eve@example.com".into()), &by_eve, true)],
    )
    .await;
    let unlogged = push_one(&registry, "app", "1.3.0").await;
    sign_tag(
        &registry,
        "app",
        &unlogged,
        &[sign(Signer::Uri(WORKFLOW.into()), &unlogged, false)],
    )
    .await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "ci")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.1.0@{good}")
    );
    let notes = wait::until(
        "two GateBlocked Events",
        Duration::from_secs(10),
        || async {
            let notes = gate_notes(&cluster, &ns).await;
            (notes.len() >= 2).then_some(notes)
        },
    )
    .await
    .expect("events");
    assert!(
        notes.iter().any(|n| n.contains("1.2.0")
            && n.contains("eve@example.com")
            && n.contains("not an allowed identity")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("1.3.0") && n.contains("no transparency log entry")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn an_enforced_policy_holds_without_an_annotation_and_an_annotation_cannot_lift_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let loose = SigningKey::generate_p256();
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        let mut enforced = key_policy("platform", dir.path(), &[&key]);
        enforced.repositories = vec![glob::Pattern::new("127.0.0.1:*/locked/*").expect("glob")];
        let permissive = key_policy("team", dir.path(), &[&loose]);
        ctx.verification = verification(vec![enforced, permissive], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let locked = format!("{}/locked/app", registry.host());
    let open = format!("{}/open/app", registry.host());
    for repo in ["locked/app", "open/app"] {
        push_one(&registry, repo, "1.0.0").await;
        push_one(&registry, repo, "1.1.0").await; // unsigned
    }
    // Signed only by the team's key: enough for the team's policy, not for the platform's.
    let team_signed = push_one(&registry, "locked/app", "1.2.0").await;
    sign_tag(
        &registry,
        "locked/app",
        &team_signed,
        &[CosignSignature::with_key(&loose, &locked, &team_signed)],
    )
    .await;
    let platform_signed = push_one(&registry, "locked/app", "1.0.1").await;
    sign_tag(
        &registry,
        "locked/app",
        &platform_signed,
        &[CosignSignature::with_key(&key, &locked, &platform_signed)],
    )
    .await;
    deployment("bare")
        .image(&format!("{locked}:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("asks-team")
        .image(&format!("{locked}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "team")
        .create(&cluster, &ns)
        .await;
    deployment("elsewhere")
        .image(&format!("{open}:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;

    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    // The enforced policy holds for both workloads on the locked repository; with the team's
    // policy added, a version must pass both.
    assert_eq!(
        image(&cluster, &ns, "bare").await,
        format!("{locked}:1.0.1@{platform_signed}")
    );
    assert_eq!(
        image(&cluster, &ns, "asks-team").await,
        format!("{locked}:1.0.0")
    );
    // Other repositories are not touched by it (and keep tag-only writes).
    assert_eq!(
        image(&cluster, &ns, "elsewhere").await,
        format!("{open}:1.1.0")
    );
}

#[tokio::test]
async fn a_key_that_cannot_be_read_blocks_until_its_secret_appears() {
    let key = SigningKey::generate_p256();
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        let policy = Policy {
            name: "release".into(),
            repositories: Vec::new(),
            keys: vec![KeySource::Secret {
                name: "cosign-keys".into(),
                key: "cosign.pub".into(),
            }],
            keyless: None,
        };
        ctx.verification = verification(vec![policy], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push_one(&registry, "app", "1.0.0").await;
    let signed = push_one(&registry, "app", "1.1.0").await;
    sign_tag(
        &registry,
        "app",
        &signed,
        &[CosignSignature::with_key(&key, &app, &signed)],
    )
    .await;
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:1.0.0"));
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="signature",result="error"}"#),
        1.0
    );
    let notes = wait::until("a GateBlocked Event", Duration::from_secs(10), || async {
        let notes = gate_notes(&cluster, &ns).await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("events");
    assert!(notes[0].contains("cosign-keys does not exist"), "{notes:?}");

    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cosign-keys"},
        "stringData": {"cosign.pub": key.public_key_pem()},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    // An undecided check is not kept: the next round reads again and passes.
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.1.0@{signed}")
    );
}

#[tokio::test]
async fn verification_and_the_digest_policy_together_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let policy = key_policy("release", dir.path(), &[&key]);
    let (cluster, registry, mut h) = setup(|ctx, ns| {
        ctx.verification = verification(vec![policy], ns);
    })
    .await;
    let ns = cluster.namespace.clone();
    let app = format!("{}/app", registry.host());
    push_one(&registry, "app", "stable").await;
    deployment("web")
        .image(&format!("{app}:stable"))
        .policy("digest")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    registry
        .push_image_variant("app", "stable", ImageKind::OciManifest, "moved")
        .await
        .expect("push");
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 0);
    assert_eq!(image(&cluster, &ns, "web").await, format!("{app}:stable"));
    assert_eq!(
        h.metric(r#"tagwatch_updates_total{reason="verify-with-digest-policy",result="skipped"}"#),
        1.0,
        "{}",
        h.metrics()
    );
}

#[tokio::test]
async fn aliases_move_only_onto_signed_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let registry = Registry::anonymous().await.expect("registry");
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace.clone();
    let repo = Repository {
        registry: registry.host(),
        path: "lib".into(),
    };
    let reference = format!("{}/lib", registry.host());
    let signed = push_one(&registry, "lib", "1.2.0").await;
    sign_tag(
        &registry,
        "lib",
        &signed,
        &[CosignSignature::with_key(&key, &reference, &signed)],
    )
    .await;
    push_one(&registry, "lib", "1.2.1").await; // unsigned
    let policy = key_policy("release", dir.path(), &[&key]);
    let mut h = poller_with(
        &cluster,
        &[registry.host()],
        DockerConfig::default(),
        |ctx| {
            ctx.aliases = vec![(repo.clone(), Levels::MAJOR_MINOR)];
            let mut v = Verification {
                policies: Policies::from_policies([policy]),
                namespace: Some(ns.clone()),
                aliases: HashMap::new(),
            };
            v.aliases.insert(repo.clone(), "release".into());
            ctx.verification = Arc::new(v);
        },
    );
    let digest_of = |tag: &'static str| {
        let registry = &registry;
        async move {
            registry
                .manifest_descriptor("lib", tag)
                .await
                .ok()
                .map(|d| d.digest)
        }
    };
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    wait::until("aliases written", Duration::from_secs(20), || async {
        (digest_of("1").await.is_some() && digest_of("1.2").await.is_some()).then_some(())
    })
    .await
    .expect("aliases");
    assert_eq!(digest_of("1.2").await, Some(signed.clone()));
    assert_eq!(digest_of("1").await, Some(signed.clone()));

    // Signed at last: the next listing moves both aliases onto it.
    let late = registry
        .manifest_descriptor("lib", "1.2.1")
        .await
        .expect("descriptor")
        .digest;
    sign_tag(
        &registry,
        "lib",
        &late,
        &[CosignSignature::with_key(&key, &reference, &late)],
    )
    .await;
    h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    wait::until("aliases moved", Duration::from_secs(20), || async {
        (digest_of("1.2").await.as_deref() == Some(late.as_str())).then_some(())
    })
    .await
    .expect("moved");
    assert_eq!(digest_of("1").await, Some(late));
}

#[tokio::test]
async fn the_service_reads_policies_from_its_config_file() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    let key = SigningKey::generate_p256();
    let app = format!("{}/svc", registry.host());
    push_one(&registry, "svc", "1.0.0").await;
    let signed = push_one(&registry, "svc", "1.1.0").await;
    sign_tag(
        &registry,
        "svc",
        &signed,
        &[CosignSignature::with_key(&key, &app, &signed)],
    )
    .await;
    push_one(&registry, "svc", "1.2.0").await; // unsigned
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("cosign.pub");
    std::fs::write(&key_file, key.public_key_pem()).expect("key");
    let config = dir.path().join("tagwatch.yaml");
    std::fs::write(
        &config,
        format!(
            "verification:\n  policies:\n    - name: release\n      repositories: ['{}/*']\n      keys: [{{file: {}}}]\n",
            registry.host(),
            key_file.display()
        ),
    )
    .expect("config");
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    let service = Tagwatch::watching(
        &cluster,
        &registry,
        &["--config", config.to_str().expect("utf-8")],
    );
    let expected = format!("{app}:1.1.0@{signed}");
    wait::until(
        "the signed version written",
        Duration::from_secs(30),
        || async { (image(&cluster, &ns, "web").await == expected).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", service.logs()));
    assert!(
        service
            .log_events("signature not verified")
            .iter()
            .any(|l| l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("no cosign signature found"))),
        "{}",
        service.logs()
    );
}

/// `tagwatch resolve` runs the same check from CI: by key, and keyless against a trust root.
#[tokio::test]
async fn resolve_checks_signatures_by_key_and_keyless() {
    let registry = Registry::anonymous().await.expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let ca = TestCa::new("test fulcio").expect("ca");
    let rekor = TestRekor::new();
    let app = format!("{}/cli", registry.host());
    push_one(&registry, "cli", "1.0.0").await;
    let by_key = push_one(&registry, "cli", "1.1.0").await;
    sign_tag(
        &registry,
        "cli",
        &by_key,
        &[CosignSignature::with_key(&key, &app, &by_key)],
    )
    .await;
    let keyless = push_one(&registry, "cli", "1.2.0").await;
    let now = SystemTime::now();
    let (leaf, leaf_key) = ca
        .issue(
            Signer::Uri(WORKFLOW.into()),
            ISSUER,
            (
                now - Duration::from_secs(60),
                now + Duration::from_secs(600),
            ),
        )
        .expect("leaf");
    let signature = CosignSignature::keyless(&ca, &leaf, &leaf_key, &app, &keyless);
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let bundle = rekor.bundle(&signature, unix, 1);
    sign_tag(&registry, "cli", &keyless, &[signature.with_bundle(bundle)]).await;
    let key_file = dir.path().join("cosign.pub");
    std::fs::write(&key_file, key.public_key_pem()).expect("key");
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, trusted_root(&ca, &rekor)).expect("root");

    let resolve = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwatch"))
            .args([
                "resolve",
                &format!("{app}:1.0.0"),
                "--insecure",
                "-o",
                "json",
            ])
            .args(extra)
            .output()
            .expect("resolve");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };
    let key_path = key_file.to_str().expect("utf-8");
    let (code, json) = resolve(&["--verify-key", key_path]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["new_image"], format!("{app}:1.1.0@{by_key}"));
    let gated = json["gated"].as_array().expect("gated");
    assert_eq!(gated.len(), 1, "{json}");
    assert_eq!(gated[0]["tag"], "1.2.0");
    assert_eq!(gated[0]["gate"], "signature");

    let root_path = root.to_str().expect("utf-8");
    let (code, json) = resolve(&[
        "--certificate-identity-regexp",
        "https://github.com/org/.*",
        "--certificate-oidc-issuer",
        ISSUER,
        "--trusted-root",
        root_path,
    ]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["new_image"], format!("{app}:1.2.0@{keyless}"));

    // Another identity: nothing passes, so nothing to update to.
    let (code, json) = resolve(&[
        "--certificate-identity",
        "someone@example.com",
        "--certificate-oidc-issuer",
        ISSUER,
        "--trusted-root",
        root_path,
    ]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["gated"].as_array().map(Vec::len), Some(2), "{json}");
}

/// A hostile registry's signature answers (garbage manifests, a payload that is not the one the
/// layer names) make that version unsigned, never verified, and other versions are judged on.
#[tokio::test]
async fn garbage_signature_answers_leave_the_version_unsigned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate_p256();
    let policy = key_policy("release", dir.path(), &[&key]);
    let cluster = TestCluster::start().await.expect("cluster");
    let stub = StubRegistry::start().await.expect("stub");
    let ns = cluster.namespace.clone();
    let mut h = poller_with(&cluster, &[stub.host()], DockerConfig::default(), |ctx| {
        ctx.verification = verification(vec![policy], &ns);
    });
    let app = format!("{}/app", stub.host());
    stub.set_tags("app", ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]);
    stub.put_image("app", "1.0.0", ImageKind::OciManifest, &["amd64"], None);
    let good = stub.put_image("app", "1.1.0", ImageKind::OciManifest, &["amd64"], None);
    stub.push_signature_tag(
        "app",
        &good.digest,
        &[CosignSignature::with_key(&key, &app, &good.digest)],
    );
    let garbage = stub.put_image("app", "1.2.0", ImageKind::OciManifest, &["amd64"], None);
    stub.put_manifest_bytes(
        "app",
        &tagwatch_testbed::cosign::signature_tag(&garbage.digest),
        b"<html>not a manifest</html>".to_vec(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    // A valid layer whose payload blob was never stored.
    let missing = stub.put_image("app", "1.3.0", ImageKind::OciManifest, &["amd64"], None);
    let signature = CosignSignature::with_key(&key, &app, &missing.digest);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": good.digest, "size": 2},
        "layers": [signature.layer()],
    });
    stub.put_manifest_bytes(
        "app",
        &tagwatch_testbed::cosign::signature_tag(&missing.digest),
        serde_json::to_vec(&manifest).expect("json"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    deployment("web")
        .image(&format!("{app}:1.0.0"))
        .policy("minor")
        .annotate("tagwatch.dev/verify", "release")
        .create(&cluster, &ns)
        .await;
    let report = h.poller.round_all(&snapshot(&cluster, &[&ns]).await).await;
    assert_eq!(report.applied, 1);
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{app}:1.1.0@{}", good.digest)
    );
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="signature",result="blocked"}"#),
        2.0
    );
    assert_eq!(
        h.metric(r#"tagwatch_gate_results_total{gate="signature",result="error"}"#),
        0.0
    );
}
