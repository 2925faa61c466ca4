//! Container registries: the only code that talks to them.

pub mod alias_tags;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod egress;
pub mod error;
pub mod facts;
pub mod fanout;
pub mod pull_secrets;
pub mod signatures;
pub mod tag_page;
pub mod tokens;

pub use client::{ClientOptions, ListLimits, Manifest, RegistryClient};
pub use credentials::{Credentials, DockerConfig, Login, Secret};
pub use egress::AllowList;
pub use error::RegistryError;
