//! Filling a laid-out bundle: every blob is written straight into its place in
//! `<output>.partial`, hashed as it streams, and counts (a `done` line in the
//! [journal](crate::make::journal)) only once its digest checks out.
//!
//! Where a blob comes from, first match wins:
//! 1. the partial file itself, when the journal of an interrupted run says it is done (hashed
//!    again in place to be sure);
//! 2. the cache: a loose blob, or the same blob in an earlier bundle (a pack), copied through
//!    one buffer and hashed on the way;
//! 3. the registry, streamed through one buffer; a transfer that breaks is continued with a
//!    ranged request, here and (from the journal's `part` checkpoints) in a later run.
//!
//! A download writes what arrived every [`WRITE_CHUNK`] bytes and records each write in the
//! journal with the running hash state, so a killed run loses at most the bytes it held in memory
//! (less than one chunk per blob in flight): the next run hashes the written prefix again in
//! place, checks it against the recorded state, and asks the registry only for the rest.

use std::sync::Arc;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

use crate::bundle_file::BundleFile;
use crate::make::cache::{BlobCache, Pack};
use crate::make::journal::{Journal, JournalState};
use crate::make::layout::BlobPlace;
use crate::make::writeback::Writeback;
use coder_progress::{Item, Job};
use coder_registry::blob_io;
use coder_registry::{RegistryClient, RegistryError, Repository};

/// How many times a download that breaks mid-stream is continued before giving up.
const RESUME_ATTEMPTS: u32 = 5;
/// A download writes what arrived into place, and records how far it got in the journal, every
/// this many bytes: the most a killed run can lose per blob in flight. Small enough that two kills
/// during a bundle waste well under 2% of it, large enough that the writes and journal lines cost
/// nothing measurable (about 4 a MiB).
const WRITE_CHUNK: usize = 256 << 10;

/// What filling one blob took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes an interrupted run had already written, reused.
    pub resumed: u64,
    /// The blob came from the cache.
    pub cached: bool,
}

/// Everything the blob tasks share.
pub struct Filler<'a> {
    /// The partial bundle (one file or every part's), open for reading and writing.
    pub file: Arc<BundleFile>,
    /// Its path, for messages.
    pub path: &'a std::path::Path,
    /// Its journal.
    pub journal: &'a Journal,
    /// Flushes what is written to disk while the rest is still being written.
    pub writeback: &'a Writeback,
    /// What an interrupted run had done.
    pub resumed: &'a JournalState,
    /// The cache.
    pub cache: &'a BlobCache,
    /// The cache's packs, most recently used first.
    pub packs: &'a [Pack],
    /// The registry client.
    pub client: &'a RegistryClient,
    /// The run's progress display.
    pub progress: &'a dyn Job,
}

