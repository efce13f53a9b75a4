//! `lock`: resolve every tag of a spec to a digest.

use bundle_spec::format::is_index;
use bundle_spec::{
    BundleSpec, ChartSource, ImageLock, ImageReference, LOCK_FORMAT_VERSION, LockedArtifact, LockedPlatform,
    LockedSpec,
};

use coder_registry::oci::IndexDocument;
use coder_registry::{RegistryClient, Repository};

/// Resolves every image (and OCI chart) of `spec` against its registry.
pub async fn resolve(
    spec: &BundleSpec,
    client: &RegistryClient,
    on_resolved: &dyn Fn(&LockedArtifact),
) -> crate::Result<ImageLock> {
    let mut images = Vec::new();
    for image in &spec.images {
        let reference = ImageReference::parse(&image.reference)?;
        let locked = resolve_one(&image.name, &reference, spec, client)
            .await
            .map_err(|error| fail!("image {} ({}): {error}", image.name, image.reference))?;
        on_resolved(&locked);
        images.push(locked);
    }
    let mut charts = Vec::new();
    for chart in &spec.charts {
        if let ChartSource::Oci(reference) = chart.source()? {
            let locked = resolve_one(&chart.name, &reference, spec, client).await?;
            let locked = LockedArtifact {
                reference: chart.reference.clone().unwrap_or_default(),
                ..locked
            };
            on_resolved(&locked);
            charts.push(locked);
        }
    }
    Ok(ImageLock {
        version: LOCK_FORMAT_VERSION,
        spec: LockedSpec {
            name: spec.name.clone(),
            version: spec.version.clone(),
        },
        locked_at: jiff::Timestamp::now().round(jiff::Unit::Second)?,
        images,
        charts,
    })
}

async fn resolve_one(
    name: &str,
    reference: &ImageReference,
    spec: &BundleSpec,
    client: &RegistryClient,
) -> crate::Result<LockedArtifact> {
    let manifest = client
        .manifest(&Repository::of(reference), reference.tag_or_digest())
        .await?;
    let mut platforms = Vec::new();
    if is_index(&manifest.media_type) {
        let index: IndexDocument = serde_json::from_slice(&manifest.bytes)?;
        let missing = index.first_missing(&spec.platforms);
        for entry in index.manifests {
            let Some(platform) = entry.platform else { continue };
            platforms.push(LockedPlatform {
                platform: platform.to_platform().to_string(),
                digest: entry.digest,
                media_type: entry.media_type,
                size: entry.size,
            });
        }
        if let Some(wanted) = missing {
            bail!(
                "the index has no {wanted} image (it has: {})",
                platforms
                    .iter()
                    .map(|p| p.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(LockedArtifact {
        name: name.to_owned(),
        reference: reference.original.clone(),
        digest: manifest.digest,
        media_type: manifest.media_type,
        size: manifest.bytes.len() as u64,
        platforms,
    })
}
