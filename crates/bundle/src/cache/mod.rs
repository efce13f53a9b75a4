//! The content-addressed cache that makes a re-bundle near-free and lets a new version share
//! blobs with the last one.
//!
//! Layout under the cache root:
//! - `blobs/sha256/<hex>`: loose blobs, each renamed there only after its bytes hashed to its
//!   name: every manifest and chart the planner saw, and the verified blobs of a run that failed
//!   (so that the next run does not download them again);
//! - `packs/`: earlier bundles, kept whole (see [`packs`]). Bundle blobs are written once, into
//!   the bundle itself; the bundle then becomes a pack, by hard link where it can.
//! - `partial/`: loose blobs being written.

pub mod packs;

use std::fs::File;
use std::path::{Path, PathBuf};

use coder_registry::RegistryError;
use coder_registry::blob_io;
pub use packs::{Kept, Pack, Packs};

/// A content-addressed store of verified blobs and earlier bundles.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// The default cache: `${XDG_CACHE_HOME:-~/.cache}/coder-install/blob-cache`.
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
        for dir in ["blobs/sha256", "partial", "packs"].map(|dir| root.join(dir)) {
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("creating cache folder {}", dir.display())))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// Where the verified loose blob `digest` lives (whether or not it is there yet).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_part(digest))
    }

    fn partial_path(&self, digest: &str) -> PathBuf {
        self.root.join("partial").join(hex_part(digest))
    }

    /// The earlier bundles kept in the cache.
    pub fn packs(&self) -> Packs {
        Packs::new(self.root.join("packs"))
    }

    /// Whether the loose blob is present with the expected size.
    pub fn contains(&self, digest: &str, size: u64) -> bool {
        std::fs::metadata(self.path(digest)).is_ok_and(|meta| meta.len() == size)
    }

    /// A loose blob's bytes, read whole (for manifests, which are small) and checked against
    /// its digest; `None` if it is absent or damaged.
    pub fn read_verified(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(digest)).ok()?;
        (coder_registry::sha256_digest(&bytes) == digest).then_some(bytes)
    }

    /// Stores a small blob that is already in memory (a manifest), after checking its digest.
    pub fn insert(&self, digest: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let actual = coder_registry::sha256_digest(bytes);
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
        blob_io::rename_durably(&partial, &self.path(digest))
            .map_err(io_error("moving a verified blob into the cache"))
    }

    /// Copies blob `digest` (`size` bytes of `source` from `offset`) into the cache as a loose
    /// blob, if its bytes hash to its digest; returns whether it was stored.
    pub fn store_range(
        &self,
        source: &dyn blob_io::RandomRead,
        offset: u64,
        size: u64,
        digest: &str,
    ) -> std::io::Result<bool> {
        if self.contains(digest, size) {
            return Ok(true);
        }
        let partial = self.partial_path(digest);
        let target = File::create(&partial)?;
        let copied = blob_io::copy_range(source, offset, &target, 0, size, &mut |_| {});
        if copied.as_deref().is_ok_and(|actual| actual == digest) {
            blob_io::rename_durably(&partial, &self.path(digest))?;
            return Ok(true);
        }
        // A copy that failed or did not match is not kept; its own error is the one to report.
        let _ = std::fs::remove_file(&partial);
        copied.map(|_| false)
    }
}

fn hex_part(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}
