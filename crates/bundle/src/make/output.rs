//! Where a bundle is written while it is made: `<name>.partial` first (a split bundle's parts
//! each their own), renamed into place once complete; a split bundle's index, written last, is
//! what makes it complete.

use std::fs::File;

use coder_registry::blob_io::{create_fresh, open_existing_nofollow};
use std::path::{Path, PathBuf};

use coder_bundle_spec::format::{
    PARTS_INDEX_FORMAT, PARTS_INDEX_KIND, PartRecord, PartsIndex, parse_part_file_name, part_file_name,
    parts_index_file_name,
};

use crate::bundle_file::BundleFile;
use crate::make::layout::TarLayout;
use crate::write::{partial_path, write_file};

/// The smallest part of a split bundle (64 KiB): smaller parts help no medium and make
/// thousands of files; it mostly catches a unit left out (`--part-size 4700` for `4700M`).
pub const MIN_PART_SIZE: u64 = 64 << 10;

/// Where a bundle is written: one file, or the parts of a split bundle and their index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOutput {
    /// The bundle file; for a split bundle, the name its parts and index share
    /// (`<path>.part000`, ..., `<path>.parts.json`).
    pub path: PathBuf,
    /// Split into parts of this many bytes (the last holds the rest).
    pub part_size: Option<u64>,
}

