//! Why making, reading or checking a bundle failed.

use coder_registry::RegistryError;

/// A result with [`BundleError`].
pub type Result<T, E = BundleError> = std::result::Result<T, E>;

/// Why making, reading or checking a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The inputs, the bundle, the cache or a chart are not what they should be; the message
    /// says what and what to do.
    #[error("{0}")]
    Message(String),
    /// The bundle file, or a part or the index of a split bundle, is missing or wrong.
    #[error(transparent)]
    BundleFile(#[from] crate::bundle_file::BundleFileError),
    /// A chart could not be read, packaged or unpacked.
    #[error(transparent)]
    Chart(#[from] crate::charts::ChartError),
    /// A signing or public key file could not be used.
    #[error(transparent)]
    Key(#[from] crate::signing::KeyError),
    /// A registry call failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A blocking task (hashing, copying) did not finish.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The spec or lock is not valid.
    #[error(transparent)]
    Spec(#[from] bundle_spec::SpecError),
    /// A JSON document (manifest, chart metadata) does not parse or serialise.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A chart's YAML does not parse.
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    /// A chart file is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::str::Utf8Error),
    /// A chart file lies outside its chart folder.
    #[error(transparent)]
    Path(#[from] std::path::StripPrefixError),
    /// The clock could not be read as a timestamp.
    #[error(transparent)]
    Time(#[from] jiff::Error),
}
