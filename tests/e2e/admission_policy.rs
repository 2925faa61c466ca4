//! The ValidatingAdmissionPolicy in `deploy/admission/`: tagwatch's ServiceAccount may create and
//! delete only its canary Deployments, and may not turn a Deployment into a canary or a canary
//! into something else.
//!
//! The test bed has no admission, so the policy's CEL runs here with the `cel` crate against
//! fixtures built by tagwatch's own canary builder, with `object`, `oldObject`, `request` and
//! `variables` bound as the API server binds them. Every expression must parse and evaluate to
//! its type on every fixture: an error fails the test (it never counts as a refusal). On a real
//! cluster (`TAGWATCH_E2E_KUBECONFIG`) the API server itself checks the objects and compiles the
//! CEL in a server-side dry run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cel::{Context, Program, Value as Cel};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use tagwatch::plan::canary::canary_deployment;
use tagwatch_testbed::cluster::{TestCluster, KUBECONFIG_ENV};

use crate::deploy_manifests::{deploy_dir, documents, object};

const POLICY: &str = "admission/validatingadmissionpolicy.yaml";
const BINDING: &str = "admission/validatingadmissionpolicybinding.yaml";

/// What an expression may name: the variables the API server binds for this policy (no `params`:
/// it has no paramKind; no `namespaceObject` or `authorizer`: not used).
const KNOWN_VARIABLES: &[&str] = &["request", "object", "oldObject", "variables"];

/// The functions and operators the expressions may use: CEL's standard ones that both Kubernetes
/// and the `cel` crate have. Anything else must be checked against both first. The macros are
/// expanded when parsed: `has()` into a presence test, `exists()` into a comprehension that
/// calls `@not_strictly_false` (as cel-go expands it), so they do not appear here.
const KNOWN_FUNCTIONS: &[&str] = &[
    "_==_",
    "_!=_",
    "_&&_",
    "_||_",
    "!_",
    "_?_:_",
    "_+_",
    "_[_]",
    "@in",
    "@not_strictly_false",
    "endsWith",
];

/// One expression of the policy, compiled by the `cel` crate.
struct Expr {
    /// Where it is, as a path into the policy's spec: `validations[2].messageExpression`.
    at: String,
    source: String,
    program: Program,
}

impl Expr {
    fn compile(at: String, source: &str) -> Expr {
        let program = Program::compile(source)
            .unwrap_or_else(|e| panic!("{at}: the cel crate cannot parse {source:?}:\n{e}"));
        Expr {
            at,
            source: source.to_string(),
            program,
        }
    }

    fn eval(&self, context: &Context) -> Cel {
        self.program
            .execute(context)
            .unwrap_or_else(|e| panic!("{}: {:?} fails: {e}", self.at, self.source))
    }

    fn eval_bool(&self, context: &Context) -> bool {
        match self.eval(context) {
            Cel::Bool(b) => b,
            other => panic!("{}: {:?} is {other:?}, not a bool", self.at, self.source),
        }
    }
}

struct Validation {
    expression: Expr,
    message: String,
    message_expression: Option<Expr>,
}

/// The policy's CEL, in the order the API server evaluates it.
struct Policy {
    match_conditions: Vec<Expr>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
}

fn policy_object() -> ValidatingAdmissionPolicy {
    object(POLICY, "ValidatingAdmissionPolicy")
}

fn policy() -> Policy {
    let spec = policy_object().spec.expect("spec");
    assert_eq!(
        spec.audit_annotations, None,
        "audit annotations are not tested"
    );
    let match_conditions = spec
        .match_conditions
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| Expr::compile(format!("matchConditions[{i}]"), &c.expression))
        .collect();
    let variables = spec
        .variables
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| {
            let expr = Expr::compile(format!("variables[{i}] ({})", v.name), &v.expression);
            (v.name.clone(), expr)
        })
        .collect();
    let validations = spec
        .validations
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| Validation {
            expression: Expr::compile(format!("validations[{i}].expression"), &v.expression),
            message: v
                .message
                .clone()
                .unwrap_or_else(|| panic!("validations[{i}] has no message")),
            message_expression: v
                .message_expression
                .as_ref()
                .map(|m| Expr::compile(format!("validations[{i}].messageExpression"), m)),
        })
        .collect();
    Policy {
        match_conditions,
        variables,
        validations,
    }
}

