//! Packs: earlier bundles kept whole in the cache, so that a re-bundle of unchanged inputs is a
//! link and a new version copies the blobs it shares with the last one from local disk.
//!
//! `packs/<key>.bundle` is a finished bundle, named by its layout identity (equal identities
//! mean byte-identical bundles), and `packs/<key>.json` its record: where each blob lies in it,
//! and the file's inode, size and change time when the record was written. A split bundle's
//! parts are kept as `packs/<key>.bundle.0`, `.1`, ... (its key names the part size too), and
//! its record keeps its index and every part's stamp. A bundle enters the cache as a **hard
//! link** to the output (no copy, no extra disk while the output exists), or as a copy when the
//! cache is on another filesystem.
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

use coder_bundle_spec::format::PartsIndex;
use serde::{Deserialize, Serialize};

use crate::bundle_file::BundleFile;
use crate::make::layout::BlobPlace;

/// How many packs the cache keeps (the most recently used).
pub const KEEP: usize = 2;

/// The packs folder.
#[derive(Debug, Clone)]
pub struct Packs {
    dir: PathBuf,
}

/// What the cache knows of one pack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct PackRecord {
    /// Each file of the pack as it was when recorded: one, or a split bundle's parts.
    files: Vec<FileStamp>,
    /// Digest → (offset, size) of every blob in the pack (offsets in the whole).
    blobs: BTreeMap<String, (u64, u64)>,
    /// A split bundle's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts_index: Option<PartsIndex>,
}

/// A file's size, inode and change time: any write to it moves the change time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct FileStamp {
    size: u64,
    inode: u64,
    changed_seconds: i64,
    changed_nanos: i64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            size: meta.len(),
            inode: meta.ino(),
            changed_seconds: meta.ctime(),
            changed_nanos: meta.ctime_nsec(),
        })
    }
}

/// One pack.
#[derive(Debug, Clone)]
pub struct Pack {
    /// Its files: the bundle file, or a split bundle's parts in order.
    pub paths: Vec<PathBuf>,
    key: String,
    record: PackRecord,
}

impl Pack {
    /// Whether every file is exactly as it was when recorded (no write since).
    pub fn unchanged(&self) -> bool {
        self.paths.len() == self.record.files.len()
            && self
                .paths
                .iter()
                .zip(&self.record.files)
                .all(|(path, recorded)| FileStamp::of(path).is_ok_and(|now| now == *recorded))
    }

    /// Where `digest` lies in the pack: (offset, size).
    pub fn locate(&self, digest: &str) -> Option<(u64, u64)> {
        self.record.blobs.get(digest).copied()
    }

    /// The split bundle's index, for a split pack.
    pub fn parts_index(&self) -> Option<&PartsIndex> {
        self.record.parts_index.as_ref()
    }

    /// Opens the pack's bytes for reading (its parts as one).
    pub fn open(&self) -> std::io::Result<BundleFile> {
        let pieces = self
            .paths
            .iter()
            .map(|path| {
                let file = std::fs::File::open(path)?;
                let len = file.metadata()?.len();
                Ok((path.clone(), file, len))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(BundleFile::from_pieces(pieces, None))
    }
}

impl Packs {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The pack's files: `<key>.bundle`, or `<key>.bundle.<n>` for each of `count` parts.
    fn file_paths(&self, key: &str, split_count: Option<usize>) -> Vec<PathBuf> {
        match split_count {
            None => vec![self.dir.join(format!("{key}.bundle"))],
            Some(count) => (0..count)
                .map(|number| self.dir.join(format!("{key}.bundle.{number}")))
                .collect(),
        }
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The pack `key` (a layout identity, and the part size of a split), if the cache has it.
    pub fn get(&self, key: &str) -> Option<Pack> {
        let record = std::fs::read(self.record_path(key)).ok()?;
        let record: PackRecord = serde_json::from_slice(&record).ok()?;
        let split_count = record.parts_index.as_ref().map(|_| record.files.len());
        let paths = self.file_paths(key, split_count);
        paths.iter().all(|path| path.exists()).then(|| Pack {
            paths,
            key: key.to_owned(),
            record,
        })
    }

    /// Every pack, most recently used first. Records this version cannot read (an earlier
    /// layout of the cache) are dropped with their files.
    pub fn all(&self) -> Vec<Pack> {
        let mut found: Vec<(std::time::SystemTime, Pack)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let key = name.strip_suffix(".json")?;
                let used = entry.metadata().and_then(|meta| meta.modified()).ok()?;
                match self.get(key) {
                    Some(pack) => Some((used, pack)),
                    None => {
                        self.remove_key(key);
                        None
                    }
                }
            })
            .collect();
        found.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        found.into_iter().map(|(_, pack)| pack).collect()
    }

    /// Takes the finished bundle (its `files`: one, or a split bundle's parts with their
    /// `parts_index`) into the cache as the pack `key` (hard links, or copies across
    /// filesystems), then drops the least recently used packs beyond [`KEEP`].
    pub fn add<'a>(
        &self,
        files: &[PathBuf],
        parts_index: Option<&PartsIndex>,
        key: &str,
        blobs: impl Iterator<Item = BlobPlace<'a>>,
    ) -> std::io::Result<Kept> {
        self.remove_key(key);
        let paths = self.file_paths(key, parts_index.map(|_| files.len()));
        let mut kept = Kept::Linked;
        for (source, path) in files.iter().zip(&paths) {
            if link_or_copy(source, path)? == Kept::Copied {
                kept = Kept::Copied;
            }
        }
        let record = PackRecord {
            files: Vec::new(),
            blobs: blobs
                .map(|blob| (blob.digest.to_owned(), (blob.offset, blob.size)))
                .collect(),
            parts_index: parts_index.cloned(),
        };
        self.write_record(key, &paths, record)?;
        self.evict();
        Ok(kept)
    }

