//! Charts as files: a local chart folder, the charts built into coder-install, and a chart a
//! bundle carries unpacked again. Packaging them into a bundle is [`crate::make::chart_package`].

use std::path::{Path, PathBuf};

use coder_bundle_spec::format::{BundledArtifact, HELM_CHART_LAYER_MEDIA_TYPE};
use include_dir::{Dir, include_dir};

use coder_registry::sha256_digest;

/// The workspace's `charts/` folder, embedded so that the default spec needs no files.
pub static EMBEDDED_CHARTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../charts");

/// The most a bundled chart may unpack to.
const MAX_CHART_BYTES: u64 = 16 << 20;

/// Why a chart could not be read, packaged or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// A chart folder could not be listed.
    #[error("reading chart folder {}", dir.display())]
    FolderUnreadable {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A chart folder holds a link or a special file.
    #[error("chart file {} is a link or special file; charts may hold regular files only", path.display())]
    NotARegularFile {
        /// The file.
        path: PathBuf,
    },
    /// The spec names a built-in chart that this build does not carry.
    #[error("no chart {name:?} is built into this coder-install")]
    NotBuiltIn {
        /// The chart's name.
        name: String,
    },
    /// The chart has no `Chart.yaml`.
    #[error("chart {chart} has no Chart.yaml")]
    NoChartYaml {
        /// The chart.
        chart: String,
    },
    /// The chart's `Chart.yaml` does not parse.
    #[error("chart {chart}: Chart.yaml: {reason}")]
    BadChartYaml {
        /// The chart.
        chart: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The chart's `Chart.yaml` has no version.
    #[error("chart {chart}: Chart.yaml has no version")]
    NoVersion {
        /// The chart.
        chart: String,
    },
    /// A bundled chart names a blob by a digest that is not sha256.
    #[error("chart {chart}: digest {digest} is not sha256")]
    DigestNotSha256 {
        /// The chart.
        chart: String,
        /// The digest.
        digest: String,
    },
    /// A bundled chart's blob is not in the bundle.
    #[error("chart {chart}: blob {digest} is missing from the bundle")]
    BlobMissing {
        /// The chart.
        chart: String,
        /// The blob's digest.
        digest: String,
    },
    /// A bundled chart's blob does not hash to its digest.
    #[error("chart {chart}: blob {digest} does not match its digest")]
    BlobCorrupt {
        /// The chart.
        chart: String,
        /// The blob's digest.
        digest: String,
    },
    /// A bundled chart's manifest has no Helm chart content layer.
    #[error("chart {chart}: its manifest has no Helm chart content layer")]
    NoContentLayer {
        /// The chart.
        chart: String,
    },
    /// A bundled chart's archive holds a path outside the chart's folder.
    #[error("chart {chart}: unexpected path {path:?} in its archive")]
    UnexpectedPath {
        /// The chart.
        chart: String,
        /// The path.
        path: String,
    },
    /// A bundled chart unpacks to more than [`MAX_CHART_BYTES`].
    #[error("chart {chart} unpacks to more than {} MiB; refusing it", MAX_CHART_BYTES >> 20)]
    TooLarge {
        /// The chart.
        chart: String,
    },
}

/// A chart's files: relative path and contents, sorted by path.
pub type ChartFiles = Vec<(String, Vec<u8>)>;

/// Reads every file under `dir` (sorted, relative paths with `/`). Links are refused.
pub fn read_chart_dir(dir: &Path) -> crate::Result<ChartFiles> {
    fn walk(root: &Path, dir: &Path, files: &mut ChartFiles) -> crate::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|source| ChartError::FolderUnreadable {
                dir: dir.to_owned(),
                source,
            })?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, files)?;
            } else if kind.is_file() {
                let relative = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
                files.push((relative, std::fs::read(&path)?));
            } else {
                return Err(ChartError::NotARegularFile { path }.into());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// The files of an embedded chart folder (e.g. `coder`).
pub fn embedded_chart(name: &str) -> crate::Result<ChartFiles> {
    fn walk(dir: &Dir<'_>, prefix: &Path, files: &mut ChartFiles) {
        for file in dir.files() {
            let relative = file.path().strip_prefix(prefix).unwrap_or(file.path());
            files.push((relative.to_string_lossy().into_owned(), file.contents().to_vec()));
        }
        for sub in dir.dirs() {
            walk(sub, prefix, files);
        }
    }
    let dir = EMBEDDED_CHARTS
        .get_dir(name)
        .ok_or_else(|| ChartError::NotBuiltIn {
            name: name.to_owned(),
        })?;
    let mut files = Vec::new();
    walk(dir, dir.path(), &mut files);
    files.sort();
    Ok(files)
}

/// The files of a chart a bundle carries (the inverse of [`crate::make::chart_package::package_chart`]): its OCI manifest
/// is read from the bundle, then its content layer unpacked in memory (charts are small; the
/// layer is limited to 16 MiB), with the top-level `<name>/` folder stripped.
pub fn read_bundled_chart(
    reader: &crate::read::BundleReader,
    artifact: &BundledArtifact,
) -> crate::Result<ChartFiles> {
    let chart = || artifact.name.clone();
    let blob = |digest: &str| -> crate::Result<Vec<u8>> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| ChartError::DigestNotSha256 {
                chart: chart(),
                digest: digest.to_owned(),
            })?;
        let bytes = reader
            .read_document(&format!("blobs/sha256/{hex}"))?
            .ok_or_else(|| ChartError::BlobMissing {
                chart: chart(),
                digest: digest.to_owned(),
            })?;
        if sha256_digest(&bytes) != digest {
            return Err(ChartError::BlobCorrupt {
                chart: chart(),
                digest: digest.to_owned(),
            }
            .into());
        }
        Ok(bytes)
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&artifact.digest)?)?;
    let layer = manifest
        .pointer("/layers/0")
        .filter(|layer| layer.get("mediaType").and_then(|m| m.as_str()) == Some(HELM_CHART_LAYER_MEDIA_TYPE))
        .and_then(|layer| layer.get("digest"))
        .and_then(|digest| digest.as_str())
        .ok_or_else(|| ChartError::NoContentLayer { chart: chart() })?;
    let content = blob(layer)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(content.as_slice()));
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let relative = path
            .split_once('/')
            .map(|(_, rest)| rest.to_owned())
            .filter(|rest| !rest.is_empty() && !rest.split('/').any(|part| part == ".."))
            .ok_or_else(|| ChartError::UnexpectedPath {
                chart: chart(),
                path: path.clone(),
            })?;
        total += entry.size();
        if total > MAX_CHART_BYTES {
            return Err(ChartError::TooLarge { chart: chart() }.into());
        }
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents)?;
        files.push((relative, contents));
    }
    files.sort();
    Ok(files)
}
