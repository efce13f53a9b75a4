//! The resume journal beside a half-written bundle (`<output>.partial.journal`): read back on the
//! next run, so whatever a crash or another process left there must never panic the reader.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use coder_bundle::make::journal::Journal;
use libfuzzer_sys::fuzz_target;

fn journal_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| coder_install_fuzz::scratch_file("fuzz.bundle.partial.journal"))
}

fuzz_target!(|data: &[u8]| {
    let path = journal_path();
    std::fs::write(path, data).expect("writing the scratch journal");
    // The identity the seeds carry, and one they do not.
    for identity in ["0f1e2d", ""] {
        let _ = Journal::read(path, identity);
    }
});
