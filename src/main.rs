use std::process::ExitCode;

use clap::Parser;
use tagwatch::cli::{Cli, Command};
use tagwatch::{app, commands};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    app::init_tracing(cli.log_format, &cli.log_level);
    app::install_crypto_provider();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args).await.map(|()| 0),
        Command::Plan(args) => commands::plan::plan(args).await.map(|()| 0),
        Command::Resolve(args) => commands::resolve::resolve(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tagwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
