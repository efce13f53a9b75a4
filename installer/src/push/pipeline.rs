//! `push_bundle`: every image and chart of a bundle into the site registry, streamed from the
//! bundle file; and `check_registry_writable`, the preflight probe.
//!
//! How a push runs:
//! 1. **Plan** (from the bundle alone): per artifact its target repository, the manifests to put
//!    (carried children of an index first, then the top-level manifest or index) and the config
//!    and layer blobs they use; per blob, where it lies in the bundle file and which
//!    repositories need it.
//! 2. **Skip what is there**: an artifact whose manifests are all present in its repository is
//!    complete (a registry only accepts a manifest whose blobs it holds), so its blobs are not
//!    even checked. A re-push of an unchanged bundle is one `HEAD` per manifest and tag.
//! 3. **Delta bundles**: blobs the bundle leaves out must already be in the site registry; they
//!    are checked before anything is sent, and a missing one stops the push with the base bundle
//!    to push first.
//! 4. **Blobs**, `concurrency` digests at a time: per digest, the first repository that lacks it
//!    gets it uploaded (one monolithic `PUT` streamed from the bundle through a fixed buffer and
//!    hashed on the way: bytes that do not match their digest are never committed); every other
//!    repository gets it by cross-repository mount (an upload if the registry declines).
//! 5. **Manifests** byte for byte (the registry's `Docker-Content-Digest` must match), children
//!    before their index, then the original tag.
//!
//! Resuming: nothing is staged locally; a re-run after an interruption finds what arrived with
//! `HEAD` requests and sends only the rest (a blob cut off mid-upload is sent again whole).
//!
//! A **partial index** (the bundle carries only the spec's platforms) is pushed whole when the
//! registry accepts an index whose other children it lacks; the distribution registry refuses
//! that (`MANIFEST_BLOB_UNKNOWN`), and then the carried platform manifests are pushed, the tag
//! points at the carried manifest when there is exactly one, and the report's `pull_digest` says
//! which digest to deploy by.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bundle_spec::ImageReference;
use bundle_spec::format::{BundleManifest, BundledArtifact, blob_path, is_index};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::SiteRegistry;
use coder_bundle::read::{BundleReader, EntryLocation};
use coder_registry::{
    BlobPushOutcome, DeleteOutcome, FileRange, RegistryClient, RegistryError, RegistryOptions, Repository,
    sha256_digest,
};
use coder_report::{Item, Job, Reporter, human_bytes};

/// How to push a bundle.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs (digests) pushed at once.
    pub concurrency: usize,
    /// How to reach the site registry (CA, plain HTTP, credentials).
    pub registry: RegistryOptions,
    /// The `sha256:` of the bundle manifest that was verified, if the caller verified it: the
    /// push refuses a bundle whose manifest no longer hashes to it (every blob and manifest it
    /// sends is then checked against the digests that manifest lists).
    pub pinned_manifest: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            registry: RegistryOptions::default(),
            pinned_manifest: None,
        }
    }
}

/// Whether an artifact is a container image or a Helm chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A container image (single manifest or multi-platform index).
    Image,
    /// A Helm chart stored as an OCI artifact.
    Chart,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The bundle file.
    pub bundle: String,
    /// The site registry and prefix (`host[:port][/prefix]`).
    pub registry: String,
    /// Per image and chart, where it went.
    pub artifacts: Vec<PushedArtifact>,
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
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Where one image or chart went.
#[derive(Debug, Clone, Serialize)]
pub struct PushedArtifact {
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
}

/// What the writability probe found.
#[derive(Debug, Clone, Serialize)]
pub struct WritableCheck {
    /// The repository probed (`host/prefix/coder-install/write-probe`).
    pub repository: String,
    /// The probe blob's digest.
    pub probe_digest: String,
    /// Whether the probe blob could be deleted again (registries with deletes disabled keep it).
    pub probe_deleted: bool,
    /// One line for a preflight report.
    pub summary: String,
}

