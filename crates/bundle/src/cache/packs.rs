//! Packs: earlier bundles kept whole in the cache, so that a re-bundle of unchanged inputs is a
//! link and a new version copies the blobs it shares with the last one from local disk.
//!
//! `packs/<identity>.bundle` is a finished bundle, named by its layout identity (equal
//! identities mean byte-identical bundles), and `packs/<identity>.json` its record: where each
//! blob lies in it, and the file's inode, size and change time when the record was written.
//! A bundle enters the cache as a **hard link** to the output (no copy, no extra disk while the
//! output exists), or as a copy when the cache is on another filesystem.
//!
//! Since a pack may share its inode with an output file, something may change it behind the
//! cache's back (a flipped byte, a truncation). Any write to the file moves its change time, which
//! nothing can set back, so a pack whose inode, size and change time still match its record is
//! known intact. One that does not match is checked in full (every blob hashed) before it is used
//! whole; blobs copied out of a pack are hashed on the way in any case.
//!
//! The cache keeps the [`KEEP`] most recently used packs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::BlobPlace;

/// How many packs the cache keeps (the most recently used).
pub const KEEP: usize = 2;

/// The packs folder.
#[derive(Debug, Clone)]
pub struct Packs {
    dir: PathBuf,
}

/// What the cache knows of one pack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PackRecord {
    size: u64,
    inode: u64,
    changed_seconds: i64,
    changed_nanos: i64,
    /// Digest → (offset, size) of every blob in the pack.
    blobs: BTreeMap<String, (u64, u64)>,
}

impl PackRecord {
    fn stat_matches(&self, meta: &std::fs::Metadata) -> bool {
        (meta.len(), meta.ino(), meta.ctime(), meta.ctime_nsec())
            == (self.size, self.inode, self.changed_seconds, self.changed_nanos)
    }
}

/// One pack.
#[derive(Debug, Clone)]
pub struct Pack {
    /// The bundle file.
    pub path: PathBuf,
    identity: String,
    record: PackRecord,
}

impl Pack {
    /// Whether the file is exactly as it was when recorded (no write since).
    pub fn unchanged(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|meta| self.record.stat_matches(&meta))
    }

    /// Where `digest` lies in the pack: (offset, size).
    pub fn locate(&self, digest: &str) -> Option<(u64, u64)> {
        self.record.blobs.get(digest).copied()
    }
}

impl Packs {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn bundle_path(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}.bundle"))
    }

    fn record_path(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}.json"))
    }

    /// The pack of the layout `identity`, if the cache has it.
    pub fn get(&self, identity: &str) -> Option<Pack> {
        let record = std::fs::read(self.record_path(identity)).ok()?;
        let record = serde_json::from_slice(&record).ok()?;
        let path = self.bundle_path(identity);
        path.exists().then(|| Pack {
            path,
            identity: identity.to_owned(),
            record,
        })
    }

    /// Every pack, most recently used first.
    pub fn all(&self) -> Vec<Pack> {
        let mut found: Vec<(std::time::SystemTime, Pack)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let identity = name.strip_suffix(".json")?;
                let used = entry.metadata().and_then(|meta| meta.modified()).ok()?;
                Some((used, self.get(identity)?))
            })
            .collect();
        found.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        found.into_iter().map(|(_, pack)| pack).collect()
    }

    /// Takes the finished bundle at `bundle` into the cache as the pack `identity` (a hard link,
    /// or a copy across filesystems), then drops the least recently used packs beyond [`KEEP`].
    pub fn add<'a>(
        &self,
        bundle: &Path,
        identity: &str,
        blobs: impl Iterator<Item = BlobPlace<'a>>,
    ) -> std::io::Result<Kept> {
        let path = self.bundle_path(identity);
        let _ = std::fs::remove_file(&path);
        let kept = link_or_copy(bundle, &path)?;
        let blobs = blobs
            .map(|blob| (blob.digest.to_owned(), (blob.offset, blob.size)))
            .collect();
        self.write_record(identity, blobs)?;
        self.evict();
        Ok(kept)
    }

    /// Puts the pack's bundle at `target` (a hard link, or a copy across filesystems) and
    /// records the pack's new change time, which the link moved.
    pub fn link_out(&self, pack: &Pack, target: &Path) -> std::io::Result<()> {
        let _ = std::fs::remove_file(target);
        link_or_copy(&pack.path, target)?;
        self.write_record(&pack.identity, pack.record.blobs.clone())
    }

    /// Forgets a pack.
    fn remove(&self, pack: &Pack) {
        let _ = std::fs::remove_file(self.record_path(&pack.identity));
        let _ = std::fs::remove_file(&pack.path);
    }

    /// Records the pack file as it is now (which also marks it most recently used).
    fn write_record(&self, identity: &str, blobs: BTreeMap<String, (u64, u64)>) -> std::io::Result<()> {
        let meta = std::fs::metadata(self.bundle_path(identity))?;
        let record = PackRecord {
            size: meta.len(),
            inode: meta.ino(),
            changed_seconds: meta.ctime(),
            changed_nanos: meta.ctime_nsec(),
            blobs,
        };
        let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        crate::write::write_file(&self.record_path(identity), &bytes).map_err(std::io::Error::other)
    }

    fn evict(&self) {
        for pack in self.all().iter().skip(KEEP) {
            self.remove(pack);
        }
    }
}

