use std::process::ExitCode;

use clap::Parser;
use tagwatch::cli::{Cli, Command};
use tagwatch::config::{self, FileConfig};
use tagwatch::{app, commands};

fn main() -> ExitCode {
    app::tune_malloc();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(tagwatch_main()),
        Err(e) => {
            eprintln!("tagwatch: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn tagwatch_main() -> ExitCode {
    let cli = Cli::parse();
    // The file is read before anything starts: a bad one refuses start-up, never half-applies.
    let file = match cli.config.as_deref().map(FileConfig::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("tagwatch: {e}");
            return ExitCode::from(2);
        }
    };
    let level = config::log_level(cli.log_level.as_deref(), &file);
    if let Err(e) = app::init_tracing(config::log_format(cli.log_format, &file), &level) {
        eprintln!("tagwatch: {e}");
        return ExitCode::from(2);
    }
    app::install_crypto_provider();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(*args, file).await.map(|()| 0),
        Command::Plan(args) => commands::plan::plan(args, file).await.map(|()| 0),
        Command::Resolve(args) => commands::resolve::resolve(args).await,
        Command::Alias(args) => commands::alias::alias(args, file).await,
        Command::History(args) => commands::history::history(args).await.map(|()| 0),
        Command::Rollback(args) => commands::rollback::rollback(args).await.map(|()| 0),
        Command::Freeze(args) => commands::pending::freeze(args).await.map(|()| 0),
        Command::Unfreeze(args) => commands::pending::unfreeze(args).await,
        Command::Pending(args) => commands::pending::pending(args, file).await.map(|()| 0),
        Command::Approve(args) => commands::approve::approve(args).await.map(|()| 0),
        Command::Deny(args) => commands::approve::deny(args).await.map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tagwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
