//! Writes the bundle tar, in the entry order and with the fixed metadata that
//! [`bundle_spec::format`] defines, streaming blobs from the cache through a fixed buffer.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bundle_spec::format::{BLOBS_DIR, BUNDLE_DIR, blob_path};

/// What one tar entry holds.
pub enum EntryData {
    /// A directory.
    Directory,
    /// Small contents held in memory (metadata documents).
    Bytes(Vec<u8>),
    /// A file of `size` bytes (a cached blob), streamed.
    File(PathBuf, u64),
}

/// One tar entry.
pub struct Entry {
    /// The path inside the bundle.
    pub path: String,
    /// Its contents.
    pub data: EntryData,
}

/// The directory entries that precede the bundle's files.
pub fn directory_entries() -> Vec<Entry> {
    ["blobs/", BLOBS_DIR, BUNDLE_DIR]
        .into_iter()
        .map(|path| Entry {
            path: path.to_owned(),
            data: EntryData::Directory,
        })
        .collect()
}

/// A blob entry for `digest`, read from `cached` at write time.
pub fn blob_entry(digest: &str, cached: PathBuf, size: u64) -> Entry {
    Entry {
        path: blob_path(digest),
        data: EntryData::File(cached, size),
    }
}

/// Writes `entries` as a tar to `output`, through `output.partial` renamed into place only
/// once complete: a crash or a full disk never leaves a file that looks complete.
/// `on_progress` gets the bytes of blob data written so far.
pub fn write_tar(output: &Path, entries: &[Entry], on_progress: &dyn Fn(u64)) -> anyhow::Result<()> {
    let partial = partial_path(output);
    let result = write_entries(&partial, entries, on_progress);
    match result {
        Ok(()) => std::fs::rename(&partial, output).map_err(|error| {
            anyhow::anyhow!("moving {} to {}: {error}", partial.display(), output.display())
        }),
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// Writes a small file (a lock, a report) through `output.partial` renamed into place, so that
/// a reader never sees it half-written.
pub fn write_file(output: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = partial_path(output);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, output))
        .map_err(|error| {
            let _ = std::fs::remove_file(&partial);
            anyhow::anyhow!("writing {}: {error}", output.display())
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

fn write_entries(partial: &Path, entries: &[Entry], on_progress: &dyn Fn(u64)) -> anyhow::Result<()> {
    let context = |error: std::io::Error| anyhow::anyhow!("writing {}: {error}", partial.display());
    let file = File::create(partial).map_err(context)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let size = match &entry.data {
            EntryData::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                0
            }
            EntryData::Bytes(bytes) => bytes.len() as u64,
            EntryData::File(_, size) => *size,
        };
        if !matches!(entry.data, EntryData::Directory) {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
        }
        header.set_size(size);
        header.set_path(&entry.path).map_err(context)?;
        header.set_cksum();
        out.write_all(header.as_bytes()).map_err(context)?;
        match &entry.data {
            EntryData::Directory => {}
            EntryData::Bytes(bytes) => out.write_all(bytes).map_err(context)?,
            EntryData::File(path, size) => {
                let mut source = File::open(path)
                    .map_err(|error| anyhow::anyhow!("reading cached blob {}: {error}", path.display()))?;
                // File to file, unbuffered: the kernel copies the bytes (copy_file_range) without
                // passing them through this process.
                out.flush().map_err(context)?;
                let copied = std::io::copy(&mut source, out.get_mut()).map_err(context)?;
                if copied != *size {
                    anyhow::bail!(
                        "cached blob {} has {copied} bytes, expected {size}; delete it from the cache and re-run",
                        path.display()
                    );
                }
                written += size;
                on_progress(written);
            }
        }
        let padding = (512 - size % 512) % 512;
        out.write_all(&vec![0u8; padding as usize]).map_err(context)?;
    }
    out.write_all(&[0u8; 1024]).map_err(context)?;
    // No fsync: it would cost more than everything else on a warm run (about 0.8 s per 300 MiB
    // here). The rename happens only after the last byte is written, so a crash never leaves a
    // file that looks complete, and a bundle damaged by a power cut is caught by `verify`, which
    // `apply` runs before anything else.
    out.flush().map_err(context)?;
    Ok(())
}
