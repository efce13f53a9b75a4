//! The backup file: a plain tar (readable with `tar tvf`) of two entries.
//!
//! 1. `database.pgdump`: the platform's database as `pg_dump --format=custom` wrote it, streamed
//!    into the file through a fixed buffer and hashed on the way (its size is not known before
//!    the dump ends, so its tar header is written last, over a placeholder);
//! 2. `backup.json`: the [`BackupManifest`]: where and when the dump was taken, the install
//!    record at the time, the migrations the database had, and the dump's size and SHA-256.
//!
//! [`PartialBackup::write`] writes `FILE.partial` (created fresh, never through a planted link) and
//! renames it to `FILE` only once complete and synced. [`VerifiedBackup::open`] reads the whole
//! file back and checks the dump against the manifest before anything uses it.

use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The dump's entry name.
pub const DUMP_ENTRY: &str = "database.pgdump";
/// The manifest's entry name.
pub const MANIFEST_ENTRY: &str = "backup.json";
/// The format version [`BackupManifest::format`] carries.
pub const FORMAT: u32 = 1;
/// A tar block.
const BLOCK: u64 = 512;
/// The copy buffer: memory does not grow with the database.
const BUFFER: usize = 256 * 1024;
/// The most a manifest may be (a real one is a few KiB).
const MAX_MANIFEST: u64 = 1 << 20;

/// What a backup holds, beside the dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the dump was taken (RFC 3339).
    pub taken_at: String,
    /// The namespace of the install.
    pub namespace: String,
    /// The install's revision when it was taken.
    pub revision: u64,
    /// The platform version it was taken from: a restore runs this version's schema.
    pub version: String,
    /// Where the database was: `in-cluster` (pod `coder-postgres-0`) or `external`.
    pub location: String,
    /// The database's name.
    pub database: String,
    /// The migrations applied to it (versions, ascending).
    pub migrations: Vec<i64>,
    /// The dump's size in bytes.
    pub dump_bytes: u64,
    /// `sha256:` of the dump.
    pub dump_sha256: String,
    /// The tool that wrote it.
    pub tool: String,
}

/// Why a backup file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file could not be written.
    #[error("writing the backup {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("reading the backup {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a backup, or it is damaged.
    #[error("{path} is not a usable backup: {problem}; nothing was changed")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// What [`write_backup`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenBackup {
    /// The dump's size.
    pub dump_bytes: u64,
    /// `sha256:` of the dump.
    pub dump_sha256: String,
    /// The whole file's size.
    pub file_bytes: u64,
}

/// A backup written to `FILE.partial`, complete and synced: [`PartialBackup::commit`] renames it
/// to `FILE`; dropped uncommitted, it is removed (a dump that failed never becomes a backup).
pub struct PartialBackup {
    path: PathBuf,
    partial: PathBuf,
    committed: bool,
}

impl PartialBackup {
    /// Writes `FILE.partial`: the dump read from `dump` to its end, then the manifest that
    /// `manifest` makes from the dump's size and digest.
    pub async fn write<R, F>(
        path: &Path,
        dump: &mut R,
        manifest: F,
    ) -> Result<(Self, WrittenBackup, BackupManifest), ArchiveError>
    where
        R: AsyncRead + Unpin + ?Sized,
        F: FnOnce(&WrittenBackup) -> BackupManifest,
    {
        let partial = Self {
            path: path.to_owned(),
            partial: partial_path(path),
            committed: false,
        };
        let (written, manifest) = write_partial(&partial.partial, dump, manifest).await?;
        Ok((partial, written, manifest))
    }

