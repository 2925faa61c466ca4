//! Fidelity of the in-process Kubernetes API server: a real `kube::Client`, `Api<K>` and
//! kube-runtime watcher must see what the kube-apiserver recordings in
//! `../shared/apiserver-wire` show. On a real cluster (`TAGWATCH_E2E_KUBECONFIG`) the same tests
//! run, minus the assertions on the test server's request log and knobs.

// A missing field in a test answer should fail the test on the spot, naming what was missing.
#![allow(clippy::expect_used)]

mod custom_kinds;
mod garbage_collection;
mod harness;
mod kinds;
mod patches;
mod reads;
mod watches;
mod wire;
mod workload_kinds;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

/// Long enough for a loaded CI machine; polls return as soon as the condition holds.
const DEADLINE: Duration = Duration::from_secs(10);

/// A one-container Deployment like the one in 01-get-deployment, before server defaulting.
fn deployment(name: &str, image: &str) -> Deployment {
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    });
    serde_json::from_value(value).expect("a valid Deployment literal")
}

async fn create_deployment(api: &Api<Deployment>, name: &str, image: &str) -> Deployment {
    api.create(&PostParams::default(), &deployment(name, image))
        .await
        .expect("creating a Deployment")
}

/// The `Status` a request failed with; panics on success or a transport error.
fn api_status<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn rv_number(object: &impl kube::ResourceExt) -> u64 {
    object
        .resource_version()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion")
}

fn image_of(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}
