//! `bundle`, `verify` and `inspect`: making the one file that crosses the air gap, and checking
//! it on the other side. The file format itself is [`bundle_spec::format`].
//!
//! Making a bundle: [`plan`] fetches every manifest named by the lock and lists the blobs;
//! the blobs are downloaded in parallel into the content-addressed [`BlobCache`] (verified,
//! resumable); [`charts`] packages local charts; [`write`] lays everything out as one tar.

pub mod charts;
pub mod inspect;
pub mod plan;
pub mod read;
pub mod signing;
pub mod verify;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bundle_spec::format::{
    BUNDLE_FORMAT_VERSION, BlobRecord, BundleManifest, DeltaBase, INDEX_PATH, LOCK_PATH, MANIFEST_PATH,
    OCI_INDEX_MEDIA_TYPE, OCI_LAYOUT_CONTENT, OCI_LAYOUT_PATH, REF_NAME_ANNOTATION, SIGNATURE_PATH,
    SPEC_PATH,
};
use bundle_spec::{BundleSpec, ChartSource, ImageLock};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cache::BlobCache;
use crate::progress::{Progress, human_bytes};
use crate::registry::{RegistryClient, RegistryOptions, sha256_digest};
use plan::BundlePlan;
use write::{Entry, EntryData};

/// A spec and its lock, with their exact text (bundled as-is) and where charts are found.
pub struct Inputs {
    /// The parsed spec.
    pub spec: BundleSpec,
    /// The spec's text.
    pub spec_text: String,
    /// The parsed lock.
    pub lock: ImageLock,
    /// The lock's text.
    pub lock_text: String,
    /// The folder that chart paths are relative to; `None` for the built-in spec, whose charts
    /// are built in too.
    pub spec_dir: Option<PathBuf>,
}

/// How to make a bundle.
pub struct BundleOptions {
    /// The bundle file to write.
    pub output: PathBuf,
    /// Replace `output` if it exists.
    pub force: bool,
    /// The blob cache folder.
    pub cache_dir: PathBuf,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    /// Sign the bundle manifest with this Ed25519 key (PKCS#8 PEM).
    pub signing_key: Option<PathBuf>,
    /// How to reach the registries.
    pub registry: RegistryOptions,
    /// No progress output (for `--output json`).
    pub quiet: bool,
    /// Make a delta bundle: leave out the config and layer blobs the target already has.
    pub delta: Option<DeltaSource>,
}

/// What the target of a delta bundle already has.
pub struct DeltaSource {
    /// A description for the bundle manifest (e.g. `coder 1.0.0 (old.bundle)`).
    pub base: String,
    /// The digests the target has.
    pub have: std::collections::BTreeSet<String>,
}

impl DeltaSource {
    /// The blobs an earlier bundle carried (and, if it was a delta itself, those it assumed).
    pub fn from_bundle(path: &Path) -> anyhow::Result<Self> {
        let manifest = read::BundleReader::open(path)?.manifest()?;
        let mut have: std::collections::BTreeSet<String> =
            manifest.blobs.iter().map(|blob| blob.digest.clone()).collect();
        if let Some(delta) = &manifest.delta {
            have.extend(delta.omitted.iter().map(|blob| blob.digest.clone()));
        }
        Ok(Self {
            base: format!("{} {} ({})", manifest.name, manifest.version, path.display()),
            have,
        })
    }

    /// A have-list: one `sha256:` digest a line, `#` comments allowed.
    pub fn from_have_list(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("reading have-list {}: {error}", path.display()))?;
        let mut have = std::collections::BTreeSet::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            bundle_spec::validate_digest(line)
                .map_err(|reason| anyhow::anyhow!("{}:{}: {reason}", path.display(), number + 1))?;
            have.insert(line.to_owned());
        }
        Ok(Self {
            base: format!("have-list {}", path.display()),
            have,
        })
    }
}

