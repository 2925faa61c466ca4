//! Pure domain types: tags and versions, update policies, image references.

pub mod image;
pub mod kind;

pub mod alias;
pub mod annotations;
pub mod canary;
pub mod channels;
pub mod filter;
pub mod gates;
pub mod history;
pub mod policy;
pub mod query;
pub mod reference;
pub mod rollout_state;
pub mod tag;
pub mod verify;
pub mod window;
pub mod workload;