impl Policy {
    fn expressions(&self) -> impl Iterator<Item = &Expr> {
        self.match_conditions
            .iter()
            .chain(self.variables.iter().map(|(_, e)| e))
            .chain(
                self.validations.iter().flat_map(|v| {
                    std::iter::once(&v.expression).chain(v.message_expression.as_ref())
                }),
            )
    }
}

/// Every string under a key ending in `expression`/`Expression`, anywhere in `value`.
fn expression_strings(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key.to_lowercase().ends_with("expression") {
                    if let Some(s) = v.as_str() {
                        found.insert(s.to_string());
                    }
                }
                expression_strings(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expression_strings(v, found)),
        _ => {}
    }
}

#[test]
fn every_expression_of_the_policy_parses_and_uses_only_what_kubernetes_has() {
    let policy = policy();
    assert_eq!(policy.match_conditions.len(), 1);
    assert!(policy.validations.len() >= 3);
    // Nothing in the file escapes the typed extraction above (a new kind of expression field
    // would go untested).
    let docs = documents(&deploy_dir().join(POLICY));
    assert_eq!(docs.len(), 1, "one object in {POLICY}");
    let mut in_file = BTreeSet::new();
    expression_strings(&docs[0], &mut in_file);
    let compiled: BTreeSet<String> = policy.expressions().map(|e| e.source.clone()).collect();
    assert_eq!(in_file, compiled);

    let declared: Vec<&str> = policy.variables.iter().map(|(n, _)| n.as_str()).collect();
    for expr in policy.expressions() {
        let references = expr.program.references();
        for variable in references.variables() {
            // Comprehension variables (`r` in `exists(r, ...)`) are bound by the macro.
            let bound = expr.source.contains(&format!("({variable},"));
            assert!(
                KNOWN_VARIABLES.contains(&variable) || bound,
                "{}: names {variable:?}, which the API server does not bind here",
                expr.at
            );
        }
        for function in references.functions() {
            assert!(
                KNOWN_FUNCTIONS.contains(&function),
                "{}: uses {function:?}: check that Kubernetes and the cel crate both have it, \
                 then list it in KNOWN_FUNCTIONS",
                expr.at
            );
        }
        // `variables.x` names a variable declared before the expression that uses it.
        for (i, _) in expr.source.match_indices("variables.") {
            let name: String = expr.source[i + "variables.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                declared.contains(&name.as_str()),
                "{}: variables.{name} is not declared",
                expr.at
            );
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// A match condition is false: the policy does not apply.
    NotApplicable,
    Allowed,
    /// The messages of the failed validations (their messageExpression when they have one).
    Denied(Vec<String>),
}

/// What the API server decides for `request` with `object` and `old_object` (JSON `null` where
/// the operation has none), with every variable evaluated (the API server evaluates them
/// lazily; here each must evaluate on every fixture, which is stricter).
fn admit(policy: &Policy, request: &Value, object: &Value, old_object: &Value) -> Outcome {
    let mut context = Context::default();
    for (name, value) in [
        ("request", request),
        ("object", object),
        ("oldObject", old_object),
    ] {
        context.add_variable_from_value(name, cel::to_value(value).expect("a CEL value"));
    }
    for condition in &policy.match_conditions {
        if !condition.eval_bool(&context) {
            return Outcome::NotApplicable;
        }
    }
    let mut variables: HashMap<String, Cel> = HashMap::new();
    for (name, expr) in &policy.variables {
        context.add_variable_from_value("variables", variables.clone());
        let value = expr.eval(&context);
        variables.insert(name.clone(), value);
    }
    context.add_variable_from_value("variables", variables);
    let mut denied = Vec::new();
    for validation in &policy.validations {
        if validation.expression.eval_bool(&context) {
            continue;
        }
        let message = match &validation.message_expression {
            Some(expr) => match expr.eval(&context) {
                Cel::String(s) => s.to_string(),
                other => panic!("{}: {other:?} is not a string", expr.at),
            },
            None => validation.message.clone(),
        };
        denied.push(message);
    }
    if denied.is_empty() {
        Outcome::Allowed
    } else {
        Outcome::Denied(denied)
    }
}

/// tagwatch's user name, from its ServiceAccount in `deploy/base/`.
fn tagwatch_user() -> String {
    let account: ServiceAccount = object("base/serviceaccount.yaml", "ServiceAccount");
    format!(
        "system:serviceaccount:{}:{}",
        account.metadata.namespace.expect("namespace"),
        account.metadata.name.expect("name")
    )
}

/// An opted-in Deployment, as tagwatch finds it in the cluster.
fn primary() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "0b5c4e0e-5d51-4c1a-9d39-2f7b1c9e8a10",
            "resourceVersion": "41",
            "labels": {"app": "web"},
            "annotations": {"tagwatch.dev/policy": "minor", "tagwatch.dev/canary": "true"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/app:1.0.0"}]},
            },
        },
    })
}

