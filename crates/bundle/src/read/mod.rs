//! Reads a bundle file (or a split bundle's parts as one, [`BundleFile`]): a safe index of its
//! tar entries (no `..`, no absolute paths, no links), then random access to any entry without
//! extracting anything.
//!
//! What reads a bundle once it is open: [`verify`] (every entry hashed, the signature),
//! [`image_signatures`] (the images' cosign signatures, offline) and [`inspect`] (what it holds).

pub mod image_signatures;
pub mod inspect;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coder_registry::blob_io::RandomRead;

use crate::BundleError;
use crate::bundle_file::BundleFile;

use coder_bundle_spec::format::{BundleManifest, MANIFEST_PATH};

/// The largest metadata document (manifest, index, spec, lock) read into memory.
const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Where an entry's data lies in the bundle file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLocation {
    /// Byte offset of the data.
    pub offset: u64,
    /// Size of the data.
    pub size: u64,
}

/// An opened bundle.
pub struct BundleReader {
    path: PathBuf,
    file: Arc<BundleFile>,
    entries: BTreeMap<String, EntryLocation>,
}

impl BundleReader {
    /// Opens `path` (a bundle file, or a split bundle's index, one of its parts or their shared
    /// name) and indexes its entries, refusing unsafe or unexpected tar entries. When a split
    /// bundle's entries do not read, the parts that do not match the index are named.
    pub fn open(path: &Path) -> crate::Result<Self> {
        let file = BundleFile::open(path)?;
        match Self::index_entries(&file, path) {
            Ok(entries) => Ok(Self {
                path: path.to_owned(),
                file: Arc::new(file),
                entries,
            }),
            Err(error) => Err(with_damaged_parts(&file, error)),
        }
    }

    fn index_entries(file: &BundleFile, path: &Path) -> crate::Result<BTreeMap<String, EntryLocation>> {
        let mut archive = tar::Archive::new(file.reader());
        let mut entries = BTreeMap::new();
        let not_a_bundle = |reason: String| BundleError::NotABundle {
            path: path.to_owned(),
            reason,
        };
        for entry in archive
            .entries_with_seek()
            .map_err(|error| not_a_bundle(error.to_string()))?
        {
            let entry = entry.map_err(|error| not_a_bundle(format!("unreadable tar entry: {error}")))?;
            let name = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| not_a_bundle("an entry's path is not UTF-8".to_owned()))?;
            if name.starts_with('/') || name.split('/').any(|part| part == ".." || part == ".") {
                return Err(not_a_bundle(format!(
                    "entry {name:?} has an absolute or relative-escaping path"
                )));
            }
            match entry.header().entry_type() {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular => {}
                other => {
                    return Err(not_a_bundle(format!(
                        "entry {name:?} is a {other:?}; bundles hold regular files only"
                    )));
                }
            }
            let location = EntryLocation {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            if entries.insert(name.clone(), location).is_some() {
                return Err(not_a_bundle(format!("entry {name:?} appears twice")));
            }
        }
        if entries.is_empty() {
            return Err(not_a_bundle("it holds no files".to_owned()));
        }
        Ok(entries)
    }

    /// The bundle's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every file entry, by path.
    pub fn entries(&self) -> &BTreeMap<String, EntryLocation> {
        &self.entries
    }

    /// The bundle's bytes, for positioned reads (shared with upload and serving tasks).
    pub fn file(&self) -> &Arc<BundleFile> {
        &self.file
    }

    /// Reads a metadata document entry whole, if present.
    pub fn read_document(&self, path: &str) -> crate::Result<Option<Vec<u8>>> {
        let Some(location) = self.entries.get(path) else {
            return Ok(None);
        };
        if location.size > MAX_DOCUMENT_BYTES {
            return Err(BundleError::DocumentTooLarge {
                path: self.path.clone(),
                document: path.to_owned(),
                size: location.size,
            });
        }
        let mut bytes = vec![0u8; location.size as usize];
        self.file.read_range(&mut bytes, location.offset)?;
        Ok(Some(bytes))
    }

