//! coder-install: installs the Coder platform on Kubernetes, from the public registries or from
//! an offline bundle inside an air gap.
//!
//! The `coder-install` binary is a thin shell over this library: [`cli`] describes the command
//! line, and each capability (bundling, licensing, applying, allowlist audits) lives in a module
//! of its own as it lands.

pub mod cli;
pub mod commands;
pub mod report;
