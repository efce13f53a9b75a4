//! Early writeback: a finished bundle is flushed to disk before it counts (renamed into place),
//! and flushing hundreds of MiB at the end is a wait in which nothing else happens. Flushing
//! while the downloads still run, each time another [`FLUSH_EVERY`] bytes have been written,
//! overlaps that wait with the network, and leaves the final flush only the last slice.
//!
//! A flush that fails is remembered and reported by [`Writeback::finish`]: the kernel reports a
//! write-back error once, so the final flush might not see it again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;

use crate::bundle_file::BundleFile;

/// How many bytes are written between two early flushes.
pub const FLUSH_EVERY: u64 = 32 << 20;

/// Flushes a partial bundle to disk in the background as it is written.
pub struct Writeback {
    file: Arc<BundleFile>,
    /// Bytes written since the last flush started.
    unflushed: AtomicU64,
    /// The flush in progress, if any (one at a time).
    flushing: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    /// The first error a flush met.
    failed: Mutex<Option<std::io::Error>>,
    /// How many flushes were started.
    started: AtomicU64,
}

impl Writeback {
    /// Early writeback of `file`.
    pub fn new(file: Arc<BundleFile>) -> Self {
        Self {
            file,
            unflushed: AtomicU64::new(0),
            flushing: Mutex::new(None),
            failed: Mutex::new(None),
            started: AtomicU64::new(0),
        }
    }

    /// Notes that `bytes` more were written; once [`FLUSH_EVERY`] have been since the last
    /// flush started, starts another on a blocking thread, unless one is still running. Call
    /// it from within the tokio runtime.
    pub fn wrote(&self, bytes: u64) {
        if self.unflushed.fetch_add(bytes, Ordering::Relaxed) + bytes < FLUSH_EVERY {
            return;
        }
        let Ok(mut flushing) = self.flushing.lock() else {
            return;
        };
        if flushing.as_ref().is_some_and(|flush| !flush.is_finished()) {
            return;
        }
        if let Some(finished) = flushing.take() {
            self.remember(futures_util::FutureExt::now_or_never(finished));
        }
        self.unflushed.store(0, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        let file = Arc::clone(&self.file);
        *flushing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
    }

    /// Waits for the flush in progress; returns the first error any flush met.
    pub async fn finish(&self) -> std::io::Result<()> {
        let running = self.flushing.lock().ok().and_then(|mut flushing| flushing.take());
        if let Some(flush) = running {
            self.remember(Some(flush.await));
        }
        match self.failed.lock().ok().and_then(|mut failed| failed.take()) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Keeps the error of a finished flush (the first one only).
    fn remember(&self, outcome: Option<Result<std::io::Result<()>, tokio::task::JoinError>>) {
        let error = match outcome {
            Some(Ok(Err(error))) => error,
            Some(Err(join)) => std::io::Error::other(join),
            Some(Ok(Ok(()))) | None => return,
        };
        if let Ok(mut failed) = self.failed.lock() {
            failed.get_or_insert(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flush_starts_every_slice_written_one_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.partial");
        std::fs::write(&path, b"bytes").expect("write");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let writeback = Writeback::new(Arc::new(BundleFile::from_pieces(vec![(path, file, 5)], None)));

        writeback.wrote(FLUSH_EVERY - 1);
        assert_eq!(writeback.started.load(Ordering::Relaxed), 0);
        writeback.wrote(1);
        assert_eq!(writeback.started.load(Ordering::Relaxed), 1);
        writeback.finish().await.expect("flushed");

        // While a flush runs, writes past the slice start none; the next write after it ends
        // starts the next.
        writeback.wrote(FLUSH_EVERY);
        let running = writeback.flushing.lock().expect("lock").take().expect("a flush");
        *writeback.flushing.lock().expect("lock") = Some(tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok(())
        }));
        running.await.expect("join").expect("flush");
        writeback.wrote(FLUSH_EVERY);
        assert_eq!(writeback.started.load(Ordering::Relaxed), 2);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        writeback.wrote(1);
        assert_eq!(writeback.started.load(Ordering::Relaxed), 3);
        writeback.finish().await.expect("flushed");
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported_by_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.partial");
        std::fs::write(&path, b"bytes").expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let writeback = Writeback::new(Arc::new(BundleFile::from_pieces(vec![(path, file, 5)], None)));
        // A simulated failure: a real disk's write-back error cannot be made here.
        *writeback.flushing.lock().expect("lock") = Some(tokio::spawn(async {
            Err(std::io::Error::other("simulated write-back error"))
        }));
        let error = writeback.finish().await.expect_err("the error");
        assert!(error.to_string().contains("simulated"), "{error}");
        writeback.finish().await.expect("reported once");
    }
}
