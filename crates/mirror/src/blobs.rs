//! The blob half of a mirror run: which blobs still need sending where, the check that a delta
//! bundle's base is in the site registry, and the uploads and mounts themselves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use coder_bundle::bundle_file::BundleFile;
use coder_progress::{Item, Job, human_bytes};
use coder_registry::{BlobPushOutcome, FileRange, MountOutcome, RegistryClient, Repository};
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{MirrorError, registry_error};
use crate::plan::{ArtifactPlan, BlobPlan};
use crate::report::Counters;

/// One blob still to handle: its digest, its plan, and the repositories that need it checked.
pub(crate) type BlobWork<'a> = (&'a String, &'a BlobPlan, Vec<&'a Repository>);

/// Whether a blob is known to be in a repository already (from the delta check).
pub(crate) type KnownPresent<'a> = HashMap<(&'a str, &'a Repository), bool>;

/// Per blob, the repositories that still need it checked: those of the artifacts not complete
/// yet (the blobs of complete artifacts are counted as skipped).
pub(crate) fn work<'a>(
    artifacts: &'a [ArtifactPlan],
    blobs: &'a BTreeMap<String, BlobPlan>,
    complete: &[bool],
    counters: &Counters,
) -> Vec<BlobWork<'a>> {
    let mut work: Vec<(&String, &BlobPlan, Vec<&Repository>)> = Vec::new();
    for (digest, blob) in blobs {
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
    // Largest first: the uploads that take longest start at once, and the small ones fill the
    // gaps at the end instead of a large one running alone.
    work.sort_by_key(|(_, blob, _)| std::cmp::Reverse(blob.size));
    work
}

/// A delta bundle's omitted blobs must be somewhere in the site registry already: which of
/// them each repository has, and the omitted blobs no repository has (with the artifacts that
/// use them).
pub(crate) async fn check_omitted<'a>(
    client: &RegistryClient,
    work: &[BlobWork<'a>],
    artifacts: &[ArtifactPlan],
    concurrency: usize,
) -> Result<(KnownPresent<'a>, Vec<(String, String)>), MirrorError> {
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
    let known_present: KnownPresent<'a> = checks.into_iter().collect();
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
    Ok((known_present, missing))
}

/// How many repositories one blob is mounted into at once, once one holds it.
const MOUNTS_AT_ONCE: usize = 8;

