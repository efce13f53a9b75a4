//! Why `check` could not walk at all (hops that fail are results, not errors).

use crate::record::RecordError;

/// The check could not start: nothing is installed, the install cannot be read, or a flag is
/// wrong.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No install record in the namespace (or it cannot be read).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The API server refused a read.
    #[error("reading the install: {0}")]
    Api(#[from] kube::Error),
    /// The install lacks something the check needs.
    #[error("the install in namespace {namespace}: {what}")]
    Install {
        /// The namespace.
        namespace: String,
        /// What is missing or wrong.
        what: String,
    },
    /// `--ca` is not a PEM certificate (or TLS could not be set up with it).
    #[error("--ca: {0}")]
    Ca(String),
    /// `--resolve` names another host than the access URL's.
    #[error("--resolve {host}: the access URL's host is {access_host}")]
    Resolve {
        /// The host given.
        host: String,
        /// The access URL's.
        access_host: String,
    },
}
