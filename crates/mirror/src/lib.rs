//! coder-mirror: [`mirror_bundle`] copies every image and chart of a bundle into the site
//! registry, streamed from the bundle file; [`check_registry_writable`], the preflight probe;
//! and [`node_config`], what the nodes need to pull from the site registry.
//! (The registry client's own upload calls are `coder_registry`'s `upload` half; this crate is
//! what uses them for a whole bundle.)
//!
//! How a mirror run goes (`coder-install push`, and step 4 of `apply`), one module a phase:
//! 1. **Plan** (`plan`, from the bundle alone): per artifact its target repository, the manifests to put
//!    (carried children of an index first, then the top-level manifest or index) and the config
//!    and layer blobs they use; per blob, where it lies in the bundle file and which
//!    repositories need it.
//! 2. **Skip what is there**: an artifact whose manifests are all present in its repository is
//!    complete (a registry only accepts a manifest whose blobs it holds), so its blobs are not
//!    even checked. A re-push of an unchanged bundle is one `HEAD` per manifest and tag.
//! 3. **Delta bundles**: blobs the bundle leaves out must already be in the site registry; they
//!    are checked before anything is sent, and a missing one stops the push with the base bundle
//!    to push first.
//! 4. **Blobs** (`blobs`), `concurrency` digests at a time, largest first: per digest, the first
//!    repository that lacks it gets it uploaded (one monolithic `PUT` streamed from the bundle in
//!    1 MiB pieces, read one piece ahead of the connection in at most three recycled buffers, or
//!    in `PATCH` chunks behind a proxy that caps bodies; the registry commits only bytes that
//!    hash to the digest, and a refused upload is hashed here, `damaged`, to tell a damaged
//!    bundle apart); every other repository gets it by cross-repository mount (an upload if the
//!    registry declines).
//! 5. **Manifests** (`manifests`) byte for byte (the registry's `Docker-Content-Digest` must match), children
//!    before their index, the top-level one under its original tag (one `PUT` stores it and sets
//!    the tag).
//!
//! Resuming: nothing is staged locally; a re-run after an interruption finds what arrived with
//! `HEAD` requests and sends only the rest (a blob cut off mid-upload is sent again whole).
//!
//! **Signatures, attestations and SBOMs** a bundle carries (spec `signatures: true`) are
//! artifacts of the plan like images: their blobs go with the others, their manifests byte for
//! byte into the image's repository after the images', under cosign's tag
//! (`sha256-<hex>.sig`, `.att`, `.sbom`); those the referrers API listed are put by digest (their
//! `subject` field links them, on a registry with the referrers API; on one without, they are
//! listed in the OCI 1.1 fallback index tagged `sha256-<subject hex>`).
//!
//! A **partial index** (the bundle carries only the spec's platforms) is pushed whole when the
//! registry accepts an index whose other children it lacks; the distribution registry refuses
//! that (`MANIFEST_BLOB_UNKNOWN`), and then the carried platform manifests are pushed, the tag
//! points at the carried manifest when there is exactly one, and the report's `pull_digest` says
//! which digest to deploy by.

mod blobs;
mod damaged;
mod error;
pub mod inventory;
mod manifests;
pub mod node_config;
mod plan;
mod present;
mod probe;
mod referrers;
mod report;
mod target;

#[cfg(fuzzing)]
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[cfg(fuzzing)]
use coder_bundle::read::BundleReader;
use coder_bundle::read::OpenedBundle;
use coder_progress::Progress;
use coder_registry::{RegistryClient, RegistryOptions};
use futures_util::{StreamExt, TryStreamExt};

use blobs::KnownPresent;
pub use error::MirrorError;
pub use present::check_bundle_present;
pub use probe::{WritableCheck, check_registry_writable};
use report::Counters;
pub use report::{ArtifactKind, MirrorReport, MirroredArtifact};
pub use target::{SiteRegistry, SiteRegistryError};

/// How to mirror a bundle.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// Blobs (digests) pushed at once.
    pub concurrency: usize,
    /// How to reach the site registry (CA, plain HTTP, credentials).
    pub registry: RegistryOptions,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            registry: RegistryOptions::default(),
        }
    }
}

