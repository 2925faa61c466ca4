//! tagwatch: watches container registries for new semver tags and updates the Kubernetes
//! Deployments that opted in by annotation.
//!
//! Data flows one way: discover → resolve → decide → apply → record. `model` and `plan` are
//! pure (no I/O); everything else is a thin edge around them.

pub mod model;
pub mod plan;
