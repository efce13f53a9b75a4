//! Why mirroring failed.

use coder_registry::RegistryError;

/// Why a push failed: registry errors keep their own type so callers can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// `--no-push`: a registry call that checks what the registry holds failed.
    #[error("checking {what}: {source}")]
    Checking {
        /// What was being checked.
        what: String,
        /// The registry's answer (boxed: it is large).
        #[source]
        source: Box<RegistryError>,
    },
    /// The bundle could not be read or is not consistent.
    #[error("{0}")]
    Bundle(String),
    /// A delta bundle whose base is not in the site registry.
    #[error(
        "{bundle} is a delta bundle made against {base}, but the site registry {registry} lacks {} blob(s) it left out: {}; push the full bundle of {base} first (or make a full bundle without --delta-from/--have-list)",
        missing.len(), missing.iter().map(|(digest, used_by)| format!("{digest} (used by {used_by})")).collect::<Vec<_>>().join(", ")
    )]
    DeltaBaseMissing {
        /// The bundle file.
        bundle: String,
        /// The base the delta was made against.
        base: String,
        /// The site registry.
        registry: String,
        /// Missing digests and the artifacts that use them.
        missing: Vec<(String, String)>,
    },
    /// `apply --no-push`: the site registry lacks manifests of the bundle.
    #[error(
        "{registry} does not hold {} manifest(s) of the bundle: {}; serve this bundle there (`coder-install serve --bundle FILE --prefix PREFIX`, the same prefix as --registry), push it (`coder-install push`), or apply without --no-push",
        missing.len(), missing.join(", ")
    )]
    NotPresent {
        /// The site registry and prefix.
        registry: String,
        /// The missing manifests (`repository@digest (original reference)`).
        missing: Vec<String>,
    },
    /// A blob's upload failed because of the bundle: its bytes could not be read, or do not
    /// hash to the digest its manifest names.
    #[error(
        "pushing blob {digest}: {problem}: the bundle is damaged; run `coder-install verify` and use an intact copy"
    )]
    DamagedBundle {
        /// The blob.
        digest: String,
        /// What is wrong with its bytes.
        problem: String,
    },
    /// A registry call failed.
    #[error("pushing {what}: {source}")]
    Registry {
        /// What was being pushed.
        what: String,
        /// The registry's answer (boxed: it is large).
        #[source]
        source: Box<RegistryError>,
    },
    /// The bundle could not be opened or read.
    #[error(transparent)]
    Read(#[from] coder_bundle::BundleError),
    /// The site registry's client could not be set up.
    #[error(transparent)]
    Client(Box<RegistryError>),
}

impl From<RegistryError> for MirrorError {
    fn from(error: RegistryError) -> Self {
        Self::Client(Box::new(error))
    }
}

impl MirrorError {
    /// The registry's error, when a registry call failed: to tell 401 from read-only from out of
    /// space.
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            Self::Registry { source, .. } | Self::Checking { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A failed registry call, with what was being pushed.
pub(crate) fn registry_error(what: String, source: RegistryError) -> MirrorError {
    MirrorError::Registry {
        what,
        source: Box::new(source),
    }
}
