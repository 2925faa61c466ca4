//! Pure domain types: tags and versions, update policies, image references.

pub mod image;

pub mod alias;
pub mod channels;
pub mod filter;
pub mod policy;
pub mod tag;
pub mod workload;
