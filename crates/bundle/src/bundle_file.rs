//! A bundle's bytes, read and written at any offset: one file, or the parts of a split bundle
//! (`bundle --part-size`) taken together as one, in place, never joined on disk.
//!
//! [`BundleFile::open`] finds the bytes from whatever path the operator gives: the bundle file;
//! for a split bundle its index (`<name>.parts.json`), any of its parts, or `<name>` itself. The
//! parts are those the index lists ([`coder_bundle_spec::format::PartsIndex`]), each checked for
//! presence and size as it is opened; a missing or cut-short part is named then.
//! [`BundleFile::damaged_parts`] hashes every part against the index, to name the part that holds
//! a bad byte once something has been found wrong.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use coder_bundle_spec::format::{PartRecord, PartsIndex, parse_part_file_name, parts_index_file_name};
use coder_registry::blob_io::{RandomRead, RandomWrite};

use crate::hashing::{HashJob, hash_in_parallel};

/// Why a bundle's bytes could not be opened, or which of its parts is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    /// The bundle (or a part, or the index) could not be opened.
    #[error("opening bundle {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A part was given, but the index beside it is not there.
    #[error(
        "{part} is a part of a split bundle, but its index {index} is missing: copy the index from the same media as the parts into that folder"
    )]
    IndexMissing {
        /// The part given.
        part: PathBuf,
        /// Where the index should be.
        index: PathBuf,
    },
    /// The index is not a split-bundle index.
    #[error("{index} is not a usable split bundle index: {source}")]
    IndexInvalid {
        /// The index file.
        index: PathBuf,
        /// What is wrong with it.
        source: coder_bundle_spec::SpecError,
    },
    /// A part the index lists is not there.
    #[error(
        "part {number} of {count} of the split bundle, {path}, is missing: copy every part that {index} lists into that folder"
    )]
    PartMissing {
        /// The part's number (from 0).
        number: usize,
        /// How many parts the bundle has.
        count: usize,
        /// Where the part should be.
        path: PathBuf,
        /// The index.
        index: PathBuf,
    },
    /// A part has another size than the index says.
    #[error(
        "{path} has {actual} bytes, but {index} says {expected}: it was cut short or belongs to another bundle; copy it again"
    )]
    PartSize {
        /// The part.
        path: PathBuf,
        /// Its size now.
        actual: u64,
        /// Its size in the index.
        expected: u64,
        /// The index.
        index: PathBuf,
    },
}

/// A part whose bytes do not hash to what the index says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedPart {
    /// The part file.
    pub path: PathBuf,
    /// `sha256:` of its bytes now.
    pub actual: String,
    /// `sha256:` the index gives.
    pub expected: String,
}

impl std::fmt::Display for DamagedPart {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "part {} is damaged or from another bundle: its bytes hash to {}, the index says {}; copy it again",
            self.path.display(),
            self.actual,
            self.expected
        )
    }
}

/// One file of the bundle and the bytes of the whole it holds.
#[derive(Debug)]
struct Piece {
    path: PathBuf,
    file: File,
    /// Offset in the whole of its first byte.
    start: u64,
    len: u64,
}

/// A split bundle's index, and where it is.
#[derive(Debug, Clone)]
pub struct Split {
    /// The index file.
    pub index_path: PathBuf,
    /// What it says.
    pub index: PartsIndex,
}

/// A bundle's bytes: one file, or a split bundle's parts as one.
#[derive(Debug)]
pub struct BundleFile {
    pieces: Vec<Piece>,
    len: u64,
    split: Option<Split>,
}

