//! One module per subcommand.

pub mod plan;
pub mod resolve;
pub mod run;