    /// Renames `FILE.partial` to `FILE`.
    pub async fn commit(mut self) -> Result<(), ArchiveError> {
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .map_err(|source| ArchiveError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialBackup {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// `FILE.partial`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes the partial file; on failure it may be left for the caller's [`PartialBackup`] (or
/// the next run, which removes it) to delete.
async fn write_partial<R, F>(
    partial: &Path,
    dump: &mut R,
    manifest: F,
) -> Result<(WrittenBackup, BackupManifest), ArchiveError>
where
    R: AsyncRead + Unpin + ?Sized,
    F: FnOnce(&WrittenBackup) -> BackupManifest,
{
    let io = |source| ArchiveError::Write {
        path: partial.to_owned(),
        source,
    };
    // A planted file or link at the partial path is removed, never written through.
    match tokio::fs::remove_file(partial).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    // Owner-only: a backup holds password and session-token hashes.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .await
        .map_err(io)?;
    file.write_all(&[0; BLOCK as usize]).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut dump_bytes = 0u64;
    loop {
        let read = dump.read(&mut buffer).await.map_err(io)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).await.map_err(io)?;
        dump_bytes += read as u64;
    }
    file.write_all(&padding(dump_bytes)).await.map_err(io)?;
    let written = WrittenBackup {
        dump_bytes,
        dump_sha256: format!("sha256:{}", hex::encode(hasher.finalize())),
        file_bytes: 0,
    };
    let manifest = manifest(&written);
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|error| io(error.into()))?;
    file.write_all(&header(MANIFEST_ENTRY, manifest_json.len() as u64))
        .await
        .map_err(io)?;
    file.write_all(&manifest_json).await.map_err(io)?;
    file.write_all(&padding(manifest_json.len() as u64))
        .await
        .map_err(io)?;
    file.write_all(&[0; 2 * BLOCK as usize]).await.map_err(io)?;
    let file_bytes = file.stream_position().await.map_err(io)?;
    file.seek(SeekFrom::Start(0)).await.map_err(io)?;
    file.write_all(&header(DUMP_ENTRY, dump_bytes))
        .await
        .map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok((
        WrittenBackup {
            file_bytes,
            ..written
        },
        manifest,
    ))
}

/// A tar header for a regular file `name` of `size` bytes (mode 0600, mtime now).
fn header(name: &str, size: u64) -> [u8; BLOCK as usize] {
    let mut header = tar::Header::new_ustar();
    // The names are constants of a few bytes: they always fit.
    let _ = header.set_path(name);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
    );
    header.set_cksum();
    let mut bytes = [0u8; BLOCK as usize];
    bytes.copy_from_slice(header.as_bytes());
    bytes
}

/// The zeros after `size` bytes of data up to the next block.
fn padding(size: u64) -> Vec<u8> {
    vec![0; ((BLOCK - size % BLOCK) % BLOCK) as usize]
}

/// A backup file read back whole: the dump hashed and compared with its manifest.
#[derive(Debug, Clone)]
pub struct VerifiedBackup {
    /// The file.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: BackupManifest,
    /// Where the dump starts in the file.
    dump_offset: u64,
}

impl VerifiedBackup {
    /// Reads `path` to its end: the dump entry hashed as it streams, the manifest parsed, the
    /// dump's size and digest compared with the manifest's. Refuses any other layout.
    pub async fn open(path: &Path) -> Result<Self, ArchiveError> {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || verify_sync(&owned))
            .await
            .map_err(|error| ArchiveError::Read {
                path: path.to_owned(),
                source: std::io::Error::other(error),
            })?
    }

    /// The dump's bytes, streamed from the file.
    pub async fn dump(&self) -> Result<impl AsyncRead + Unpin + Send + use<>, ArchiveError> {
        let io = |source| ArchiveError::Read {
            path: self.path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&self.path).await.map_err(io)?;
        file.seek(SeekFrom::Start(self.dump_offset)).await.map_err(io)?;
        Ok(tokio::io::BufReader::with_capacity(
            BUFFER,
            file.take(self.manifest.dump_bytes),
        ))
    }
}

