//! The content-addressed blob cache: every blob verified once, stored once, reused by every
//! bundle that needs it.
//!
//! Layout under the cache root: `blobs/sha256/<hex>` holds verified blobs (a file is renamed
//! there only after its bytes hashed to its name), `partial/<hex>` holds interrupted downloads,
//! which the next run hashes and continues with a ranged request instead of starting over.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use crate::registry::{RegistryClient, RegistryError, Repository};

/// Buffer size for reading and writing blob files: fixed, whatever the blob size.
const IO_BUFFER: usize = 1 << 20;
/// How many times a download that breaks mid-stream is resumed before giving up.
const RESUME_ATTEMPTS: u32 = 5;

/// A content-addressed store of verified blobs.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

/// What [`BlobCache::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchOutcome {
    /// Bytes downloaded by this call.
    pub downloaded: u64,
    /// Bytes of an earlier partial download that were reused.
    pub resumed: u64,
    /// The blob was already in the cache; nothing was downloaded.
    pub cached: bool,
}

impl BlobCache {
    /// The default cache: `${XDG_CACHE_HOME:-~/.cache}/coder-install/blobs-cache`.
    pub fn default_root() -> PathBuf {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("coder-install")
            .join("blob-cache")
    }

    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        for dir in [root.join("blobs/sha256"), root.join("partial")] {
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("creating cache folder {}", dir.display())))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// Where the verified blob `digest` lives (whether or not it is there yet).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_part(digest))
    }

    fn partial_path(&self, digest: &str) -> PathBuf {
        self.root.join("partial").join(hex_part(digest))
    }

    /// Whether the verified blob is present with the expected size.
    pub fn contains(&self, digest: &str, size: u64) -> bool {
        std::fs::metadata(self.path(digest)).is_ok_and(|meta| meta.len() == size)
    }

    /// Stores a small blob that is already in memory (a manifest), after checking its digest.
    pub fn insert(&self, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let actual = crate::registry::sha256_digest(bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "manifest".to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        if self.contains(digest, bytes.len() as u64) {
            return Ok(());
        }
        let partial = self.partial_path(digest);
        std::fs::write(&partial, bytes).map_err(io_error(format!("writing {}", partial.display())))?;
        std::fs::rename(&partial, self.path(digest))
            .map_err(io_error("moving a verified blob into the cache"))
    }

    /// Makes sure blob `digest` of `size` bytes is in the cache, downloading what is missing
    /// from `repository`. Memory stays bounded (fixed buffers); every byte is hashed as it
    /// streams, and the blob counts only once its digest and size check out. A broken transfer
    /// is resumed with a ranged request, here and in later runs. `on_progress` gets the number
    /// of this blob's bytes present so far.
    pub async fn fetch(
        &self,
        client: &RegistryClient,
        repository: &Repository,
        digest: &str,
        size: u64,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<FetchOutcome, RegistryError> {
        if self.contains(digest, size) {
            on_progress(size);
            return Ok(FetchOutcome {
                cached: true,
                ..FetchOutcome::default()
            });
        }
        let partial = self.partial_path(digest);
        let (mut hasher, mut have) = hash_existing_prefix(&partial, size).await?;
        let mut outcome = FetchOutcome {
            resumed: have,
            ..FetchOutcome::default()
        };
        on_progress(have);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .download_from(
                    client,
                    repository,
                    digest,
                    size,
                    &partial,
                    &mut hasher,
                    &mut have,
                    on_progress,
                )
                .await
            {
                Ok(downloaded) => {
                    outcome.downloaded += downloaded;
                    break;
                }
                Err(DownloadError::Interrupted(downloaded, _)) if attempt < RESUME_ATTEMPTS => {
                    outcome.downloaded += downloaded;
                }
                Err(DownloadError::Interrupted(_, error) | DownloadError::Fatal(error)) => return Err(error),
            }
        }
        let what = format!("{repository} blob {digest}");
        if have != size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: size,
                actual: have,
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_owned(),
                actual,
            });
        }
        tokio::fs::rename(&partial, self.path(digest))
            .await
            .map_err(io_error("moving a verified blob into the cache"))?;
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_from(
        &self,
        client: &RegistryClient,
        repository: &Repository,
        digest: &str,
        size: u64,
        partial: &Path,
        hasher: &mut Sha256,
        have: &mut u64,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, DownloadError> {
        let (mut response, start) = client
            .blob(repository, digest, *have)
            .await
            .map_err(DownloadError::Fatal)?;
        if start != *have {
            // The registry ignored the range: start over.
            *hasher = Sha256::new();
            *have = 0;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(partial)
            .await
            .map_err(|error| {
                DownloadError::Fatal(io_error(format!("opening {}", partial.display()))(error))
            })?;
        let mut writer = BufWriter::with_capacity(IO_BUFFER, file);
        let mut downloaded = 0;
        let url = response.url().to_string();
        let result = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if *have + chunk.len() as u64 > size {
                        break Err(DownloadError::Fatal(RegistryError::SizeMismatch {
                            what: format!("{repository} blob {digest}"),
                            expected: size,
                            actual: *have + chunk.len() as u64,
                        }));
                    }
                    if let Err(error) = writer.write_all(&chunk).await {
                        break Err(DownloadError::Fatal(io_error(format!(
                            "writing {}",
                            partial.display()
                        ))(error)));
                    }
                    hasher.update(&chunk);
                    *have += chunk.len() as u64;
                    downloaded += chunk.len() as u64;
                    on_progress(*have);
                }
                Ok(None) => break Ok(downloaded),
                Err(source) => {
                    break Err(DownloadError::Interrupted(
                        downloaded,
                        RegistryError::Transport {
                            url: url.clone(),
                            source,
                        },
                    ));
                }
            }
        };
        // Whatever happened, what was hashed must be on disk, so that a resume starts from it.
        writer.flush().await.map_err(|error| {
            DownloadError::Fatal(io_error(format!("writing {}", partial.display()))(error))
        })?;
        result
    }
}

enum DownloadError {
    /// The stream broke after this many new bytes; resumable.
    Interrupted(u64, RegistryError),
    Fatal(RegistryError),
}

/// Hashes an earlier partial download (up to `size` bytes) so the download can continue after it.
async fn hash_existing_prefix(partial: &Path, size: u64) -> Result<(Sha256, u64), RegistryError> {
    let mut hasher = Sha256::new();
    let Ok(mut file) = tokio::fs::File::open(partial).await else {
        return Ok((hasher, 0));
    };
    let mut buffer = vec![0u8; IO_BUFFER];
    let mut have = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(io_error(format!("reading {}", partial.display())))?;
        if read == 0 || have + read as u64 > size {
            break;
        }
        hasher.update(&buffer[..read]);
        have += read as u64;
    }
    if have > size {
        return Ok((Sha256::new(), 0));
    }
    Ok((hasher, have))
}

fn hex_part(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}
