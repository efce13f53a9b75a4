//! Chunked blob uploads, for registries behind a proxy that caps request bodies (NGINX's
//! `client_max_body_size` is 1 MiB unless raised): the blob goes up as a series of
//! `PATCH <location>` requests, each one `Content-Range` of the blob, then an empty
//! `PUT <location>?digest=` commits it (the distribution spec's chunked upload).
//!
//! Chunks are at least the registry's `OCI-Chunk-Min-Length`. A chunk the proxy still refuses
//! as too large (413) is halved, down to [`SMALLEST_CHUNK`]. A chunk lost to the connection or
//! a 5xx answer is not sent again from the start: the registry is asked how much of the upload
//! it holds (`GET <location>`, its `Range`) and the upload goes on from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};

use crate::blob_io::FileRange;
use crate::upload::{BlobUpload, PUSH_ACTION, push_failure};
use crate::{Call, RegistryClient, RegistryError, Repository, header_value};

/// The chunk size a client falls back to when a whole-blob upload is refused as too large
/// (413) and no `--chunk-size` was given. A proxy with a smaller limit refuses it too, and the
/// size is halved until one passes (four refusals down to NGINX's default 1 MiB), once for the
/// whole run.
pub const FALLBACK_CHUNK: u64 = 16 << 20;

/// The smallest chunk a refused chunk is halved to (the registry's minimum still wins).
pub const SMALLEST_CHUNK: u64 = 64 << 10;

/// How a client uploads blobs, shared by all its uploads: whole (one `PUT`), or in chunks of
/// a size, which a 413 answer sets or lowers for every upload after it.
#[derive(Debug, Default)]
pub struct ChunkPolicy {
    /// 0: whole blobs; else the chunk size in bytes.
    size: AtomicU64,
    /// Whether the switch to chunks was reported (it is reported once).
    announced: AtomicBool,
}

impl ChunkPolicy {
    /// Whole blobs until a 413 says otherwise, or chunks of `size` bytes from the start.
    pub fn new(size: Option<u64>) -> Self {
        Self {
            size: AtomicU64::new(size.unwrap_or(0)),
            announced: AtomicBool::new(size.is_some()),
        }
    }

    /// The chunk size in force, or `None` for whole blobs.
    pub fn chunk_size(&self) -> Option<u64> {
        match self.size.load(Ordering::Relaxed) {
            0 => None,
            size => Some(size),
        }
    }

    /// An upload was refused as too large: a whole blob (`refused` is `None`), or a chunk of
    /// `refused` bytes. Sets the chunk size for every later upload: [`FALLBACK_CHUNK`] after a
    /// whole blob, half the refused chunk after a chunk, never under `floor` (the registry's
    /// minimum) nor [`SMALLEST_CHUNK`]. Returns the size in force and whether this is the first
    /// switch to chunks (which the caller reports), or `None` when nothing smaller is left.
    fn smaller_than(&self, refused: Option<u64>, floor: u64) -> Option<(u64, bool)> {
        let next = match refused {
            None => FALLBACK_CHUNK.max(floor),
            Some(refused) if refused / 2 >= SMALLEST_CHUNK.max(floor) => refused / 2,
            Some(_) => return None,
        };
        // Uploads run in parallel: another may have lowered the size already; keep the smaller.
        let _ = self
            .size
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |size| {
                Some(if size == 0 { next } else { size.min(next) })
            });
        let first = !self.announced.swap(true, Ordering::Relaxed);
        Some((self.size.load(Ordering::Relaxed), first))
    }
}

/// How far the registry holds an upload: the session's location (it may change with every
/// answer) and the bytes it has received.
struct UploadProgress {
    location: String,
    received: u64,
}

impl RegistryClient {
    /// The chunk size in force for this client's uploads (`None`: whole blobs).
    pub fn upload_chunk_size(&self) -> Option<u64> {
        self.chunks.chunk_size()
    }