/// The canary tagwatch creates for [`primary`], built by tagwatch's own code.
fn canary() -> Value {
    let primary: Deployment = serde_json::from_value(primary()).expect("a Deployment");
    let images = BTreeMap::from([("web".to_string(), "registry.example/app:1.1.0".to_string())]);
    let canary = canary_deployment(&primary, &images, 1).expect("the canary");
    serde_json::to_value(canary).expect("JSON")
}

/// `base` changed by `edit`.
fn with(mut base: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut base);
    base
}

fn metadata(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    object["metadata"].as_object_mut().expect("metadata")
}

/// The admission request the API server builds (the fields a policy may read).
fn request(operation: &str, user: &str, name: &str) -> Value {
    json!({
        "uid": "7f1c2d3e-0000-4000-8000-000000000001",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": name,
        "namespace": "shop",
        "operation": operation,
        "userInfo": {
            "username": user,
            "uid": "5a6b7c8d-0000-4000-8000-000000000002",
            "groups": ["system:serviceaccounts", "system:authenticated"],
        },
        "dryRun": false,
    })
}

// Fragments of the messages of each validation, in the policy's order.
const NAME: &str = "a canary is named <primary>-canary";
const LABEL: &str = "a canary is labelled tagwatch.dev/track: canary";
const OWNER: &str = "a canary has an ownerReference to its primary";
const KEEP_LABEL: &str = "may not remove the label";
const KEEP_OWNER: &str = "may not remove the ownerReference";
const NO_NEW_LABEL: &str = "may not label existing Deployment";

/// A request and what the policy must decide; `Denied` lists a fragment of each failed
/// validation's message.
struct Case {
    what: &'static str,
    operation: &'static str,
    user: String,
    object: Value,
    old_object: Value,
    want: Want,
}

#[derive(Debug)]
enum Want {
    NotApplicable,
    Allowed,
    Denied(&'static [&'static str]),
}

fn create(what: &'static str, object: Value, want: Want) -> Case {
    Case {
        what,
        operation: "CREATE",
        user: tagwatch_user(),
        object,
        old_object: Value::Null,
        want,
    }
}

fn delete(what: &'static str, old_object: Value, want: Want) -> Case {
    Case {
        what,
        operation: "DELETE",
        user: tagwatch_user(),
        object: Value::Null,
        old_object,
        want,
    }
}

fn update(what: &'static str, old_object: Value, object: Value, want: Want) -> Case {
    Case {
        what,
        operation: "UPDATE",
        user: tagwatch_user(),
        object,
        old_object,
        want,
    }
}

fn by(user: &str, case: Case) -> Case {
    Case {
        user: user.to_string(),
        ..case
    }
}

