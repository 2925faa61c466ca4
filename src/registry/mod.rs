//! Container registries: the only code that talks to them.

pub mod challenge;
pub mod client;
pub mod credentials;
pub mod error;
pub mod fanout;
pub mod tokens;

pub use client::{ClientOptions, Manifest, RegistryClient};
pub use credentials::{Credentials, DockerConfig, Secret};
pub use error::RegistryError;