impl Filler<'_> {
    /// Writes `blob` into its place, from wherever it is cheapest to get; `source` is the
    /// repository to download it from.
    pub async fn fill(&self, blob: BlobPlace<'_>, source: Option<&Repository>) -> crate::Result<Filled> {
        let item = self
            .progress
            .item(blob.digest.trim_start_matches("sha256:"), blob.size);
        if self.resumed.done.contains(blob.digest) && self.intact_in_place(blob).await? {
            item.set(blob.size);
            return Ok(Filled {
                resumed: blob.size,
                ..Filled::default()
            });
        }
        if self.copy_from_cache(blob, item.as_ref()).await? {
            self.record_done(blob.digest)?;
            return Ok(Filled {
                cached: true,
                ..Filled::default()
            });
        }
        let Some(repository) = source else {
            return Err(crate::BundleError::BlobUnavailable {
                digest: blob.digest.to_owned(),
                cache_dir: self
                    .cache
                    .path(blob.digest)
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default(),
            });
        };
        let filled = self.download(blob, repository, item.as_ref()).await?;
        self.record_done(blob.digest)?;
        if filled.downloaded > 0 {
            self.progress.line(&format!(
                "fetched {} ({})",
                blob.digest,
                coder_progress::human_bytes(blob.size)
            ));
        }
        Ok(filled)
    }

    fn record_done(&self, digest: &str) -> crate::Result<()> {
        self.journal
            .record_done(digest)
            .map_err(|error| crate::BundleError::file("writing", self.journal.path(), error))
    }

    /// Whether the blob's place in the partial file already holds it (written by an earlier run).
    async fn intact_in_place(&self, blob: BlobPlace<'_>) -> crate::Result<bool> {
        let hasher = self.hash_in_place(blob, blob.size).await?;
        Ok(blob_io::digest_of(hasher) == blob.digest)
    }

    /// Hashes the first `length` bytes of the blob's place in the partial file.
    async fn hash_in_place(&self, blob: BlobPlace<'_>, length: u64) -> crate::Result<Sha256> {
        let file = Arc::clone(&self.file);
        let offset = blob.offset;
        Ok(tokio::task::spawn_blocking(move || {
            blob_io::hash_range(file.as_ref(), offset, length, &mut |_| {})
        })
        .await??)
    }

    /// Copies the blob from a loose cache file or a pack, if one has it intact.
    async fn copy_from_cache(&self, blob: BlobPlace<'_>, item: &dyn Item) -> crate::Result<bool> {
        let mut candidates = Vec::new();
        if self.cache.contains(blob.digest, blob.size) {
            candidates.push((CachedCopy::Loose(self.cache.path(blob.digest)), 0));
        }
        for pack in self.packs {
            if let Some((offset, size)) = pack.locate(blob.digest)
                && size == blob.size
            {
                candidates.push((CachedCopy::Pack(pack.clone()), offset));
            }
        }
        for (copy, offset) in candidates {
            let target = Arc::clone(&self.file);
            let (target_offset, size) = (blob.offset, blob.size);
            let copied = tokio::task::spawn_blocking(move || {
                let source: Box<dyn blob_io::RandomRead> = match copy {
                    CachedCopy::Loose(path) => Box::new(std::fs::File::open(path)?),
                    CachedCopy::Pack(pack) => Box::new(pack.open()?),
                };
                blob_io::copy_range(
                    source.as_ref(),
                    offset,
                    target.as_ref(),
                    target_offset,
                    size,
                    &mut |_| {},
                )
            })
            .await?;
            match copied {
                Ok(digest) if digest == blob.digest => {
                    self.writeback.wrote(blob.size);
                    item.set(blob.size);
                    return Ok(true);
                }
                // A damaged or vanished cache copy: try the next one, or download.
                _ => continue,
            }
        }
        Ok(false)
    }

    /// Downloads the blob into its place, continuing from a journal checkpoint if there is one.
    async fn download(
        &self,
        blob: BlobPlace<'_>,
        repository: &Repository,
        item: &dyn Item,
    ) -> crate::Result<Filled> {
        let mut transfer = self.resume_point(blob).await?;
        let resumed = transfer.have;
        item.set(resumed);
        let mut downloaded = 0;
        let mut attempt = 0;
        // A prefix that is the whole blob (killed before its `done` line) needs no request.
        while transfer.have < blob.size {
            attempt += 1;
            match self.download_from(blob, repository, &mut transfer, item).await {
                Ok(bytes) => {
                    downloaded += bytes;
                    break;
                }
                Err(DownloadError::Interrupted(bytes, _)) if attempt < RESUME_ATTEMPTS => downloaded += bytes,
                Err(DownloadError::Interrupted(_, error) | DownloadError::Fatal(error)) => {
                    return Err(error.into());
                }
            }
        }
        let what = format!("{repository} blob {}", blob.digest);
        if transfer.have != blob.size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: blob.size,
                actual: transfer.have,
            }
            .into());
        }
        let actual = blob_io::digest_of(transfer.hasher);
        if actual != blob.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: blob.digest.to_owned(),
                actual,
            }
            .into());
        }
        Ok(Filled {
            downloaded,
            resumed,
            cached: false,
        })
    }

    /// Where an interrupted run's download of `blob` can be continued: its last checkpoint, if
    /// the bytes in place up to it hash to the state recorded with it; else the start.
    async fn resume_point(&self, blob: BlobPlace<'_>) -> crate::Result<Transfer> {
        let Some(checkpoint) = self.resumed.progress.get(blob.digest) else {
            return Ok(Transfer::from_start());
        };
        if checkpoint.bytes == 0 || checkpoint.bytes > blob.size {
            return Ok(Transfer::from_start());
        }
        let hasher = self.hash_in_place(blob, checkpoint.bytes).await?;
        let matches_record = checkpoint
            .hash_state
            .as_deref()
            .is_none_or(|recorded| hash_state(&hasher) == recorded);
        if !matches_record {
            self.progress.line(&format!(
                "the first {} bytes of {} in {} changed since they were written; fetching it again",
                checkpoint.bytes,
                blob.digest,
                self.path.display()
            ));
            return Ok(Transfer::from_start());
        }
        Ok(Transfer {
            hasher,
            have: checkpoint.bytes,
        })
    }

    /// One request: streams the rest of the blob from `transfer.have` into place. Returns the
    /// bytes it added.
    async fn download_from(
        &self,
        blob: BlobPlace<'_>,
        repository: &Repository,
        transfer: &mut Transfer,
        item: &dyn Item,
    ) -> Result<u64, DownloadError> {
        let (mut response, start) = self
            .client
            .blob(repository, blob.digest, transfer.have)
            .await
            .map_err(DownloadError::Fatal)?;
        if start != transfer.have {
            // The registry ignored the range: start over.
            *transfer = Transfer::from_start();
        }
        let before = transfer.have;
        let mut buffer = Vec::with_capacity(WRITE_CHUNK);
        let url = response.url().to_string();
        let streamed = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let arrived = transfer.have + (buffer.len() + chunk.len()) as u64;
                    if arrived > blob.size {
                        break Err(DownloadError::Fatal(RegistryError::SizeMismatch {
                            what: format!("{repository} blob {}", blob.digest),
                            expected: blob.size,
                            actual: arrived,
                        }));
                    }
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() >= WRITE_CHUNK {
                        buffer = self.write(blob, transfer, buffer, item).await?;
                    }
                }
                Ok(None) => break Ok(()),
                Err(source) => {
                    break Err(DownloadError::Interrupted(
                        0,
                        RegistryError::Transport {
                            url: url.clone(),
                            source,
                        },
                    ));
                }
            }
        };
        // Whatever happened, what arrived is written and hashed, so a retry starts after it.
        self.write(blob, transfer, buffer, item).await?;
        let added = transfer.have - before;
        match streamed {
            Ok(()) => Ok(added),
            Err(DownloadError::Interrupted(_, error)) => Err(DownloadError::Interrupted(added, error)),
            Err(fatal) => Err(fatal),
        }
    }

    /// Writes `buffer` at the transfer's position and hashes it (off the async threads), records
    /// the checkpoint (bytes in place and the running hash state) in the journal, and hands the
    /// emptied buffer back.
    async fn write(
        &self,
        blob: BlobPlace<'_>,
        transfer: &mut Transfer,
        mut buffer: Vec<u8>,
        item: &dyn Item,
    ) -> Result<Vec<u8>, DownloadError> {
        if buffer.is_empty() {
            return Ok(buffer);
        }
        let file = Arc::clone(&self.file);
        let position = blob.offset + transfer.have;
        let mut hasher = std::mem::take(&mut transfer.hasher);
        let written = tokio::task::spawn_blocking(move || {
            use blob_io::RandomWrite;
            file.write_range(&buffer, position).map(|()| {
                hasher.update(&buffer);
                (hasher, buffer)
            })
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written)
        .map_err(|error| DownloadError::Fatal(io_error(&format!("writing {}", self.path.display()))(error)));
        let (hasher, returned) = written?;
        transfer.hasher = hasher;
        transfer.have += returned.len() as u64;
        self.writeback.wrote(returned.len() as u64);
        item.set(transfer.have);
        self.journal
            .record_progress(blob.digest, transfer.have, &hash_state(&transfer.hasher))
            .map_err(|error| {
                DownloadError::Fatal(io_error(&format!("writing {}", self.journal.path().display()))(
                    error,
                ))
            })?;
        buffer = returned;
        buffer.clear();
        Ok(buffer)
    }
}

/// Where the cache holds a copy of a blob: a loose file, or an earlier bundle.
enum CachedCopy {
    Loose(std::path::PathBuf),
    Pack(Pack),
}

/// A download in progress: the hash of what is in place, and how much that is.
struct Transfer {
    hasher: Sha256,
    have: u64,
}

impl Transfer {
    /// Nothing in place yet.
    fn from_start() -> Self {
        Self {
            hasher: Sha256::new(),
            have: 0,
        }
    }
}

/// The running hash state as the journal records it (SHA-256's serialized state: the chaining
/// values, the byte count and the partial block).
fn hash_state(hasher: &Sha256) -> Vec<u8> {
    hasher.serialize().to_vec()
}

enum DownloadError {
    /// The stream broke after this many new bytes; can be continued.
    Interrupted(u64, RegistryError),
    Fatal(RegistryError),
}

fn io_error(context: &str) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.to_owned();
    move |source| RegistryError::Io { context, source }
}
