//! `inspect`: what a bundle holds, from its manifest alone (no hashing).

use std::collections::BTreeMap;
use std::path::Path;

use coder_bundle_spec::format::{BundleManifest, SIGNATURE_PATH};
use serde::Serialize;

use crate::read::BundleReader;

/// A bundle's contents and sizes.
#[derive(Debug, Serialize)]
pub struct BundleInspection {
    /// The bundle manifest.
    #[serde(flatten)]
    pub manifest: BundleManifest,
    /// Whether a signature is present (unchecked; `verify` checks it).
    pub signed: bool,
    /// Sum of every image's and chart's size (with their signatures, attestations and SBOMs),
    /// as if nothing were shared.
    pub sum_of_artifact_sizes: u64,
    /// What sharing blobs saves: `sum_of_artifact_sizes - total_size`.
    pub shared_savings: u64,
    /// A split bundle's index: its parts, their sizes and SHA-256s (not checked here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<coder_bundle_spec::format::PartsIndex>,
}

/// Reads a bundle's manifest and computes its sizes.
pub fn inspect_bundle(path: &Path) -> crate::Result<BundleInspection> {
    let reader = BundleReader::open(path)?;
    let manifest = reader.manifest()?;
    let signed = reader.entries().contains_key(SIGNATURE_PATH);
    let sizes: BTreeMap<&str, u64> = manifest
        .blobs
        .iter()
        .map(|blob| (blob.digest.as_str(), blob.size))
        .collect();
    // The sizes are the manifest's word: a bundle that claims absurd ones must not overflow.
    let sum_of_artifact_sizes = coder_registry::oci::total_size(
        manifest
            .images
            .iter()
            .chain(&manifest.charts)
            .flat_map(|artifact| {
                // An image's signatures, attestations and SBOMs count with it.
                artifact
                    .blobs
                    .iter()
                    .chain(artifact.referrers.iter().flat_map(|referrer| &referrer.blobs))
            })
            .filter_map(|digest| sizes.get(digest.as_str()).copied()),
    );
    let shared_savings = sum_of_artifact_sizes.saturating_sub(manifest.total_size);
    Ok(BundleInspection {
        manifest,
        signed,
        sum_of_artifact_sizes,
        shared_savings,
        split: reader.file().split().map(|split| split.index.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle holding only `manifest`, as its manifest.
    fn bundle_with_manifest(dir: &Path, manifest: &serde_json::Value) -> std::path::PathBuf {
        let bytes = serde_json::to_vec(manifest).expect("manifest JSON");
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_data(
                &mut header,
                coder_bundle_spec::format::MANIFEST_PATH,
                bytes.as_slice(),
            )
            .expect("tar entry");
        let path = dir.join("huge.bundle");
        std::fs::write(&path, builder.into_inner().expect("tar")).expect("write bundle");
        path
    }

    #[test]
    fn blob_sizes_that_add_up_past_u64_do_not_overflow() {
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let manifest = serde_json::json!({
            "format_version": 1, "tool": "t", "created": "2026-11-30T12:00:00Z", "name": "coder",
            "version": "1", "platforms": [], "index_digest": a, "spec_digest": a, "lock_digest": a,
            "images": [{
                "name": "x", "ref": "docker.io/library/x:1", "digest": a,
                "media_type": "application/vnd.oci.image.manifest.v1+json", "platforms": [],
                "blobs": [a, b], "size": 0,
            }],
            "charts": [],
            "blobs": [{ "digest": a, "size": 1u64 << 63 }, { "digest": b, "size": 1u64 << 63 }],
            "total_size": 0,
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let inspection = inspect_bundle(&bundle_with_manifest(dir.path(), &manifest)).expect("inspect");
        assert_eq!(inspection.sum_of_artifact_sizes, u64::MAX);
        assert_eq!(inspection.shared_savings, u64::MAX);
    }
}
