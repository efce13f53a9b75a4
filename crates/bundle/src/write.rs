//! Writing files so that a reader never sees one half-written: everything goes to
//! `<name>.partial` first and is renamed into place once complete.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::layout::TarLayout;

/// The partial bundle file, opened for writing blobs into it.
pub struct PartialBundle {
    /// The file, open for reading and writing.
    pub file: File,
    /// Whether it is an interrupted run's file, continued (its blobs may already be in place).
    pub continued: bool,
}

/// Opens `partial` for the bundle `layout`: continues an interrupted run's file when
/// `try_continue` and it has the layout's size; otherwise starts a new one, with the space for the
/// whole bundle reserved up front (so that a disk too small fails now, not after an hour of
/// downloading). Either way the skeleton is (re)written. On failure nothing is left behind.
pub fn open_partial(partial: &Path, layout: &TarLayout, try_continue: bool) -> crate::Result<PartialBundle> {
    let context = |error: std::io::Error| fail!("writing {}: {error}", partial.display());
    if try_continue
        && let Ok(file) = OpenOptions::new().read(true).write(true).open(partial)
        && file
            .metadata()
            .is_ok_and(|meta| meta.len() == layout.total_size())
    {
        layout.write_skeleton(&file).map_err(context)?;
        return Ok(PartialBundle {
            file,
            continued: true,
        });
    }
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(partial)
        .and_then(|file| {
            reserve(&file, layout.total_size())?;
            layout.write_skeleton(&file)?;
            Ok(file)
        });
    match created {
        Ok(file) => Ok(PartialBundle {
            file,
            continued: false,
        }),
        Err(error) => {
            let _ = std::fs::remove_file(partial);
            Err(context(error))
        }
    }
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

/// Writes a small file (a lock, a report) through `output.partial` renamed into place, so that
/// a reader never sees it half-written.
pub fn write_file(output: &Path, bytes: &[u8]) -> crate::Result<()> {
    let partial = partial_path(output);
    std::fs::write(&partial, bytes)
        .and_then(|()| coder_registry::blob_io::rename_durably(&partial, output))
        .map_err(|error| {
            let _ = std::fs::remove_file(&partial);
            fail!("writing {}: {error}", output.display())
        })
}

/// Where a bundle is written before it is complete.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}
