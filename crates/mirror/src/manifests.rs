//! The manifest half of a mirror run: which artifacts are complete already, and putting
//! manifests byte for byte (children before their index), the top-level one under its original
//! tag.

use std::sync::atomic::Ordering;

use coder_registry::{RegistryClient, RegistryError};
use coder_report::Job;

use crate::error::{MirrorError, registry_error};
use crate::plan::{ArtifactPlan, ManifestToPush};
use crate::report::{Counters, MirroredArtifact};

/// Whether every manifest the artifact needs is present: its carried children and, unless the
/// index is partial (which some registries refuse for good), the top-level one.
pub(crate) async fn manifests_present(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
) -> Result<bool, MirrorError> {
    let mut needed: Vec<&ManifestToPush> = artifact.children.iter().collect();
    if !artifact.partial_index {
        needed.push(&artifact.top);
    }
    for manifest in needed {
        let present = client
            .manifest_digest(&artifact.repository, &manifest.digest)
            .await
            .map_err(|source| {
                registry_error(format!("{}@{}", artifact.repository, manifest.digest), source)
            })?;
        if present.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Puts an artifact's manifests (children first) and its tag.
pub(crate) async fn push_manifests<'a>(
    client: &RegistryClient,
    artifact: &'a ArtifactPlan,
    complete: bool,
    counters: &Counters,
    progress: &dyn Job,
) -> Result<MirroredArtifact, MirrorError> {
    let repository = &artifact.repository;
    let put = |manifest: &'a ManifestToPush, reference: String| async move {
        client
            .put_manifest(
                repository,
                &reference,
                &manifest.bytes,
                &manifest.media_type,
                &manifest.digest,
            )
            .await
    };
    for child in &artifact.children {
        if complete {
            counters.manifests_present.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match client.manifest_digest(repository, &child.digest).await {
            Ok(Some(_)) => {
                counters.manifests_present.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                put(child, child.digest.clone())
                    .await
                    .map_err(|source| registry_error(format!("{repository}@{}", child.digest), source))?;
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            }
            Err(source) => return Err(registry_error(format!("{repository}@{}", child.digest), source)),
        }
    }

    let top = &artifact.top;
    let top_what = || format!("{repository}@{}", top.digest);
    let mut note = None;
    let top_present = if complete && !artifact.partial_index {
        true
    } else if artifact.children.is_empty() && !artifact.partial_index {
        // The first check asked for this one manifest, and found it missing.
        false
    } else {
        client
            .manifest_digest(repository, &top.digest)
            .await
            .map_err(|source| registry_error(top_what(), source))?
            .is_some()
    };
    // A missing top-level manifest is put under its tag when it has one: the one request stores
    // it (by its digest too) and points the tag at it.
    let mut tagged = false;
    let top_in_registry = if top_present {
        counters.manifests_present.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        let reference = artifact.tag.clone().unwrap_or_else(|| top.digest.clone());
        match put(top, reference).await {
            Ok(()) => {
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                if let Some(name) = &artifact.tag {
                    counters.tags_set.fetch_add(1, Ordering::Relaxed);
                    progress.line(&format!("tagged {repository}:{name} -> {}", top.digest));
                    tagged = true;
                }
                true
            }
            Err(RegistryError::Rejected { detail, .. })
                if artifact.partial_index && detail.contains("MANIFEST_BLOB_UNKNOWN") =>
            {
                note = Some(format!(
                    "the registry refuses an index whose other platforms it lacks ({detail}); the bundle carries {} platform manifest(s), pushed by digest",
                    artifact.children.len()
                ));
                false
            }
            Err(source) => return Err(registry_error(top_what(), source)),
        }
    };

    // What the tag (and deployments) should point at.
    let target = if top_in_registry {
        Some(top)
    } else if let [only] = artifact.children.as_slice() {
        Some(only)
    } else {
        None
    };
    let mut tag = None;
    if tagged {
        tag = artifact.tag.clone();
    } else if let (Some(name), Some(target)) = (&artifact.tag, target) {
        let current = client
            .manifest_digest(repository, name)
            .await
            .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
        if current.as_deref() != Some(target.digest.as_str()) {
            put(target, name.clone())
                .await
                .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
            counters.tags_set.fetch_add(1, Ordering::Relaxed);
            progress.line(&format!("tagged {repository}:{name} -> {}", target.digest));
        }
        tag = Some(name.clone());
    } else if artifact.tag.is_some() {
        note = Some(format!(
            "{}; no tag set, since several platforms are carried",
            note.unwrap_or_default()
        ));
    }
    Ok(MirroredArtifact {
        name: artifact.name.clone(),
        kind: artifact.kind,
        reference: artifact.reference.clone(),
        repository: repository.to_string(),
        digest: top.digest.clone(),
        pull_digest: target.map_or_else(|| top.digest.clone(), |target| target.digest.clone()),
        tag,
        complete: top_in_registry,
        note,
        subject: artifact.subject.clone(),
    })
}
