//! Making a bundle: [`create`] plans, lays out and fills the bundle file, resumably.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use coder_bundle_spec::format::{
    BLOBS_DIR, BUNDLE_DIR, BUNDLE_FORMAT_VERSION, BUNDLE_FORMAT_VERSION_WITHOUT_REFERRERS, BlobRecord,
    BundleManifest, BundledArtifact, DeltaBase, INDEX_PATH, LOCK_PATH, MANIFEST_PATH, OCI_INDEX_MEDIA_TYPE,
    OCI_LAYOUT_CONTENT, OCI_LAYOUT_PATH, REF_NAME_ANNOTATION, SIGNATURE_PATH, SPEC_PATH, blob_path,
};
use coder_bundle_spec::{BundleSpec, ChartSource, ImageLock};
use futures_util::StreamExt;
use serde::Serialize;

use crate::BundleError;
use crate::bundle_file::BundleFile;
use crate::make::cache::{BlobCache, Kept, Packs};
use crate::make::layout::{BlobPlace, Content, TarLayout};
use crate::make::output::BundleOutput;
use crate::make::plan::BundlePlan;
use coder_progress::Progress;
use coder_registry::{RegistryClient, RegistryOptions, sha256_digest};

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
    /// The bundle file to write; with `part_size`, the name its parts and index share.
    pub output: PathBuf,
    /// Split the bundle into parts of this many bytes (at least [`crate::make::output::MIN_PART_SIZE`]).
    pub part_size: Option<u64>,
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
    /// Make a delta bundle: leave out the config and layer blobs the target already has.
    pub delta: Option<DeltaSource>,
}

impl BundleOptions {
    /// Where the bundle goes: `output`, whole or in parts of `part_size`.
    pub fn bundle_output(&self) -> BundleOutput {
        BundleOutput {
            path: self.output.clone(),
            part_size: self.part_size,
        }
    }
}

/// What the first line of a have-list that `coder-install inventory` wrote starts with; the
/// rest of the line says which registry it was taken of, and when.
pub const HAVE_LIST_HEADER: &str = "# coder-install inventory of ";

/// What the target of a delta bundle already has.
pub struct DeltaSource {
    /// A description for the bundle manifest (e.g. `coder 1.0.0 (old.bundle)`).
    pub base: String,
    /// The digests the target has.
    pub have: std::collections::BTreeSet<String>,
}

impl DeltaSource {
    /// The blobs an earlier bundle carried (and, if it was a delta itself, those it assumed).
    pub fn from_bundle(path: &Path) -> crate::Result<Self> {
        let manifest = crate::read::BundleReader::open(path)?.manifest()?;
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
    pub fn from_have_list(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| BundleError::file("reading have-list", path, error))?;
        let mut have = std::collections::BTreeSet::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            coder_bundle_spec::validate_digest(line).map_err(|reason| BundleError::HaveList {
                path: path.to_owned(),
                line: number + 1,
                reason: reason.to_string(),
            })?;
            have.insert(line.to_owned());
        }
        // An inventory's first line says which registry it was taken of, and when.
        let base = match text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix(HAVE_LIST_HEADER))
        {
            Some(taken) => format!("the inventory of {taken} ({})", path.display()),
            None => format!("have-list {}", path.display()),
        };
        Ok(Self { base, have })
    }
}