/// Why a push failed: registry errors keep their own type so callers can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
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
    /// A registry call failed.
    #[error("pushing {what}: {source}")]
    Registry {
        /// What was being pushed.
        what: String,
        /// The registry's answer (boxed: it is large).
        #[source]
        source: Box<RegistryError>,
    },
}

impl PushError {
    /// The registry's error, when a registry call failed: to tell 401 from read-only from out of
    /// space.
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            Self::Registry { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One manifest or index to put.
struct ManifestToPush {
    digest: String,
    media_type: String,
    bytes: Vec<u8>,
}

/// One artifact of the plan.
struct ArtifactPlan {
    name: String,
    kind: ArtifactKind,
    reference: String,
    repository: Repository,
    tag: Option<String>,
    top: ManifestToPush,
    /// The carried platform manifests of an index (empty for a single manifest).
    children: Vec<ManifestToPush>,
    /// Whether the index lists children the bundle does not carry.
    partial_index: bool,
    /// Config and layer digests.
    blobs: BTreeSet<String>,
}

/// One blob of the plan.
struct BlobPlan {
    /// Where it lies in the bundle; `None` when a delta bundle left it out.
    location: Option<EntryLocation>,
    size: u64,
    /// Indexes into the artifact list, of the artifacts that use it.
    used_by: BTreeSet<usize>,
}

/// Counters shared by the tasks of a push.
#[derive(Default)]
struct Counters {
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    present: AtomicUsize,
    skipped: AtomicUsize,
    manifests_pushed: AtomicUsize,
    manifests_present: AtomicUsize,
    tags_set: AtomicUsize,
    bytes_sent: AtomicU64,
}

/// Pushes every image and chart of `bundle` into `site`, reporting its progress to `reporter`.
pub async fn push_bundle(
    bundle: &Path,
    site: &SiteRegistry,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> anyhow::Result<PushReport> {
    let started = Instant::now();
    let reader = BundleReader::open(bundle)?;
    let manifest = reader.manifest_pinned(options.pinned_manifest.as_deref())?;
    let (artifacts, blobs) = plan(&reader, &manifest, site)?;
    let client = RegistryClient::new(options.registry.clone())?;
    let file = Arc::new(reader.file().try_clone()?);
    let counters = Counters::default();
    let concurrency = options.concurrency.max(1);

    // Which artifacts are already complete (all their manifests present).
    let complete: Vec<bool> = futures_util::stream::iter(artifacts.iter())
        .map(|artifact| manifests_present(&client, artifact))
        .buffered(concurrency)
        .try_collect()
        .await?;

    // Per blob, the repositories that still need it checked.
    let mut work: Vec<(&String, &BlobPlan, Vec<&Repository>)> = Vec::new();
    for (digest, blob) in &blobs {
        let mut repositories: Vec<&Repository> = Vec::new();
        for &index in &blob.used_by {
            if complete[index] {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
            } else if !repositories.contains(&&artifacts[index].repository) {
                repositories.push(&artifacts[index].repository);
            }
        }
        if !repositories.is_empty() {
            work.push((digest, blob, repositories));
        }
    }

    // A delta bundle's omitted blobs must be somewhere in the site registry already.
    let mut known_present: HashMap<(&str, &Repository), bool> = HashMap::new();
    if let Some(delta) = &manifest.delta {
        let checks: Vec<_> = futures_util::stream::iter(
            work.iter()
                .filter(|(_, blob, _)| blob.location.is_none())
                .flat_map(|(digest, _, repositories)| {
                    repositories.iter().map(move |repository| (*digest, *repository))
                }),
        )
        .map(|(digest, repository)| {
            let client = &client;
            async move {
                client
                    .blob_exists(repository, digest)
                    .await
                    .map(|present| ((digest.as_str(), repository), present))
                    .map_err(|source| registry_error(format!("{repository}@{digest}"), source))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
        known_present.extend(checks);
        let missing: Vec<(String, String)> = work
            .iter()
            .filter(|(_, blob, _)| blob.location.is_none())
            .filter(|(digest, _, repositories)| {
                !repositories
                    .iter()
                    .any(|repository| known_present.get(&(digest.as_str(), *repository)) == Some(&true))
            })
            .map(|(digest, blob, _)| {
                let used_by = blob
                    .used_by
                    .iter()
                    .map(|&index| artifacts[index].reference.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                ((*digest).clone(), used_by)
            })
            .collect();
        if !missing.is_empty() {
            return Err(PushError::DeltaBaseMissing {
                bundle: bundle.display().to_string(),
                base: delta.base.clone(),
                registry: site.to_string(),
                missing,
            }
            .into());
        }
    }

    let total: u64 = work.iter().map(|(_, blob, _)| blob.size).sum();
    let progress = reporter.job("pushing", total);
    futures_util::stream::iter(work.iter())
        .map(|(digest, blob, repositories)| {
            let (client, counters, progress, known_present, file) =
                (&client, &counters, progress.as_ref(), &known_present, &file);
            async move {
                let item: Arc<dyn Item> = Arc::from(progress.item(digest.trim_start_matches("sha256:"), blob.size));
                let mut holder: Option<&Repository> = None;
                for repository in repositories {
                    let what = || format!("blob {digest} to {repository}");
                    let present = match known_present.get(&(digest.as_str(), *repository)) {
                        Some(present) => *present,
                        None => client
                            .blob_exists(repository, digest)
                            .await
                            .map_err(|source| registry_error(what(), source))?,
                    };
                    if present {
                        counters.present.fetch_add(1, Ordering::Relaxed);
                        holder.get_or_insert(repository);
                        continue;
                    }
                    let Some(location) = blob.location else {
                        // Only reachable for an omitted blob present in another repository:
                        // it can only be mounted from there.
                        let from = holder.map(|holder| holder.repository.as_str());
                        let outcome = match from {
                            Some(from) => client
                                .mount_blob(repository, digest, from)
                                .await
                                .map_err(|source| registry_error(what(), source))?,
                            None => {
                                return Err(PushError::Bundle(format!(
                                    "blob {digest} is left out of the delta bundle and not in {repository}"
                                )));
                            }
                        };
                        if !matches!(outcome, coder_registry::MountOutcome::Mounted) {
                            return Err(PushError::Bundle(format!(
                                "blob {digest} is left out of the delta bundle, is not in {repository}, and the registry would not mount it from {}; push the base bundle first",
                                from.unwrap_or_default()
                            )));
                        }
                        counters.mounted.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let source = FileRange {
                        file: file.clone(),
                        offset: location.offset,
                        size: location.size,
                    };
                    let on_progress: Arc<dyn Fn(u64) + Send + Sync> = {
                        let item = item.clone();
                        Arc::new(move |done| item.set(done))
                    };
                    let outcome = client
                        .push_blob(
                            repository,
                            digest,
                            &source,
                            holder.map(|holder| holder.repository.as_str()),
                            on_progress,
                        )
                        .await
                        .map_err(|source| registry_error(what(), source))?;
                    match outcome {
                        BlobPushOutcome::Mounted => {
                            counters.mounted.fetch_add(1, Ordering::Relaxed);
                        }
                        BlobPushOutcome::Uploaded => {
                            counters.uploaded.fetch_add(1, Ordering::Relaxed);
                            counters.bytes_sent.fetch_add(blob.size, Ordering::Relaxed);
                            progress.line(&format!("uploaded {digest} ({}) to {repository}", human_bytes(blob.size)));
                        }
                    }
                    holder.get_or_insert(repository);
                }
                item.set(blob.size);
                Ok::<_, PushError>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    progress.finish();

    let pushed: Vec<PushedArtifact> = futures_util::stream::iter(artifacts.iter().zip(&complete))
        .map(|(artifact, &complete)| {
            push_manifests(&client, artifact, complete, &counters, progress.as_ref())
        })
        .buffered(concurrency)
        .try_collect()
        .await?;

    Ok(PushReport {
        bundle: bundle.display().to_string(),
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
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whether every manifest the artifact needs is present: its carried children and, unless the
/// index is partial (which some registries refuse for good), the top-level one.
async fn manifests_present(client: &RegistryClient, artifact: &ArtifactPlan) -> Result<bool, PushError> {
    let mut needed: Vec<&ManifestToPush> = artifact.children.iter().collect();
    if !artifact.partial_index {
        needed.push(&artifact.top);
    }
    for manifest in needed {
        let present = client
            .manifest_digest(&artifact.repository, &manifest.digest)
            .await
            .map_err(|source| {
                registry_error(format!("{}@{}", artifact.repository, manifest.digest), source)
            })?;
        if present.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Puts an artifact's manifests (children first) and its tag.
async fn push_manifests<'a>(
    client: &RegistryClient,
    artifact: &'a ArtifactPlan,
    complete: bool,
    counters: &Counters,
    progress: &dyn Job,
) -> Result<PushedArtifact, PushError> {
    let repository = &artifact.repository;
    let put = |manifest: &'a ManifestToPush, reference: String| async move {
        client
            .put_manifest(
                repository,
                &reference,
                &manifest.bytes,
                &manifest.media_type,
                &manifest.digest,
            )
            .await
    };
    for child in &artifact.children {
        if complete {
            counters.manifests_present.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match client.manifest_digest(repository, &child.digest).await {
            Ok(Some(_)) => {
                counters.manifests_present.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                put(child, child.digest.clone())
                    .await
                    .map_err(|source| registry_error(format!("{repository}@{}", child.digest), source))?;
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            }
            Err(source) => return Err(registry_error(format!("{repository}@{}", child.digest), source)),
        }
    }

    let top = &artifact.top;
    let top_what = || format!("{repository}@{}", top.digest);
    let mut note = None;
    let top_present = if complete && !artifact.partial_index {
        true
    } else {
        client
            .manifest_digest(repository, &top.digest)
            .await
            .map_err(|source| registry_error(top_what(), source))?
            .is_some()
    };
    let top_in_registry = if top_present {
        counters.manifests_present.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        match put(top, top.digest.clone()).await {
            Ok(()) => {
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(RegistryError::Rejected { detail, .. })
                if artifact.partial_index && detail.contains("MANIFEST_BLOB_UNKNOWN") =>
            {
                note = Some(format!(
                    "the registry refuses an index whose other platforms it lacks ({detail}); the bundle carries {} platform manifest(s), pushed by digest",
                    artifact.children.len()
                ));
                false
            }
            Err(source) => return Err(registry_error(top_what(), source)),
        }
    };

    // What the tag (and deployments) should point at.
    let target = if top_in_registry {
        Some(top)
    } else if let [only] = artifact.children.as_slice() {
        Some(only)
    } else {
        None
    };
    let mut tag = None;
    if let (Some(name), Some(target)) = (&artifact.tag, target) {
        let current = client
            .manifest_digest(repository, name)
            .await
            .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
        if current.as_deref() != Some(target.digest.as_str()) {
            put(target, name.clone())
                .await
                .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
            counters.tags_set.fetch_add(1, Ordering::Relaxed);
            progress.line(&format!("tagged {repository}:{name} -> {}", target.digest));
        }
        tag = Some(name.clone());
    } else if artifact.tag.is_some() {
        note = Some(format!(
            "{}; no tag set, since several platforms are carried",
            note.unwrap_or_default()
        ));
    }
    Ok(PushedArtifact {
        name: artifact.name.clone(),
        kind: artifact.kind,
        reference: artifact.reference.clone(),
        repository: repository.to_string(),
        digest: top.digest.clone(),
        pull_digest: target.map_or_else(|| top.digest.clone(), |target| target.digest.clone()),
        tag,
        complete: top_in_registry,
        note,
    })
}

/// For the fuzz targets (`installer/fuzz`, built by `cargo fuzz`, which sets `cfg(fuzzing)`):
/// what [`push_bundle`] reads from the bundle before it touches a registry (its manifest, and
/// every OCI index and manifest it carries). Returns how many artifacts and distinct blobs the
/// push would handle.
#[cfg(fuzzing)]
pub fn plan_bundle(bundle: &Path, site: &SiteRegistry) -> anyhow::Result<(usize, usize)> {
    let reader = BundleReader::open(bundle)?;
    let manifest = reader.manifest()?;
    let (artifacts, blobs) = plan(&reader, &manifest, site)?;
    Ok((artifacts.len(), blobs.len()))
}

/// Builds the plan from the bundle alone.
fn plan(
    reader: &BundleReader,
    manifest: &BundleManifest,
    site: &SiteRegistry,
) -> Result<(Vec<ArtifactPlan>, BTreeMap<String, BlobPlan>), PushError> {
    let omitted: BTreeMap<&str, u64> = manifest
        .delta
        .iter()
        .flat_map(|delta| delta.omitted.iter())
        .map(|blob| (blob.digest.as_str(), blob.size))
        .collect();
    let mut artifacts = Vec::new();
    let mut blobs: BTreeMap<String, BlobPlan> = BTreeMap::new();
    let kinds = manifest
        .images
        .iter()
        .map(|artifact| (artifact, ArtifactKind::Image))
        .chain(
            manifest
                .charts
                .iter()
                .map(|artifact| (artifact, ArtifactKind::Chart)),
        );
    for (index, (artifact, kind)) in kinds.enumerate() {
        let planned = plan_artifact(reader, artifact, kind, site)?;
        for digest in &planned.blobs {
            let location = reader.entries().get(&blob_path(digest)).copied();
            let size = match (location, omitted.get(digest.as_str())) {
                (Some(location), _) => location.size,
                (None, Some(size)) => *size,
                (None, None) => {
                    return Err(PushError::Bundle(format!(
                        "{}: blob {digest} of {} is missing from the bundle; run `coder-install verify` and use an intact bundle",
                        reader.path().display(),
                        artifact.reference
                    )));
                }
            };
            blobs
                .entry(digest.clone())
                .or_insert(BlobPlan {
                    location,
                    size,
                    used_by: BTreeSet::new(),
                })
                .used_by
                .insert(index);
        }
        artifacts.push(planned);
    }
    Ok((artifacts, blobs))
}

/// The manifests and blobs of one artifact.
fn plan_artifact(
    reader: &BundleReader,
    artifact: &BundledArtifact,
    kind: ArtifactKind,
    site: &SiteRegistry,
) -> Result<ArtifactPlan, PushError> {
    let original = ImageReference::parse(&artifact.reference)
        .map_err(|error| PushError::Bundle(format!("{}: {error}", artifact.reference)))?;
    let repository = Repository {
        registry: site.host.clone(),
        repository: site.repository_path_for(&original),
    };
    let top = read_manifest(reader, &artifact.digest, &artifact.media_type)?
        .ok_or_else(|| missing_manifest(reader, &artifact.digest, &artifact.reference))?;
    let mut children = Vec::new();
    let mut partial_index = false;
    let mut blobs = BTreeSet::new();
    if is_index(&top.media_type) {
        let index: IndexDocument = parse(&top, &artifact.reference)?;
        for child in index.manifests {
            match read_manifest(
                reader,
                &child.digest,
                child.media_type.as_deref().unwrap_or_default(),
            )? {
                Some(child) => {
                    blobs.extend(image_blobs(&child, &artifact.reference)?);
                    children.push(child);
                }
                None => partial_index = true,
            }
        }
    } else {
        blobs.extend(image_blobs(&top, &artifact.reference)?);
    }
    Ok(ArtifactPlan {
        name: artifact.name.clone(),
        kind,
        reference: artifact.reference.clone(),
        repository,
        tag: original.tag.clone(),
        top,
        children,
        partial_index,
        blobs,
    })
}

#[derive(Deserialize)]
struct IndexDocument {
    #[serde(default)]
    manifests: Vec<DescriptorDocument>,
}

#[derive(Deserialize)]
struct ImageDocument {
    config: DescriptorDocument,
    #[serde(default)]
    layers: Vec<DescriptorDocument>,
}

#[derive(Deserialize)]
struct DescriptorDocument {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(manifest: &ManifestToPush, reference: &str) -> Result<T, PushError> {
    serde_json::from_slice(&manifest.bytes).map_err(|error| {
        PushError::Bundle(format!(
            "{reference}: manifest {} in the bundle does not parse: {error}",
            manifest.digest
        ))
    })
}

/// The config and layer digests of an image manifest.
fn image_blobs(manifest: &ManifestToPush, reference: &str) -> Result<Vec<String>, PushError> {
    let image: ImageDocument = parse(manifest, reference)?;
    Ok(std::iter::once(image.config.digest)
        .chain(image.layers.into_iter().map(|layer| layer.digest))
        .collect())
}

/// A manifest's bytes from the bundle (checked against its digest), or `None` if not carried.
fn read_manifest(
    reader: &BundleReader,
    digest: &str,
    descriptor_media_type: &str,
) -> Result<Option<ManifestToPush>, PushError> {
    let bytes = reader
        .read_document(&blob_path(digest))
        .map_err(|error| PushError::Bundle(format!("{error:#}")))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(PushError::Bundle(format!(
            "{}: manifest {digest} hashes to {actual}: the bundle is damaged; run `coder-install verify`",
            reader.path().display()
        )));
    }
    let media_type = if descriptor_media_type.is_empty() {
        #[derive(Deserialize)]
        struct MediaTypeOnly {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
        }
        serde_json::from_slice::<MediaTypeOnly>(&bytes)
            .ok()
            .and_then(|document| document.media_type)
            .unwrap_or_else(|| bundle_spec::format::OCI_MANIFEST_MEDIA_TYPE.to_owned())
    } else {
        descriptor_media_type.to_owned()
    };
    Ok(Some(ManifestToPush {
        digest: digest.to_owned(),
        media_type,
        bytes,
    }))
}

fn missing_manifest(reader: &BundleReader, digest: &str, reference: &str) -> PushError {
    PushError::Bundle(format!(
        "{}: the manifest {digest} of {reference} is missing; run `coder-install verify` and use an intact bundle",
        reader.path().display()
    ))
}

fn registry_error(what: String, source: RegistryError) -> PushError {
    PushError::Registry {
        what,
        source: Box::new(source),
    }
}

/// The repository path (under the site's prefix) of the writability probe.
const PROBE_REPOSITORY: &str = "coder-install/write-probe";
/// The probe blob's content: fixed, so a registry that cannot delete keeps one small blob.
const PROBE_CONTENT: &[u8] = b"coder-install registry write probe\n";

/// Checks that `site` is reachable, accepts the credentials and takes pushes: uploads a small
/// probe blob under `PREFIX/coder-install/write-probe` and deletes it again. A registry with
/// deletes disabled (405) is still writable; the probe blob is then left in place.
pub async fn check_registry_writable(
    site: &SiteRegistry,
    options: &RegistryOptions,
) -> Result<WritableCheck, RegistryError> {
    let client = RegistryClient::new(options.clone())?;
    let repository = Repository {
        registry: site.host.clone(),
        repository: if site.prefix.is_empty() {
            PROBE_REPOSITORY.to_owned()
        } else {
            format!("{}/{PROBE_REPOSITORY}", site.prefix)
        },
    };
    let digest = client.push_small_blob(&repository, PROBE_CONTENT).await?;
    let deleted = client.delete_blob(&repository, &digest).await? == DeleteOutcome::Deleted;
    let summary = if deleted {
        format!("{repository}: writable (probe blob pushed and deleted)")
    } else {
        format!("{repository}: writable, probe blob left in place (the registry has deletes disabled)")
    };
    Ok(WritableCheck {
        repository: repository.to_string(),
        probe_digest: digest,
        probe_deleted: deleted,
        summary,
    })
}
