//! One deterministic image layer: a tar of directories and files, gzip-compressed.
//!
//! The same entries give the same bytes: entries are written in path order (a directory before
//! what it holds), every header carries the given mtime, an explicit owner and mode and no user
//! or group names, and the gzip stream has no name, no timestamp and a fixed compression level.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::Error;

/// The gzip level of every layer: fixed, because another level gives other bytes.
pub const GZIP_LEVEL: u32 = 6;

/// Who owns an entry: explicit numeric ids, never names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
}

impl Owner {
    /// `0:0`.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

#[derive(Debug, Clone)]
enum Kind {
    Directory,
    File(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    mode: u32,
    owner: Owner,
}

/// Collects a layer's entries; [`LayerBuilder::build`] writes them.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    /// Relative paths without trailing slashes, e.g. `etc/passwd`; sorted, so a directory comes
    /// before its contents (a path sorts before every path it prefixes).
    entries: BTreeMap<String, Entry>,
}

/// A built layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar: the blob the manifest points at.
    pub compressed: Vec<u8>,
    /// `sha256:` of `compressed`.
    pub digest: String,
    /// `sha256:` of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and any missing parents, `0755 root`). A directory added before as a
    /// parent takes the mode and owner given here.
    pub fn directory(&mut self, path: &str, mode: u32, owner: Owner) -> Result<&mut Self, Error> {
        let path = normalise(path)?;
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry {
                kind: Kind::Directory,
                mode,
                owner,
            },
        );
        Ok(self)
    }

    /// Adds a regular file (and any missing parent directories, `0755 root`).
    pub fn file(
        &mut self,
        path: &str,
        contents: Vec<u8>,
        mode: u32,
        owner: Owner,
    ) -> Result<&mut Self, Error> {
        let path = normalise(path)?;
        if let Some(existing) = self.entries.get(&path)
            && matches!(existing.kind, Kind::Directory)
        {
            return Err(Error::Layer(format!(
                "{path} is already a directory in the layer"
            )));
        }
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry {
                kind: Kind::File(contents),
                mode,
                owner,
            },
        );
        Ok(self)
    }

    /// The paths of the layer, in the order they are written (directories end with `/`).
    pub fn paths(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(path, entry)| match entry.kind {
                Kind::Directory => format!("{path}/"),
                Kind::File(_) => path.clone(),
            })
            .collect()
    }

    fn add_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            self.entries.entry(path[..end].to_owned()).or_insert(Entry {
                kind: Kind::Directory,
                mode: 0o755,
                owner: Owner::ROOT,
            });
            end += 1;
        }
    }

    /// Writes the tar, every header with modification time `mtime` (Unix seconds), and
    /// compresses it.
    pub fn build(&self, mtime: u64) -> Result<Layer, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source: std::io::Error| Error::Io { what, source }
        };
        let gzip = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::new(GZIP_LEVEL));
        let mut tar = tar::Builder::new(HashingWriter::new(gzip));
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(mtime);
            header.set_uid(entry.owner.uid);
            header.set_gid(entry.owner.gid);
            header.set_mode(entry.mode);
            let (name, contents): (String, &[u8]) = match &entry.kind {
                Kind::Directory => {
                    header.set_entry_type(tar::EntryType::Directory);
                    (format!("{path}/"), &[])
                }
                Kind::File(contents) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    (path.clone(), contents)
                }
            };
            header.set_size(contents.len() as u64);
            tar.append_data(&mut header, &name, contents)
                .map_err(io(&format!("adding {name} to the layer")))?;
        }
        let hashing = tar.into_inner().map_err(io("finishing the layer tar"))?;
        let (gzip, diff_id, uncompressed_size) = hashing.finish();
        let compressed = gzip.finish().map_err(io("compressing the layer"))?;
        Ok(Layer {
            digest: sha256_digest(&compressed),
            compressed,
            diff_id,
            uncompressed_size,
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A relative path with single slashes, no `.`/`..`, no leading or trailing slash.
fn normalise(path: &str) -> Result<String, Error> {
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    if components.is_empty() || components.iter().any(|part| *part == "." || *part == "..") {
        return Err(Error::Layer(format!(
            "{path:?} is not a usable path inside the image"
        )));
    }
    Ok(components.join("/"))
}

/// Passes bytes on to `inner`, hashing and counting them: the diff_id of the uncompressed tar
/// without holding the tar in memory.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(layer: &Layer) -> Vec<(String, u32, u64, u64, u64)> {
        let tar = flate2::read::GzDecoder::new(layer.compressed.as_slice());
        let mut archive = tar::Archive::new(tar);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            out.push((
                entry.path().expect("path").display().to_string(),
                header.mode().expect("mode"),
                header.uid().expect("uid"),
                header.gid().expect("gid"),
                header.mtime().expect("mtime"),
            ));
        }
        out
    }

    #[test]
    fn entries_are_sorted_with_parents_first_and_fixed_headers() -> Result<(), Error> {
        let nonroot = Owner {
            uid: 65532,
            gid: 65532,
        };
        let mut builder = LayerBuilder::new();
        builder
            .file("usr/local/bin/tool", b"x".to_vec(), 0o755, Owner::ROOT)?
            .directory("tmp", 0o1777, Owner::ROOT)?
            .directory("home/nonroot", 0o700, nonroot)?
            .file("etc/passwd", b"root".to_vec(), 0o644, Owner::ROOT)?;
        let layer = builder.build(1_700_000_000)?;
        let got = entries(&layer);
        let paths: Vec<&str> = got.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/passwd",
                "home/",
                "home/nonroot/",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool"
            ]
        );
        assert!(got.iter().all(|entry| entry.4 == 1_700_000_000));
        assert!(got.contains(&("tmp/".to_owned(), 0o1777, 0, 0, 1_700_000_000)));
        assert!(got.contains(&("home/nonroot/".to_owned(), 0o700, 65532, 65532, 1_700_000_000)));
        Ok(())
    }

    #[test]
    fn the_same_entries_give_the_same_bytes_whatever_the_insertion_order() -> Result<(), Error> {
        let mut first = LayerBuilder::new();
        first
            .file("b", b"b".to_vec(), 0o644, Owner::ROOT)?
            .file("a/c", b"c".to_vec(), 0o644, Owner::ROOT)?;
        let mut second = LayerBuilder::new();
        second.file("a/c", b"c".to_vec(), 0o644, Owner::ROOT)?.file(
            "b",
            b"b".to_vec(),
            0o644,
            Owner::ROOT,
        )?;
        let (first, second) = (first.build(5)?, second.build(5)?);
        assert_eq!(first.compressed, second.compressed);
        assert_eq!(first.diff_id, second.diff_id);
        let mut later = LayerBuilder::new();
        later.file("b", b"b".to_vec(), 0o644, Owner::ROOT)?;
        assert_ne!(later.build(5)?.digest, later.build(6)?.digest);
        Ok(())
    }

    #[test]
    fn the_diff_id_is_the_hash_of_the_uncompressed_tar() -> Result<(), Error> {
        let mut builder = LayerBuilder::new();
        builder.file("etc/motd", b"hello\n".to_vec(), 0o644, Owner::ROOT)?;
        let layer = builder.build(0)?;
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(layer.compressed.as_slice()),
            &mut tar,
        )
        .map_err(|source| Error::Io {
            what: "decompressing".to_owned(),
            source,
        })?;
        assert_eq!(layer.diff_id, sha256_digest(&tar));
        assert_eq!(layer.uncompressed_size, tar.len() as u64);
        // No name and no timestamp in the gzip header (bytes 4..8 are MTIME, byte 3 FLG).
        assert_eq!(&layer.compressed[3..8], &[0, 0, 0, 0, 0]);
        Ok(())
    }

    #[test]
    fn bad_paths_and_file_over_directory_are_refused() {
        let mut builder = LayerBuilder::new();
        assert!(
            builder
                .file("../etc/passwd", Vec::new(), 0o644, Owner::ROOT)
                .is_err()
        );
        assert!(builder.file("/", Vec::new(), 0o644, Owner::ROOT).is_err());
        assert!(builder.directory("tmp", 0o1777, Owner::ROOT).is_ok());
        assert!(builder.file("tmp", Vec::new(), 0o644, Owner::ROOT).is_err());
    }
}
