//! One module per subcommand.

pub mod alias;
pub mod approve;
pub mod history;
pub mod pending;
pub mod plan;
pub mod resolve;
pub mod rollback;
pub mod run;
