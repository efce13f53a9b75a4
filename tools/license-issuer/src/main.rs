//! `license-issuer`: the vendor-side tool that makes license signing keys and issues signed
//! Coder licenses. It is not part of the installer: only the vendor, who holds the private
//! signing key, runs it.

mod dates;
mod issue;
mod key_files;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use coder_license::Tier;

/// Generate license signing keys and issue signed Coder licenses (vendor side).
#[derive(Debug, Parser)]
#[command(name = "license-issuer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub, as hex.
    Keygen {
        /// Directory to write the private key into (created if missing). It must not be inside
        /// a git work tree: the private key never belongs in a repository.
        #[arg(long)]
        out: PathBuf,
        /// Directory to write the public key into [default: --out]; e.g. `crates/license/keys` of a
        /// coder-install checkout, which compiles every KID.pub there in.
        #[arg(long)]
        public_out: Option<PathBuf>,
        /// File name stem; use the key id (kid) the key will sign under.
        #[arg(long, default_value = "license-signing")]
        name: String,
    },
    /// Issue a signed license.
    Issue(IssueArgs),
}

/// The arguments of `issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// Private key file written by `keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// Key id written in the license header: coder-install verifies with the trusted key of that id.
    #[arg(long)]
    pub kid: String,
    /// Tier: free, trial or enterprise.
    #[arg(long)]
    pub tier: Tier,
    /// Allow air-gapped installs (honoured for the enterprise tier only).
    #[arg(long)]
    pub airgap: bool,
    /// How many users the platform may have.
    #[arg(long)]
    pub users: u32,
    /// End of term: YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time.
    #[arg(long, value_parser = dates::parse_date)]
    pub expires: i64,
    /// Days of grace after the term, during which the license works with a warning.
    #[arg(long, default_value_t = 30)]
    pub grace_days: u32,
    /// The customer's name.
    #[arg(long)]
    pub account: String,
    /// The customer's stable id [default: the account name, lowercased, non-alphanumerics as '-'].
    #[arg(long)]
    pub account_id: Option<String>,
    /// Start of validity: YYYY-MM-DD or an RFC 3339 time [default: now].
    #[arg(long, value_parser = dates::parse_date)]
    pub not_before: Option<i64>,
    /// Where to write the license.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Keygen {
            out,
            public_out,
            name,
        } => key_files::keygen(&out, public_out.as_deref().unwrap_or(&out), &name),
        Command::Issue(args) => issue::issue(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", coder_progress::error_chain(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
