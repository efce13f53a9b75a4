//! What a coder-install bundle holds, as data and types.
//!
//! - [`BundleSpec`] (`coder.yaml`): which images and charts make up a release;
//! - [`ImageLock`] (`images.lock`): every image of the spec pinned by digest;
//! - [`referrer`]: the signatures, attestations and SBOMs that travel with images;
//! - [`format`]: the bundle file itself, an OCI image layout in one tar, and its
//!   [`BundleManifest`](format::BundleManifest).
//!
//! The default spec and lock are embedded ([`DEFAULT_SPEC`], [`DEFAULT_LOCK`]) so that the
//! installer works with no other file on a connected host.

pub mod format;
mod lock;
mod reference;
pub mod referrer;
mod spec;

pub use lock::{ImageLock, LOCK_FORMAT_VERSION, LockedArtifact, LockedPlatform, LockedSpec};
pub use reference::{DOCKER_HUB, ImageReference, normalised_repository_name, validate_digest};
pub use spec::{BundleSpec, ChartSource, ChartSpec, ImageSpec, Platform};

/// The default bundle spec (`crates/bundle-spec/coder.yaml`), embedded.
pub const DEFAULT_SPEC: &str = include_str!("../coder.yaml");
/// The default lock (`images.lock` at the workspace root), embedded.
pub const DEFAULT_LOCK: &str = include_str!("../../../images.lock");

/// Why a spec, lock or bundle manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The YAML did not parse or did not match the format (message has the line and column).
    #[error("{source_name}: {message}")]
    Yaml {
        /// The file (or "built-in").
        source_name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A JSON document of the bundle did not parse.
    #[error("{what}: {message}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// An image reference is malformed or not pinned.
    #[error("image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as written.
        reference: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// Two entries share a name.
    #[error("duplicate {kind} {name:?}: names must be unique")]
    Duplicate {
        /// `image`, `chart` or `platform`.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A rule of the format is broken.
    #[error("{what}: {reason}")]
    Invalid {
        /// What is wrong.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The lock does not pin what the spec lists.
    #[error("the lock does not match the spec; run `coder-install lock` to update it:\n  - {}", differences.join("\n  - "))]
    LockOutdated {
        /// Every difference found.
        differences: Vec<String>,
    },
}
