//! Where every byte of a bundle goes, decided before any blob is downloaded.
//!
//! Blob sizes are known from the manifests, so the whole tar is laid out first: each entry's
//! header offset, data offset and size. The *skeleton* (every header and every metadata
//! document) is written once; blobs are then written straight into their places, in any order
//! and in parallel, with no second copy. The entry order and the fixed header fields are those
//! [`coder_bundle_spec::format`] defines, so the same inputs always give the same bytes.
//!
//! The layout's [`identity`](TarLayout::identity) (a hash of the skeleton) names the bundle
//! before it exists: it keys the resume journal and the cache's packs.

use coder_registry::blob_io::{RandomRead, RandomWrite};
use sha2::{Digest, Sha256};

use crate::bundle_file::BundleFile;

/// Size of a tar block.
const BLOCK: u64 = 512;

/// The largest blob a bundle carries: 1 TiB. Sizes come from registries' descriptors; a larger
/// one is refused before anything is written (no container layer comes near it).
pub const MAX_BLOB_SIZE: u64 = 1 << 40;

/// Why entries could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A blob is larger than [`MAX_BLOB_SIZE`].
    #[error(
        "blob {digest} is {size} bytes according to its registry's manifest, more than a bundle carries \
         ({MAX_BLOB_SIZE} bytes); the manifest is wrong or the image cannot be bundled"
    )]
    BlobTooLarge {
        /// The blob's digest.
        digest: String,
        /// The size its descriptor gives.
        size: u64,
    },
    /// The entries' sizes do not add up within 64 bits.
    #[error("the bundle's entries add up to more than 2^64 bytes")]
    TooLarge,
}

/// What one entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A directory (no data).
    Directory,
    /// A metadata document, held in memory.
    Document(Vec<u8>),
    /// A blob of `size` bytes, written later at [`PlacedEntry::data_offset`].
    Blob {
        /// Its `sha256:` digest.
        digest: String,
        /// Its size.
        size: u64,
    },
}

/// One entry at its place in the file.
#[derive(Debug, Clone)]
pub struct PlacedEntry {
    /// The path inside the bundle.
    pub path: String,
    /// What it holds.
    pub content: Content,
    /// Offset of its 512-byte header.
    pub header_offset: u64,
}

impl PlacedEntry {
    /// Offset of its data (just after the header).
    pub fn data_offset(&self) -> u64 {
        self.header_offset + BLOCK
    }

    /// Size of its data.
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::Directory => 0,
            Content::Document(bytes) => bytes.len() as u64,
            Content::Blob { size, .. } => *size,
        }
    }
}

/// A blob's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobPlace<'a> {
    /// Its digest.
    pub digest: &'a str,
    /// Offset of its data.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// The whole tar, laid out.
#[derive(Debug, Clone)]
pub struct TarLayout {
    entries: Vec<PlacedEntry>,
    total_size: u64,
}

impl TarLayout {
    /// Lays `entries` out in the given order, ending with the two zero blocks. Sizes are added
    /// with overflow checks, and a blob over [`MAX_BLOB_SIZE`] is refused.
    pub fn new(entries: impl IntoIterator<Item = (String, Content)>) -> Result<Self, LayoutError> {
        let mut offset: u64 = 0;
        let mut placed = Vec::new();
        for (path, content) in entries {
            if let Content::Blob { digest, size } = &content
                && *size > MAX_BLOB_SIZE
            {
                return Err(LayoutError::BlobTooLarge {
                    digest: digest.clone(),
                    size: *size,
                });
            }
            let entry = PlacedEntry {
                path,
                content,
                header_offset: offset,
            };
            let blocks = entry.size().div_ceil(BLOCK);
            offset = blocks
                .checked_mul(BLOCK)
                .and_then(|data| data.checked_add(BLOCK))
                .and_then(|span| offset.checked_add(span))
                .ok_or(LayoutError::TooLarge)?;
            placed.push(entry);
        }
        Ok(Self {
            entries: placed,
            total_size: offset.checked_add(2 * BLOCK).ok_or(LayoutError::TooLarge)?,
        })
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[PlacedEntry] {
        &self.entries
    }

    /// The file's length.
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Every blob's place, in file order.
    pub fn blobs(&self) -> impl Iterator<Item = BlobPlace<'_>> {
        self.entries.iter().filter_map(|entry| match &entry.content {
            Content::Blob { digest, size } => Some(BlobPlace {
                digest,
                offset: entry.data_offset(),
                size: *size,
            }),
            _ => None,
        })
    }

