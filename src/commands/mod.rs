//! One module per subcommand.

pub mod alias;
pub mod history;
pub mod plan;
pub mod resolve;
pub mod rollback;
pub mod run;