fn check(policy: &Policy, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let subject = if case.operation == "DELETE" {
            &case.old_object
        } else {
            &case.object
        };
        let name = subject["metadata"]["name"].as_str().expect("a name");
        let request = request(case.operation, &case.user, name);
        let got = admit(policy, &request, &case.object, &case.old_object);
        let ok = match (&case.want, &got) {
            (Want::NotApplicable, Outcome::NotApplicable) | (Want::Allowed, Outcome::Allowed) => {
                true
            }
            (Want::Denied(fragments), Outcome::Denied(messages)) => {
                fragments.len() == messages.len()
                    && fragments.iter().zip(messages).all(|(f, m)| {
                        // Each message names the Deployment it refuses.
                        m.contains(f) && m.contains(name)
                    })
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} {} ({}): want {:?}, got {got:?}",
                case.operation, case.what, case.user, case.want
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The labels.
fn track(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    object["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
}

/// The first owner reference.
fn owner(object: &mut Value) -> &mut Value {
    &mut object["metadata"]["ownerReferences"][0]
}

#[test]
fn tagwatch_may_create_only_its_canaries() {
    // The fixture is what tagwatch builds: named, labelled, owned (else the cases prove little).
    let canary = canary();
    assert_eq!(canary["metadata"]["name"], "web-canary");
    assert_eq!(canary["metadata"]["labels"]["tagwatch.dev/track"], "canary");
    assert_eq!(
        canary["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": "0b5c4e0e-5d51-4c1a-9d39-2f7b1c9e8a10",
            "blockOwnerDeletion": true, "controller": false}])
    );
    check(
        &policy(),
        vec![
            create(
                "a canary as tagwatch builds it",
                canary.clone(),
                Want::Allowed,
            ),
            create(
                "a canary without the track label",
                with(canary.clone(), |c| {
                    track(c).remove("tagwatch.dev/track");
                }),
                Want::Denied(&[LABEL]),
            ),
            create(
                "a canary without any label",
                with(canary.clone(), |c| {
                    metadata(c).remove("labels");
                }),
                Want::Denied(&[LABEL]),
            ),
            create(
                "a canary labelled tagwatch.dev/track: primary",
                with(canary.clone(), |c| {
                    track(c).insert("tagwatch.dev/track".into(), "primary".into());
                }),
                Want::Denied(&[LABEL]),
            ),
            create(
                "a canary without owner references",
                with(canary.clone(), |c| {
                    metadata(c).remove("ownerReferences");
                }),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary with an empty list of owner references",
                with(canary.clone(), |c| {
                    metadata(c).insert("ownerReferences".into(), json!([]));
                }),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary owned by a ReplicaSet",
                with(canary.clone(), |c| owner(c)["kind"] = "ReplicaSet".into()),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary owned by a ConfigMap (core v1)",
                with(canary.clone(), |c| {
                    owner(c)["apiVersion"] = "v1".into();
                    owner(c)["kind"] = "ConfigMap".into();
                }),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary owned by an extensions/v1beta1 Deployment",
                with(canary.clone(), |c| {
                    owner(c)["apiVersion"] = "extensions/v1beta1".into();
                }),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary owned by another Deployment than its primary",
                with(canary.clone(), |c| owner(c)["name"] = "api".into()),
                Want::Denied(&[OWNER]),
            ),
            create(
                "a canary owned by a ReplicaSet and by its primary",
                with(canary.clone(), |c| {
                    let mut other = owner(c).clone();
                    other["kind"] = "ReplicaSet".into();
                    metadata(c)["ownerReferences"]
                        .as_array_mut()
                        .expect("owners")
                        .insert(0, other);
                }),
                Want::Allowed,
            ),
            create(
                "a labelled, owned Deployment not named <primary>-canary",
                with(canary.clone(), |c| {
                    metadata(c).insert("name".into(), "web-preview".into());
                }),
                // The owner check ties the name to the owner, so it fails too.
                Want::Denied(&[NAME, OWNER]),
            ),
            create(
                "a canary of a canary's name with a suffix",
                with(canary.clone(), |c| {
                    metadata(c).insert("name".into(), "web-canary-2".into());
                }),
                Want::Denied(&[NAME, OWNER]),
            ),
            create(
                "an ordinary Deployment",
                primary(),
                Want::Denied(&[NAME, LABEL, OWNER]),
            ),
        ],
    );
}

#[test]
fn tagwatch_may_delete_only_its_canaries() {
    let someone_elses = with(primary(), |d| {
        metadata(d).insert("name".into(), "web-canary".into());
    });
    check(
        &policy(),
        vec![
            delete("a canary as tagwatch builds it", canary(), Want::Allowed),
            delete(
                "an ordinary Deployment",
                primary(),
                Want::Denied(&[NAME, LABEL, OWNER]),
            ),
            // tagwatch deletes `<primary>-canary` by name: one of someone else's is refused.
            delete(
                "someone else's Deployment named web-canary",
                someone_elses,
                Want::Denied(&[LABEL, OWNER]),
            ),
            delete(
                "a canary that lost its owner reference",
                with(canary(), |c| {
                    metadata(c).remove("ownerReferences");
                }),
                Want::Denied(&[OWNER]),
            ),
        ],
    );
}

#[test]
fn tagwatch_may_update_deployments_but_not_unmake_or_make_canaries() {
    let patched = with(primary(), |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] =
            "registry.example/app:1.1.0".into();
        d["metadata"]["annotations"]["tagwatch.dev/history"] = "[]".into();
    });
    let labelled_primary = with(primary(), |d| {
        d["metadata"]["labels"]["tagwatch.dev/track"] = "canary".into();
    });
    check(
        &policy(),
        vec![
            update(
                "tagwatch's image patch of a Deployment it watches",
                primary(),
                patched,
                Want::Allowed,
            ),
            update(
                "a canary that keeps its label and owner",
                canary(),
                with(canary(), |c| c["spec"]["replicas"] = 2.into()),
                Want::Allowed,
            ),
            update(
                "a canary that loses its track label",
                canary(),
                with(canary(), |c| {
                    c["metadata"]["labels"]
                        .as_object_mut()
                        .expect("labels")
                        .remove("tagwatch.dev/track");
                }),
                Want::Denied(&[KEEP_LABEL]),
            ),
            update(
                "a canary relabelled tagwatch.dev/track: primary",
                canary(),
                with(canary(), |c| {
                    c["metadata"]["labels"]["tagwatch.dev/track"] = "primary".into();
                }),
                Want::Denied(&[KEEP_LABEL]),
            ),
            update(
                "a canary that loses its owner reference",
                canary(),
                with(canary(), |c| {
                    metadata(c).remove("ownerReferences");
                }),
                Want::Denied(&[KEEP_OWNER]),
            ),
            update(
                "a canary whose owner becomes a ReplicaSet",
                canary(),
                with(canary(), |c| {
                    c["metadata"]["ownerReferences"][0]["kind"] = "ReplicaSet".into();
                }),
                Want::Denied(&[KEEP_OWNER]),
            ),
            update(
                "a Deployment that gets the canary label",
                primary(),
                labelled_primary.clone(),
                Want::Denied(&[NO_NEW_LABEL]),
            ),
            // Only what a canary had is kept: a labelled Deployment that was never owned (not
            // tagwatch's) still gets tagwatch's image patches.
            update(
                "a labelled, unowned Deployment that stays so",
                labelled_primary.clone(),
                with(labelled_primary, |d| {
                    d["spec"]["template"]["spec"]["containers"][0]["image"] =
                        "registry.example/app:1.1.0".into();
                }),
                Want::Allowed,
            ),
        ],
    );
}