/// Sends the blobs, `concurrency` digests at a time: per digest, the first repository that
/// lacks it gets it uploaded from the bundle `file`, every other one gets it by cross-repository
/// mount (an upload if the registry declines).
pub(crate) async fn send(
    client: &RegistryClient,
    work: &[BlobWork<'_>],
    known_present: &KnownPresent<'_>,
    file: &Arc<BundleFile>,
    counters: &Counters,
    progress: &dyn Job,
    concurrency: usize,
) -> Result<(), MirrorError> {
    let sender = Sender {
        client,
        known_present,
        file,
        counters,
        progress,
    };
    futures_util::stream::iter(work.iter())
        .map(|work| sender.send_digest(work))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// What sending any one blob needs: the registry, what is known present, the bundle file, and
/// where to count and report.
struct Sender<'s, 'a> {
    client: &'s RegistryClient,
    known_present: &'s KnownPresent<'a>,
    file: &'s Arc<BundleFile>,
    counters: &'s Counters,
    progress: &'s dyn Job,
}

impl Sender<'_, '_> {
    /// Puts one blob into every repository of its work that lacks it, the first by upload (or
    /// mount, for a blob the delta bundle leaves out), the others by mount from it. Once one
    /// repository holds it, the others are done [`MOUNTS_AT_ONCE`] at a time: a base layer shared
    /// by hundreds of repositories would otherwise cost two round trips per repository, one
    /// after another, at the end of the push.
    async fn send_digest(&self, (digest, blob, repositories): &BlobWork<'_>) -> Result<(), MirrorError> {
        let item: Arc<dyn Item> = Arc::from(
            self.progress
                .item(digest.trim_start_matches("sha256:"), blob.size),
        );
        // Whatever way it went, a repository that `put_into` returned for holds the blob.
        let mut rest = repositories.iter();
        let holder = match rest.next() {
            Some(first) => {
                self.put_into(digest, blob, first, None, &item).await?;
                Some(*first)
            }
            None => None,
        };
        futures_util::stream::iter(rest)
            .map(|repository| self.put_into(digest, blob, repository, holder, &item))
            .buffer_unordered(MOUNTS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        item.set(blob.size);
        Ok(())
    }

    /// Puts the blob into `repository` unless it is there: uploaded from the bundle, or mounted
    /// from `holder` (a blob the delta bundle leaves out can only be mounted).
    async fn put_into(
        &self,
        digest: &str,
        blob: &BlobPlan,
        repository: &Repository,
        holder: Option<&Repository>,
        item: &Arc<dyn Item>,
    ) -> Result<(), MirrorError> {
        if self.present(digest, repository).await? {
            self.counters.present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let Some(location) = blob.location else {
            // Only reachable for an omitted blob present in another repository: it can only
            // be mounted from there.
            return self.mount_omitted(digest, repository, holder).await;
        };
        let source = FileRange {
            file: self.file.clone(),
            offset: location.offset,
            size: location.size,
        };
        self.push(digest, blob, repository, source, holder, item).await
    }

    /// Whether `repository` has the blob: what the delta check found, else asked.
    async fn present(&self, digest: &str, repository: &Repository) -> Result<bool, MirrorError> {
        match self.known_present.get(&(digest, repository)) {
            Some(present) => Ok(*present),
            None => self
                .client
                .blob_exists(repository, digest)
                .await
                .map_err(|source| registry_error(format!("blob {digest} to {repository}"), source)),
        }
    }

    /// Mounts a blob the delta bundle leaves out into `repository` from the `holder` that has it;
    /// without one, or when the registry will not mount, the push cannot go on.
    async fn mount_omitted(
        &self,
        digest: &str,
        repository: &Repository,
        holder: Option<&Repository>,
    ) -> Result<(), MirrorError> {
        let from = holder.map(|holder| holder.repository.as_str());
        let outcome = match from {
            Some(from) => self
                .client
                .mount_blob(repository, digest, from)
                .await
                .map_err(|source| registry_error(format!("blob {digest} to {repository}"), source))?,
            None => {
                return Err(MirrorError::Bundle(format!(
                    "blob {digest} is left out of the delta bundle and not in {repository}"
                )));
            }
        };
        if !matches!(outcome, MountOutcome::Mounted) {
            return Err(MirrorError::Bundle(format!(
                "blob {digest} is left out of the delta bundle, is not in {repository}, and the registry would not mount it from {}; push the base bundle first",
                from.unwrap_or_default()
            )));
        }
        self.counters.mounted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pushes a blob from the bundle file into `repository` (by mount from the `holder` when the
    /// registry accepts), counting the outcome and reporting the bytes sent to `item`.
    async fn push(
        &self,
        digest: &str,
        blob: &BlobPlan,
        repository: &Repository,
        source: FileRange,
        holder: Option<&Repository>,
        item: &Arc<dyn Item>,
    ) -> Result<(), MirrorError> {
        let on_progress: Arc<dyn Fn(u64) + Send + Sync> = {
            let item = item.clone();
            Arc::new(move |done| item.set(done))
        };
        let pushed = self
            .client
            .push_blob(
                repository,
                digest,
                &source,
                holder.map(|holder| holder.repository.as_str()),
                on_progress,
            )
            .await;
        let outcome = match pushed {
            Ok(outcome) => outcome,
            Err(failure) => {
                return Err(
                    match crate::damaged::bundle_fault(&source, digest, &failure).await {
                        Some(problem) => MirrorError::DamagedBundle {
                            digest: digest.to_owned(),
                            problem,
                        },
                        None => registry_error(format!("blob {digest} to {repository}"), failure),
                    },
                );
            }
        };
        match outcome {
            BlobPushOutcome::Mounted => {
                self.counters.mounted.fetch_add(1, Ordering::Relaxed);
            }
            BlobPushOutcome::Uploaded => {
                self.counters.uploaded.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes_sent.fetch_add(blob.size, Ordering::Relaxed);
                self.progress.line(&format!(
                    "uploaded {digest} ({}) to {repository}",
                    human_bytes(blob.size)
                ));
            }
        }
        Ok(())
    }
}
