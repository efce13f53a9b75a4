//! What the fuzz targets share: where a target writes the file under test.

use std::path::{Path, PathBuf};

/// `name` in this process's scratch folder (on tmpfs when there is one), created on first use.
pub fn scratch_file(name: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("coder-install-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir.join(name)
}