#[test]
fn requests_by_anyone_else_are_not_matched() {
    let unlabelled = with(canary(), |c| {
        metadata(c).remove("labels");
    });
    check(
        &policy(),
        vec![
            // The garbage collector deletes a canary with its primary, and the primary itself.
            by(
                "system:serviceaccount:kube-system:generic-garbage-collector",
                delete("an ordinary Deployment", primary(), Want::NotApplicable),
            ),
            by(
                "kubernetes-admin",
                create("an ordinary Deployment", primary(), Want::NotApplicable),
            ),
            by(
                "kubernetes-admin",
                update(
                    "a canary that loses its labels",
                    canary(),
                    unlabelled,
                    Want::NotApplicable,
                ),
            ),
            by(
                "system:serviceaccount:other:tagwatch",
                delete("an ordinary Deployment", primary(), Want::NotApplicable),
            ),
            by(
                "system:serviceaccount:tagwatch:tagwatch-other",
                delete("an ordinary Deployment", primary(), Want::NotApplicable),
            ),
            by(
                "system:serviceaccount:tagwatch",
                delete("an ordinary Deployment", primary(), Want::NotApplicable),
            ),
        ],
    );
}

#[test]
fn the_binding_denies_what_the_policy_fails_for_tagwatch_in_every_variant() {
    let policy = policy_object();
    let spec = policy.spec.as_ref().expect("spec");
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(spec.param_kind, None);
    let rules = spec
        .match_constraints
        .as_ref()
        .and_then(|m| m.resource_rules.clone())
        .expect("resourceRules");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    let strings = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    assert_eq!(strings(&rule.api_groups), ["apps"]);
    assert_eq!(strings(&rule.api_versions), ["v1"]);
    assert_eq!(strings(&rule.resources), ["deployments"]);
    assert_eq!(strings(&rule.operations), ["CREATE", "UPDATE", "DELETE"]);
    // The match condition names tagwatch's ServiceAccount: both variants install the one in
    // deploy/base/ (the namespaced variant moves nothing to another namespace; its kustomization
    // has no `namespace:`, which `kustomization()` would refuse as an unknown field).
    let condition = &spec.match_conditions.as_ref().expect("matchConditions")[0].expression;
    assert_eq!(
        condition.trim(),
        format!("request.userInfo.username == '{}'", tagwatch_user())
    );
    let binding: ValidatingAdmissionPolicyBinding =
        object(BINDING, "ValidatingAdmissionPolicyBinding");
    let binding_spec = binding.spec.as_ref().expect("spec");
    assert_eq!(binding_spec.policy_name, policy.metadata.name);
    assert_eq!(
        binding_spec.validation_actions,
        Some(vec!["Deny".to_string()])
    );
    // No narrower match: the policy's constraints and condition decide.
    assert_eq!(binding_spec.match_resources, None);
    assert_eq!(binding_spec.param_ref, None);
    // Every validation has a static message too (the API server falls back to it when the
    // messageExpression fails).
    for (i, v) in spec.validations.iter().flatten().enumerate() {
        assert!(
            v.message.as_deref().is_some_and(|m| !m.is_empty()),
            "validations[{i}] has a message"
        );
        assert!(v.message_expression.is_some(), "validations[{i}]");
    }
}

