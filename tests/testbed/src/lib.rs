//! Test bed for tagwatch's tests and benchmarks.
//!
//! - [`cosign`]: cosign signatures (keys, a test CA and Rekor, real wire formats) to push into either registry.
//! - [`registry`]: the real CNCF distribution server (`docker-registry`) on a free loopback port,
//!   anonymous, basic or token auth, with real images pushed into it.
//! - [`stub_registry`]: a scripted registry for what the real one cannot do (paging, 429, 5xx, garbage).
//! - [`apiserver`]: an in-process Kubernetes API server speaking the real REST protocol.
//! - [`cluster`]: hands a test a `kube::Client` for the in-process server, or for a real cluster when
//!   `TAGWATCH_E2E_KUBECONFIG` is set.
//! - [`seed`]: the kubectl-shaped Deployments the benchmarks seed the API server with.
//! - [`wait`]: polling with a deadline (tests never sleep for fixed times).
//! - [`skip`]: tests that cannot run where they are run say so, by name.

pub mod apiserver;
pub mod cluster;
pub mod cosign;
pub mod registry;
pub mod seed;
pub mod skip;
pub mod stub_registry;
pub mod wait;