/// How a bundle was kept in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// A hard link: no extra disk while the other name exists.
    Linked,
    /// A copy (the cache is on another filesystem, or one without hard links).
    Copied,
}

/// A hard link from `source` to `target`, or a copy where a link cannot be made (another
/// filesystem, or one without hard links).
fn link_or_copy(source: &Path, target: &Path) -> std::io::Result<Kept> {
    match std::fs::hard_link(source, target) {
        Ok(()) => Ok(Kept::Linked),
        Err(_) => std::fs::copy(source, target).map(|_| Kept::Copied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(digest: &str) -> BlobPlace<'_> {
        BlobPlace {
            digest,
            offset: 1024,
            size: 3,
        }
    }

    #[test]
    fn a_pack_is_known_unchanged_until_its_file_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let packs = Packs::new(dir.path().join("packs"));
        std::fs::create_dir_all(dir.path().join("packs")).expect("dir");
        let output = dir.path().join("out.bundle");
        std::fs::write(&output, b"bundle bytes").expect("output");
        packs
            .add(&output, "id1", [place("sha256:aa")].into_iter())
            .expect("add");

        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged());
        assert_eq!(pack.locate("sha256:aa"), Some((1024, 3)));
        assert_eq!(pack.locate("sha256:bb"), None);

        let relinked = dir.path().join("again.bundle");
        packs.link_out(&pack, &relinked).expect("link out");
        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged(), "linking out re-records the pack");

        // Writing through the output (a hard link to the pack) is noticed.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&output, b"bundle bytez").expect("modify");
        assert!(!pack.unchanged());
    }

    #[test]
    fn a_bundle_on_another_filesystem_is_copied_into_the_cache() {
        // /dev/shm is a tmpfs on Linux; the cache is on the filesystem of the temporary folder.
        let other = tempfile::tempdir_in("/dev/shm").expect("a folder on /dev/shm");
        let dir = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            std::fs::metadata(other.path()).expect("stat").dev(),
            std::fs::metadata(dir.path()).expect("stat").dev(),
            "/dev/shm and the temporary folder share a filesystem"
        );
        std::fs::create_dir_all(dir.path().join("packs")).expect("dir");
        let packs = Packs::new(dir.path().join("packs"));
        let output = other.path().join("out.bundle");
        std::fs::write(&output, b"bundle bytes").expect("output");
        let kept = packs.add(&output, "id1", std::iter::empty()).expect("add");
        assert_eq!(kept, Kept::Copied);
        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged());
        assert_eq!(std::fs::read(&pack.path).expect("pack"), b"bundle bytes");

        let output = dir.path().join("same-filesystem.bundle");
        std::fs::write(&output, b"other bytes").expect("output");
        assert_eq!(
            packs.add(&output, "id2", std::iter::empty()).expect("add"),
            Kept::Linked
        );
    }

    #[test]
    fn only_the_most_recently_used_packs_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("packs")).expect("dir");
        let packs = Packs::new(dir.path().join("packs"));
        for identity in ["id1", "id2", "id3"] {
            let output = dir.path().join(identity);
            std::fs::write(&output, identity).expect("output");
            packs.add(&output, identity, std::iter::empty()).expect("add");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kept: Vec<String> = packs.all().into_iter().map(|pack| pack.identity).collect();
        assert_eq!(kept, ["id3", "id2"]);
        assert!(!dir.path().join("packs/id1.bundle").exists());
    }
}
