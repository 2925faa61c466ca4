//! The install manifests in `deploy/`: every document is a valid Kubernetes object with no unknown
//! field, every kustomization lists exactly its files, the Deployment is locked down, and the RBAC
//! rules grant exactly the verbs a full `tagwatch run` uses against the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tagwatch_testbed::apiserver::RecordedRequest;
use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::test_server_or_skip;
use tagwatch_testbed::wait;

use crate::support::{deployment, free_port, images, push};

/// `(API group, resource[/subresource], verb)`, as RBAC rules name them; `""` is the core group.
pub(crate) type Grant = (String, String, String);

/// Granted by the manifests, yet not used by the run in `rbac_covers_exactly_the_verbs_a_full_run_uses`.
const GRANTED_BUT_NOT_EXERCISED: &[(&str, &str, &str)] = &[
    // kube 5's Recorder writes events.k8s.io/v1 only; this is the same Event through core v1.
    ("", "events", "create"),
    // kube 5's Recorder writes events.k8s.io/v1 only; this is the same Event through core v1.
    ("", "events", "patch"),
    // The Recorder patches an Event only when the same Event repeats; tagwatch reports each once.
    ("events.k8s.io", "events", "patch"),
    // A workload is read again only after a conflict; this run meets none on these kinds.
    ("apps", "statefulsets", "get"),
    ("apps", "daemonsets", "get"),
    ("batch", "cronjobs", "get"),
];

