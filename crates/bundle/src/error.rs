//! Why making, reading or checking a bundle failed.

use std::path::PathBuf;

use coder_bundle_spec::format::MANIFEST_PATH;
use coder_registry::RegistryError;

/// A result with [`BundleError`].
pub type Result<T, E = BundleError> = std::result::Result<T, E>;

/// Why making, reading or checking a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the run could not be read or written.
    #[error("{action} {}", path.display())]
    File {
        /// How the file was used: `writing`, `reading have-list`, `hashing the parts of`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// What was written could not be flushed to disk.
    #[error("writing {} to disk: {error}; check the disk and re-run", path.display())]
    NotFlushed {
        /// The partial bundle.
        path: PathBuf,
        /// The flush's error.
        error: std::io::Error,
    },
    /// The finished partial bundle could not be renamed into place.
    #[error("moving {} to {}", from.display(), to.display())]
    NotMoved {
        /// The partial bundle.
        from: PathBuf,
        /// The output.
        to: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The finished partial parts of a split bundle could not be renamed into place.
    #[error("moving the parts of {} (*.partial) into place", bundle.display())]
    PartsNotMoved {
        /// The output (the parts' shared name).
        bundle: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The output exists and `--force` was not given.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    OutputExists {
        /// The existing file (the bundle, a part or the index).
        path: PathBuf,
    },
    /// The output's filesystem has less free space than the bundle needs: refused before
    /// anything is downloaded.
    #[error(
        "not enough free space for the bundle: it needs {} ({needed} bytes) in {}, which has {} free; \
         free {} there, write it elsewhere (-o), or split it (--part-size) and write the parts where there is room",
        coder_progress::human_bytes(*needed),
        dir.display(),
        coder_progress::human_bytes(*available),
        coder_progress::human_bytes(needed.saturating_sub(*available))
    )]
    NotEnoughSpace {
        /// The folder the bundle is written into.
        dir: PathBuf,
        /// The bytes the bundle needs.
        needed: u64,
        /// The bytes free there.
        available: u64,
    },
    /// `--part-size` is below [`crate::make::output::MIN_PART_SIZE`].
    #[error(
        "--part-size {part_size} is too small: parts must have at least {} bytes (64Ki); did you leave out the unit (4700M)?",
        crate::make::output::MIN_PART_SIZE
    )]
    PartSizeTooSmall {
        /// The size given, in bytes.
        part_size: u64,
    },
    /// A line of a have-list is not a digest.
    #[error("{}:{line}: {reason}", path.display())]
    HaveList {
        /// The have-list.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Locking, planning or bundling one image or chart failed.
    #[error("{what}")]
    Artifact {
        /// Which: `image NAME (REFERENCE)` or `chart NAME (REFERENCE)`.
        what: String,
        /// Why.
        #[source]
        source: Box<BundleError>,
    },
    /// The spec names an image that the lock does not have.
    #[error("image {image} is not in the lock; run `coder-install lock`")]
    NotInLock {
        /// The image's name in the spec.
        image: String,
    },
    /// An image's index has no manifest for a platform the spec asks for.
    #[error("the index has no {wanted} image (it has: {})", available.join(", "))]
    PlatformMissing {
        /// The platform asked for.
        wanted: String,
        /// The platforms the index has.
        available: Vec<String>,
    },
    /// Finding an image's signatures, attestations and SBOMs failed.
    #[error("signatures, attestations and SBOMs")]
    Referrers(#[source] Box<BundleError>),
    /// A signature, attestation or SBOM is an index, which bundles do not carry.
    #[error(
        "{repository}@{digest} (found as {found_as}) is an index ({media_type}); coder-install carries signatures, \
         attestations and SBOMs that are image manifests only. Set `signatures: false` in the spec to leave them out"
    )]
    ReferrerIsIndex {
        /// The image's repository.
        repository: String,
        /// The referrer's digest.
        digest: String,
        /// How it was found: its cosign tag, or the referrers API.
        found_as: String,
        /// Its media type.
        media_type: String,
    },
    /// A blob to bundle is neither cached nor in a registry the lock names.
    #[error(
        "blob {digest} is neither in the cache nor in a registry; delete the cache folder {} and re-run",
        cache_dir.display()
    )]
    BlobUnavailable {
        /// The blob.
        digest: String,
        /// The cache folder to delete.
        cache_dir: PathBuf,
    },
    /// Blobs could not be fetched or written.
    #[error("{}", blobs_failed(*failed, first))]
    BlobsFailed {
        /// How many.
        failed: usize,
        /// The first one's error, with its causes.
        first: String,
    },
    /// The file is not a tar archive of the bundle layout.
    #[error("{} is not a valid bundle: {reason}", path.display())]
    NotABundle {
        /// The file given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bundle has no manifest.
    #[error("{} has no {MANIFEST_PATH}: it is not a coder-install bundle", path.display())]
    NoManifest {
        /// The file given.
        path: PathBuf,
    },
    /// A metadata document of the bundle is larger than any can be.
    #[error("{}: {document} is {size} bytes, larger than any bundle document can be", path.display())]
    DocumentTooLarge {
        /// The bundle.
        path: PathBuf,
        /// The document's path in the bundle.
        document: String,
        /// Its size as the tar header says.
        size: u64,
    },
    /// The bundle's manifest is not the one that was verified.
    #[error(
        "{}: the bundle changed since it was verified ({MANIFEST_PATH} was {pinned}, is now {actual}); \
         something wrote to or replaced the file. Use a copy nothing else writes to, and re-run",
        path.display()
    )]
    ChangedSinceVerified {
        /// The bundle.
        path: PathBuf,
        /// The `sha256:` of the verified manifest.
        pinned: String,
        /// The `sha256:` of the manifest now.
        actual: String,
    },
    /// An error reading a split bundle, and the parts whose bytes do not match its index.
    #[error("{}; {}", coder_progress::error_chain(error.as_ref()), damaged.join("; "))]
    DamagedParts {
        /// The error reading the bundle.
        error: Box<BundleError>,
        /// Each damaged part and what to do (copy it again).
        damaged: Vec<String>,
    },
    /// An image key is not an ECDSA P-256 public key in PEM.
    #[error(
        "{key} is not an ECDSA P-256 public key in PEM ({reason}); use the cosign.pub that \
         `cosign generate-key-pair` wrote, or `cosign public-key --key cosign.key`"
    )]
    ImageKeyNotP256 {
        /// Where the key was read from.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An image key does not encode as SPKI DER (for its fingerprint).
    #[error("{key}: the key does not encode ({reason})")]
    ImageKeyEncoding {
        /// Where the key was read from.
        key: String,
        /// Why.
        reason: String,
    },
    /// The bundle file, or a part or the index of a split bundle, is missing or wrong.
    #[error(transparent)]
    BundleFile(#[from] crate::bundle_file::BundleFileError),
    /// A chart could not be read, packaged or unpacked.
    #[error(transparent)]
    Chart(#[from] crate::charts::ChartError),
    /// The bundle's entries could not be laid out (a blob's size out of bounds).
    #[error(transparent)]
    Layout(#[from] crate::make::layout::LayoutError),
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
    Spec(#[from] coder_bundle_spec::SpecError),
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

/// The message of [`BundleError::BlobsFailed`]: the only failure as it is, or how many failed
/// and the first.
fn blobs_failed(failed: usize, first: &str) -> String {
    match failed {
        1 => first.to_owned(),
        more => format!("{more} blobs failed; the first: {first}"),
    }
}

impl BundleError {
    /// [`BundleError::Artifact`]: locking, planning or bundling `kind` (`image`, `chart`) `name`,
    /// locked from `reference`, failed with `source`.
    pub(crate) fn artifact(kind: &str, name: &str, reference: &str, source: impl Into<BundleError>) -> Self {
        Self::Artifact {
            what: format!("{kind} {name} ({reference})"),
            source: Box::new(source.into()),
        }
    }

    /// [`BundleError::File`]: `action` (`writing`, ...) on `path` failed with `source`.
    pub(crate) fn file(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::File {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
