//! From a lock to the list of blobs a bundle needs: every manifest fetched (by digest, checked,
//! stored in the cache), every config and layer descriptor collected, each blob once.

use std::collections::{BTreeMap, BTreeSet};

use coder_bundle_spec::format::{BlobRecord, BundledArtifact, BundledPlatform, is_index};
use coder_bundle_spec::referrer::Referrer;
use coder_bundle_spec::{BundleSpec, ImageLock, LockedArtifact, Platform};
use serde::Deserialize;

use coder_registry::oci::{ImageManifest, IndexDocument};

use crate::BundleError;
use crate::make::cache::BlobCache;
use coder_registry::{RegistryClient, RegistryError, Repository};

/// Everything a bundle will hold, before any layer is downloaded.
#[derive(Debug, Default)]
pub struct BundlePlan {
    /// The images, in spec order.
    pub images: Vec<BundledArtifact>,
    /// The charts, in spec order.
    pub charts: Vec<BundledArtifact>,
    /// Every blob, once, with where to fetch it from (`None`: already in the cache, e.g. a
    /// manifest or a locally packaged chart).
    pub blobs: BTreeMap<String, PlannedBlob>,
    /// Blobs a delta bundle carries all the same: those of signatures, attestations and SBOMs
    /// (a few hundred bytes each), so that `verify --image-key` can check a delta bundle alone.
    pub always_carried: BTreeSet<String>,
}

/// One blob of the plan.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    /// Size in bytes, from the descriptor that names it.
    pub size: u64,
    /// The repository to download it from, if it is not in the cache yet.
    pub source: Option<Repository>,
}

impl BundlePlan {
    /// Records a blob once; two descriptors that disagree on its size are an error.
    pub fn add_blob(
        &mut self,
        digest: &str,
        size: u64,
        source: Option<&Repository>,
    ) -> Result<(), RegistryError> {
        coder_bundle_spec::validate_digest(digest).map_err(|reason| RegistryError::InvalidManifest {
            reference: digest.to_owned(),
            reason,
        })?;
        let entry = self.blobs.entry(digest.to_owned()).or_insert(PlannedBlob {
            size,
            source: source.cloned(),
        });
        if entry.size != size {
            return Err(RegistryError::SizeMismatch {
                what: format!("blob {digest} (two descriptors disagree)"),
                expected: entry.size,
                actual: size,
            });
        }
        Ok(())
    }

    /// Removes the config and layer blobs (those fetched from a registry) that `have` lists, for
    /// a delta bundle; manifests, charts and referrers' blobs always stay. Returns what was
    /// removed.
    pub fn omit_present(&mut self, have: &BTreeSet<String>) -> Vec<BlobRecord> {
        let omitted: Vec<BlobRecord> = self
            .blobs
            .iter()
            .filter(|(digest, blob)| {
                blob.source.is_some() && have.contains(*digest) && !self.always_carried.contains(*digest)
            })
            .map(|(digest, blob)| BlobRecord {
                digest: digest.clone(),
                size: blob.size,
            })
            .collect();
        for record in &omitted {
            self.blobs.remove(&record.digest);
        }
        omitted
    }

    /// Sum of the sizes of every blob, each counted once.
    pub fn unique_size(&self) -> u64 {
        coder_registry::oci::total_size(self.blobs.values().map(|blob| blob.size))
    }
}

/// Fetches the manifests of every locked image (checking the lock's digests), keeping the
/// children of `spec.platforms` for indexes, and collects their blobs into `plan`.
pub async fn plan_images(
    spec: &BundleSpec,
    lock: &ImageLock,
    client: &RegistryClient,
    cache: &BlobCache,
    plan: &mut BundlePlan,
) -> crate::Result<()> {
    prefetch_manifests(lock, &spec.platforms, client, cache).await;
    for image in &spec.images {
        let locked = lock.image(&image.name).ok_or_else(|| BundleError::NotInLock {
            image: image.name.clone(),
        })?;
        let artifact = plan_artifact(locked, &spec.platforms, client, cache, plan)
            .await
            .map_err(|error| BundleError::artifact("image", &image.name, &image.reference, error))?;
        plan.images.push(artifact);
    }
    for locked in &lock.charts {
        let artifact = plan_artifact(locked, &[], client, cache, plan)
            .await
            .map_err(|error| BundleError::artifact("chart", &locked.name, &locked.reference, error))?;
        plan.charts.push(artifact);
    }
    Ok(())
}

