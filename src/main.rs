//! The `layerbench` binary: parse the command line, run the command, print what happened, map failures to exit codes.

use std::process::ExitCode;

use clap::Parser;

use layerbench::cli::{error_text, BadInput, Cli, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED};
use layerbench::run::RunError;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match layerbench::commands::dispatch(cli.command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
        Err(e) if matches!(e.downcast_ref::<RunError>(), Some(RunError::Interrupted(_))) => {
            eprintln!("layerbench: {e:#}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("layerbench: error: {}", error_text(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("layerbench: error: {}", error_text(&e));
            ExitCode::from(EXIT_ENVIRONMENT)
        }
    }
}