/// Pushes every image and chart of the opened `bundle` into `site`, reporting its progress to
/// `progress`. The bundle's manifest is read again first: a file rewritten since it was opened
/// (and verified) is refused; everything else goes by the digests that manifest lists, and the
/// registry commits only bytes that hash to them.
pub async fn mirror_bundle(
    bundle: &OpenedBundle,
    site: &SiteRegistry,
    options: &MirrorOptions,
    progress: &dyn Progress,
) -> Result<MirrorReport, MirrorError> {
    let started = Instant::now();
    bundle.check_unchanged()?;
    let (reader, manifest) = (bundle.reader(), bundle.manifest());
    let (artifacts, plan_blobs) = plan::plan(reader, manifest, site)?;
    let client = RegistryClient::new(options.registry.clone())?;
    let file = Arc::clone(reader.file());
    let counters = Counters::default();
    let concurrency = options.concurrency.max(1);

    let complete = complete_artifacts(&client, &artifacts, concurrency).await?;
    let work = blobs::work(&artifacts, &plan_blobs, &complete, &counters);
    let known_present = match &manifest.delta {
        Some(delta) => {
            let (present, missing) = blobs::check_omitted(&client, &work, &artifacts, concurrency).await?;
            if !missing.is_empty() {
                return Err(MirrorError::DeltaBaseMissing {
                    bundle: bundle.path().display().to_string(),
                    base: delta.base.clone(),
                    registry: site.to_string(),
                    missing,
                });
            }
            present
        }
        None => KnownPresent::new(),
    };

    // The sizes are the bundle manifest's word: absurd ones must not overflow.
    let total = coder_registry::oci::total_size(work.iter().map(|(_, blob, _)| blob.size));
    let job = progress.job("pushing", total);
    blobs::send(
        &client,
        &work,
        &known_present,
        &file,
        &counters,
        job.as_ref(),
        concurrency,
    )
    .await?;
    job.finish();

    let pushed = push_artifacts(
        &client,
        &artifacts,
        &complete,
        &counters,
        job.as_ref(),
        concurrency,
    )
    .await?;
    referrers::update_fallback_indexes(&client, &artifacts, &counters, job.as_ref()).await?;
    Ok(report(bundle, site, pushed, counters, &client, started))
}

/// Which artifacts are already complete (all their manifests present).
async fn complete_artifacts(
    client: &RegistryClient,
    artifacts: &[plan::ArtifactPlan],
    concurrency: usize,
) -> Result<Vec<bool>, MirrorError> {
    futures_util::stream::iter(artifacts.iter())
        .map(|artifact| manifests::manifests_present(client, artifact))
        .buffered(concurrency)
        .try_collect()
        .await
}

/// Puts the manifests of every artifact: images and charts first, then what refers to them
/// (signatures, attestations, SBOMs).
async fn push_artifacts(
    client: &RegistryClient,
    artifacts: &[plan::ArtifactPlan],
    complete: &[bool],
    counters: &Counters,
    progress: &dyn coder_progress::Job,
    concurrency: usize,
) -> Result<Vec<MirroredArtifact>, MirrorError> {
    let mut pushed: Vec<MirroredArtifact> = Vec::with_capacity(artifacts.len());
    for referrers in [false, true] {
        let pass: Vec<MirroredArtifact> = futures_util::stream::iter(
            artifacts
                .iter()
                .zip(complete)
                .filter(|(artifact, _)| artifact.subject.is_some() == referrers),
        )
        .map(|(artifact, &complete)| {
            manifests::push_manifests(client, artifact, complete, counters, progress)
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
        pushed.extend(pass);
    }
    Ok(pushed)
}

/// The run's report: the artifacts pushed and the counts.
fn report(
    bundle: &OpenedBundle,
    site: &SiteRegistry,
    pushed: Vec<MirroredArtifact>,
    counters: Counters,
    client: &RegistryClient,
    started: Instant,
) -> MirrorReport {
    MirrorReport {
        bundle: bundle.path().display().to_string(),
        registry: site.to_string(),
        artifacts: pushed,
        blobs_uploaded: counters.uploaded.into_inner(),
        blobs_mounted: counters.mounted.into_inner(),
        blobs_present: counters.present.into_inner(),
        blobs_skipped: counters.skipped.into_inner(),
        manifests_pushed: counters.manifests_pushed.into_inner(),
        manifests_present: counters.manifests_present.into_inner(),
        tags_set: counters.tags_set.into_inner(),
        bytes_sent: counters.bytes_sent.into_inner(),
        upload_chunk_size: client.upload_chunk_size(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// For the fuzz targets (`installer/fuzz`, built by `cargo fuzz`, which sets `cfg(fuzzing)`):
/// what [`mirror_bundle`] reads from the bundle before it touches a registry (its manifest, and
/// every OCI index and manifest it carries). Returns how many artifacts and distinct blobs the
/// push would handle.
#[cfg(fuzzing)]
pub fn plan_bundle(bundle: &Path, site: &SiteRegistry) -> Result<(usize, usize), MirrorError> {
    let reader = BundleReader::open(bundle)?;
    let manifest = reader.manifest()?;
    let (artifacts, blobs) = plan::plan(&reader, &manifest, site)?;
    Ok((artifacts.len(), blobs.len()))
}
