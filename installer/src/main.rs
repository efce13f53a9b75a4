//! The `coder-install` binary: parse the command line, run it, report errors.

use clap::Parser;
use coder_install::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(coder_install::commands::exit_code(&error))
        }
    }
}
