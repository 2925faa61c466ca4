//! Pure planning: given workloads and tag lists, which updates?

pub mod actions;
pub mod alias_tags;
pub mod approvals;
pub mod canary;
pub mod digest;
pub mod explain;
pub mod gates;
pub mod holds;
pub mod ordering;
pub mod partition;
pub mod patch;
pub mod resolve;
pub mod rollback;
pub mod rollout;
pub mod schedule;
pub mod signatures;
pub mod skip;
pub mod update;