/// How many manifests [`prefetch_manifests`] fetches at once.
const MANIFESTS_AT_ONCE: usize = 8;

/// Fetches into the cache, [`MANIFESTS_AT_ONCE`] at a time, every manifest the lock pins that the
/// cache lacks (each image's and chart's, and the manifests of the `platforms` the bundle carries
/// of an index, as the lock lists them), so that
/// planning, which goes one artifact after another in the spec's order, reads them from disk
/// instead of waiting for the registry once per manifest. Best effort: a manifest that fails
/// here is fetched again by the planning, which reports the failure with its artifact.
async fn prefetch_manifests(
    lock: &ImageLock,
    platforms: &[Platform],
    client: &RegistryClient,
    cache: &BlobCache,
) {
    use futures_util::StreamExt;
    let mut wanted: BTreeMap<&str, (Repository, &str)> = BTreeMap::new();
    for locked in lock.images.iter().chain(&lock.charts) {
        let Ok(reference) = locked.image_reference() else {
            continue;
        };
        let repository = Repository::of(&reference);
        let children = locked
            .platforms
            .iter()
            .filter(|child| !is_index(&child.media_type) && carried(platforms, &child.platform))
            .map(|platform| {
                (
                    platform.digest.as_str(),
                    platform.media_type.as_str(),
                    platform.size,
                )
            });
        let top = (locked.digest.as_str(), locked.media_type.as_str(), locked.size);
        for (digest, media_type, size) in std::iter::once(top).chain(children) {
            if !cache.contains(digest, size) {
                wanted
                    .entry(digest)
                    .or_insert_with(|| (repository.clone(), media_type));
            }
        }
    }
    futures_util::stream::iter(wanted)
        .map(|(digest, (repository, media_type))| async move {
            // Errors are the planning's to report.
            let _ = fetch_into_cache(client, cache, &repository, digest, media_type).await;
        })
        .buffer_unordered(MANIFESTS_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
}

/// Whether a platform the lock lists (`os/architecture[/variant]`) is one the bundle carries; one
/// that does not parse is left to the planning.
fn carried(platforms: &[Platform], locked: &str) -> bool {
    locked.parse::<Platform>().is_ok_and(|platform| {
        Platform::is_carried(
            platforms,
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
    })
}

/// Plans one locked image or chart: fetches its manifest (and, for an index, the manifest of
/// each wanted platform), records every manifest, config and layer blob in `plan`, then its
/// referrers; returns what the bundle's records say of it.
async fn plan_artifact(
    locked: &LockedArtifact,
    platforms: &[Platform],
    client: &RegistryClient,
    cache: &BlobCache,
    plan: &mut BundlePlan,
) -> Result<BundledArtifact, RegistryError> {
    let reference = locked
        .image_reference()
        .map_err(|error| RegistryError::InvalidManifest {
            reference: locked.reference.clone(),
            reason: error.to_string(),
        })?;
    let repository = Repository::of(&reference);
    let fetch = Fetch {
        client,
        cache,
        repository: &repository,
    };
    let mut blobs = BTreeSet::new();
    let top = fetch_locked_manifest(&fetch, locked).await?;
    plan.add_blob(&top.digest, top.bytes.len() as u64, None)?;
    blobs.insert(top.digest.clone());

    let (carried, image_manifests) = if is_index(&top.media_type) {
        plan_platform_manifests(&fetch, locked, &top.bytes, platforms, plan, &mut blobs).await?
    } else {
        (Vec::new(), vec![top.bytes])
    };
    for manifest in image_manifests {
        let manifest: ImageManifest = parse(&manifest, &locked.reference)?;
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            plan.add_blob(&descriptor.digest, descriptor.size, Some(&repository))?;
            blobs.insert(descriptor.digest.clone());
        }
    }
    let size = coder_registry::oci::total_size(
        blobs
            .iter()
            .filter_map(|digest| plan.blobs.get(digest))
            .map(|blob| blob.size),
    );
    let mut referrers = Vec::new();
    for referrer in &locked.referrers {
        referrers.push(plan_referrer(referrer, &repository, client, cache, plan).await?);
    }
    Ok(BundledArtifact {
        name: locked.name.clone(),
        // Without an `oci://` scheme, so that it is a valid `ref.name` annotation.
        reference: reference.original.clone(),
        digest: locked.digest.clone(),
        media_type: locked.media_type.clone(),
        platforms: carried,
        blobs: blobs.into_iter().collect(),
        size,
        referrers,
    })
}

/// Where an artifact's manifests come from: the registry client, the cache that keeps them,
/// and the artifact's repository.
struct Fetch<'a> {
    client: &'a RegistryClient,
    cache: &'a BlobCache,
    repository: &'a Repository,
}