impl BundleOutput {
    /// A bundle written as one file.
    pub fn whole(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            part_size: None,
        }
    }

    /// The files of a bundle of `total` bytes, each with its size, in order.
    pub fn files(&self, total: u64) -> Vec<(PathBuf, u64)> {
        let Some(part_size) = self.part_size else {
            return vec![(self.path.clone(), total)];
        };
        let base = self.base_name();
        let count = total.div_ceil(part_size).max(1);
        (0..count)
            .map(|number| {
                let start = number * part_size;
                (
                    self.path.with_file_name(part_file_name(&base, number as usize)),
                    part_size.min(total - start),
                )
            })
            .collect()
    }

    /// The split bundle's index file, if split.
    pub fn index_path(&self) -> Option<PathBuf> {
        self.part_size
            .map(|_| self.path.with_file_name(parts_index_file_name(&self.base_name())))
    }

    /// What is there already: the bundle file, or a split bundle's index or first part.
    pub fn existing(&self) -> Option<PathBuf> {
        let candidates = match self.part_size {
            None => vec![self.path.clone()],
            Some(_) => self
                .index_path()
                .into_iter()
                .chain(self.files(1).into_iter().map(|(path, _)| path))
                .collect(),
        };
        candidates.into_iter().find(|path| path.exists())
    }

    /// A key for the resume journal and the cache's packs: the layout's identity, and the part
    /// size of a split (parts of another size are other files).
    pub fn key(&self, identity: &str) -> String {
        match self.part_size {
            None => identity.to_owned(),
            Some(part_size) => format!("{identity}-parts-{part_size}"),
        }
    }

    /// The index of this split bundle of `total` bytes whose parts have these digests (`None`
    /// when not split).
    pub fn index(&self, total: u64, digests: Vec<String>) -> Option<PartsIndex> {
        let part_size = self.part_size?;
        let parts = self
            .files(total)
            .into_iter()
            .zip(digests)
            .map(|((path, size), sha256)| PartRecord {
                file: file_name(&path),
                size,
                sha256,
            })
            .collect();
        Some(PartsIndex {
            kind: PARTS_INDEX_KIND.to_owned(),
            format: PARTS_INDEX_FORMAT,
            bundle_size: total,
            part_size,
            parts,
        })
    }

    /// The partial files of an unfinished run, for messages: `<path>.partial`, or
    /// `<path>.part*.partial` for a split bundle.
    pub fn partial_label(&self) -> PathBuf {
        match self.part_size {
            None => partial_path(&self.path),
            Some(_) => partial_path(&self.path.with_file_name(format!("{}.part*", self.base_name()))),
        }
    }

    fn base_name(&self) -> String {
        file_name(&self.path)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The partial bundle, opened for writing blobs into it.
pub struct PartialBundle {
    /// Its bytes (one file, or every part's partial file), open for reading and writing.
    pub file: BundleFile,
    /// Whether it is an interrupted run's file, continued (its blobs may already be in place).
    pub continued: bool,
}

/// Opens the partial files of the bundle `layout` written to `output`: continues an interrupted
/// run's files when `try_continue` and each has its size; otherwise starts new ones, with the
/// space for the whole bundle reserved up front (so that a disk too small fails now, not after an
/// hour of downloading). Either way the skeleton is (re)written. On failure nothing is left
/// behind.
pub fn open_partial(
    output: &BundleOutput,
    layout: &TarLayout,
    try_continue: bool,
) -> crate::Result<PartialBundle> {
    let files: Vec<(PathBuf, u64)> = output
        .files(layout.total_size())
        .into_iter()
        .map(|(path, size)| (partial_path(&path), size))
        .collect();
    let context = |path: &Path, error: std::io::Error| crate::BundleError::file("writing", path, error);
    if try_continue && let Some(file) = open_existing(&files) {
        layout
            .write_skeleton(&file)
            .map_err(|error| context(&files[0].0, error))?;
        return Ok(PartialBundle {
            file,
            continued: true,
        });
    }
    remove_stale_partials(output, &files);
    if let Some(refusal) = not_enough_space(&files) {
        return Err(refusal);
    }
    let mut pieces = Vec::with_capacity(files.len());
    for (path, size) in &files {
        let created = create_fresh(path).and_then(|file| reserve(&file, *size).map(|()| file));
        match created {
            Ok(file) => pieces.push((path.clone(), file, *size)),
            Err(error) => {
                remove_files(files.iter().map(|(path, _)| path));
                let refusal = match error.kind() {
                    // Space taken by something else since the check.
                    std::io::ErrorKind::StorageFull => not_enough_space(&files),
                    _ => None,
                };
                return Err(refusal.unwrap_or_else(|| context(path, error)));
            }
        }
    }
    let file = BundleFile::from_pieces(pieces, None);
    if let Err(error) = layout.write_skeleton(&file) {
        remove_files(files.iter().map(|(path, _)| path));
        return Err(context(&files[0].0, error));
    }
    Ok(PartialBundle {
        file,
        continued: false,
    })
}

/// The refusal, with the figures, when `files` (all in one folder) need more than the folder's
/// free space for an unprivileged user; `None` when they fit or the free space cannot be read
/// (the reservation still fails early then).
fn not_enough_space(files: &[(PathBuf, u64)]) -> Option<crate::BundleError> {
    let (first, _) = files.first()?;
    let dir = match first.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let stats = nix::sys::statvfs::statvfs(&dir).ok()?;
    let available = stats.blocks_available().saturating_mul(stats.fragment_size());
    let needed = files.iter().map(|(_, size)| size).sum::<u64>();
    (needed > available).then_some(crate::BundleError::NotEnoughSpace {
        dir,
        needed,
        available,
    })
}

/// The interrupted run's partial files, when every one is there with its size.
fn open_existing(files: &[(PathBuf, u64)]) -> Option<BundleFile> {
    let pieces = files
        .iter()
        .map(|(path, size)| {
            let file = open_existing_nofollow(path).ok()?;
            file.metadata()
                .is_ok_and(|meta| meta.len() == *size)
                .then(|| (path.clone(), file, *size))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(BundleFile::from_pieces(pieces, None))
}

/// Removes partial files that an earlier run of another shape (whole, or split in other sizes)
/// left for this output and that this run does not write.
fn remove_stale_partials(output: &BundleOutput, keep: &[(PathBuf, u64)]) {
    let base = output.base_name();
    let Ok(entries) = std::fs::read_dir(
        output
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    ) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == format!("{base}.partial")
            || name
                .strip_suffix(".partial")
                .and_then(parse_part_file_name)
                .is_some_and(|(of, _)| of == base);
        let path = output.path.with_file_name(&name);
        if ours && !keep.iter().any(|(kept, _)| *kept == path) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn remove_files<'a>(paths: impl Iterator<Item = &'a PathBuf>) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// The index of the finished partial split bundle `file` (its parts hashed, under their final
/// names); `None` for a whole bundle.
pub fn parts_index(output: &BundleOutput, file: &BundleFile) -> crate::Result<Option<PartsIndex>> {
    if output.part_size.is_none() {
        return Ok(None);
    }
    let digests = file
        .file_digests()
        .map_err(|error| crate::BundleError::file("hashing the parts of", &output.path, error))?;
    Ok(output.index(file.len(), digests))
}

/// Puts the finished partial files of `output`'s bundle of `total` bytes in place, flushed to
/// disk; a split bundle gets `index` ([`parts_index`]) beside its parts. Its earlier index (if
/// any) is removed first, parts an earlier, longer split left are removed, and the new index is
/// written last, so that an index always describes the parts beside it. Returns the files
/// written, the index last.
pub fn commit(output: &BundleOutput, total: u64, index: Option<&PartsIndex>) -> crate::Result<Vec<PathBuf>> {
    let files = output.files(total);
    let earlier_parts = output
        .index_path()
        .and_then(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
        .and_then(|(path, bytes)| {
            let _ = std::fs::remove_file(&path);
            PartsIndex::from_json(&bytes).ok()
        })
        .map(|earlier| earlier.parts)
        .unwrap_or_default();
    let partials: Vec<PathBuf> = files.iter().map(|(path, _)| partial_path(path)).collect();
    let moves: Vec<(&Path, &Path)> = partials
        .iter()
        .zip(&files)
        .map(|(partial, (path, _))| (partial.as_path(), path.as_path()))
        .collect();
    coder_registry::blob_io::rename_all_durably(&moves).map_err(|source| match output.part_size {
        None => crate::BundleError::NotMoved {
            from: partials[0].clone(),
            to: output.path.clone(),
            source,
        },
        Some(_) => crate::BundleError::PartsNotMoved {
            bundle: output.path.clone(),
            source,
        },
    })?;
    let mut written: Vec<PathBuf> = files.into_iter().map(|(path, _)| path).collect();
    if let (Some(index), Some(index_path)) = (index, output.index_path()) {
        for earlier in earlier_parts {
            let path = output.path.with_file_name(&earlier.file);
            if !written.contains(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
        write_file(&index_path, &serde_json::to_vec_pretty(index)?)?;
        written.push(index_path);
    }
    Ok(written)
}

/// Removes the partial files of `output`'s bundle of `total` bytes.
pub fn remove_partial(output: &BundleOutput, total: u64) {
    let partials: Vec<PathBuf> = output
        .files(total)
        .into_iter()
        .map(|(path, _)| partial_path(&path))
        .collect();
    remove_files(partials.iter());
}

/// Gives `file` its final `size`, allocating the disk space where the filesystem can.
fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    let length = i64::try_from(size).map_err(std::io::Error::other)?;
    match nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), 0, length) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => file.set_len(size),
        Err(errno) => Err(errno.into()),
    }
}
