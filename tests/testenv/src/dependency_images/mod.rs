//! Real, runnable images for the platform's third-party dependencies, which cannot be downloaded
//! here: PostgreSQL 15 ([`postgres_image`]) and a workspace ([`workspace_image`]), assembled
//! from this machine's Debian packages with the [`fixture`](crate::fixture) builder.
//!
//! Each image is one layer of host files: the programs, the shared libraries and dynamic loader
//! they load (as `ldd` resolves them here), Debian's static busybox as `/bin/sh` and its applets,
//! and `/etc/passwd` and `/etc/group`. Their config labels them as stand-ins
//! (`org.opencontainers.image.description`). An image is built once per process and cached.
//!
//! ```no_run
//! # async fn example(registry: &coder_testenv::Registry) -> coder_testenv::Result<()> {
//! let postgres = coder_testenv::dependency_images::postgres_image()?;
//! registry.push_image("library/postgres:15", &postgres).await?;
//! # Ok(()) }
//! ```

mod ingress;
mod postgres;
mod workspace;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use ingress::{ingress_certgen_image, ingress_controller_image};
pub use postgres::postgres_image;
pub use workspace::workspace_image;

use crate::fixture::{Image, LayerBuilder};
use crate::{Error, Result, binaries, io_context};

/// The config label that says what an image is.
const DESCRIPTION_LABEL: &str = "org.opencontainers.image.description";

/// The description label's value for a stand-in for `what`.
fn stand_in_description(what: &str) -> String {
    format!("coder-testenv stand-in for {what}, built from Debian's packages")
}

/// The image in `cell`, built by `build` the first time (a failure is not cached).
fn cached(cell: &'static OnceLock<Image>, build: fn() -> Result<Image>) -> Result<Image> {
    if let Some(image) = cell.get() {
        return Ok(image.clone());
    }
    let image = build()?;
    Ok(cell.get_or_init(|| image).clone())
}

/// A program of this workspace that an image packs (`workspace-standin`, `ingress-standin`):
/// beside the running executable (`target/<profile>/deps/x` runs beside
/// `target/<profile>/PROGRAM`), or in `$CARGO_TARGET_DIR/debug`; `build` says how to build it.
fn workspace_program(program: &'static str, build: &'static str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
    {
        candidates.push(dir.join(program));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(program));
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join("debug").join(program));
    }
    binaries::first_executable(program, candidates, build)
}

/// A user of `/etc/passwd` (with a group of the same name and id in `/etc/group`).
struct User {
    name: &'static str,
    id: u32,
    home: &'static str,
}

/// Adds `/etc/passwd` and `/etc/group` with root and `users` (shell `/bin/sh`).
fn with_users(layer: LayerBuilder, users: &[User]) -> LayerBuilder {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    for user in users {
        let User { name, id, home } = user;
        passwd.push_str(&format!("{name}:x:{id}:{id}:{name}:{home}:/bin/sh\n"));
        group.push_str(&format!("{name}:x:{id}:\n"));
    }
    layer
        .file("etc/passwd", passwd.as_bytes(), 0o644)
        .file("etc/group", group.as_bytes(), 0o644)
}

/// Adds Debian's static busybox as `/bin/busybox`, a link to it for each of its applets
/// (`/bin/sh`, `/bin/cat`, ...) where the layer has nothing yet, and a `/tmp` of mode 1777.
fn with_busybox(layer: LayerBuilder) -> Result<LayerBuilder> {
    let busybox = binaries::busybox_static()?;
    let output = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(io_context(format!("running {} --list-full", busybox.display())))?;
    if !output.status.success() {
        return Err(Error::InvalidArgument(format!(
            "{} --list-full failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let mut layer = layer
        .host_executable("bin/busybox", &busybox)?
        .directory("tmp", 0o1777);
    let applets = String::from_utf8_lossy(&output.stdout);
    let mut applets: Vec<&str> = applets
        .lines()
        .map(str::trim)
        .filter(|path| path.contains('/') && !path.ends_with("/busybox"))
        .collect();
    applets.sort_unstable();
    for applet in applets {
        if !layer.contains(applet) {
            layer = layer.symlink(applet, "/bin/busybox");
        }
    }
    Ok(layer)
}

/// Adds the shared libraries and the dynamic loader that the ELF files among `programs` load,
/// each at the path where the loader finds it on this machine (e.g.
/// `/lib/x86_64-linux-gnu/libc.so.6`, `/lib64/ld-linux-x86-64.so.2`), as a regular file.
fn with_shared_libraries(mut layer: LayerBuilder, programs: &[PathBuf]) -> Result<LayerBuilder> {
    let mut libraries = BTreeSet::new();
    for program in programs {
        if is_elf(program)? {
            libraries.extend(shared_libraries(program)?);
        }
    }
    for library in libraries {
        let path = image_path(&library)?;
        if !layer.contains(&path) {
            layer = layer.host_file(&path, &library)?;
        }
    }
    Ok(layer)
}

/// Whether `path` is an ELF file (a program or shared library `ldd` can tell about).
fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(io_context(format!("opening {}", path.display())))?;
    Ok(file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF")
}

/// The libraries and loader `path` loads, as `ldd` resolves them here (the vDSO left out);
/// empty for a static executable.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(path)
        .output()
        .map_err(io_context(format!(
            "running ldd {} (is libc-bin installed?)",
            path.display()
        )))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if format!("{stdout}{stderr}").contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(Error::InvalidArgument(format!(
            "ldd {} failed: {}{}",
            path.display(),
            stdout.trim(),
            stderr.trim()
        )));
    }
    let mut libraries = Vec::new();
    for line in stdout.lines() {
        if line.contains("not found") {
            return Err(Error::InvalidArgument(format!(
                "{} needs a library this machine lacks: {}",
                path.display(),
                line.trim()
            )));
        }
        // `name => /path (0x...)`, `/path (0x...)` (the loader) or `name (0x...)` (the vDSO).
        libraries.extend(
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    Ok(libraries)
}

/// `host_path` as a path in a layer (relative, e.g. `usr/lib/x.so`).
fn image_path(host_path: &Path) -> Result<String> {
    host_path
        .to_str()
        .and_then(|path| path.strip_prefix('/'))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{} is not an absolute UTF-8 path", host_path.display()))
        })
}

/// The files below `dir` (recursively, symbolic links followed, sorted), for which `keep` holds.
fn files_below(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_context(format!("listing {}", dir.display())))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io_context(format!("listing {}", dir.display())))?;
    entries.sort();
    for path in entries.into_iter().filter(|path| keep(path)) {
        if path.is_dir() {
            files.extend(files_below(&path, keep)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// Adds each of `files` at its own host path.
fn with_host_files(mut layer: LayerBuilder, files: &[PathBuf]) -> Result<LayerBuilder> {
    for file in files {
        layer = layer.host_file(&image_path(file)?, file)?;
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lists_the_loader_and_libc_of_a_dynamic_program() {
        let libraries = shared_libraries(Path::new("/bin/ls")).expect("ldd /bin/ls");
        assert!(
            libraries.iter().any(|path| path.ends_with("libc.so.6")),
            "{libraries:?}"
        );
        assert!(
            libraries
                .iter()
                .any(|path| path.to_string_lossy().contains("ld-linux")),
            "{libraries:?}"
        );
    }

    #[test]
    fn a_static_program_needs_no_library() {
        let busybox = binaries::busybox_static().expect("busybox-static");
        assert_eq!(shared_libraries(&busybox).expect("ldd"), Vec::<PathBuf>::new());
    }
}
