//! Why an allowlist run failed (as opposed to what it found, which is the report).

/// A result with [`AllowlistError`].
pub type Result<T, E = AllowlistError> = std::result::Result<T, E>;

/// Why an allowlist run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// An input (a CA file, a registry's answer) is not usable; the message says which.
    #[error("{0}")]
    Message(String),
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
