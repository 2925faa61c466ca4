//! tagwatch: watches container registries for new semver tags and updates the Kubernetes
//! Deployments that opted in by annotation.
//!
//! Data flows one way: discover → resolve → decide → apply → record. `model` and `plan` are
//! pure (no I/O); everything else is a thin edge around them.

pub mod aliases;
pub mod app;
pub mod apply;
pub mod canary_query;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cycle;
pub mod discover;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod pull_secrets;
pub mod registry;
pub mod rollouts;
pub mod schedule;
pub mod tasks;
pub mod watch;
pub mod webhooks;
