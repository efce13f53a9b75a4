//! The resume journal: `<output>.journal`, beside `<output>.partial`, records which blobs of
//! the half-written bundle are complete and how far the others got, so that a killed run
//! continues where it stopped.
//!
//! A text file, appended to one line at a time:
//!
//! ```text
//! coder-install bundle journal 1 <layout identity>
//! part sha256:<hex> <bytes written from the start of the blob> <running hash state, hex>
//! done sha256:<hex>
//! ```
//!
//! The first line ties the journal to one [layout](crate::make::layout::TarLayout): a journal for
//! other inputs is discarded, with its partial file. Nothing in it is trusted blindly: on
//! resume, every `done` blob and every `part` prefix is hashed again in place before it counts,
//! and a prefix counts only if it hashes to the running hash state recorded with it (the SHA-256
//! state after those bytes, so bytes that changed on disk since are caught before anything is
//! appended to them). A `part` line without a state (older journals) is hashed again but cannot
//! be checked until the blob is complete. A torn last line (the process died while writing it)
//! is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const HEADER: &str = "coder-install bundle journal 1";

/// What an earlier run of the same layout had done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JournalState {
    /// Blobs written completely and verified.
    pub done: BTreeSet<String>,
    /// Blobs written in part: how far each got.
    pub progress: BTreeMap<String, Checkpoint>,
}

/// How far the download of one blob had got: the bytes in place from its start, and the
/// running hash state after them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Bytes written from the start of the blob.
    pub bytes: u64,
    /// The serialized SHA-256 state after those bytes, if recorded.
    pub hash_state: Option<Vec<u8>>,
}

/// An open journal, appended to by every blob task.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// The journal of the bundle written to `partial`.
    pub fn path_for(partial: &Path) -> PathBuf {
        let mut name = partial.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".journal");
        partial.with_file_name(name)
    }

    /// Reads what an earlier run of the layout `identity` recorded at `path`, if anything.
    pub fn read(path: &Path, identity: &str) -> JournalState {
        let Ok(text) = std::fs::read_to_string(path) else {
            return JournalState::default();
        };
        let mut lines = text.split_inclusive('\n');
        if lines.next().map(str::trim_end) != Some(&format!("{HEADER} {identity}")) {
            return JournalState::default();
        }
        let mut state = JournalState::default();
        // Only complete lines: the last one may have been cut off mid-write.
        for line in lines.filter_map(|line| line.strip_suffix('\n')) {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["done", digest] => {
                    state.progress.remove(digest);
                    state.done.insert(digest.to_owned());
                }
                ["part", digest, bytes, ref rest @ ..] if rest.len() <= 1 => {
                    let hash_state = match rest.first() {
                        Some(hex_state) => match hex::decode(hex_state) {
                            Ok(hash_state) => Some(hash_state),
                            Err(_) => continue,
                        },
                        None => None,
                    };
                    if let Ok(bytes) = bytes.parse() {
                        state
                            .progress
                            .insert(digest.to_owned(), Checkpoint { bytes, hash_state });
                    }
                }
                _ => {}
            }
        }
        state
    }

    /// Starts a new journal for the layout `identity` at `path`, replacing any other.
    pub fn create(path: &Path, identity: &str) -> std::io::Result<Self> {
        let mut file = coder_registry::blob_io::create_fresh(path)?;
        writeln!(file, "{HEADER} {identity}")?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Continues the journal at `path` (already checked by [`Journal::read`]).
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Records that the first `bytes` of `digest` are in place, and the running hash state
    /// after them (as [`crate::make::fill`] serializes it).
    pub fn record_progress(&self, digest: &str, bytes: u64, hash_state: &[u8]) -> std::io::Result<()> {
        self.append(&format!("part {digest} {bytes} {}\n", hex::encode(hash_state)))
    }

    /// Records that `digest` is complete and verified.
    pub fn record_done(&self, digest: &str) -> std::io::Result<()> {
        self.append(&format!("done {digest}\n"))
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("a task writing the journal panicked"))?;
        // One write per line: a kill leaves at worst a torn last line, which reading ignores.
        file.write_all(line.as_bytes())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_reads_back_what_was_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.journal");
        let journal = Journal::create(&path, "abc").expect("create");
        journal.record_progress("sha256:aa", 100, &[1, 2]).expect("part");
        journal.record_progress("sha256:bb", 50, &[3]).expect("part");
        journal
            .record_progress("sha256:aa", 200, &[0xab, 0xcd])
            .expect("part");
        journal.record_done("sha256:bb").expect("done");
        drop(journal);
        let state = Journal::read(&path, "abc");
        assert_eq!(state.done, BTreeSet::from(["sha256:bb".to_owned()]));
        assert_eq!(
            state.progress,
            BTreeMap::from([(
                "sha256:aa".to_owned(),
                Checkpoint {
                    bytes: 200,
                    hash_state: Some(vec![0xab, 0xcd])
                }
            )])
        );

        let journal = Journal::append_to(&path).expect("append");
        journal.record_done("sha256:aa").expect("done");
        assert_eq!(Journal::read(&path, "abc").done.len(), 2);
    }

    #[test]
    fn another_layout_or_a_torn_line_counts_for_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.journal");
        std::fs::write(&path, format!("{HEADER} abc\ndone sha256:aa\ndone sha256:b")).expect("write");
        assert_eq!(Journal::read(&path, "xyz"), JournalState::default());
        let state = Journal::read(&path, "abc");
        assert_eq!(state.done, BTreeSet::from(["sha256:aa".to_owned()]));

        // A checkpoint whose state does not decode is not trusted; the one before it stands.
        std::fs::write(
            &path,
            format!("{HEADER} abc\npart sha256:cc 10 0a\npart sha256:cc 20 0a1\n"),
        )
        .expect("write");
        let state = Journal::read(&path, "abc");
        assert_eq!(
            state.progress.get("sha256:cc").map(|checkpoint| checkpoint.bytes),
            Some(10)
        );
        // An older journal's line without a state still counts, unchecked.
        std::fs::write(&path, format!("{HEADER} abc\npart sha256:dd 30\n")).expect("write");
        let state = Journal::read(&path, "abc");
        assert_eq!(
            state.progress.get("sha256:dd"),
            Some(&Checkpoint {
                bytes: 30,
                hash_state: None
            })
        );
    }
}