/// Fetches the manifest the lock pins (by its digest, into the cache) and checks that the
/// registry serves it with the media type the lock records.
async fn fetch_locked_manifest(
    fetch: &Fetch<'_>,
    locked: &LockedArtifact,
) -> Result<coder_registry::FetchedManifest, RegistryError> {
    let top = fetch_into_cache(
        fetch.client,
        fetch.cache,
        fetch.repository,
        &locked.digest,
        &locked.media_type,
    )
    .await?;
    if top.media_type != locked.media_type {
        return Err(RegistryError::InvalidManifest {
            reference: locked.reference.clone(),
            reason: format!(
                "the lock says {} but the registry serves {}; re-run `coder-install lock`",
                locked.media_type, top.media_type
            ),
        });
    }
    Ok(top)
}

/// From an index: refuses one that lacks a platform the spec asks for, then fetches the image
/// manifest of every wanted platform (all of them when `platforms` is empty; nested indexes
/// skipped), checks its size and records it in `plan` and `blobs`. Returns the platforms carried
/// and their manifests' bytes, in the index's order.
async fn plan_platform_manifests(
    fetch: &Fetch<'_>,
    locked: &LockedArtifact,
    index_bytes: &[u8],
    platforms: &[Platform],
    plan: &mut BundlePlan,
    blobs: &mut BTreeSet<String>,
) -> Result<(Vec<BundledPlatform>, Vec<Vec<u8>>), RegistryError> {
    let index: IndexDocument = parse(index_bytes, &locked.reference)?;
    if let Some(platform) = index.first_missing(platforms) {
        return Err(RegistryError::InvalidManifest {
            reference: locked.reference.clone(),
            reason: format!(
                "the index has no {platform} image; remove the platform from the spec or choose another image"
            ),
        });
    }
    let mut carried = Vec::new();
    let mut children = Vec::new();
    for entry in index.manifests {
        let Some(platform) = entry.platform else { continue };
        let wanted = Platform::is_carried(
            platforms,
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        );
        if !wanted || is_index(&entry.media_type) {
            continue;
        }
        let name = platform.to_platform();
        let child = fetch_into_cache(
            fetch.client,
            fetch.cache,
            fetch.repository,
            &entry.digest,
            &entry.media_type,
        )
        .await?;
        if child.bytes.len() as u64 != entry.size {
            return Err(RegistryError::SizeMismatch {
                what: format!("{} {name} manifest", locked.reference),
                expected: entry.size,
                actual: child.bytes.len() as u64,
            });
        }
        plan.add_blob(&child.digest, entry.size, None)?;
        blobs.insert(child.digest.clone());
        carried.push(BundledPlatform {
            platform: name.to_string(),
            digest: child.digest.clone(),
        });
        children.push(child.bytes);
    }
    Ok((carried, children))
}

