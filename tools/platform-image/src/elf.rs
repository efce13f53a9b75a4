//! What an executable needs at run time: its CPU architecture, and whether it is static or
//! which shared libraries and dynamic loader it loads.
//!
//! Only the ELF header and program headers are read (64-bit little-endian, the targets the
//! platform ships for). A binary without a `PT_INTERP` program header (static, or static-pie as
//! `-C target-feature=+crt-static` makes on x86_64-unknown-linux-gnu) needs nothing else; for a
//! dynamic one, `ldd` lists the libraries, exactly as the loader resolves them on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

const PT_INTERP: u32 = 3;

/// How an executable is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// Needs no loader and no shared library.
    Static,
    /// Needs the loader at `interpreter` (e.g. `/lib64/ld-linux-x86-64.so.2`).
    Dynamic {
        /// The `PT_INTERP` path.
        interpreter: String,
    },
}

/// What the ELF header says about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// OCI architecture name (`amd64`, `arm64`).
    pub architecture: &'static str,
    /// Static or dynamic.
    pub linkage: Linkage,
}

/// Reads the ELF header and program headers of `bytes` (the file at `path`, for messages).
pub fn inspect(bytes: &[u8], path: &Path) -> Result<Executable, Error> {
    let not_elf = |reason: &str| Error::NotAnExecutable {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err(not_elf("not an ELF file"));
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err(not_elf("not a 64-bit little-endian ELF file"));
    }
    let architecture = match read_u16(bytes, 18) {
        Some(62) => "amd64",
        Some(183) => "arm64",
        other => return Err(not_elf(&format!("unsupported machine type {other:?}"))),
    };
    let phoff = read_u64(bytes, 32).ok_or_else(|| not_elf("truncated header"))?;
    let phentsize = read_u16(bytes, 54).ok_or_else(|| not_elf("truncated header"))?;
    let phnum = read_u16(bytes, 56).ok_or_else(|| not_elf("truncated header"))?;
    let mut linkage = Linkage::Static;
    for index in 0..u64::from(phnum) {
        let start = phoff
            .checked_add(index * u64::from(phentsize))
            .and_then(|start| usize::try_from(start).ok())
            .ok_or_else(|| not_elf("program header out of range"))?;
        let p_type = read_u32(bytes, start).ok_or_else(|| not_elf("truncated program header"))?;
        if p_type != PT_INTERP {
            continue;
        }
        let offset = read_u64(bytes, start + 8).ok_or_else(|| not_elf("truncated program header"))?;
        let size = read_u64(bytes, start + 32).ok_or_else(|| not_elf("truncated program header"))?;
        let interpreter = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(offset, size)| bytes.get(offset..offset.checked_add(size)?))
            .ok_or_else(|| not_elf("interpreter path out of range"))?;
        let interpreter = String::from_utf8_lossy(interpreter)
            .trim_end_matches('\0')
            .to_owned();
        linkage = Linkage::Dynamic { interpreter };
    }
    Ok(Executable {
        architecture,
        linkage,
    })
}

/// The shared libraries and loader a dynamic executable loads, as `ldd` resolves them here
/// (absolute paths, in `ldd`'s order; the vDSO, which the kernel provides, is left out).
pub fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let output = Command::new("ldd")
        .arg(path)
        .output()
        .map_err(|source| Error::Io {
            what: format!("running ldd {} (is libc-bin installed?)", path.display()),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(Error::SharedLibraries {
            path: path.to_owned(),
            reason: format!(
                "ldd failed: {}{}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    parse_ldd(&stdout).map_err(|reason| Error::SharedLibraries {
        path: path.to_owned(),
        reason,
    })
}

/// Parses `ldd` output lines: `name => /path (0x...)`, `/path (0x...)`, `name (0x...)` (vDSO).
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let resolved = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} is not found on this machine", name.trim()));
                }
                target
            }
            None => line,
        };
        let path = resolved.split(" (").next().unwrap_or(resolved).trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        } else if !path.starts_with("linux-vdso") && !path.starts_with("linux-gate") && !path.is_empty() {
            return Err(format!("unexpected ldd line {line:?}"));
        }
    }
    Ok(libraries)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_paths_in_order() {
        let output = "\tlinux-vdso.so.1 (0x00007ffc5a1f6000)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0c)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0b)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f0d)\n";
        assert_eq!(
            parse_ldd(output),
            Ok(vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ])
        );
        let missing = "\tlibssl.so.3 => not found\n";
        assert!(parse_ldd(missing).is_err_and(|reason| reason.contains("libssl.so.3")));
    }

    #[test]
    fn a_host_dynamic_executable_has_an_interpreter_and_text_is_refused() -> Result<(), Error> {
        let path = Path::new("/bin/sh");
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: "reading /bin/sh".to_owned(),
            source,
        })?;
        let executable = inspect(&bytes, path)?;
        assert!(
            matches!(executable.linkage, Linkage::Dynamic { ref interpreter } if interpreter.starts_with('/'))
        );
        assert!(matches!(
            inspect(b"#!/bin/sh\necho hello\n", Path::new("script")),
            Err(Error::NotAnExecutable { .. })
        ));
        Ok(())
    }
}