    /// The skeleton's pieces: (offset, bytes) of every header and every document.
    fn skeleton(&self) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
        self.entries.iter().flat_map(|entry| {
            let header = (entry.header_offset, header(entry).to_vec());
            let document = match &entry.content {
                Content::Document(bytes) => Some((entry.data_offset(), bytes.clone())),
                _ => None,
            };
            std::iter::once(header).chain(document)
        })
    }

    /// Writes the skeleton into `file` (which already has [`total_size`](Self::total_size)
    /// bytes, zero where nothing is written yet).
    pub fn write_skeleton(&self, file: &dyn RandomWrite) -> std::io::Result<()> {
        for (offset, bytes) in self.skeleton() {
            file.write_range(&bytes, offset)?;
        }
        Ok(())
    }

    /// Whether `file` holds exactly this skeleton (blob contents are not looked at).
    pub fn skeleton_matches(&self, file: &BundleFile) -> std::io::Result<bool> {
        if file.len() != self.total_size {
            return Ok(false);
        }
        let mut buffer = Vec::new();
        for (offset, bytes) in self.skeleton() {
            buffer.resize(bytes.len(), 0);
            file.read_range(&mut buffer, offset)?;
            if buffer != bytes {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A hex SHA-256 over the skeleton and its offsets: equal identities mean byte-identical
    /// bundles, since every blob is named by its digest.
    pub fn identity(&self) -> String {
        let mut hasher = Sha256::new();
        for (offset, bytes) in self.skeleton() {
            hasher.update(offset.to_le_bytes());
            hasher.update(&bytes);
        }
        hasher.update(self.total_size.to_le_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The ustar header of `entry`: mtime 0, owner 0:0, mode 0644 (0755 for directories).
fn header(entry: &PlacedEntry) -> [u8; BLOCK as usize] {
    let mut header = tar::Header::new_ustar();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    if entry.content == Content::Directory {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
    } else {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
    }
    header.set_size(entry.size());
    // Bundle paths are short ASCII (`blobs/sha256/<64 hex>` is the longest, 77 bytes), within
    // ustar's 100-byte name field; a longer path is a bug in the format, not bad input.
    if header.set_path(&entry.path).is_err() {
        unreachable!("bundle path {:?} does not fit a ustar header", entry.path);
    }
    header.set_cksum();
    let mut bytes = [0u8; BLOCK as usize];
    bytes.copy_from_slice(header.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    use super::*;

    fn sample() -> TarLayout {
        TarLayout::new([
            ("oci-layout".to_owned(), Content::Document(b"{}".to_vec())),
            ("blobs/".to_owned(), Content::Directory),
            (
                "blobs/sha256/aa".to_owned(),
                Content::Blob {
                    digest: "sha256:aa".to_owned(),
                    size: 1000,
                },
            ),
            (
                "blobs/sha256/bb".to_owned(),
                Content::Blob {
                    digest: "sha256:bb".to_owned(),
                    size: 512,
                },
            ),
        ])
        .expect("a small layout")
    }

    #[test]
    fn offsets_follow_tar_blocks() {
        let layout = sample();
        let offsets: Vec<u64> = layout.entries().iter().map(|e| e.header_offset).collect();
        assert_eq!(offsets, [0, 1024, 1536, 3072]);
        let blobs: Vec<(u64, u64)> = layout.blobs().map(|b| (b.offset, b.size)).collect();
        assert_eq!(blobs, [(2048, 1000), (3584, 512)]);
        assert_eq!(layout.total_size(), 4096 + 1024);
    }

    #[test]
    fn a_laid_out_file_reads_back_as_the_same_tar() {
        let layout = sample();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.tar");
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        file.set_len(layout.total_size()).expect("size");
        layout.write_skeleton(&file).expect("skeleton");
        file.write_all_at(&[1u8; 1000], 2048).expect("blob aa");
        file.write_all_at(&[2u8; 512], 3584).expect("blob bb");
        let written = BundleFile::from_pieces(vec![(path.clone(), file, layout.total_size())], None);
        assert!(layout.skeleton_matches(&written).expect("check"));

        let mut archive = tar::Archive::new(File::open(&path).expect("open"));
        let read: Vec<(String, u64)> = archive
            .entries()
            .expect("entries")
            .map(|entry| {
                let entry = entry.expect("entry");
                (entry.path().expect("path").display().to_string(), entry.size())
            })
            .collect();
        assert_eq!(
            read,
            [
                ("oci-layout".to_owned(), 2),
                ("blobs/".to_owned(), 0),
                ("blobs/sha256/aa".to_owned(), 1000),
                ("blobs/sha256/bb".to_owned(), 512),
            ]
        );
    }

    #[test]
    fn the_identity_changes_with_any_skeleton_byte() {
        let a = sample();
        let b = TarLayout::new([("oci-layout".to_owned(), Content::Document(b"{ }".to_vec()))])
            .expect("a small layout");
        assert_ne!(a.identity(), b.identity());
        assert_eq!(a.identity(), sample().identity());
    }

    #[test]
    fn sizes_from_registries_are_bounded_and_never_overflow() {
        let blob = |digest: &str, size: u64| {
            (
                format!("blobs/sha256/{digest}"),
                Content::Blob {
                    digest: format!("sha256:{digest}"),
                    size,
                },
            )
        };
        // (Overflowing 64 bits with blobs under the limit takes 2^24 of them: the checked sums
        // are a safety net not worth 16 million entries in a unit test.)
        let at_limit = TarLayout::new([blob("aa", MAX_BLOB_SIZE)]).expect("a blob at the limit");
        assert!(at_limit.total_size() > MAX_BLOB_SIZE);
        assert!(matches!(
            TarLayout::new([blob("aa", MAX_BLOB_SIZE + 1)]),
            Err(LayoutError::BlobTooLarge { size, .. }) if size == MAX_BLOB_SIZE + 1
        ));
        assert!(matches!(
            TarLayout::new([blob("aa", u64::MAX)]),
            Err(LayoutError::BlobTooLarge { .. })
        ));
    }
}
