//! Why an allowlist run failed (as opposed to what it found, which is the report).

/// A result with [`AllowlistError`].
pub type Result<T, E = AllowlistError> = std::result::Result<T, E>;

/// Why an allowlist run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// A `--registry-ca` file is not usable.
    #[error("CA file {}: {reason}; pass PEM certificates to --registry-ca", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry answered an image's index with no manifest in it.
    #[error("{reference}: the registry's index lists no manifest")]
    EmptyIndex {
        /// The image.
        reference: String,
    },
    /// A registry call failed while learning where it sends clients.
    #[error(transparent)]
    Registry(Box<coder_registry::RegistryError>),
    /// A registry's manifest does not parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The TLS client for the probes could not be set up.
    #[error(transparent)]
    Tls(#[from] rustls::Error),
}

impl From<coder_registry::RegistryError> for AllowlistError {
    fn from(error: coder_registry::RegistryError) -> Self {
        Self::Registry(Box::new(error))
    }
}
