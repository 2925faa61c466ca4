//! Pure planning: given workloads and tag lists, which updates?
