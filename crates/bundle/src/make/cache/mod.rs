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

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
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
    /// The default cache: `${XDG_CACHE_HOME:-~/.cache}/coder-install/blob-cache`; `None` when
    /// neither variable is set (there is no shared fallback: a folder every user may write to
    /// would let another user plant blobs and bundles).
    pub fn default_root() -> Option<PathBuf> {
        root_under(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
    }

    /// Opens (creating if needed, private to the user) the cache at `root`. The folder must be
    /// the user's own and not writable by every user: what is in it is trusted as far as its
    /// names and sizes go.
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        for dir in ["blobs/sha256", "partial", "packs"].map(|dir| root.join(dir)) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_error(format!("creating cache folder {}", dir.display())))?;
        }
        check_owned_by_user(root)?;
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
        blob_io::create_fresh(&partial)
            .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
            .map_err(io_error(format!("writing {}", partial.display())))?;
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
        let target = blob_io::create_fresh(&partial)?;
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

/// The cache under `$XDG_CACHE_HOME`, else `$HOME/.cache`; `None` when both are unset or empty.
fn root_under(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let base = xdg_cache_home
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            home.filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("coder-install").join("blob-cache"))
}

/// Refuses a cache folder that is another user's, or that every user may write to.
fn check_owned_by_user(root: &Path) -> Result<(), RegistryError> {
    let metadata =
        std::fs::metadata(root).map_err(io_error(format!("reading cache folder {}", root.display())))?;
    let user = nix::unistd::geteuid().as_raw();
    let problem = if metadata.uid() != user {
        format!(
            "it belongs to uid {}, not to this user (uid {user})",
            metadata.uid()
        )
    } else if metadata.mode() & 0o002 != 0 {
        format!("every user may write to it (mode {:o})", metadata.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(RegistryError::Io {
        context: format!(
            "cache folder {}: {problem}; another user could plant blobs or bundles there. Pass --cache with a \
             folder of your own (or fix its owner and mode)",
            root.display()
        ),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    })
}

fn hex_part(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn without_home_or_xdg_cache_home_there_is_no_default_and_no_shared_fallback() {
        assert_eq!(root_under(None, None), None);
        assert_eq!(root_under(Some("".into()), Some("".into())), None);
        assert_eq!(
            root_under(None, Some("/home/ops".into())),
            Some(PathBuf::from("/home/ops/.cache/coder-install/blob-cache"))
        );
        assert_eq!(
            root_under(Some("/x".into()), Some("/home/ops".into())),
            Some(PathBuf::from("/x/coder-install/blob-cache"))
        );
    }

    #[test]
    fn a_new_cache_is_private_and_a_folder_every_user_may_write_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("fresh");
        BlobCache::open(&fresh).expect("a new cache");
        let mode = std::fs::metadata(fresh.join("blobs"))
            .expect("blobs")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");

        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("shared");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = BlobCache::open(&shared).expect_err("world-writable").to_string();
        assert!(
            error.contains("every user may write") && error.contains("--cache"),
            "{error}"
        );
    }
}
