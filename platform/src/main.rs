//! The `coder-service` binary: parse the command line, run the component, report errors.

use clap::Parser;
use coder_service::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Structured JSON logs, one object a line; `RUST_LOG` filters (default: info).
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once, outer to inner.
            let message = coder_progress::error_chain(&error);
            tracing::error!(error = message, "exiting");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
