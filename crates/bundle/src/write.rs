//! Writing files so that a reader never sees one half-written: everything goes to
//! `<name>.partial` first and is renamed into place once complete (a bundle too, see
//! [`crate::make::output`]).

use std::path::{Path, PathBuf};

use coder_registry::blob_io::create_fresh;

/// Writes a small file (a lock, a report) through `output.partial` (created new, never through
/// a link) renamed into place, so that a reader never sees it half-written.
pub fn write_file(output: &Path, bytes: &[u8]) -> crate::Result<()> {
    let partial = partial_path(output);
    create_fresh(&partial)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
        .and_then(|()| coder_registry::blob_io::rename_durably(&partial, output))
        .map_err(|error| {
            let _ = std::fs::remove_file(&partial);
            crate::BundleError::file("writing", output, error)
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
