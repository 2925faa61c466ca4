//! End-to-end tests: one test binary, one module per topic (links once: faster CI).
//! Each runs against the test bed, or against a real cluster when `TAGWATCH_E2E_KUBECONFIG` is set.

mod apiserver_fidelity;
mod registry_harness;