/// What a bundle run did.
#[derive(Debug, Serialize)]
pub struct BundleSummary {
    /// The file written.
    pub output: String,
    /// Images carried.
    pub images: usize,
    /// Charts carried.
    pub charts: usize,
    /// Distinct blobs.
    pub blobs: usize,
    /// Size of the distinct blobs.
    pub unique_bytes: u64,
    /// Bytes downloaded by this run (0 when everything was cached).
    pub downloaded_bytes: u64,
    /// Blobs left out of a delta bundle because the target has them.
    pub omitted_blobs: usize,
    /// Bytes of earlier interrupted downloads that were resumed instead of fetched again.
    pub resumed_bytes: u64,
    /// Blobs that were already in the cache.
    pub cached_blobs: usize,
    /// The signing key's fingerprint, if signed.
    pub signed_by: Option<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Makes a bundle.
pub async fn create(inputs: &Inputs, options: &BundleOptions) -> anyhow::Result<BundleSummary> {
    let started = Instant::now();
    if options.output.exists() && !options.force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            options.output.display()
        );
    }
    inputs.lock.check_matches(&inputs.spec)?;
    let signing_key = options
        .signing_key
        .as_deref()
        .map(signing::read_signing_key)
        .transpose()?;
    let cache = BlobCache::open(&options.cache_dir)?;
    let client = Arc::new(RegistryClient::new(options.registry.clone())?);

    let mut plan = BundlePlan::default();
    plan::plan_images(&inputs.spec, &inputs.lock, &client, &cache, &mut plan).await?;
    for chart in &inputs.spec.charts {
        if let ChartSource::Path(path) = chart.source()? {
            let files = match &inputs.spec_dir {
                Some(dir) => charts::read_chart_dir(&dir.join(path))?,
                None => charts::embedded_chart(
                    Path::new(path)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(path),
                )?,
            };
            let artifact = charts::package_chart(&chart.name, &files, &cache, &mut plan)?;
            plan.charts.push(artifact);
        }
    }
    // OCI charts were planned with the images; keep the spec's order for all of them.
    plan.charts.sort_by_key(|artifact| {
        inputs
            .spec
            .charts
            .iter()
            .position(|chart| chart.name == artifact.name)
    });
    let delta = options.delta.as_ref().map(|source| DeltaBase {
        base: source.base.clone(),
        omitted: plan.omit_present(&source.have),
    });

    let fetched = fetch_blobs(&plan, &client, &cache, options).await?;

    let omitted_blobs = delta.as_ref().map_or(0, |delta| delta.omitted.len());
    let documents = Documents::new(inputs, &plan, delta, signing_key.as_ref())?;
    let mut entries = vec![
        Entry {
            path: OCI_LAYOUT_PATH.to_owned(),
            data: EntryData::Bytes(OCI_LAYOUT_CONTENT.as_bytes().to_vec()),
        },
        Entry {
            path: INDEX_PATH.to_owned(),
            data: EntryData::Bytes(documents.index),
        },
    ];
    entries.extend(write::directory_entries());
    entries.push(Entry {
        path: MANIFEST_PATH.to_owned(),
        data: EntryData::Bytes(documents.manifest),
    });
    if let Some(signature) = documents.signature {
        entries.push(Entry {
            path: SIGNATURE_PATH.to_owned(),
            data: EntryData::Bytes(signature),
        });
    }
    entries.push(Entry {
        path: SPEC_PATH.to_owned(),
        data: EntryData::Bytes(inputs.spec_text.as_bytes().to_vec()),
    });
    entries.push(Entry {
        path: LOCK_PATH.to_owned(),
        data: EntryData::Bytes(inputs.lock_text.as_bytes().to_vec()),
    });
    for (digest, blob) in &plan.blobs {
        entries.push(write::blob_entry(digest, cache.path(digest), blob.size));
    }

    let progress = Progress::new("writing", plan.unique_size(), options.quiet);
    let output = options.output.clone();
    let written = tokio::task::spawn_blocking(move || {
        let item = progress.item("bundle", 0);
        let result = write::write_tar(&output, &entries, &|done| item.set(done));
        drop(item);
        progress.finish();
        result
    })
    .await?;
    written?;

    Ok(BundleSummary {
        output: options.output.display().to_string(),
        images: plan.images.len(),
        charts: plan.charts.len(),
        blobs: plan.blobs.len(),
        unique_bytes: plan.unique_size(),
        downloaded_bytes: fetched.downloaded,
        resumed_bytes: fetched.resumed,
        omitted_blobs,
        cached_blobs: fetched.cached,
        signed_by: signing_key.map(|key| signing::fingerprint(&key.verifying_key())),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Default)]
