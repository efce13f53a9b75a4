//! What a mirror run reports: per artifact where it went, and the counts of what was sent.

use std::sync::atomic::{AtomicU64, AtomicUsize};

use coder_bundle_spec::referrer::ReferrerKind;
use serde::Serialize;

/// Whether an artifact is a container image, a Helm chart, or something travelling with an
/// image (its signature, attestation, SBOM or another referrer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A container image (single manifest or multi-platform index).
    Image,
    /// A Helm chart stored as an OCI artifact.
    Chart,
    /// An image's signature (cosign `.sig`).
    Signature,
    /// An image's attestation (cosign `.att`).
    Attestation,
    /// An image's SBOM (cosign `.sbom`).
    Sbom,
    /// Another artifact the referrers API listed for an image.
    Referrer,
}

impl From<ReferrerKind> for ArtifactKind {
    fn from(kind: ReferrerKind) -> Self {
        match kind {
            ReferrerKind::Signature => ArtifactKind::Signature,
            ReferrerKind::Attestation => ArtifactKind::Attestation,
            ReferrerKind::Sbom => ArtifactKind::Sbom,
            ReferrerKind::Other => ArtifactKind::Referrer,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorReport {
    /// The bundle file.
    pub bundle: String,
    /// The site registry and prefix (`host[:port][/prefix]`).
    pub registry: String,
    /// Per image and chart, where it went.
    pub artifacts: Vec<MirroredArtifact>,
    /// Blobs whose bytes were sent (per repository).
    pub blobs_uploaded: usize,
    /// Blobs linked by cross-repository mount, without sending them.
    pub blobs_mounted: usize,
    /// Blobs the repositories already had (checked with `HEAD`).
    pub blobs_present: usize,
    /// Blobs not even checked because their artifact's manifests were all present.
    pub blobs_skipped: usize,
    /// Manifests and indexes put.
    pub manifests_pushed: usize,
    /// Manifests and indexes already present.
    pub manifests_present: usize,
    /// Tags set or moved.
    pub tags_set: usize,
    /// Blob bytes sent.
    pub bytes_sent: u64,
    /// The chunk size uploads ended with (`--chunk-size`, or what a 413 answer led to); `None`:
    /// every blob went up whole.
    pub upload_chunk_size: Option<u64>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Where one image or chart went.
#[derive(Debug, Clone, Serialize)]
pub struct MirroredArtifact {
    /// Logical name from the spec.
    pub name: String,
    /// Image or chart.
    pub kind: ArtifactKind,
    /// The original reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The target repository, `host[:port]/prefix/original-path`.
    pub repository: String,
    /// The top-level digest (manifest or index), as in the bundle and the lock.
    pub digest: String,
    /// The digest to pull by: `digest`, unless the registry refused a partial index, then the
    /// carried platform's manifest.
    pub pull_digest: String,
    /// The tag set in the target repository (the original reference's tag), if any.
    pub tag: Option<String>,
    /// Whether the top-level manifest or index itself is in the registry.
    pub complete: bool,
    /// Anything the operator should know (e.g. why an index was not pushed whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a signature, attestation, SBOM or other referrer: the digest it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Counters shared by the tasks of a push.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) uploaded: AtomicUsize,
    pub(crate) mounted: AtomicUsize,
    pub(crate) present: AtomicUsize,
    pub(crate) skipped: AtomicUsize,
    pub(crate) manifests_pushed: AtomicUsize,
    pub(crate) manifests_present: AtomicUsize,
    pub(crate) tags_set: AtomicUsize,
    pub(crate) bytes_sent: AtomicU64,
}
