//! The `coder-install` binary: parse the command line, run it, report errors.

use clap::Parser;
use coder_install::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(cli::run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once, outer to inner (see error_chain).
            eprintln!("error: {}", coder_progress::error_chain(error.as_ref()));
            std::process::ExitCode::from(coder_install::commands::exit_code(&error))
        }
    }
}
