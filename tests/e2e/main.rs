//! End-to-end tests: one test binary, one module per topic (links once: faster CI).
//! Each runs against the test bed, or against a real cluster when `TAGWATCH_E2E_KUBECONFIG` is set.
// Tests may panic on what they set up themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission_policy;
mod aliases;
mod apiserver_fidelity;
mod approvals;
mod canary;
mod canary_query;
mod commands;
mod deploy_manifests;
mod gates;
mod history_commands;
mod holds;
mod kinds;
mod leader;
mod notifications;
mod observability;
mod registry_client;
mod registry_harness;
mod registry_hostile;
mod signatures;
mod slack_interactions;
mod stalls;
mod statefulset_canary;
mod support;
mod tenancy;
mod watcher;
mod webhooks;