fn verify_sync(path: &Path) -> Result<VerifiedBackup, ArchiveError> {
    let damaged = |problem: String| ArchiveError::Damaged {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(BUFFER, file));
    let mut entries = archive
        .entries()
        .map_err(|error| damaged(format!("not a tar archive ({error})")))?;
    let mut next = |expected: &str| -> Result<_, ArchiveError> {
        let entry = entries
            .next()
            .ok_or_else(|| damaged(format!("it ends before its {expected} entry")))?
            .map_err(|error| damaged(format!("its {expected} entry is unreadable ({error})")))?;
        let name = entry
            .path()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        if name != expected {
            return Err(damaged(format!("found entry {name:?} where {expected} belongs")));
        }
        Ok(entry)
    };
    let mut dump = next(DUMP_ENTRY)?;
    let dump_offset = dump.raw_file_position();
    let (dump_bytes, dump_sha256) = hash_entry(&mut dump)
        .map_err(|error| damaged(format!("its dump could not be read to the end ({error})")))?;
    drop(dump);
    let manifest_entry = next(MANIFEST_ENTRY)?;
    let mut text = Vec::new();
    manifest_entry
        .take(MAX_MANIFEST)
        .read_to_end(&mut text)
        .map_err(|error| damaged(format!("its manifest is unreadable ({error})")))?;
    let manifest: BackupManifest = serde_json::from_slice(&text)
        .map_err(|error| damaged(format!("its manifest does not parse ({error})")))?;
    if manifest.format != FORMAT {
        return Err(damaged(format!(
            "it is in backup format {}; this coder-install reads format {FORMAT}",
            manifest.format
        )));
    }
    if manifest.dump_bytes != dump_bytes || manifest.dump_sha256 != dump_sha256 {
        return Err(damaged(format!(
            "its dump does not match its manifest (manifest: {} bytes, {}; file: {dump_bytes} bytes, {dump_sha256})",
            manifest.dump_bytes, manifest.dump_sha256
        )));
    }
    Ok(VerifiedBackup {
        path: path.to_owned(),
        manifest,
        dump_offset,
    })
}

/// The size and `sha256:` of what `reader` yields, read through a fixed buffer.
fn hash_entry(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((total, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(written: &WrittenBackup) -> BackupManifest {
        BackupManifest {
            format: FORMAT,
            taken_at: "2026-12-07T00:00:00Z".to_owned(),
            namespace: "coder".to_owned(),
            revision: 3,
            version: "1.0.0".to_owned(),
            location: "in-cluster".to_owned(),
            database: "coder".to_owned(),
            migrations: vec![1, 2],
            dump_bytes: written.dump_bytes,
            dump_sha256: written.dump_sha256.clone(),
            tool: "test".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_backup_reads_back_whole_and_tar_sees_both_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("one.backup");
        let dump: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let (partial, written, _) = PartialBackup::write(&path, &mut dump.as_slice(), manifest_for)
            .await
            .expect("write");
        assert!(!path.exists(), "not there before the commit");
        partial.commit().await.expect("commit");
        assert_eq!(written.dump_bytes, dump.len() as u64);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), written.file_bytes);
        assert!(!partial_path(&path).exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup is readable by its owner only");
        let backup = VerifiedBackup::open(&path).await.expect("verifies");
        assert_eq!(backup.manifest.migrations, vec![1, 2]);
        let mut back = Vec::new();
        backup
            .dump()
            .await
            .expect("dump")
            .read_to_end(&mut back)
            .await
            .expect("read");
        assert_eq!(back, dump);
        // Any tar reader sees the two entries.
        let mut archive = tar::Archive::new(std::fs::File::open(&path).expect("open"));
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|entry| entry.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(names, [DUMP_ENTRY, MANIFEST_ENTRY]);
    }

    #[tokio::test]
    async fn an_uncommitted_backup_leaves_nothing_and_a_planted_link_is_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("one.backup");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").expect("victim");
        std::os::unix::fs::symlink(&victim, partial_path(&path)).expect("planted link");
        let (partial, _, _) = PartialBackup::write(&path, &mut &b"dump"[..], manifest_for)
            .await
            .expect("write");
        drop(partial);
        assert!(!path.exists() && !partial_path(&path).exists());
        assert_eq!(std::fs::read(&victim).expect("victim"), b"keep");
    }

    #[tokio::test]
    async fn a_flipped_byte_or_a_cut_file_is_refused_as_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("one.backup");
        let dump = vec![7u8; 5000];
        let (partial, _, _) = PartialBackup::write(&path, &mut dump.as_slice(), manifest_for)
            .await
            .expect("write");
        partial.commit().await.expect("commit");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[BLOCK as usize + 100] ^= 1;
        let flipped = dir.path().join("flipped.backup");
        std::fs::write(&flipped, &bytes).expect("write");
        let error = VerifiedBackup::open(&flipped).await.expect_err("refused");
        assert!(
            error.to_string().contains("does not match its manifest"),
            "{error}"
        );
        let cut = dir.path().join("cut.backup");
        std::fs::write(&cut, &bytes[..3000]).expect("write");
        let error = VerifiedBackup::open(&cut).await.expect_err("refused");
        assert!(error.to_string().contains("not a usable backup"), "{error}");
        let error = VerifiedBackup::open(&dir.path().join("missing.backup"))
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("reading the backup"), "{error}");
    }
}
