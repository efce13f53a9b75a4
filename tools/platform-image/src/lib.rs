//! `platform-image`: turns a built `coder-service` binary into the platform's OCI image, without
//! a container engine, and pushes it.
//!
//! The image has one layer (see [`image`] for what it holds) and is deterministic: the same
//! binary, CA bundle, version, revision and source date epoch give the same bytes and digest.
//! [`layout`] writes it as an OCI image layout, [`push`] sends it to a registry.

pub mod elf;
pub mod image;
pub mod layer;
pub mod layout;
pub mod push;

use std::path::PathBuf;

/// Why an image could not be built, written or pushed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The binary is not an executable the image can run.
    #[error("{}: {reason}; pass the coder-service executable cargo built", path.display())]
    NotAnExecutable {
        /// The file given as the binary.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A dynamic binary's shared libraries could not be listed.
    #[error("shared libraries of {}: {reason}", path.display())]
    SharedLibraries {
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A layer entry could not be added.
    #[error("layer: {0}")]
    Layer(String),
    /// An input (flag, reference, file) is not usable.
    #[error("{0}")]
    Input(String),
    /// A registry refused or failed a step of the push.
    #[error("pushing {reference}: {step}: {detail}{hint}")]
    Registry {
        /// The reference being pushed.
        reference: String,
        /// The step that failed.
        step: String,
        /// The client's error and its causes, each once.
        detail: String,
        /// What to do about it (empty, or starting with `; `).
        hint: &'static str,
    },
}