/// What a bundle run did.
#[derive(Debug, Serialize)]
pub struct BundleSummary {
    /// The bundle file written; for a split bundle, the name its parts share.
    pub output: String,
    /// A split bundle's parts, in order, then its index; empty for a whole bundle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Images carried.
    pub images: usize,
    /// Charts carried.
    pub charts: usize,
    /// Signatures, attestations and SBOMs carried with the images (spec `signatures: true`).
    pub referrers: usize,
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

/// Makes a bundle, reporting its progress to `progress`.
pub async fn create(
    inputs: &Inputs,
    options: &BundleOptions,
    progress: &dyn Progress,
) -> crate::Result<BundleSummary> {
    let started = Instant::now();
    let output = options.bundle_output();
    check_can_start(inputs, options, &output)?;
    let signing_key = options
        .signing_key
        .as_deref()
        .map(crate::signing::read_signing_key)
        .transpose()?;
    let cache = BlobCache::open(&options.cache_dir)?;
    let client = Arc::new(RegistryClient::new(options.registry.clone())?);

    let mut plan = plan_contents(inputs, &client, &cache).await?;
    let delta = options.delta.as_ref().map(|source| DeltaBase {
        base: source.base.clone(),
        omitted: plan.omit_present(&source.have),
    });
    let omitted_blobs = delta.as_ref().map_or(0, |delta| delta.omitted.len());
    let layout = Documents::new(inputs, &plan, delta, signing_key.as_ref())?.layout(inputs, &plan)?;
    let key = output.key(&layout.identity());
    let packs = cache.packs();
    let writing = Writing {
        layout: &layout,
        key: &key,
        output: &output,
        plan: &plan,
        sources: Sources {
            cache: &cache,
            packs: &packs,
            client: &client,
        },
        options,
        progress,
    };
    let (totals, written) = match reuse_identical(&layout, &key, &packs, &output).await? {
        Some(written) => (
            FillTotals {
                cached: plan.blobs.len(),
                ..FillTotals::default()
            },
            written,
        ),
        None => write_and_keep(&writing).await?,
    };

    Ok(BundleSummary {
        omitted_blobs,
        signed_by: signing_key.map(|key| crate::signing::fingerprint(&key.verifying_key())),
        seconds: started.elapsed().as_secs_f64(),
        ..summarize(&plan, &output, &written, &totals, options)
    })
}

/// Refuses to start when the part size is below the minimum, the output exists (without
/// `--force`), or the lock does not match the spec.
fn check_can_start(inputs: &Inputs, options: &BundleOptions, output: &BundleOutput) -> crate::Result<()> {
    if let Some(part_size) = options.part_size
        && part_size < crate::make::output::MIN_PART_SIZE
    {
        return Err(BundleError::PartSizeTooSmall { part_size });
    }
    if let Some(existing) = output.existing()
        && !options.force
    {
        return Err(BundleError::OutputExists { path: existing });
    }
    inputs.lock.check_matches(&inputs.spec)?;
    Ok(())
}

/// Plans what the bundle holds: the locked images (with OCI charts and referrers), then the
/// charts carried as files, packaged into the cache; the charts in the spec's order.
async fn plan_contents(
    inputs: &Inputs,
    client: &Arc<RegistryClient>,
    cache: &BlobCache,
) -> crate::Result<BundlePlan> {
    let mut plan = BundlePlan::default();
    crate::make::plan::plan_images(&inputs.spec, &inputs.lock, client, cache, &mut plan).await?;
    for chart in &inputs.spec.charts {
        if let ChartSource::Path(path) = chart.source()? {
            let files = match &inputs.spec_dir {
                Some(dir) => crate::charts::read_chart_dir(&dir.join(path))?,
                None => crate::charts::embedded_chart(
                    Path::new(path)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(path),
                )?,
            };
            let artifact = crate::make::chart_package::package_chart(&chart.name, &files, cache, &mut plan)?;
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
    Ok(plan)
}

/// Writes the bundle ([`assemble`]) and keeps it in the cache's packs, so that a re-bundle of
/// the same inputs can reuse it; a copy instead of a link is noted, a failure to keep it warned.
async fn write_and_keep(writing: &Writing<'_>) -> crate::Result<(FillTotals, Vec<PathBuf>)> {
    let Writing {
        layout,
        key,
        options,
        progress,
        ..
    } = *writing;
    let Assembled {
        totals,
        written,
        parts_index,
    } = assemble(writing).await?;
    let files = &written[..written.len() - usize::from(parts_index.is_some())];
    match writing
        .sources
        .packs
        .add(files, parts_index.as_ref(), key, layout.blobs())
    {
        Ok(Kept::Linked) => {}
        Ok(Kept::Copied) => progress.line(&format!(
            "note: the cache {} is on another filesystem than {}, so it keeps a copy of the bundle \
             (a cache on the same filesystem keeps a hard link instead)",
            options.cache_dir.display(),
            options.output.display()
        )),
        Err(error) => progress.line(&format!(
            "warning: could not keep {} in the cache {}: {error}; a re-bundle will not be able to reuse it",
            options.output.display(),
            options.cache_dir.display()
        )),
    }
    Ok((totals, written))
}

/// The summary of a bundle written from `plan`: its files, what it holds and what the run took
/// (the omitted blobs, the signer and the wall time are the caller's to fill in).
fn summarize(
    plan: &BundlePlan,
    output: &BundleOutput,
    written: &[PathBuf],
    totals: &FillTotals,
    options: &BundleOptions,
) -> BundleSummary {
    BundleSummary {
        output: options.output.display().to_string(),
        parts: match output.part_size {
            Some(_) => written.iter().map(|path| path.display().to_string()).collect(),
            None => Vec::new(),
        },
        images: plan.images.len(),
        charts: plan.charts.len(),
        referrers: plan
            .images
            .iter()
            .chain(&plan.charts)
            .map(|artifact| artifact.referrers.len())
            .sum(),
        blobs: plan.blobs.len(),
        unique_bytes: plan.unique_size(),
        downloaded_bytes: totals.downloaded,
        resumed_bytes: totals.resumed,
        omitted_blobs: 0,
        cached_blobs: totals.cached,
        signed_by: None,
        seconds: 0.0,
    }
}

/// What [`assemble`] wrote.
struct Assembled {
    totals: FillTotals,
    /// The files, a split bundle's index last.
    written: Vec<std::path::PathBuf>,
    parts_index: Option<coder_bundle_spec::format::PartsIndex>,
}

#[derive(Default)]
struct FillTotals {
    downloaded: u64,
    resumed: u64,
    cached: usize,
}

/// When the cache holds a bundle with the same key (byte for byte what this run would write,
/// in the same parts), puts it at `output` by hard links and returns the files written. A pack
/// written to since the cache recorded it is checked in full first; a damaged one is not used
/// whole, but its intact blobs still serve (each is hashed as it is copied), and this run's
/// bundle then replaces it.
async fn reuse_identical(
    layout: &TarLayout,
    key: &str,
    packs: &Packs,
    output: &BundleOutput,
) -> crate::Result<Option<Vec<std::path::PathBuf>>> {
    let Some(pack) = packs.get(key) else {
        return Ok(None);
    };
    if !pack.unchanged() {
        let (layout, checked) = (layout.clone(), pack.clone());
        let intact = tokio::task::spawn_blocking(move || pack_is_intact(&layout, &checked)).await?;
        if !intact {
            return Ok(None);
        }
    }
    let partials: Vec<std::path::PathBuf> = output
        .files(layout.total_size())
        .into_iter()
        .map(|(path, _)| crate::write::partial_path(&path))
        .collect();
    let _ = std::fs::remove_file(crate::make::journal::Journal::path_for(
        &crate::write::partial_path(&output.path),
    ));
    packs
        .link_out(&pack, &partials)
        .map_err(|error| BundleError::file("writing", &output.path, error))?;
    // A split pack's record keeps its parts' digests: they need no hashing again. (Its index
    // names the parts of the output it was made for; this output's may be named otherwise.)
    let index = pack.parts_index().and_then(|index| {
        let digests = index.parts.iter().map(|part| part.sha256.clone()).collect();
        output.index(layout.total_size(), digests)
    });
    let written = crate::make::output::commit(output, layout.total_size(), index.as_ref())?;
    // Should this fail, the next run hashes the pack in full before it trusts it: slower only.
    let _ = packs.record_in_use(&pack);
    Ok(Some(written))
}

/// Whether the pack has the layout's skeleton and every blob hashes to its digest.
fn pack_is_intact(layout: &TarLayout, pack: &crate::make::cache::Pack) -> bool {
    let Ok(file) = pack.open() else {
        return false;
    };
    if !layout.skeleton_matches(&file).unwrap_or(false) {
        return false;
    }
    let entries: Vec<crate::hashing::HashJob> = layout
        .blobs()
        .map(|blob| crate::hashing::HashJob {
            name: blob.digest.to_owned(),
            digest: blob.digest.to_owned(),
            offset: blob.offset,
            size: blob.size,
        })
        .collect();
    crate::hashing::hash_in_parallel(&file, &entries, &|_| {})
        .is_ok_and(|results| results.iter().all(|(_, expected, actual)| expected == actual))
}

/// One run's writing of a bundle: the layout, its key in the cache, where it goes, the plan and
/// where its blobs come from, the options, and whom to report progress to.
struct Writing<'a> {
    layout: &'a TarLayout,
    key: &'a str,
    output: &'a BundleOutput,
    plan: &'a BundlePlan,
    sources: Sources<'a>,
    options: &'a BundleOptions,
    progress: &'a dyn Progress,
}

/// Where blobs come from: the cache, its packs (earlier bundles), the registries.
struct Sources<'a> {
    cache: &'a BlobCache,
    packs: &'a Packs,
    client: &'a RegistryClient,
}

/// Writes the bundle: the skeleton, then every blob into its place, `concurrency` at a time,
/// into `<output>.partial` (a split bundle: `<part>.partial` for each part), renamed into place
/// once complete. A killed run leaves the partial files and their journal (`key` names what
/// they hold), and the next run with the same inputs continues them. A run that fails keeps
/// the blobs it verified in the cache and removes its partial files.
async fn assemble(writing: &Writing<'_>) -> crate::Result<Assembled> {
    let Writing {
        layout,
        key,
        output,
        plan,
        sources: Sources { cache, packs, client },
        options,
        progress,
    } = *writing;
    let partial = output.partial_label();
    let Journalled {
        file,
        journal,
        resumed,
        continued,
        journal_path,
    } = open_journalled(output, layout, key)?;
    let file: Arc<BundleFile> = Arc::new(file);

    let job = progress.job("bundling", plan.unique_size());
    if continued {
        job.line(&format!(
            "continuing the interrupted run in {} ({} blobs done before, each checked again)",
            partial.display(),
            resumed.done.len()
        ));
    }
    let all_packs = packs.all();
    let writeback = crate::make::writeback::Writeback::new(Arc::clone(&file));
    let filler = crate::make::fill::Filler {
        file: Arc::clone(&file),
        path: &partial,
        journal: &journal,
        writeback: &writeback,
        resumed: &resumed,
        cache,
        packs: &all_packs,
        client,
        progress: job.as_ref(),
    };
    let results = fill_blobs(layout, plan, &filler, options.concurrency).await;
    job.finish();
    let flushed = writeback.finish().await;

    let failures = failure_messages(&results);
    if let Some(first) = failures.first() {
        keep_verified_blobs(&results, cache, &file).await;
        discard_partial(output, layout, &journal_path);
        return Err(BundleError::BlobsFailed {
            failed: failures.len(),
            first: first.clone(),
        });
    }
    if let Err(error) = flushed {
        discard_partial(output, layout, &journal_path);
        return Err(BundleError::NotFlushed {
            path: partial.to_path_buf(),
            error,
        });
    }
    let index_file = Arc::clone(&file);
    let index_output = output.clone();
    let parts_index =
        tokio::task::spawn_blocking(move || crate::make::output::parts_index(&index_output, &index_file))
            .await??;
    let written = crate::make::output::commit(output, layout.total_size(), parts_index.as_ref())?;
    let _ = std::fs::remove_file(&journal_path);
    Ok(Assembled {
        totals: fill_totals(&results),
        written,
        parts_index,
    })
}

/// The partial bundle opened with its journal, by [`open_journalled`].
struct Journalled {
    /// The partial files.
    file: BundleFile,
    /// The journal this run appends to.
    journal: crate::make::journal::Journal,
    /// What an interrupted run had done (nothing when this run starts anew).
    resumed: crate::make::journal::JournalState,
    /// Whether an interrupted run's files are continued.
    continued: bool,
    /// Where the journal is.
    journal_path: PathBuf,
}

/// Opens the partial files and their journal: continues an interrupted run of the same `key`
/// when its journal recorded something and its files are there, else starts both anew. When
/// the journal cannot be opened, the partial files are removed.
fn open_journalled(output: &BundleOutput, layout: &TarLayout, key: &str) -> crate::Result<Journalled> {
    let journal_path = crate::make::journal::Journal::path_for(&crate::write::partial_path(&output.path));
    let recorded = crate::make::journal::Journal::read(&journal_path, key);
    let opened = crate::make::output::open_partial(
        output,
        layout,
        recorded != crate::make::journal::JournalState::default(),
    )?;
    let (journal, resumed) = if opened.continued {
        (crate::make::journal::Journal::append_to(&journal_path), recorded)
    } else {
        (
            crate::make::journal::Journal::create(&journal_path, key),
            crate::make::journal::JournalState::default(),
        )
    };
    let journal = journal.map_err(|error| {
        crate::make::output::remove_partial(output, layout.total_size());
        BundleError::file("writing", &journal_path, error)
    })?;
    Ok(Journalled {
        file: opened.file,
        journal,
        resumed,
        continued: opened.continued,
        journal_path,
    })
}

/// Fills every blob of the layout into its place, `concurrency` (at least 1) at a time, each
/// from the source the plan gives it; returns each blob with how its filling went.
async fn fill_blobs<'a>(
    layout: &'a TarLayout,
    plan: &BundlePlan,
    filler: &crate::make::fill::Filler<'_>,
    concurrency: usize,
) -> Vec<(BlobPlace<'a>, crate::Result<crate::make::fill::Filled>)> {
    futures_util::stream::iter(layout.blobs())
        .map(|blob| {
            let source = plan
                .blobs
                .get(blob.digest)
                .and_then(|planned| planned.source.as_ref());
            async move { (blob, filler.fill(blob, source).await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The error chain of every blob that failed, in the order of the results.
fn failure_messages(results: &[(BlobPlace<'_>, crate::Result<crate::make::fill::Filled>)]) -> Vec<String> {
    results
        .iter()
        .filter_map(|(_, result)| {
            result
                .as_ref()
                .err()
                .map(|error| coder_progress::error_chain(error))
        })
        .collect()
}

/// Copies every blob that was filled and verified from the partial bundle into the cache, so
/// that the next run does not download it again (errors are ignored: the cache is a help).
async fn keep_verified_blobs(
    results: &[(BlobPlace<'_>, crate::Result<crate::make::fill::Filled>)],
    cache: &BlobCache,
    file: &Arc<BundleFile>,
) {
    let verified: Vec<(String, u64, u64)> = results
        .iter()
        .filter(|(_, result)| result.is_ok())
        .map(|(blob, _)| (blob.digest.to_owned(), blob.offset, blob.size))
        .collect();
    let cache = cache.clone();
    let salvage = Arc::clone(file);
    let _ = tokio::task::spawn_blocking(move || {
        for (digest, offset, size) in verified {
            let _ = cache.store_range(salvage.as_ref(), offset, size, &digest);
        }
    })
    .await;
}

/// Removes a failed run's partial files and its journal.
fn discard_partial(output: &BundleOutput, layout: &TarLayout, journal_path: &Path) {
    crate::make::output::remove_partial(output, layout.total_size());
    let _ = std::fs::remove_file(journal_path);
}

/// What the blobs that were filled took, added up: downloaded and resumed bytes, cached blobs.
fn fill_totals(results: &[(BlobPlace<'_>, crate::Result<crate::make::fill::Filled>)]) -> FillTotals {
    results
        .iter()
        .filter_map(|(_, result)| result.as_ref().ok())
        .fold(FillTotals::default(), |mut totals, filled| {
            totals.downloaded += filled.downloaded;
            totals.resumed += filled.resumed;
            totals.cached += usize::from(filled.cached);
            totals
        })
}

/// The `index.json` entries of an artifact's referrers; the tagged ones are named
/// `<registry>/<repository>:<cosign tag>`, so that OCI-layout tools find them as cosign would.
fn referrer_descriptors(
    artifact: &BundledArtifact,
    size_of: &dyn Fn(&str) -> u64,
) -> crate::Result<Vec<serde_json::Value>> {
    if artifact.referrers.is_empty() {
        return Ok(Vec::new());
    }
    let reference = coder_bundle_spec::ImageReference::parse(&artifact.reference)?;
    Ok(artifact
        .referrers
        .iter()
        .map(|referrer| {
            let mut descriptor = serde_json::json!({
                "mediaType": referrer.media_type,
                "digest": referrer.digest,
                "size": size_of(&referrer.digest),
            });
            if let Some(tag) = &referrer.tag {
                descriptor["annotations"] = serde_json::json!({
                    REF_NAME_ANNOTATION: format!("{}/{}:{tag}", reference.registry, reference.repository)
                });
            }
            descriptor
        })
        .collect())
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
    ) -> crate::Result<Self> {
        let size_of = |digest: &str| plan.blobs.get(digest).map_or(0, |blob| blob.size);
        let mut descriptors: Vec<serde_json::Value> = plan
            .images
            .iter()
            .chain(&plan.charts)
            .map(|artifact| {
                serde_json::json!({
                    "mediaType": artifact.media_type,
                    "digest": artifact.digest,
                    "size": size_of(&artifact.digest),
                    "annotations": { REF_NAME_ANNOTATION: artifact.reference },
                })
            })
            .collect();
        for artifact in plan.images.iter().chain(&plan.charts) {
            descriptors.extend(referrer_descriptors(artifact, &size_of)?);
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": descriptors,
        }))?;
        let carries_referrers = plan
            .images
            .iter()
            .chain(&plan.charts)
            .any(|artifact| !artifact.referrers.is_empty());
        let manifest = BundleManifest {
            // Without referrers, exactly the version 1 format (older coder-install reads it).
            format_version: if carries_referrers {
                BUNDLE_FORMAT_VERSION
            } else {
                BUNDLE_FORMAT_VERSION_WITHOUT_REFERRERS
            },
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
        let signature = signing_key.map(|key| crate::signing::sign(key, &manifest));
        Ok(Self {
            index,
            manifest,
            signature,
        })
    }

    /// The bundle's tar, laid out in the order [`coder_bundle_spec::format`] defines.
    fn layout(
        self,
        inputs: &Inputs,
        plan: &BundlePlan,
    ) -> Result<TarLayout, crate::make::layout::LayoutError> {
        let document = |path: &str, bytes: Vec<u8>| (path.to_owned(), Content::Document(bytes));
        let mut entries = vec![
            document(OCI_LAYOUT_PATH, OCI_LAYOUT_CONTENT.as_bytes().to_vec()),
            document(INDEX_PATH, self.index),
        ];
        entries.extend(["blobs/", BLOBS_DIR, BUNDLE_DIR].map(|path| (path.to_owned(), Content::Directory)));
        entries.push(document(MANIFEST_PATH, self.manifest));
        if let Some(signature) = self.signature {
            entries.push(document(SIGNATURE_PATH, signature));
        }
        entries.push(document(SPEC_PATH, inputs.spec_text.as_bytes().to_vec()));
        entries.push(document(LOCK_PATH, inputs.lock_text.as_bytes().to_vec()));
        entries.extend(plan.blobs.iter().map(|(digest, blob)| {
            (
                blob_path(digest),
                Content::Blob {
                    digest: digest.clone(),
                    size: blob.size,
                },
            )
        }));
        TarLayout::new(entries)
    }
}