/// A signature, attestation or SBOM: its manifest (by the lock's digest, checked like an
/// image's) and the config and layer blobs it uses, fetched from the image's repository.
async fn plan_referrer(
    referrer: &Referrer,
    repository: &Repository,
    client: &RegistryClient,
    cache: &BlobCache,
    plan: &mut BundlePlan,
) -> Result<Referrer, RegistryError> {
    let what = format!(
        "{repository}@{} ({:?} of {})",
        referrer.digest, referrer.kind, referrer.subject
    );
    let manifest =
        fetch_into_cache(client, cache, repository, &referrer.digest, &referrer.media_type).await?;
    if manifest.media_type != referrer.media_type || is_index(&manifest.media_type) {
        return Err(RegistryError::InvalidManifest {
            reference: what,
            reason: format!(
                "the lock says {} but the registry serves {}; re-run `coder-install lock`",
                referrer.media_type, manifest.media_type
            ),
        });
    }
    if manifest.bytes.len() as u64 != referrer.size {
        return Err(RegistryError::SizeMismatch {
            what,
            expected: referrer.size,
            actual: manifest.bytes.len() as u64,
        });
    }
    plan.add_blob(&manifest.digest, referrer.size, None)?;
    let mut blobs = BTreeSet::from([manifest.digest.clone()]);
    let image: ImageManifest = parse(&manifest.bytes, &what)?;
    for descriptor in std::iter::once(&image.config).chain(&image.layers) {
        plan.add_blob(&descriptor.digest, descriptor.size, Some(repository))?;
        plan.always_carried.insert(descriptor.digest.clone());
        blobs.insert(descriptor.digest.clone());
    }
    Ok(Referrer {
        blobs: blobs.into_iter().collect(),
        ..referrer.clone()
    })
}

/// A manifest by digest: from the cache when it is there (a digest names its content forever, so
/// a re-bundle of an unchanged lock needs no registry at all), else fetched and cached.
/// `media_type` is what the lock or the parent index says it is; a fetched manifest's own
/// media type is checked against it by the caller.
async fn fetch_into_cache(
    client: &RegistryClient,
    cache: &BlobCache,
    repository: &Repository,
    digest: &str,
    media_type: &str,
) -> Result<coder_registry::FetchedManifest, RegistryError> {
    if let Some(bytes) = cache.read_verified(digest) {
        return Ok(coder_registry::FetchedManifest {
            bytes,
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
        });
    }
    let manifest = client.manifest(repository, digest).await?;
    cache.insert(&manifest.digest, &manifest.bytes)?;
    Ok(manifest)
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], reference: &str) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|error| RegistryError::InvalidManifest {
        reference: reference.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_leaves_out_what_the_target_has_except_manifests_and_referrers_blobs() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let repository = Repository {
            registry: "r.example.com".to_owned(),
            repository: "app".to_owned(),
        };
        let mut plan = BundlePlan::default();
        plan.add_blob(&digest('a'), 1, None).expect("manifest");
        plan.add_blob(&digest('b'), 2, Some(&repository)).expect("layer");
        plan.add_blob(&digest('c'), 3, Some(&repository))
            .expect("signature payload");
        plan.always_carried.insert(digest('c'));
        let have: BTreeSet<String> = ['a', 'b', 'c'].map(digest).into();
        let omitted = plan.omit_present(&have);
        assert_eq!(
            omitted,
            [BlobRecord {
                digest: digest('b'),
                size: 2
            }]
        );
        assert_eq!(
            plan.blobs.keys().cloned().collect::<Vec<_>>(),
            [digest('a'), digest('c')]
        );
    }
}