    /// An upload (a whole blob, or a chunk of `refused_chunk` bytes) was refused as too large
    /// (413): sets smaller chunks for every later upload, saying so (the switch to chunks once).
    /// `Err(refusal)` when nothing smaller is left to try.
    pub(crate) fn chunks_after_refusal(
        &self,
        refused_chunk: Option<u64>,
        min_chunk: u64,
        refusal: RegistryError,
    ) -> Result<u64, RegistryError> {
        let Some((size, first)) = self.chunks.smaller_than(refused_chunk, min_chunk) else {
            return Err(refusal);
        };
        if first {
            self.options.progress.warning(&format!(
                "the site registry (or a proxy in front of it) refused an upload as too large \
                 (HTTP 413): uploading blobs in chunks of {} from now on (set --chunk-size to \
                 choose the size)",
                coder_progress::human_bytes(size)
            ));
        } else if refused_chunk.is_some() {
            self.options.progress.warning(&format!(
                "a chunk was refused as too large (HTTP 413): chunks of {} from now on",
                coder_progress::human_bytes(size)
            ));
        }
        Ok(size)
    }

    /// Uploads `source` into `upload` in chunks (of the size in force, at least the registry's
    /// minimum) and commits it as blob `digest`. `on_progress` gets the bytes the registry has
    /// taken so far.
    pub(crate) async fn upload_in_chunks(
        &self,
        repository: &Repository,
        upload: BlobUpload,
        digest: &str,
        source: &FileRange,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(), RegistryError> {
        let min_chunk = upload.min_chunk.unwrap_or(0);
        let mut progress = UploadProgress {
            location: upload.location,
            received: 0,
        };
        let mut lost = 0;
        while progress.received < source.size {
            let size = self.upload_chunk_size().unwrap_or(FALLBACK_CHUNK).max(min_chunk);
            let chunk = FileRange {
                file: source.file.clone(),
                offset: source.offset + progress.received,
                size: size.min(source.size - progress.received),
            };
            match self
                .patch_chunk(repository, &progress, &chunk, digest, on_progress.clone())
                .await
            {
                Ok(next) => progress = next,
                Err(refusal @ RegistryError::TooLarge { .. }) => {
                    self.chunks_after_refusal(Some(chunk.size), min_chunk, refusal)?;
                }
                Err(error @ (RegistryError::Transport { .. } | RegistryError::ServerError { .. }))
                    if lost + 1 < self.options.attempts =>
                {
                    lost += 1;
                    let delay = std::time::Duration::from_millis(250 * 4u64.pow(lost - 1));
                    self.report_retry(
                        &format!("chunk of {digest} at byte {}", progress.received),
                        lost,
                        &coder_progress::error_chain(&error),
                        delay,
                    );
                    tokio::time::sleep(delay).await;
                    progress = self.upload_status(repository, &progress.location).await?;
                    on_progress(progress.received);
                }
                Err(error) => return Err(error),
            }
        }
        self.commit_chunks(repository, &progress.location, digest).await
    }

    /// Sends one chunk (`PATCH` with its `Content-Range`) and returns where the upload stands.
    async fn patch_chunk(
        &self,
        repository: &Repository,
        at: &UploadProgress,
        chunk: &FileRange,
        digest: &str,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<UploadProgress, RegistryError> {
        let start = at.received;
        let end = start + chunk.size;
        let mut headers = HeaderMap::new();
        headers.insert("content-range", header_value(&format!("{start}-{}", end - 1))?);
        let on_progress: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |sent| on_progress(start + sent));
        // A lost chunk is resumed from the registry's count, not sent blind again.
        let result = self
            .send_range(
                (Method::PATCH, at.location.clone()),
                repository,
                chunk,
                digest,
                headers,
                on_progress,
            )
            .await;
        let response = result?;
        if response.status() != StatusCode::ACCEPTED {
            let what = format!("a chunk of blob {digest} (bytes {start}-{})", end - 1);
            return Err(push_failure(response, repository, &what, chunk.size).await);
        }
        let progress = self.upload_answer(&response, repository, &at.location)?;
        if progress.received != end {
            return Err(range_mismatch(repository, digest, end, progress.received));
        }
        Ok(progress)
    }

    /// Where an upload stands, asked of the registry (`GET <location>`: 204 and its `Range`).
    async fn upload_status(
        &self,
        repository: &Repository,
        location: &str,
    ) -> Result<UploadProgress, RegistryError> {
        let response = self
            .send_authorized(Call {
                method: Method::GET,
                url: location.to_owned(),
                repository,
                headers: HeaderMap::new(),
                action: PUSH_ACTION,
                body: None,
                attempts: self.options.attempts,
                also_pull_from: None,
            })
            .await?;
        if response.status() != StatusCode::NO_CONTENT {
            return Err(push_failure(response, repository, "an upload's status", 0).await);
        }
        self.upload_answer(&response, repository, location)
    }

    /// Commits the chunks as blob `digest` (`PUT <location>?digest=`, no body).
    async fn commit_chunks(
        &self,
        repository: &Repository,
        location: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let url = BlobUpload::at(location.to_owned()).commit_url(digest);
        let response = self
            .send_authorized(Call {
                method: Method::PUT,
                url,
                repository,
                headers,
                action: PUSH_ACTION,
                body: None,
                attempts: 1,
                also_pull_from: None,
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(push_failure(response, repository, &format!("blob {digest}"), 0).await);
        }
        crate::upload::check_digest_answer(&response, digest, &format!("{repository}@{digest} (blob)"))
    }

    /// The upload's new location (made absolute; the old one when none is given) and the
    /// bytes it holds, from an answer's `Location` and `Range` (`0-LAST`, inclusive).
    fn upload_answer(
        &self,
        response: &Response,
        repository: &Repository,
        location: &str,
    ) -> Result<UploadProgress, RegistryError> {
        let location = match response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
        {
            Some(next) => self.absolute_location(next, repository),
            None => location.to_owned(),
        };
        let range = response
            .headers()
            .get("range")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let received = received_bytes(range).ok_or_else(|| RegistryError::Rejected {
            registry: repository.registry.clone(),
            repository: repository.repository.clone(),
            what: "an upload".to_owned(),
            status: response.status().as_u16(),
            detail: format!("the answer's Range header {range:?} is not `0-LAST`"),
        })?;
        Ok(UploadProgress { location, received })
    }
}

/// The bytes an upload holds from its `Range` answer `0-LAST` (inclusive). The distribution
/// registry writes `0-0` for an empty upload too; a one-byte one then reads as empty and is
/// sent again, which the registry refuses (416) rather than store twice.
fn received_bytes(range: &str) -> Option<u64> {
    let range = range.trim().trim_start_matches("bytes=");
    let (start, last) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    match last.trim().parse::<u64>().ok()? {
        0 => Some(0),
        last => Some(last + 1),
    }
}

fn range_mismatch(repository: &Repository, digest: &str, expected: u64, received: u64) -> RegistryError {
    RegistryError::Rejected {
        registry: repository.registry.clone(),
        repository: repository.repository.clone(),
        what: format!("a chunk of blob {digest}"),
        status: 202,
        detail: format!("the registry holds {received} bytes of the upload after the chunk, not {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_answer_gives_the_bytes_received() {
        assert_eq!(received_bytes("0-0"), Some(0));
        assert_eq!(received_bytes("0-1048575"), Some(1 << 20));
        assert_eq!(received_bytes("bytes=0-9"), Some(10));
        assert_eq!(received_bytes(""), None);
        assert_eq!(received_bytes("5-9"), None);
        assert_eq!(received_bytes("0-x"), None);
    }

    #[test]
    fn a_refusal_switches_to_chunks_once_then_halves_down_to_the_floor() {
        let policy = ChunkPolicy::new(None);
        assert_eq!(policy.chunk_size(), None);
        assert_eq!(policy.smaller_than(None, 0), Some((FALLBACK_CHUNK, true)));
        assert_eq!(policy.chunk_size(), Some(FALLBACK_CHUNK));
        assert_eq!(
            policy.smaller_than(Some(FALLBACK_CHUNK), 0),
            Some((FALLBACK_CHUNK / 2, false))
        );
        assert_eq!(policy.chunk_size(), Some(FALLBACK_CHUNK / 2));
        // Nothing under the smallest chunk, nor under the registry's minimum.
        assert_eq!(policy.smaller_than(Some(SMALLEST_CHUNK), 0), None);
        assert_eq!(policy.smaller_than(Some(4 << 20), 3 << 20), None);
        // A registry minimum over the fallback wins.
        let policy = ChunkPolicy::new(None);
        assert_eq!(policy.smaller_than(None, 20 << 20), Some((20 << 20, true)));
        // An explicit size is not announced as a switch.
        let policy = ChunkPolicy::new(Some(8 << 20));
        assert_eq!(policy.chunk_size(), Some(8 << 20));
        assert_eq!(policy.smaller_than(Some(8 << 20), 0), Some((4 << 20, false)));
    }
}
