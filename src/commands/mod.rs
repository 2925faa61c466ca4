//! One module per subcommand.

pub mod alias;
pub mod plan;
pub mod resolve;
pub mod run;
