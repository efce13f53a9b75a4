//! `inspect`: what a bundle holds, from its manifest alone (no hashing).

use std::collections::BTreeMap;
use std::path::Path;

use bundle_spec::format::{BundleManifest, SIGNATURE_PATH};
use serde::Serialize;

use super::read::BundleReader;

/// A bundle's contents and sizes.
#[derive(Debug, Serialize)]
pub struct BundleInspection {
    /// The bundle manifest.
    #[serde(flatten)]
    pub manifest: BundleManifest,
    /// Whether a signature is present (unchecked; `verify` checks it).
    pub signed: bool,
    /// Sum of every image's and chart's size, as if nothing were shared.
    pub sum_of_artifact_sizes: u64,
    /// What sharing blobs saves: `sum_of_artifact_sizes - total_size`.
    pub shared_savings: u64,
}

/// Reads a bundle's manifest and computes its sizes.
pub fn inspect_bundle(path: &Path) -> anyhow::Result<BundleInspection> {
    let reader = BundleReader::open(path)?;
    let manifest = reader.manifest()?;
    let signed = reader.entries().contains_key(SIGNATURE_PATH);
    let sizes: BTreeMap<&str, u64> = manifest
        .blobs
        .iter()
        .map(|blob| (blob.digest.as_str(), blob.size))
        .collect();
    let sum_of_artifact_sizes: u64 = manifest
        .images
        .iter()
        .chain(&manifest.charts)
        .flat_map(|artifact| artifact.blobs.iter())
        .filter_map(|digest| sizes.get(digest.as_str()))
        .sum();
    let shared_savings = sum_of_artifact_sizes.saturating_sub(manifest.total_size);
    Ok(BundleInspection {
        manifest,
        signed,
        sum_of_artifact_sizes,
        shared_savings,
    })
}
