//! The `coder-service` binary: parse the command line, run the component, report errors.

use clap::Parser;
use coder_platform::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    match cli::run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
