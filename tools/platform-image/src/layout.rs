//! Writes an image as an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), readable by e.g. `skopeo copy oci:DIR:TAG ...`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::image::{Blob, Image, to_json};

/// The annotation naming an image inside a layout (`oci:DIR:NAME`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<IndexEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'static str,
    digest: &'a str,
    size: u64,
    annotations: BTreeMap<&'static str, &'a str>,
    platform: Platform,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

/// Writes `image` into the layout at `dir` under the name `ref_name` (created if missing).
/// `index.json` is replaced: afterwards it lists this image only; blobs already there stay.
/// A non-empty directory that is not an OCI layout is refused rather than written into.
pub fn write(dir: &Path, image: &Image, ref_name: &str) -> Result<(), Error> {
    let io = |what: String| move |source: std::io::Error| Error::Io { what, source };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
        if entries.next().is_some() && !dir.join("oci-layout").is_file() {
            return Err(Error::Input(format!(
                "--oci-layout {}: the directory is not empty and not an OCI image layout; name a new or empty directory",
                dir.display()
            )));
        }
    }
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(io(format!("creating {}", blobs.display())))?;
    for blob in [&image.layer, &image.config, &image.manifest] {
        write_blob(&blobs, blob)?;
    }
    let index = Index {
        schema_version: 2,
        media_type: "application/vnd.oci.image.index.v1+json",
        manifests: vec![IndexEntry {
            media_type: image.manifest.media_type,
            digest: &image.manifest.digest,
            size: image.manifest.data.len() as u64,
            annotations: BTreeMap::from([(REF_NAME_ANNOTATION, ref_name)]),
            platform: Platform {
                architecture: image.architecture,
                os: "linux",
            },
        }],
    };
    write_atomically(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write_atomically(&dir.join("index.json"), &to_json(&index)?)
}

fn write_blob(blobs: &Path, blob: &Blob) -> Result<(), Error> {
    let hex = blob.digest.trim_start_matches("sha256:");
    let path = blobs.join(hex);
    if std::fs::metadata(&path).is_ok_and(|metadata| metadata.len() == blob.data.len() as u64) {
        return Ok(());
    }
    write_atomically(&path, &blob.data)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), Error> {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, data)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| Error::Io {
            what: format!("writing {}", path.display()),
            source,
        })
}
