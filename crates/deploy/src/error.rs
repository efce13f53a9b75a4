//! Why rendering, applying or waiting failed: this crate's own message errors, and the typed
//! errors of its steps, each kept whole (and shown as is).

use crate::cluster::ClusterError;
use crate::lease::LeaseError;
use crate::license_gate::LicenseGateError;
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
    /// The release could not be loaded from its bundle, or its spec and lock.
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
    /// The lock pins no image (the built-in lock before a release resolves it).
    #[error(
        "the lock lists no images (the built-in lock is unresolved until a release pins it); \
         run `coder-install lock` and pass --lock, or apply a bundle"
    )]
    LockUnresolved,
    /// The workloads were not ready in time; each is listed with its state and recent events.
    #[error("not ready after {seconds}s:\n  - {}", waiting.join("\n  - "))]
    NotReady {
        /// How long was waited.
        seconds: u64,
        /// Each workload not ready, with its state and recent events.
        waiting: Vec<String>,
    },
    /// The bundle's verification task ended without an answer (it panicked or was cancelled).
    #[error("the bundle's verification stopped")]
    VerificationStopped(#[source] tokio::task::JoinError),
    /// A bundle was given without saying whose signature it must carry.
    #[error(
        "a bundle needs --public-key FILE (the vendor's Ed25519 key, to check the bundle's signature) \
         or --allow-unsigned (to use it without checking who made it); {undone}"
    )]
    SignaturePolicyMissing {
        /// What was not done.
        undone: &'static str,
    },
    /// `--image-key` was given and some images are not signed by it.
    #[error(
        "images not signed by the image key(s); {undone}:\n  - {}\n(pass --allow-unsigned-images to accept images that carry no signature at all)",
        images.join("\n  - ")
    )]
    ImagesNotSigned {
        /// What was not done.
        undone: &'static str,
        /// Each image refused: reference, verdict and why.
        images: Vec<String>,
    },
    /// The bundle does not verify (a blob, the manifest or the signature).
    #[error("the bundle does not verify; {undone}:\n  - {}", problems.join("\n  - "))]
    BundleRefused {
        /// What was not done.
        undone: &'static str,
        /// Each problem found.
        problems: Vec<String>,
    },
    /// The license gate refused (its source is the license's refusal, with its exit code).
    #[error(transparent)]
    License(#[from] LicenseGateError),
    /// The cluster could not be reached or used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A preflight check failed; the message lists each failure and its fix.
    #[error("{0}")]
    PreflightFailed(String),
    /// The images could not be pushed into the site registry.
    #[error(transparent)]
    Mirror(#[from] coder_mirror::MirrorError),
    /// Rollback: the installed revision is the only one.
    #[error("namespace {namespace} has only revision {revision}; there is nothing earlier to roll back to")]
    NothingToRollBackTo {
        /// The namespace.
        namespace: String,
        /// Its only revision.
        revision: u64,
    },
    /// Rollback: the previous revision's inputs are not kept, so it cannot be rendered again.
    #[error(
        "the inputs of revision {revision} are not kept (it was pruned, or recorded by an older coder-install), \
         so it cannot be rendered again; apply that version's bundle (or spec and lock) instead"
    )]
    InputsNotKept {
        /// The revision.
        revision: u64,
    },
    /// Rollback: the recorded revision does not render again, or fails its checks.
    #[error(transparent)]
    RevisionRefused(#[from] crate::revision::RevisionRefused),
    /// The bundle (its lock, chart or manifest) could not be read.
    #[error(transparent)]
    Bundle(#[from] coder_bundle::BundleError),
    /// The spec or lock is not valid.
    #[error(transparent)]
    Spec(#[from] coder_bundle_spec::SpecError),
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
    /// A backup or a restore failed.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// The backup before a version change failed: nothing was applied.
    #[error(
        "backing up the database before changing the version failed; nothing was applied \
         (fix it and re-run, or pass --no-backup to change the version without a backup): {0}"
    )]
    BackupBeforeUpgrade(#[source] crate::backup::BackupError),
    /// Rollback with its data: the revision rolled back from names no backup.
    #[error(
        "revision {revision} of namespace {namespace} names no backup taken before it (apply takes one when it \
         changes the version, unless --no-backup): roll back without --restore-data, or restore a backup of \
         version {version} with `coder-install restore FILE` after the rollback"
    )]
    NoBackupRecorded {
        /// The namespace.
        namespace: String,
        /// The revision rolled back from.
        revision: u64,
        /// The version rolled back to.
        version: String,
    },
    /// A document does not parse as YAML.
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
}
