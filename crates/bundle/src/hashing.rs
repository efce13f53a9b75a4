//! Hashing byte ranges of a bundle on every core, each worker through one fixed buffer: how
//! `verify` checks every entry, the cache checks a pack, and a split bundle's parts are hashed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use coder_registry::blob_io::{self, RandomRead};

/// One byte range to hash, and the digest it should have.
pub(crate) struct HashJob {
    /// What it is, for reports (an entry path).
    pub name: String,
    /// The digest it should hash to.
    pub digest: String,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// Hashes the jobs' ranges of `file` on every core, each worker with one fixed buffer; returns
/// (name, expected, actual) sorted by name. `on_progress` gets the bytes hashed so far.
pub(crate) fn hash_in_parallel(
    file: &dyn RandomRead,
    jobs: &[HashJob],
    on_progress: &(dyn Fn(u64) + Sync),
) -> std::io::Result<Vec<(String, String, String)>> {
    let next = AtomicUsize::new(0);
    let hashed = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(jobs.len().max(1));
    std::thread::scope(|scope| -> std::io::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<()> {
                    while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let hasher = blob_io::hash_range(file, job.offset, job.size, &mut |step| {
                            on_progress(hashed.fetch_add(step, Ordering::Relaxed) + step);
                        })?;
                        results.lock().map_err(|_| worker_panicked())?.push((
                            job.name.clone(),
                            job.digest.clone(),
                            blob_io::digest_of(hasher),
                        ));
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| worker_panicked())??;
        }
        Ok(())
    })?;
    let mut results = results.into_inner().map_err(|_| worker_panicked())?;
    results.sort();
    Ok(results)
}

fn worker_panicked() -> std::io::Error {
    std::io::Error::other("a hashing worker panicked")
}
