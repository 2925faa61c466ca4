//! tagwatch: watches container registries for new semver tags and updates the Kubernetes
//! Deployments that opted in by annotation.
//!
//! Data flows one way: discover → resolve → decide → apply → record. `model` and `plan` are
//! pure (no I/O); everything else is a thin edge around them.

pub mod act;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod discover;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plan;
pub mod registry;
pub mod server;