pub(crate) fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `*.yaml` below `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml")
}

/// The documents of a (multi-document) YAML file, as JSON values; empty documents are skipped.
pub(crate) fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every object document below `deploy/` (kustomization files excluded), with its file.
fn objects() -> Vec<(PathBuf, Value)> {
    yaml_files(&deploy_dir())
        .into_iter()
        .filter(|p| !is_kustomization(p))
        .flat_map(|p| documents(&p).into_iter().map(move |d| (p.clone(), d)))
        .collect()
}

/// The one object of `kind` in the file at `deploy/<relative>`.
pub(crate) fn object<K: DeserializeOwned>(relative: &str, kind: &str) -> K {
    let path = deploy_dir().join(relative);
    let docs: Vec<Value> = documents(&path)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(docs.len(), 1, "one {kind} in {}", path.display());
    serde_json::from_value(docs[0].clone())
        .unwrap_or_else(|e| panic!("{}: not a {kind}: {e}", path.display()))
}

/// Where `actual` first differs from `expected`, as a JSON pointer with both values.
fn first_difference(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = format!("{at}/{k}");
                match (e.get(k), a.get(k)) {
                    (Some(ev), Some(av)) => first_difference(ev, av, &path),
                    (Some(ev), None) => Some(format!("{path}: {ev} is dropped (unknown field?)")),
                    (None, Some(av)) => Some(format!("{path}: {av} appears")),
                    (None, None) => None,
                }
            })
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| first_difference(ev, av, &format!("{at}/{i}"))),
        _ if expected == actual => None,
        _ => Some(format!("{at}: written {expected}, read back as {actual}")),
    }
}

/// Parses `doc` as `K` and serializes it back: k8s-openapi ignores unknown fields and turns
/// mistyped scalars into errors or other values, so anything not read back identically is a bug.
fn round_trip<K: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: K = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(doc, &back, "") {
        None => Ok(()),
        Some(difference) => Err(difference),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    patches: Vec<KustomizePatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KustomizePatch {
    path: Option<String>,
    /// An inline JSON 6902 patch (YAML).
    patch: Option<String>,
    target: Option<PatchTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTarget {
    group: Option<String>,
    version: Option<String>,
    kind: String,
    name: Option<String>,
}

fn kustomization(dir: &Path) -> Kustomization {
    let path = dir.join("kustomization.yaml");
    let k: Kustomization =
        serde_norway::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k.kind, "Kustomization");
    k
}

#[test]
fn every_manifest_is_a_typed_object_without_unknown_fields() {
    let objects = objects();
    assert!(objects.len() >= 12, "found only {} objects", objects.len());
    for (path, doc) in objects {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let checked = match kind {
            "Namespace" => round_trip::<Namespace>(&doc),
            "ServiceAccount" => round_trip::<ServiceAccount>(&doc),
            "ClusterRole" => round_trip::<ClusterRole>(&doc),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&doc),
            "Role" => round_trip::<Role>(&doc),
            "RoleBinding" => round_trip::<RoleBinding>(&doc),
            "ConfigMap" => round_trip::<ConfigMap>(&doc),
            "Deployment" => round_trip::<Deployment>(&doc),
            "Service" => round_trip::<Service>(&doc),
            "ValidatingAdmissionPolicy" => round_trip::<ValidatingAdmissionPolicy>(&doc),
            "ValidatingAdmissionPolicyBinding" => {
                round_trip::<ValidatingAdmissionPolicyBinding>(&doc)
            }
            // No k8s-openapi type: checked against the Service in its own test.
            "ServiceMonitor" => Ok(()),
            other => Err(format!("unexpected kind {other:?}")),
        };
        if let Err(e) = checked {
            panic!("{} ({kind}): {e}", path.display());
        }
        if !path.starts_with(deploy_dir().join("examples")) {
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/name"],
                "tagwatch",
                "{} ({kind}): the app.kubernetes.io/name label",
                path.display()
            );
        }
    }
}

#[test]
fn the_round_trip_names_the_first_unknown_or_mistyped_field() {
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "a", "lables": {"x": "y"}},
    });
    let err = round_trip::<ServiceAccount>(&doc).expect_err("unknown field");
    assert!(err.starts_with("/metadata/lables:"), "{err}");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
        "spec": {"ports": [{"port": 80, "targetPort": "80"}]},
    });
    // A quoted number is a port *name*: kept as a string, so it round-trips (and would be wrong).
    assert_eq!(round_trip::<Service>(&doc), Ok(()));
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
        "spec": {"ports": [{"port": "80"}]},
    });
    assert!(round_trip::<Service>(&doc).is_err(), "a port is a number");
}

#[test]
fn kustomizations_list_exactly_their_files() {
    let dirs = [
        "",
        "base",
        "namespaced",
        "monitoring",
        "admission",
        "rollouts",
        "nodes",
    ];
    for relative in dirs {
        let dir = deploy_dir().join(relative);
        let k = kustomization(&dir);
        let mut listed = BTreeSet::new();
        for resource in &k.resources {
            let path = dir.join(resource);
            assert!(
                path.is_file() || path.join("kustomization.yaml").is_file(),
                "{}: {resource} is neither a file nor a kustomization directory",
                dir.display()
            );
            listed.insert(path.canonicalize().expect("canonical path"));
        }
        for patch in &k.patches {
            match (&patch.path, &patch.patch) {
                (Some(file), None) => {
                    let path = dir.join(file);
                    assert!(path.is_file(), "{}: no patch {file}", dir.display());
                    listed.insert(path.canonicalize().expect("canonical path"));
                }
                (None, Some(_)) => {}
                _ => panic!("{}: a patch has a path or an inline patch", dir.display()),
            }
        }
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let yaml = path.extension().is_some_and(|e| e == "yaml");
            if yaml && !is_kustomization(&path) {
                assert!(
                    listed.contains(&path.canonicalize().expect("canonical path")),
                    "{} is not listed in {}/kustomization.yaml",
                    path.display(),
                    dir.display()
                );
            }
        }
    }
    // Both variants install the admission policy (tests/e2e/admission_policy.rs).
    assert!(kustomization(&deploy_dir())
        .resources
        .contains(&"admission".to_string()));
    assert!(kustomization(&deploy_dir().join("namespaced"))
        .resources
        .contains(&"../admission".to_string()));
    // The optional ServiceMonitor is one uncommented line away, in both variants.
    assert!(read(&deploy_dir().join("kustomization.yaml")).contains("# - monitoring\n"));
    assert!(
        read(&deploy_dir().join("namespaced/kustomization.yaml")).contains("# - ../monitoring\n")
    );
    // The Argo Rollouts rights are optional (a CRD that may be absent): one uncommented line
    // away in the cluster-wide install, never in it by default.
    assert!(read(&deploy_dir().join("kustomization.yaml")).contains("# - rollouts\n"));
    for variant in ["", "namespaced"] {
        let k = kustomization(&deploy_dir().join(variant));
        assert!(
            k.resources.iter().all(|r| !r.contains("rollouts")),
            "{variant:?} installs the optional rollouts rights"
        );
    }
    // Every kustomization directory is one of those checked above.
    let kustomizations: BTreeSet<PathBuf> = yaml_files(&deploy_dir())
        .into_iter()
        .filter(|p| is_kustomization(p))
        .collect();
    let checked: BTreeSet<PathBuf> = dirs
        .iter()
        .map(|d| deploy_dir().join(d).join("kustomization.yaml"))
        .collect();
    assert_eq!(kustomizations, checked);
}

#[test]
fn the_namespaced_variant_adds_its_namespace_to_the_args_and_grants_the_same_rights_there() {
    let k = kustomization(&deploy_dir().join("namespaced"));
    assert_eq!(k.patches.len(), 1);
    let patch = &k.patches[0];
    let target = patch.target.as_ref().expect("target");
    assert_eq!(
        (
            target.group.as_deref(),
            target.version.as_deref(),
            target.kind.as_str(),
            target.name.as_deref()
        ),
        (Some("apps"), Some("v1"), "Deployment", Some("tagwatch"))
    );
    let operations: json_patch::Patch =
        serde_norway::from_str(patch.patch.as_deref().expect("inline patch")).expect("JSON patch");
    let mut deployment = documents(&deploy_dir().join("base/deployment.yaml"))[0].clone();
    json_patch::patch(&mut deployment, &operations.0).expect("the patch applies to the base");
    let deployment: Deployment = serde_json::from_value(deployment).expect("Deployment");
    assert_eq!(
        container(&deployment).args,
        Some(vec![
            "run".to_string(),
            "--config=/etc/tagwatch/tagwatch.yaml".into(),
            "--namespace=apps".into()
        ])
    );

    let role: Role = object("namespaced/role-apps.yaml", "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("apps"));
    let cluster_role: ClusterRole = object("clusterrole.yaml", "ClusterRole");
    assert_eq!(
        granted(role.rules.as_deref().unwrap_or_default()),
        granted(cluster_role.rules.as_deref().unwrap_or_default())
    );
    let binding: RoleBinding = object("namespaced/rolebinding-apps.yaml", "RoleBinding");
    assert_eq!(binding.metadata.namespace.as_deref(), Some("apps"));
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "tagwatch")
    );
    assert_binds_tagwatch(binding.subjects.as_deref().unwrap_or_default());
}

#[test]
fn the_optional_rollouts_rights_read_and_patch_rollouts_only_for_tagwatch() {
    let role: ClusterRole = object("rollouts/clusterrole.yaml", "ClusterRole");
    assert_eq!(role.metadata.name.as_deref(), Some("tagwatch-rollouts"));
    let verbs = |list: &[&str]| -> BTreeSet<Grant> {
        list.iter()
            .map(|v| {
                (
                    "argoproj.io".to_string(),
                    "rollouts".to_string(),
                    v.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        granted(role.rules.as_deref().unwrap_or_default()),
        verbs(&["get", "list", "watch", "patch"])
    );
    for rule in role.rules.iter().flatten() {
        assert_eq!(rule.resource_names, None);
        assert_eq!(rule.non_resource_urls, None);
    }
    let binding: ClusterRoleBinding =
        object("rollouts/clusterrolebinding.yaml", "ClusterRoleBinding");
    assert_eq!(binding.metadata.name.as_deref(), Some("tagwatch-rollouts"));
    assert_eq!(
        (
            binding.role_ref.api_group.as_str(),
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "tagwatch-rollouts"
        )
    );
    assert_binds_tagwatch(binding.subjects.as_deref().unwrap_or_default());
    // Nothing of Argo's in the default rights: they come from this file only.
    assert!(granted_by_the_manifests()
        .iter()
        .all(|(group, _, _)| group != "argoproj.io"));
}

fn assert_binds_tagwatch(subjects: &[k8s_openapi::api::rbac::v1::Subject]) {
    let subjects: Vec<_> = subjects
        .iter()
        .map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()))
        .collect();
    assert_eq!(
        subjects,
        vec![("ServiceAccount", "tagwatch", Some("tagwatch"))]
    );
}

#[test]
fn the_bindings_bind_the_roles_to_the_tagwatch_service_account() {
    let binding: ClusterRoleBinding = object("clusterrolebinding.yaml", "ClusterRoleBinding");
    let role: ClusterRole = object("clusterrole.yaml", "ClusterRole");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(binding.role_ref.name.as_str()),
        role.metadata.name.as_deref()
    );
    assert_binds_tagwatch(binding.subjects.as_deref().unwrap_or_default());

    let binding: RoleBinding = object("base/rolebinding.yaml", "RoleBinding");
    let role: Role = object("base/role.yaml", "Role");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(
        Some(binding.role_ref.name.as_str()),
        role.metadata.name.as_deref()
    );
    assert_eq!(binding.metadata.namespace.as_deref(), Some("tagwatch"));
    assert_eq!(role.metadata.namespace.as_deref(), Some("tagwatch"));
    assert_binds_tagwatch(binding.subjects.as_deref().unwrap_or_default());
    let account: ServiceAccount = object("base/serviceaccount.yaml", "ServiceAccount");
    assert_eq!(
        (
            account.metadata.name.as_deref(),
            account.metadata.namespace.as_deref()
        ),
        (Some("tagwatch"), Some("tagwatch"))
    );
}

#[test]
fn the_config_map_carries_a_yaml_config_file() {
    let config_map: ConfigMap = object("base/configmap.yaml", "ConfigMap");
    let data = config_map.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), vec!["tagwatch.yaml"]);
    // tagwatch itself must accept it: a refused file would crash-loop every replica.
    let config = tagwatch::config::FileConfig::parse(&data["tagwatch.yaml"])
        .unwrap_or_else(|e| panic!("the shipped config is refused: {e}"));
    // The address tagwatch listens on is the port the probes and the Service use.
    let port = container(&object("base/deployment.yaml", "Deployment"))
        .ports
        .and_then(|p| p.first().map(|p| p.container_port))
        .expect("a container port");
    assert_eq!(
        config.listen.map(|a| a.to_string()),
        Some(format!("0.0.0.0:{port}"))
    );
    assert_eq!(config.leader_election.enabled, Some(true));
}

fn container(deployment: &Deployment) -> Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(pod.containers.len(), 1, "one container");
    pod.containers[0].clone()
}

#[test]
fn the_deployment_runs_two_locked_down_replicas_with_probes() {
    let deployment: Deployment = object("base/deployment.yaml", "Deployment");
    let spec = deployment.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("tagwatch"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.run_as_group, Some(65532));
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    let c = container(&deployment);
    assert_eq!(c.image.as_deref(), Some("ghcr.io/tagwatch/tagwatch:0.1.0"));
    assert_eq!(
        c.args,
        Some(vec![
            "run".to_string(),
            "--config=/etc/tagwatch/tagwatch.yaml".into()
        ])
    );
    let ports: Vec<_> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, vec![(Some("http"), 9809)]);
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("an HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let env: BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            (e.name.as_str(), field)
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("POD_NAME", Some("metadata.name")),
            ("POD_NAMESPACE", Some("metadata.namespace")),
            ("TAGWATCH_WEBHOOK_SECRET", None)
        ])
    );
    // The webhook secret comes from an optional Secret, never from the manifest itself.
    let secret_ref = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TAGWATCH_WEBHOOK_SECRET")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (
            secret_ref.name.as_str(),
            secret_ref.key.as_str(),
            secret_ref.optional
        ),
        ("tagwatch-webhook", "secret", Some(true))
    );

    let resources = c.resources.as_ref().expect("resources");
    let quantity = |map: &Option<BTreeMap<String, _>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .map(|q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| q.0.clone())
    };
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("10m"));
    assert_eq!(
        quantity(&resources.requests, "memory").as_deref(),
        Some("32Mi")
    );
    assert_eq!(
        quantity(&resources.limits, "memory").as_deref(),
        Some("128Mi")
    );

    let security = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(security.privileged, None);

    // The config file comes from the ConfigMap.
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/tagwatch")
        .expect("a mount at /etc/tagwatch");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    let config_map: ConfigMap = object("base/configmap.yaml", "ConfigMap");
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        config_map.metadata.name.as_deref()
    );
}

#[test]
fn the_service_and_service_monitor_select_the_pods_metrics_port() {
    let deployment: Deployment = object("base/deployment.yaml", "Deployment");
    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let service: Service = object("base/service.yaml", "Service");
    let spec = service.spec.as_ref().expect("service spec");
    let selector = spec.selector.clone().expect("selector");
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let ports: Vec<_> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.target_port.clone()))
        .collect();
    assert_eq!(
        ports,
        vec![(Some("http"), 9809, Some(IntOrString::String("http".into())))]
    );

    let monitor: Value = object("monitoring/servicemonitor.yaml", "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "tagwatch");
    let service_labels = service.metadata.labels.clone().expect("service labels");
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!wanted.is_empty());
    for (key, value) in wanted {
        assert_eq!(
            service_labels.get(key).map(String::as_str),
            value.as_str(),
            "ServiceMonitor selects {key}"
        );
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!([service.metadata.namespace])
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

/// Every `(group, resource, verb)` the rules allow (on some object, for resourceNames rules).
pub(crate) fn granted(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

/// What the cluster-wide install grants: the ClusterRole, the leader-election Role and the
/// state Role.
fn granted_by_the_manifests() -> BTreeSet<Grant> {
    let cluster_role: ClusterRole = object("clusterrole.yaml", "ClusterRole");
    let role: Role = object("base/role.yaml", "Role");
    let state: Role = object("base/role-state.yaml", "Role");
    let mut grants = granted(cluster_role.rules.as_deref().unwrap_or_default());
    grants.extend(granted(role.rules.as_deref().unwrap_or_default()));
    grants.extend(granted(state.rules.as_deref().unwrap_or_default()));
    grants
}

#[test]
fn rbac_reads_secrets_by_name_only_and_uses_no_wildcards() {
    let cluster_role: ClusterRole = object("clusterrole.yaml", "ClusterRole");
    let role: Role = object("base/role.yaml", "Role");
    let namespaced: Role = object("namespaced/role-apps.yaml", "Role");
    let rollouts: ClusterRole = object("rollouts/clusterrole.yaml", "ClusterRole");
    let rules: Vec<PolicyRule> = [
        cluster_role.rules,
        role.rules,
        namespaced.rules,
        rollouts.rules,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .collect();
    for rule in &rules {
        let names = rule
            .api_groups
            .iter()
            .flatten()
            .chain(rule.resources.iter().flatten())
            .chain(&rule.verbs)
            .chain(rule.resource_names.iter().flatten());
        for name in names {
            assert!(!name.contains('*'), "a wildcard in {rule:?}");
        }
        assert_eq!(rule.non_resource_urls, None);
        if rule.resources.iter().flatten().any(|r| r == "secrets") {
            assert_eq!(rule.verbs, vec!["get"], "secrets: get only, {rule:?}");
        }
    }
    // The Lease rights stay in tagwatch's own namespace, on its own Lease where RBAC can say so.
    let role: Role = object("base/role.yaml", "Role");
    for rule in role.rules.iter().flatten() {
        assert_eq!(rule.resources, Some(vec!["leases".to_string()]));
        if rule.verbs != ["create"] {
            assert_eq!(rule.resource_names, Some(vec!["tagwatch".to_string()]));
        }
    }
    let grants = granted_by_the_manifests();
    let on = |group: &str, resource: &str| -> BTreeSet<String> {
        grants
            .iter()
            .filter(|(g, r, _)| g == group && r == resource)
            .map(|(_, _, v)| v.clone())
            .collect()
    };
    let verbs = |list: &[&str]| list.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(on("", "secrets"), verbs(&["get"]));
    assert_eq!(on("", "serviceaccounts"), verbs(&["get"]));
    assert_eq!(
        on("apps", "deployments"),
        verbs(&["create", "delete", "get", "list", "patch", "watch"])
    );
    // The other kinds are read and patched, never created or deleted.
    for (group, resource) in [
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "cronjobs"),
    ] {
        assert_eq!(
            on(group, resource),
            verbs(&["get", "list", "patch", "watch"]),
            "{resource}"
        );
    }
    assert_eq!(on("", "pods"), verbs(&["list"]));
    // A CronJob's next Job, found by listing: never watched, never read one by one.
    assert_eq!(on("batch", "jobs"), verbs(&["list"]));
    assert_eq!(on("", "events"), verbs(&["create", "patch"]));
    assert_eq!(on("events.k8s.io", "events"), verbs(&["create", "patch"]));
    assert_eq!(
        on("coordination.k8s.io", "leases"),
        verbs(&["create", "get", "update"])
    );
    // The state ConfigMap: its one name, where RBAC can say so.
    let state: Role = object("base/role-state.yaml", "Role");
    for rule in state.rules.iter().flatten() {
        assert_eq!(rule.resources, Some(vec!["configmaps".to_string()]));
        if rule.verbs != ["create"] {
            assert_eq!(
                rule.resource_names,
                Some(vec![tagwatch::act::gates::STATE_CONFIGMAP.to_string()])
            );
        }
    }
    assert_eq!(on("", "configmaps"), verbs(&["create", "get", "patch"]));
    assert_eq!(grants.len(), 32, "nothing else: {grants:?}");
    // Nodes only with the optional rights (`tagwatch.dev/platforms: auto`): list, nothing else.
    let nodes: ClusterRole = object("nodes/clusterrole.yaml", "ClusterRole");
    let node_grants = granted(nodes.rules.as_deref().unwrap_or_default());
    assert_eq!(
        node_grants,
        BTreeSet::from([("".to_string(), "nodes".to_string(), "list".to_string())])
    );
    assert!(read(&deploy_dir().join("kustomization.yaml")).contains("# - nodes\n"));
}

/// The RBAC verbs behind API server requests, as the API server derives them: `GET` on a
/// collection is `list` (`watch` with `?watch=true`), on an object `get`; `DELETE` on a
/// collection is `deletecollection`. Discovery and other non-resource paths are left out.
pub(crate) fn used_verbs(requests: &[RecordedRequest]) -> BTreeSet<Grant> {
    requests.iter().filter_map(rbac_verb).collect()
}

fn rbac_verb(request: &RecordedRequest) -> Option<Grant> {
    let segments: Vec<&str> = request
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    // `namespaces/<ns>/<resource>...`, except a Namespace's own subresources.
    let parts = match rest {
        ["namespaces", _namespace, resource, more @ ..]
            if !matches!(*resource, "status" | "finalize") =>
        {
            let mut parts = vec![*resource];
            parts.extend(more);
            parts
        }
        _ => rest.to_vec(),
    };
    let (resource, name) = match parts.as_slice() {
        [] => return None,
        [resource] => (resource.to_string(), None),
        [resource, name] => (resource.to_string(), Some(*name)),
        [resource, name, subresource] => (format!("{resource}/{subresource}"), Some(*name)),
        _ => return None,
    };
    let verb = match (request.method.as_str(), name) {
        ("GET" | "HEAD", None) if request.is_watch() => "watch",
        ("GET" | "HEAD", None) => "list",
        ("GET" | "HEAD", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", None) => "deletecollection",
        ("DELETE", Some(_)) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

#[test]
fn requests_map_to_rbac_verbs() {
    // "METHOD path?query" → "group resource verb" (`core` for ""), or "-" when no verb applies.
    let cases = [
        (
            "GET /apis/apps/v1/namespaces/a/deployments",
            "apps deployments list",
        ),
        (
            "GET /apis/apps/v1/deployments?limit=500",
            "apps deployments list",
        ),
        (
            "GET /apis/apps/v1/deployments?watch=true&resourceVersion=5",
            "apps deployments watch",
        ),
        (
            "GET /apis/apps/v1/namespaces/a/deployments?watch=1",
            "apps deployments watch",
        ),
        (
            "GET /apis/apps/v1/namespaces/a/deployments?watch=false",
            "apps deployments list",
        ),
        (
            "GET /apis/apps/v1/namespaces/a/deployments/web",
            "apps deployments get",
        ),
        // A watch names a collection: on one object it is still a get.
        (
            "GET /apis/apps/v1/namespaces/a/deployments/web?watch=true",
            "apps deployments get",
        ),
        (
            "PATCH /apis/apps/v1/namespaces/a/deployments/web",
            "apps deployments patch",
        ),
        (
            "PUT /apis/apps/v1/namespaces/a/deployments/web/status",
            "apps deployments/status update",
        ),
        (
            "GET /apis/apps/v1/namespaces/a/deployments/web/scale",
            "apps deployments/scale get",
        ),
        ("GET /api/v1/namespaces/a/secrets/pull", "core secrets get"),
        (
            "GET /api/v1/namespaces/a/serviceaccounts/default",
            "core serviceaccounts get",
        ),
        ("POST /api/v1/namespaces/a/events", "core events create"),
        (
            "POST /apis/events.k8s.io/v1/namespaces/a/events",
            "events.k8s.io events create",
        ),
        (
            "PATCH /apis/events.k8s.io/v1/namespaces/a/events/e1",
            "events.k8s.io events patch",
        ),
        (
            "PUT /apis/coordination.k8s.io/v1/namespaces/a/leases/l",
            "coordination.k8s.io leases update",
        ),
        ("DELETE /api/v1/namespaces/a/pods/p", "core pods delete"),
        (
            "DELETE /api/v1/namespaces/a/pods",
            "core pods deletecollection",
        ),
        // Namespaces themselves are cluster-scoped, with two subresources.
        ("GET /api/v1/namespaces", "core namespaces list"),
        ("GET /api/v1/namespaces/a", "core namespaces get"),
        (
            "PUT /api/v1/namespaces/a/finalize",
            "core namespaces/finalize update",
        ),
        (
            "PATCH /api/v1/namespaces/a/status",
            "core namespaces/status patch",
        ),
        ("GET /api/v1/nodes/n1", "core nodes get"),
        // Discovery and other non-resource paths.
        ("GET /api", "-"),
        ("GET /api/v1", "-"),
        ("GET /apis", "-"),
        ("GET /apis/apps", "-"),
        ("GET /apis/apps/v1", "-"),
        ("GET /version", "-"),
        ("GET /openapi/v3/apis/apps/v1", "-"),
        ("GET /healthz", "-"),
        ("OPTIONS /api/v1/namespaces/a/pods", "-"),
    ];
    for (request, want) in cases {
        let (method, target) = request.split_once(' ').expect("METHOD path");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let request = RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            content_type: None,
            body: String::new(),
            status: 200,
        };
        let got = match rbac_verb(&request) {
            Some((group, resource, verb)) => {
                let group = if group.is_empty() { "core" } else { &group };
                format!("{group} {resource} {verb}")
            }
            None => "-".to_string(),
        };
        assert_eq!(got, want, "{method} {target}");
    }
}

/// The spawned binary, killed when the test ends, however it ends.
struct Running(Child);

/// `tagwatch run` on `namespace` (a 1 s interval, its own lease there), logging to `log`.
fn run(kubeconfig: &Path, namespace: &str, registry: &Registry, log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_tagwatch"))
        .args(["run", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["-n", namespace])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--insecure-registry", &registry.host(), "--interval", "1s"])
        .env("TAGWATCH_LEASE_NAMESPACE", namespace)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tagwatch run");
    Running(child)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn grants(list: &BTreeSet<Grant>) -> String {
    list.iter()
        .map(|(g, r, v)| format!("\n  {g:?} {r} {v}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_covers_exactly_the_verbs_a_full_run_uses() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "only the in-process API server records the requests");
    // The run includes a canary, whose pods must become Ready.
    server.set_default_image_health(tagwatch_testbed::apiserver::ImageHealth::Ready);
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;

    // The pull secret holds credentials for another registry, so the lookup goes on to the
    // ServiceAccount: both are read.
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.clone()),
        ..ObjectMeta::default()
    };
    let config = serde_json::json!({"auths": {"other.example": {"auth": "dTpw"}}});
    server
        .put_secret(&Secret {
            metadata: meta("pull"),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(config.to_string().into_bytes()),
            )])),
            ..Secret::default()
        })
        .expect("secret");
    server
        .put_service_account(&ServiceAccount {
            metadata: meta("builder"),
            ..ServiceAccount::default()
        })
        .expect("service account");
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .pull_secret("pull")
        .service_account("builder")
        .create(&cluster, &ns)
        .await;
    // A canary: its Deployment is created, read, its pods listed, and it is deleted.
    deployment("canaried")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .annotate("tagwatch.dev/canary", "true")
        .annotate("tagwatch.dev/canary-bake", "1s")
        .create(&cluster, &ns)
        .await;
    // The other kinds, each updated once: listed, watched and patched.
    let image = format!("{}/app:1.0.0", registry.host());
    for (kind, body) in [
        (
            "StatefulSet",
            serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": image}]}}}}),
        ),
        (
            "DaemonSet",
            serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": image}]}}}}),
        ),
        (
            "CronJob",
            serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "annotations": {"tagwatch.dev/policy": "minor"}},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "job", "image": image}]}}}}}}),
        ),
    ] {
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            cluster.client.clone(),
            &ns,
            &tagwatch::discover::object::api_resource(
                tagwatch::model::kind::Kind::parse(kind).expect("kind"),
            ),
        );
        let object: kube::api::DynamicObject = serde_json::from_value(body).expect(kind);
        api.create(&Default::default(), &object).await.expect(kind);
    }
    // Release gates: first-seen times read, created and saved.
    deployment("gated")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .annotate("tagwatch.dev/platforms", "linux/amd64")
        .annotate("tagwatch.dev/min-age", "1s")
        .create(&cluster, &ns)
        .await;
    // A bad annotation: a Warning Event.
    deployment("bad")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("sideways")
        .create(&cluster, &ns)
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let log_path = dir.path().join("log");
    server.clear_requests();
    let running = run(&kubeconfig, &ns, &registry, &log_path);

    // Read straight from the server's store: these reads are not logged as requests.
    let want = format!("{}/app:1.1.0", registry.host());
    wait::until("web to run 1.1.0", Duration::from_secs(30), || {
        let current = server
            .get_deployment(&ns, "web")
            .map(|d| images(&d))
            .unwrap_or_default();
        let done = current.first() == Some(&want);
        async move { done.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    wait::until(
        "the canary promoted and removed",
        Duration::from_secs(30),
        || {
            let promoted = server
                .get_deployment(&ns, "canaried")
                .map(|d| images(&d))
                .unwrap_or_default()
                .first()
                == Some(&want);
            let gone = server.get_deployment(&ns, "canaried-canary").is_none();
            async move { (promoted && gone).then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    // The CronJob runs its new version: its Jobs are listed to judge the rollout.
    wait::until("nightly to run 1.1.0", Duration::from_secs(30), || {
        let current = server
            .get::<k8s_openapi::api::batch::v1::CronJob>(&ns, "nightly")
            .and_then(|c| c.spec?.job_template.spec?.template.spec)
            .and_then(|p| p.containers.first()?.image.clone());
        let done = current.as_ref() == Some(&want);
        async move { done.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    server
        .run_cronjob(
            &ns,
            "nightly",
            tagwatch_testbed::apiserver::JobOutcome::Succeeded,
        )
        .expect("run the CronJob");
    wait::until("the CronJob's Jobs listed", Duration::from_secs(30), || {
        let listed = server
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/jobs") && r.status == 200);
        async move { listed.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    wait::until("a Warning Event about bad", Duration::from_secs(30), || {
        let found = server.list::<Event>(Some(&ns)).into_iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad")
        });
        async move { found.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    wait::until(
        "gated to run 1.1.0 once of age",
        Duration::from_secs(30),
        || {
            let current = server
                .get_deployment(&ns, "gated")
                .map(|d| images(&d))
                .unwrap_or_default();
            let done = current.first() == Some(&want);
            async move { done.then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    // A few more 1 s rounds in steady state: what tagwatch does when nothing changes counts too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(running);

    let used = used_verbs(&server.requests());
    let granted = granted_by_the_manifests();
    let missing: BTreeSet<Grant> = used.difference(&granted).cloned().collect();
    assert!(
        missing.is_empty(),
        "tagwatch used verbs the manifests do not grant:{}",
        grants(&missing)
    );
    let excused: BTreeSet<Grant> = GRANTED_BUT_NOT_EXERCISED
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let stale: BTreeSet<Grant> = excused.difference(&granted).cloned().collect();
    assert!(
        stale.is_empty(),
        "GRANTED_BUT_NOT_EXERCISED lists verbs nothing grants:{}",
        grants(&stale)
    );
    let exercised: BTreeSet<Grant> = excused.intersection(&used).cloned().collect();
    assert!(
        exercised.is_empty(),
        "GRANTED_BUT_NOT_EXERCISED lists verbs the run used (remove them there):{}",
        grants(&exercised)
    );
    let unused: BTreeSet<Grant> = granted
        .difference(&used)
        .filter(|g| !excused.contains(*g))
        .cloned()
        .collect();
    assert!(
        unused.is_empty(),
        "granted, but a full run never used them (drop them, or explain them in \
         GRANTED_BUT_NOT_EXERCISED):{}",
        grants(&unused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_optional_rollouts_rights_cover_exactly_what_a_run_on_a_rollout_uses() {
    let cluster = TestCluster::start().await.expect("cluster");
    let server = test_server_or_skip!(cluster => (),
        "only the in-process API server records the requests");
    server.install_argo_rollouts().expect("Argo Rollouts' CRD");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    let rollouts: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        cluster.client.clone(),
        &ns,
        &tagwatch::discover::object::api_resource(tagwatch::model::kind::Kind::Rollout),
    );
    let rollout: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "ro", "annotations": {"tagwatch.dev/policy": "minor"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "ro"}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
            "template": {"metadata": {"labels": {"app": "ro"}},
                "spec": {"containers": [{"name": "web",
                    "image": format!("{}/app:1.0.0", registry.host())}]}}}
    }))
    .expect("Rollout");
    rollouts
        .create(&Default::default(), &rollout)
        .await
        .expect("create Rollout");

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let log_path = dir.path().join("log");
    server.clear_requests();
    let running = run(&kubeconfig, &ns, &registry, &log_path);
    // Waits on the request log, not on reads of its own that would count as used verbs.
    wait::until("the Rollout patched", Duration::from_secs(30), || {
        let done = server
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/rollouts/ro") && r.status == 200);
        async move { done.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", read(&log_path)));
    // A few more 1 s rounds: the rollout watch and steady state count too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(running);

    let used: BTreeSet<Grant> = used_verbs(&server.requests())
        .into_iter()
        .filter(|(group, _, _)| group == "argoproj.io")
        .collect();
    let role: ClusterRole = object("rollouts/clusterrole.yaml", "ClusterRole");
    let granted = granted(role.rules.as_deref().unwrap_or_default());
    let missing: BTreeSet<Grant> = used.difference(&granted).cloned().collect();
    assert!(
        missing.is_empty(),
        "tagwatch used verbs rollouts/ does not grant:{}",
        grants(&missing)
    );
    // A Rollout is read again only after a conflict; this run meets none.
    let unused: BTreeSet<Grant> = granted.difference(&used).cloned().collect();
    assert_eq!(
        unused,
        BTreeSet::from([(
            "argoproj.io".to_string(),
            "rollouts".to_string(),
            "get".to_string()
        )]),
        "granted, but not used:{}",
        grants(&unused)
    );
    let stored = rollouts.get("ro").await.expect("get Rollout");
    assert_eq!(
        stored.data["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{}/app:1.1.0", registry.host())
    );
}

/// The Dockerfile's dependency layer builds against empty stand-ins; cargo refuses a manifest
/// whose declared bench has no file, so every `[[bench]]` needs one there.
#[test]
fn the_dockerfile_stands_in_for_every_declared_bench() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = read(&root.join("Cargo.toml"));
    let dockerfile = read(&root.join("Dockerfile"));
    let mut lines = manifest.lines();
    let mut benches = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == "[[bench]]" {
            let name = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_string())
                .expect("a [[bench]] starts with its name");
            benches.push(name);
        }
    }
    assert!(!benches.is_empty());
    for bench in benches {
        assert!(
            dockerfile.contains(&format!("benches/{bench}.rs")),
            "the Dockerfile's stand-in step lacks benches/{bench}.rs"
        );
    }
}