    /// The bundle manifest's bytes as stored (what its `sha256:` is taken of); a file without
    /// one is not a bundle.
    pub fn manifest_bytes(&self) -> crate::Result<Vec<u8>> {
        self.read_document(MANIFEST_PATH)?
            .ok_or_else(|| BundleError::NoManifest {
                path: self.path.clone(),
            })
    }

    /// The bundle manifest.
    pub fn manifest(&self) -> crate::Result<BundleManifest> {
        self.manifest_pinned(None)
    }

    /// The bundle manifest, whose bytes must hash to `pinned` when given: the `sha256:` of the
    /// manifest that `verify` checked ([`crate::read::verify::VerifyReport::manifest_digest`]). Every
    /// other entry is read by the digests this manifest lists, so a bundle file changed or
    /// replaced after it was verified is refused here, before anything of it is used.
    pub fn manifest_pinned(&self, pinned: Option<&str>) -> crate::Result<BundleManifest> {
        let (bytes, _) = self.manifest_bytes_pinned(pinned)?;
        Ok(BundleManifest::from_json(&bytes)?)
    }

    /// The bundle manifest's bytes and their `sha256:`, which must be `pinned` when given
    /// ([`BundleError::ChangedSinceVerified`] otherwise).
    fn manifest_bytes_pinned(&self, pinned: Option<&str>) -> crate::Result<(Vec<u8>, String)> {
        let bytes = self.manifest_bytes()?;
        let digest = coder_registry::sha256_digest(&bytes);
        match pinned {
            Some(pinned) if pinned != digest => Err(BundleError::ChangedSinceVerified {
                path: self.path.clone(),
                pinned: pinned.to_owned(),
                actual: digest,
            }),
            _ => Ok((bytes, digest)),
        }
    }
}

/// A bundle opened once, with its manifest read: what every step of a run reads (the manifest,
/// and every entry by the digests it lists) instead of opening the file again. When `pinned`
/// (the digest of the manifest that `verify` checked), the manifest must hash to it.
pub struct OpenedBundle {
    reader: BundleReader,
    manifest: BundleManifest,
    manifest_digest: String,
}

impl OpenedBundle {
    /// Opens `path` and reads its manifest, which must hash to `pinned` when given.
    pub fn open(path: &Path, pinned: Option<&str>) -> crate::Result<Self> {
        Self::from_reader(BundleReader::open(path)?, pinned)
    }

    /// Reads the manifest of an opened `reader`, which must hash to `pinned` when given.
    pub fn from_reader(reader: BundleReader, pinned: Option<&str>) -> crate::Result<Self> {
        let (bytes, manifest_digest) = reader.manifest_bytes_pinned(pinned)?;
        let manifest = BundleManifest::from_json(&bytes)?;
        Ok(Self {
            reader,
            manifest,
            manifest_digest,
        })
    }

    /// The reader of its entries.
    pub fn reader(&self) -> &BundleReader {
        &self.reader
    }

    /// Its manifest.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// `sha256:` of its manifest's bytes.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        self.reader.path()
    }

    /// Reads the manifest's bytes again: refused ([`BundleError::ChangedSinceVerified`]) when
    /// the file was rewritten since it was opened. Steps that run long after the open (a push
    /// after preflight) check this before they read anything else.
    pub fn check_unchanged(&self) -> crate::Result<()> {
        self.reader
            .manifest_bytes_pinned(Some(&self.manifest_digest))
            .map(drop)
    }
}

/// `error`, with the parts of a split bundle whose bytes do not match its index named after it
/// (when there are such parts): what to copy again.
pub(crate) fn with_damaged_parts(file: &BundleFile, error: crate::BundleError) -> crate::BundleError {
    match file.damaged_parts() {
        Ok(damaged) if !damaged.is_empty() => BundleError::DamagedParts {
            error: Box::new(error),
            damaged: damaged.iter().map(ToString::to_string).collect(),
        },
        _ => error,
    }
}