/// The API server compiles the CEL and validates both objects when they are created; a dry run
/// stores nothing. Named apart from an installed copy (a dry-run create of an existing name
/// answers 409).
#[tokio::test]
async fn the_api_server_accepts_the_policy_and_binding_in_a_dry_run() -> anyhow::Result<()> {
    if std::env::var_os(KUBECONFIG_ENV).is_none() {
        tagwatch_testbed::skip!(
            "the test bed does not serve admissionregistration.k8s.io; set {KUBECONFIG_ENV} to \
             have a real API server (>= 1.30) compile the policy's CEL in a dry run"
        );
        return Ok(());
    }
    let cluster = TestCluster::start().await?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let name = format!("tagwatch-dry-run-{}", cluster.namespace);

    let mut policy = policy_object();
    policy.metadata.name = Some(name.clone());
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(cluster.client.clone());
    let created = policies
        .create(&params, &policy)
        .await
        .map_err(|e| anyhow::anyhow!("the API server refuses {POLICY}: {e}"))?;
    let (sent, back) = (
        policy.spec.as_ref().expect("spec"),
        created.spec.as_ref().expect("spec"),
    );
    assert_eq!(back.match_conditions, sent.match_conditions);
    assert_eq!(back.variables, sent.variables);
    assert_eq!(back.validations, sent.validations);
    assert_eq!(back.failure_policy, sent.failure_policy);

    let mut binding: ValidatingAdmissionPolicyBinding =
        object(BINDING, "ValidatingAdmissionPolicyBinding");
    binding.metadata.name = Some(name.clone());
    binding.spec.as_mut().expect("spec").policy_name = Some(name.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(cluster.client.clone());
    let created = bindings
        .create(&params, &binding)
        .await
        .map_err(|e| anyhow::anyhow!("the API server refuses {BINDING}: {e}"))?;
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.validation_actions.clone()),
        Some(vec!["Deny".to_string()])
    );

    // A dry run leaves nothing behind.
    assert!(policies.get_opt(&name).await?.is_none());
    assert!(bindings.get_opt(&name).await?.is_none());
    Ok(())
}