impl BundleFile {
    /// Opens the bundle at `path` for reading: a bundle file; or, for a split bundle, its index,
    /// any part, or the name the parts share (when no file has it).
    pub fn open(path: &Path) -> Result<Self, BundleFileError> {
        if let Some(base) = split_base(path) {
            let index = path.with_file_name(parts_index_file_name(&base));
            if !index.exists() {
                return Err(BundleFileError::IndexMissing {
                    part: path.to_owned(),
                    index,
                });
            }
            return Self::open_split(&index);
        }
        match File::open(path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|source| BundleFileError::Open {
                        path: path.to_owned(),
                        source,
                    })?
                    .len();
                Ok(Self::from_pieces(vec![(path.to_owned(), file, len)], None))
            }
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                let name = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default();
                let index = path.with_file_name(parts_index_file_name(name));
                if !name.is_empty() && index.exists() {
                    return Self::open_split(&index);
                }
                Err(BundleFileError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
            Err(source) => Err(BundleFileError::Open {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Opens the parts that the index at `index_path` lists, checking each one's size.
    fn open_split(index_path: &Path) -> Result<Self, BundleFileError> {
        let bytes = std::fs::read(index_path).map_err(|source| BundleFileError::Open {
            path: index_path.to_owned(),
            source,
        })?;
        let index = PartsIndex::from_json(&bytes).map_err(|source| BundleFileError::IndexInvalid {
            index: index_path.to_owned(),
            source,
        })?;
        let count = index.parts.len();
        let mut pieces = Vec::with_capacity(count);
        for (number, PartRecord { file, size, .. }) in index.parts.iter().enumerate() {
            let path = index_path.with_file_name(file);
            let opened = File::open(&path).and_then(|opened| Ok((opened.metadata()?.len(), opened)));
            let (actual, opened) = match opened {
                Ok(found) => found,
                Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BundleFileError::PartMissing {
                        number,
                        count,
                        path,
                        index: index_path.to_owned(),
                    });
                }
                Err(source) => return Err(BundleFileError::Open { path, source }),
            };
            if actual != *size {
                return Err(BundleFileError::PartSize {
                    path,
                    actual,
                    expected: *size,
                    index: index_path.to_owned(),
                });
            }
            pieces.push((path, opened, *size));
        }
        let split = Split {
            index_path: index_path.to_owned(),
            index,
        };
        Ok(Self::from_pieces(pieces, Some(split)))
    }

    /// The bytes of `pieces` (path, open file, length) one after the other; `split` when they
    /// are the parts of a split bundle.
    pub fn from_pieces(pieces: Vec<(PathBuf, File, u64)>, split: Option<Split>) -> Self {
        let mut start = 0;
        let pieces = pieces
            .into_iter()
            .map(|(path, file, len)| {
                let piece = Piece {
                    path,
                    file,
                    start,
                    len,
                };
                start += len;
                piece
            })
            .collect();
        Self {
            pieces,
            len: start,
            split,
        }
    }

    /// The number of bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The split bundle's index, when these are parts.
    pub fn split(&self) -> Option<&Split> {
        self.split.as_ref()
    }

    /// The files, in order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.pieces.iter().map(|piece| piece.path.as_path())
    }

    /// The files that hold bytes `offset..offset + len`, for messages.
    pub fn paths_holding(&self, offset: u64, len: u64) -> Vec<&Path> {
        let end = offset.saturating_add(len.max(1));
        self.pieces
            .iter()
            .filter(|piece| piece.start < end && offset < piece.start + piece.len)
            .map(|piece| piece.path.as_path())
            .collect()
    }

    /// Flushes every file's data to disk.
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.pieces.iter().try_for_each(|piece| piece.file.sync_data())
    }

    /// The `sha256:` of every file's bytes, in order, hashed in parallel: what a split bundle's
    /// index records of its parts.
    pub fn file_digests(&self) -> std::io::Result<Vec<String>> {
        let jobs: Vec<HashJob> = self
            .pieces
            .iter()
            .enumerate()
            .map(|(number, piece)| HashJob {
                name: format!("{number:09}"),
                digest: String::new(),
                offset: piece.start,
                size: piece.len,
            })
            .collect();
        let hashed = hash_in_parallel(self, &jobs, &|_| {})?;
        Ok(hashed.into_iter().map(|(_, _, digest)| digest).collect())
    }

    /// The parts whose bytes do not hash to what the index says (none for a whole bundle).
    pub fn damaged_parts(&self) -> std::io::Result<Vec<DamagedPart>> {
        let Some(split) = &self.split else {
            return Ok(Vec::new());
        };
        Ok(self
            .file_digests()?
            .into_iter()
            .zip(&split.index.parts)
            .zip(&self.pieces)
            .filter(|((actual, expected), _)| *actual != expected.sha256)
            .map(|((actual, expected), piece)| DamagedPart {
                path: piece.path.clone(),
                actual,
                expected: expected.sha256.clone(),
            })
            .collect())
    }

    /// A reader from the first byte, for parsers that read in sequence (tar).
    pub fn reader(&self) -> SequentialReader<'_> {
        SequentialReader {
            file: self,
            position: 0,
        }
    }

    /// Runs `step` on each (file, offset in it, range of `0..len`) that the range
    /// `offset..offset + len` covers, in order; fails if the range ends past the last byte.
    fn each_piece(
        &self,
        offset: u64,
        len: usize,
        mut step: impl FnMut(&File, u64, std::ops::Range<usize>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= self.len)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {offset}..{} lie past the bundle's end ({} bytes)",
                        offset.saturating_add(len as u64),
                        self.len
                    ),
                )
            })?;
        let first = self
            .pieces
            .partition_point(|piece| piece.start + piece.len <= offset);
        let mut at = offset;
        for piece in &self.pieces[first..] {
            if at >= end {
                break;
            }
            let take = (end.min(piece.start + piece.len) - at) as usize;
            let done = (at - offset) as usize;
            step(&piece.file, at - piece.start, done..done + take)?;
            at += take as u64;
        }
        Ok(())
    }
}

