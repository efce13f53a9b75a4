//! Hashing and copying byte ranges of files through one fixed buffer: how a blob is checked in
//! place, or copied from one file into another and checked on the way.
//!
//! The ranges are read and written through [`RandomRead`] and [`RandomWrite`]: a file, or
//! anything else addressed by byte offset (a split bundle's parts, read and written as one).
//!
//! [`FileRange`] streams a range as a request body (`range_stream`), read ahead through a few
//! recycled buffers.

mod range_stream;

pub use range_stream::FileRange;
pub(crate) use range_stream::file_range_body;

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Buffer size for reading and writing blob data: fixed, whatever the blob size.
pub const IO_BUFFER: usize = 1 << 20;

/// Bytes that can be read at any offset without a seek, from many threads at once.
pub trait RandomRead: Send + Sync {
    /// Fills `buffer` from `offset`; fails (`UnexpectedEof`) if the bytes end first.
    fn read_range(&self, buffer: &mut [u8], offset: u64) -> std::io::Result<()>;
}

/// Bytes that can be written at any offset without a seek, from many threads at once.
pub trait RandomWrite: Send + Sync {
    /// Writes all of `bytes` at `offset`.
    fn write_range(&self, bytes: &[u8], offset: u64) -> std::io::Result<()>;
}

impl RandomRead for File {
    fn read_range(&self, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_exact_at(buffer, offset)
    }
}

impl RandomWrite for File {
    fn write_range(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.write_all_at(bytes, offset)
    }
}

/// The `sha256:` digest of a finished hash.
pub fn digest_of(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Creates `path` as a new, empty file for writing (and reading), replacing whatever was there:
/// an earlier run's leftover, or a symbolic link, is removed first (the link itself, never what
/// it points at), and the file is then created with `O_CREAT | O_EXCL`, which never follows a
/// link. So a link planted where a `*.partial` file goes cannot make a run overwrite another
/// file. A name that someone recreates between the two steps is an error, not a write elsewhere.
pub fn create_fresh(path: &std::path::Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Opens the existing regular file `path` for reading and writing, without following a
/// symbolic link (an interrupted run's file, continued): a link there is an error.
pub fn open_existing_nofollow(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )))
    }
}

/// Moves the finished file `partial` to `target` so that it survives a crash: its data is
/// flushed to disk first, then it is renamed, then the directory holding `target` is flushed
/// too (without that, a power cut after the rename can lose the new name).
pub fn rename_durably(partial: &std::path::Path, target: &std::path::Path) -> std::io::Result<()> {
    rename_all_durably(&[(partial, target)])
}

/// [`rename_durably`] for several files (a split bundle's parts): each is flushed and renamed,
/// then each folder that holds a target is flushed once. On an error, the moves before it are
/// done and the rest are not.
pub fn rename_all_durably(moves: &[(&std::path::Path, &std::path::Path)]) -> std::io::Result<()> {
    for (partial, target) in moves {
        File::open(partial)?.sync_all()?;
        std::fs::rename(partial, target)?;
    }
    let mut flushed: Vec<&std::path::Path> = Vec::new();
    for (_, target) in moves {
        let folder = target.parent().unwrap_or(std::path::Path::new(""));
        if !flushed.contains(&folder) {
            sync_parent_dir(target)?;
            flushed.push(folder);
        }
    }
    Ok(())
}

/// Flushes the directory that holds `path` (its entries: names created, renamed or removed).
pub fn sync_parent_dir(path: &std::path::Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Hashes `size` bytes of `file` from `offset`; `on_progress` gets each step's byte count.
pub fn hash_range(
    file: &dyn RandomRead,
    offset: u64,
    size: u64,
    on_progress: &mut dyn FnMut(u64),
) -> std::io::Result<Sha256> {
    stream_range(file, offset, size, None, on_progress)
}

/// Copies `size` bytes from `source` at `source_offset` to `target` at `target_offset`, hashing
/// them; returns the digest of what was copied (the caller decides whether it is the right one).
pub fn copy_range(
    source: &dyn RandomRead,
    source_offset: u64,
    target: &dyn RandomWrite,
    target_offset: u64,
    size: u64,
    on_progress: &mut dyn FnMut(u64),
) -> std::io::Result<String> {
    stream_range(
        source,
        source_offset,
        size,
        Some((target, target_offset)),
        on_progress,
    )
    .map(digest_of)
}

/// Reads a range through one buffer, hashing it and writing it to `target` if given.
fn stream_range(
    source: &dyn RandomRead,
    offset: u64,
    size: u64,
    target: Option<(&dyn RandomWrite, u64)>,
    on_progress: &mut dyn FnMut(u64),
) -> std::io::Result<Sha256> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; IO_BUFFER.min(size as usize)];
    let mut done = 0u64;
    while done < size {
        let want = buffer.len().min((size - done) as usize);
        source.read_range(&mut buffer[..want], offset + done)?;
        hasher.update(&buffer[..want]);
        if let Some((target, target_offset)) = target {
            target.write_range(&buffer[..want], target_offset + done)?;
        }
        done += want as u64;
        on_progress(want as u64);
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_file_replaces_a_planted_link_and_never_writes_through_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let partial = dir.path().join("out.partial");
        std::os::unix::fs::symlink(&victim, &partial).expect("plant a link");
        let opened = open_existing_nofollow(&partial);
        assert!(opened.is_err(), "a link is not continued");

        let file = create_fresh(&partial).expect("create");
        file.write_all_at(b"new", 0).expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        assert!(
            !std::fs::symlink_metadata(&partial)
                .expect("partial")
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&partial).expect("partial"), b"new");
        // An earlier run's leftover is replaced, not appended to or reused.
        let again = create_fresh(&partial).expect("again");
        assert_eq!(again.metadata().expect("metadata").len(), 0);
        assert!(open_existing_nofollow(&partial).is_ok());
    }

    #[test]
    fn a_copied_range_hashes_like_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..3 * IO_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        let source_path = dir.path().join("source");
        std::fs::write(&source_path, [&[9u8; 5][..], &data].concat()).expect("source");
        let source = File::open(&source_path).expect("open");
        let target = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("target"))
            .expect("target");

        let mut seen = 0;
        let digest =
            copy_range(&source, 5, &target, 100, data.len() as u64, &mut |n| seen += n).expect("copy");
        assert_eq!(digest, crate::sha256_digest(&data));
        assert_eq!(seen, data.len() as u64);
        let hashed = hash_range(&source, 5, data.len() as u64, &mut |_| {}).expect("hash");
        assert_eq!(digest_of(hashed), digest);
        let mut copied = vec![0u8; data.len()];
        target.read_exact_at(&mut copied, 100).expect("read back");
        assert_eq!(copied, data);
    }
}
