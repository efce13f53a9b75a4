//! coder-install: installs the Coder platform on Kubernetes, from the public registries or from
//! an offline bundle inside an air gap.
//!
//! This crate is the command line only: [`cli`] is the subcommand enum and its dispatch,
//! [`args`] the flag groups several subcommands share, [`commands`] runs each subcommand
//! on the library crates (`coder_registry`, `coder_bundle`, `coder_mirror`, `coder_deploy`,
//! `coder_allowlist`), and [`progress`] shows their progress and messages on a terminal (or
//! nothing, for `--output json`).

pub mod args;
pub mod cli;
pub mod commands;
pub mod progress;
