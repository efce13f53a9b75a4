//! Why rendering, applying or waiting failed: this crate's own message errors, and the typed
//! errors of its steps, each kept whole (and shown as is).

use crate::lease::LeaseError;
use crate::objects::ApplyError;
use crate::record::RecordError;
use crate::render::RenderError;
use crate::render::values::ValuesError;
use crate::secrets::SecretError;

/// A result with [`DeployError`].
pub type Result<T, E = DeployError> = std::result::Result<T, E>;

/// Why rendering, applying or waiting failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The release, its values or the cluster's state are not usable; the message says why.
    #[error("{0}")]
    Message(String),
    /// The bundle (its lock, chart or manifest) could not be read.
    #[error(transparent)]
    Bundle(#[from] coder_bundle::BundleError),
    /// The spec or lock is not valid.
    #[error(transparent)]
    Spec(#[from] bundle_spec::SpecError),
    /// A values file or `--set` is not valid.
    #[error(transparent)]
    Values(#[from] ValuesError),
    /// The chart did not render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Another run holds the namespace, or this run lost it.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The install record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The kept Secrets could not be read or made.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An object could not be applied, pruned or read.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The API server refused a call.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A document does not parse or serialise as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A document does not parse as YAML.
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
}