    /// Puts the pack's files at `targets` (hard links, or copies across filesystems). Linking
    /// moves the files' change times, and so does renaming a link: once the targets have their
    /// final names, [`Packs::record_in_use`] records the pack as it is then.
    pub fn link_out(&self, pack: &Pack, targets: &[PathBuf]) -> std::io::Result<()> {
        if targets.len() != pack.paths.len() {
            return Err(std::io::Error::other(format!(
                "the pack has {} files, not {}",
                pack.paths.len(),
                targets.len()
            )));
        }
        for (source, target) in pack.paths.iter().zip(targets) {
            let _ = std::fs::remove_file(target);
            link_or_copy(source, target)?;
        }
        Ok(())
    }

    /// Records the pack's files as they are now, after a [`Packs::link_out`] and the renames
    /// of its targets: it is then known unchanged, and the most recently used.
    pub fn record_in_use(&self, pack: &Pack) -> std::io::Result<()> {
        self.write_record(&pack.key, &pack.paths, pack.record.clone())
    }

    /// Forgets the pack `key`: its record and every file of it.
    fn remove_key(&self, key: &str) {
        let _ = std::fs::remove_file(self.record_path(key));
        let prefix = format!("{key}.bundle");
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let of_key = name == prefix
                || name
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|number| number.bytes().all(|byte| byte.is_ascii_digit()));
            if of_key {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Records the pack's files as they are now (which also marks it most recently used).
    fn write_record(&self, key: &str, paths: &[PathBuf], mut record: PackRecord) -> std::io::Result<()> {
        record.files = paths
            .iter()
            .map(|path| FileStamp::of(path))
            .collect::<std::io::Result<_>>()?;
        let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        crate::write::write_file(&self.record_path(key), &bytes).map_err(std::io::Error::other)
    }

    fn evict(&self) {
        for pack in self.all().iter().skip(KEEP) {
            self.remove_key(&pack.key);
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
            .add(
                std::slice::from_ref(&output),
                None,
                "id1",
                [place("sha256:aa")].into_iter(),
            )
            .expect("add");

        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged());
        assert_eq!(pack.locate("sha256:aa"), Some((1024, 3)));
        assert_eq!(pack.locate("sha256:bb"), None);

        // Linked out and the link renamed (each moves the change time), then recorded.
        let (linked, renamed) = (dir.path().join("again.partial"), dir.path().join("again.bundle"));
        packs
            .link_out(&pack, std::slice::from_ref(&linked))
            .expect("link out");
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::rename(&linked, &renamed).expect("rename");
        assert!(!pack.unchanged(), "a rename moves the change time");
        packs.record_in_use(&pack).expect("record");
        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged(), "recorded after the rename");

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
        let kept = packs
            .add(&[output], None, "id1", std::iter::empty())
            .expect("add");
        assert_eq!(kept, Kept::Copied);
        let pack = packs.get("id1").expect("pack");
        assert!(pack.unchanged());
        assert_eq!(std::fs::read(&pack.paths[0]).expect("pack"), b"bundle bytes");

        let output = dir.path().join("same-filesystem.bundle");
        std::fs::write(&output, b"other bytes").expect("output");
        assert_eq!(
            packs
                .add(&[output], None, "id2", std::iter::empty())
                .expect("add"),
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
            packs
                .add(&[output], None, identity, std::iter::empty())
                .expect("add");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kept: Vec<String> = packs.all().into_iter().map(|pack| pack.key).collect();
        assert_eq!(kept, ["id3", "id2"]);
        assert!(!dir.path().join("packs/id1.bundle").exists());
    }

    #[test]
    fn a_split_bundle_is_kept_part_by_part_and_read_as_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("packs")).expect("dir");
        let packs = Packs::new(dir.path().join("packs"));
        let parts: Vec<PathBuf> = ["b.part000", "b.part001"]
            .iter()
            .map(|name| dir.path().join(name))
            .collect();
        std::fs::write(&parts[0], b"first").expect("part");
        std::fs::write(&parts[1], b"2nd").expect("part");
        let index = PartsIndex {
            kind: coder_bundle_spec::format::PARTS_INDEX_KIND.to_owned(),
            format: coder_bundle_spec::format::PARTS_INDEX_FORMAT,
            bundle_size: 8,
            part_size: 5,
            parts: Vec::new(),
        };
        packs
            .add(&parts, Some(&index), "id1-parts-5", std::iter::empty())
            .expect("add");
        let pack = packs.get("id1-parts-5").expect("pack");
        assert_eq!(pack.paths.len(), 2);
        assert_eq!(pack.parts_index(), Some(&index));
        assert!(pack.unchanged());
        let mut bytes = [0u8; 8];
        coder_registry::blob_io::RandomRead::read_range(&pack.open().expect("open"), &mut bytes, 0)
            .expect("read");
        assert_eq!(&bytes, b"first2nd");

        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&parts[1], b"3rd").expect("modify");
        assert!(!pack.unchanged(), "a write to any part is noticed");

        let relinked: Vec<PathBuf> = ["c.0", "c.1"].iter().map(|name| dir.path().join(name)).collect();
        packs.link_out(&pack, &relinked).expect("link out");
        assert_eq!(std::fs::read(&relinked[1]).expect("read"), b"3rd");
        assert!(
            packs.link_out(&pack, &relinked[..1]).is_err(),
            "one target for two parts"
        );
    }
}