struct FetchTotals {
    downloaded: u64,
    resumed: u64,
    cached: usize,
}

/// Downloads every blob of the plan that is not cached yet, `concurrency` at a time.
async fn fetch_blobs(
    plan: &BundlePlan,
    client: &Arc<RegistryClient>,
    cache: &BlobCache,
    options: &BundleOptions,
) -> anyhow::Result<FetchTotals> {
    let progress = Progress::new("fetching", plan.unique_size(), options.quiet);
    let results: Vec<_> = futures_util::stream::iter(plan.blobs.iter())
        .map(|(digest, blob)| {
            let progress = &progress;
            async move {
                let item = progress.item(digest.trim_start_matches("sha256:"), blob.size);
                let outcome = match &blob.source {
                    Some(source) => {
                        cache
                            .fetch(client, source, digest, blob.size, &|done| item.set(done))
                            .await?
                    }
                    None => {
                        item.set(blob.size);
                        crate::cache::FetchOutcome {
                            cached: true,
                            ..Default::default()
                        }
                    }
                };
                if outcome.downloaded > 0 {
                    progress.log(&format!("fetched {digest} ({})", human_bytes(blob.size)));
                }
                Ok::<_, anyhow::Error>(outcome)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    progress.finish();
    Ok(results
        .iter()
        .fold(FetchTotals::default(), |mut totals, outcome| {
            totals.downloaded += outcome.downloaded;
            totals.resumed += outcome.resumed;
            totals.cached += usize::from(outcome.cached);
            totals
        }))
}

/// The bundle's metadata documents, derived from the inputs and the plan.
struct Documents {
    index: Vec<u8>,
    manifest: Vec<u8>,
    signature: Option<Vec<u8>>,
}

impl Documents {
    fn new(
        inputs: &Inputs,
        plan: &BundlePlan,
        delta: Option<DeltaBase>,
        signing_key: Option<&ed25519_dalek::SigningKey>,
    ) -> anyhow::Result<Self> {
        let descriptors: Vec<serde_json::Value> = plan
            .images
            .iter()
            .chain(&plan.charts)
            .map(|artifact| {
                let size = plan.blobs.get(&artifact.digest).map_or(0, |blob| blob.size);
                serde_json::json!({
                    "mediaType": artifact.media_type,
                    "digest": artifact.digest,
                    "size": size,
                    "annotations": { REF_NAME_ANNOTATION: artifact.reference },
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": descriptors,
        }))?;
        let manifest = BundleManifest {
            format_version: BUNDLE_FORMAT_VERSION,
            tool: concat!("coder-install ", env!("CARGO_PKG_VERSION")).to_owned(),
            created: inputs.lock.locked_at,
            name: inputs.spec.name.clone(),
            version: inputs.spec.version.clone(),
            platforms: inputs.spec.platforms.iter().map(ToString::to_string).collect(),
            index_digest: sha256_digest(&index),
            spec_digest: sha256_digest(inputs.spec_text.as_bytes()),
            lock_digest: sha256_digest(inputs.lock_text.as_bytes()),
            images: plan.images.clone(),
            charts: plan.charts.clone(),
            blobs: plan
                .blobs
                .iter()
                .map(|(digest, blob)| BlobRecord {
                    digest: digest.clone(),
                    size: blob.size,
                })
                .collect(),
            total_size: plan.unique_size(),
            delta,
        };
        let manifest = serde_json::to_vec_pretty(&manifest)?;
        let signature = signing_key.map(|key| signing::sign(key, &manifest));
        Ok(Self {
            index,
            manifest,
            signature,
        })
    }
}