impl RandomRead for BundleFile {
    fn read_range(&self, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.each_piece(offset, buffer.len(), |file, at, range| {
            file.read_range(&mut buffer[range], at)
        })
    }
}

impl RandomWrite for BundleFile {
    fn write_range(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.each_piece(offset, bytes.len(), |file, at, range| {
            file.write_range(&bytes[range], at)
        })
    }
}

/// Reads a [`BundleFile`] in sequence, with seeks.
pub struct SequentialReader<'a> {
    file: &'a BundleFile,
    position: u64,
}

impl Read for SequentialReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let left = self.file.len.saturating_sub(self.position);
        let take = (buffer.len() as u64).min(left) as usize;
        self.file.read_range(&mut buffer[..take], self.position)?;
        self.position += take as u64;
        Ok(take)
    }
}

impl Seek for SequentialReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.file.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = position.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the bundle's first byte",
            )
        })?;
        Ok(self.position)
    }
}

/// The name a split bundle's parts share, when `path` names its index or one of its parts.
fn split_base(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if let Some(base) = name.strip_suffix(".parts.json") {
        return Some(base.to_owned());
    }
    parse_part_file_name(name).map(|(base, _)| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use coder_bundle_spec::format::{PARTS_INDEX_FORMAT, PARTS_INDEX_KIND, part_file_name};

    /// Writes `bytes` as a split bundle of `part_size` parts named `<dir>/b`, with its index.
    fn write_split(dir: &Path, bytes: &[u8], part_size: usize) -> PathBuf {
        let mut pieces = Vec::new();
        for (number, chunk) in bytes.chunks(part_size).enumerate() {
            let path = dir.join(part_file_name("b", number));
            std::fs::write(&path, chunk).expect("part");
            let file = File::open(&path).expect("open part");
            pieces.push((path, file, chunk.len() as u64));
        }
        let sizes: Vec<u64> = pieces.iter().map(|(_, _, len)| *len).collect();
        let digests = BundleFile::from_pieces(pieces, None)
            .file_digests()
            .expect("hash parts");
        let parts = digests
            .into_iter()
            .zip(sizes)
            .enumerate()
            .map(|(number, (sha256, size))| PartRecord {
                file: part_file_name("b", number),
                size,
                sha256,
            })
            .collect();
        let index = PartsIndex {
            kind: PARTS_INDEX_KIND.to_owned(),
            format: PARTS_INDEX_FORMAT,
            bundle_size: bytes.len() as u64,
            part_size: part_size as u64,
            parts,
        };
        let index_path = dir.join(parts_index_file_name("b"));
        std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("index");
        index_path
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn every_range_reads_across_parts_like_the_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = sample(100);
        write_split(dir.path(), &whole, 7);
        let file = BundleFile::open(&dir.path().join("b")).expect("open");
        assert_eq!(file.len(), 100);
        assert_eq!(file.paths().count(), 15);
        for offset in 0..=100 {
            for len in 0..=(100 - offset).min(30) {
                let mut buffer = vec![0u8; len];
                file.read_range(&mut buffer, offset as u64).expect("read");
                assert_eq!(buffer, whole[offset..offset + len], "{offset}+{len}");
            }
        }
        let mut past = [0u8; 2];
        let error = file.read_range(&mut past, 99).expect_err("past the end");
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut all = Vec::new();
        file.reader().read_to_end(&mut all).expect("read in sequence");
        assert_eq!(all, whole);
        assert_eq!(
            file.paths_holding(13, 2),
            [dir.path().join("b.part001"), dir.path().join("b.part002")]
        );
    }

    #[test]
    fn writes_land_in_the_parts_that_hold_their_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pieces = (0..3)
            .map(|number| {
                let path = dir.path().join(format!("w{number}"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("create");
                file.set_len(4).expect("size");
                (path, file, 4)
            })
            .collect();
        let file = BundleFile::from_pieces(pieces, None);
        file.write_range(b"abcdefghij", 1).expect("write");
        let parts: Vec<Vec<u8>> = (0..3)
            .map(|number| std::fs::read(dir.path().join(format!("w{number}"))).expect("read"))
            .collect();
        assert_eq!(parts, [b"\0abc".to_vec(), b"defg".to_vec(), b"hij\0".to_vec()]);
        assert!(file.write_range(b"xy", 11).is_err(), "past the end");
    }

    #[test]
    fn the_index_any_part_or_the_shared_name_open_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = sample(50);
        let index = write_split(dir.path(), &whole, 16);
        for given in ["b", "b.parts.json", "b.part000", "b.part003"] {
            let file = BundleFile::open(&dir.path().join(given)).expect(given);
            let mut read = vec![0u8; 50];
            file.read_range(&mut read, 0).expect("read");
            assert_eq!(read, whole, "{given}");
            assert_eq!(file.split().map(|split| &split.index_path), Some(&index));
        }
        assert!(
            BundleFile::open(&index)
                .expect("open")
                .damaged_parts()
                .expect("hash")
                .is_empty()
        );
    }

    #[test]
    fn a_missing_short_or_damaged_part_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = write_split(dir.path(), &sample(50), 16);
        let part = |number: usize| dir.path().join(part_file_name("b", number));

        std::fs::write(part(1), [1u8; 16]).expect("damage part 1");
        let damaged = BundleFile::open(&index)
            .expect("open")
            .damaged_parts()
            .expect("hash");
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].path, part(1));
        assert!(
            damaged[0].to_string().contains("b.part001 is damaged"),
            "{}",
            damaged[0]
        );

        std::fs::write(part(2), [1u8; 15]).expect("cut part 2");
        let error = BundleFile::open(&index).expect_err("short part").to_string();
        assert!(
            error.contains("b.part002 has 15 bytes") && error.contains("says 16"),
            "{error}"
        );

        std::fs::write(part(2), [1u8; 16]).expect("part 2 at its size");
        std::fs::remove_file(part(3)).expect("remove part 3");
        let error = BundleFile::open(&part(0)).expect_err("missing part").to_string();
        assert!(
            error.contains("part 3 of 4") && error.contains("b.part003"),
            "{error}"
        );

        std::fs::remove_file(&index).expect("remove index");
        let error = BundleFile::open(&part(0)).expect_err("no index").to_string();
        assert!(
            error.contains("its index") && error.contains("b.parts.json is missing"),
            "{error}"
        );
        let error = BundleFile::open(&dir.path().join("b"))
            .expect_err("nothing")
            .to_string();
        assert!(error.starts_with("opening bundle"), "{error}");
    }

    #[test]
    fn only_part_and_index_names_are_taken_for_a_split() {
        for (name, base) in [
            ("coder.bundle.part000", Some("coder.bundle")),
            ("coder.bundle.part1000", Some("coder.bundle")),
            ("coder.bundle.parts.json", Some("coder.bundle")),
            ("coder.bundle", None),
            ("coder.bundle.part", None),
            ("coder.bundle.part01", None),
            ("coder.bundle.part0001", None),
            ("coder.bundle.partx00", None),
            (".part000", None),
        ] {
            assert_eq!(split_base(Path::new(name)).as_deref(), base, "{name}");
        }
    }
}
