//! The manifest half of a mirror run: which artifacts are complete already, and putting
//! manifests byte for byte (children before their index), the top-level one under its original
//! tag.

use std::sync::atomic::Ordering;

use coder_progress::Job;
use coder_registry::{RegistryClient, RegistryError};

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
pub(crate) async fn push_manifests(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    complete: bool,
    counters: &Counters,
    progress: &dyn Job,
) -> Result<MirroredArtifact, MirrorError> {
    push_children(client, artifact, complete, counters).await?;
    let top = &artifact.top;
    let top_present = top_present(client, artifact, complete).await?;
    let (top_in_registry, tagged, note) = if top_present {
        counters.manifests_present.fetch_add(1, Ordering::Relaxed);
        (true, false, None)
    } else {
        put_top(client, artifact, counters, progress).await?
    };
    // What the tag (and deployments) should point at.
    let target = if top_in_registry {
        Some(top)
    } else if let [only] = artifact.children.as_slice() {
        Some(only)
    } else {
        None
    };
    let (tag, note) = settle_tag(client, artifact, target, tagged, note, counters, progress).await?;
    Ok(MirroredArtifact {
        name: artifact.name.clone(),
        kind: artifact.kind,
        reference: artifact.reference.clone(),
        repository: artifact.repository.to_string(),
        digest: top.digest.clone(),
        pull_digest: target.map_or_else(|| top.digest.clone(), |target| target.digest.clone()),
        tag,
        complete: top_in_registry,
        note,
        subject: artifact.subject.clone(),
    })
}

/// Puts one manifest of the artifact byte for byte under `reference` (a digest or a tag).
async fn put(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    manifest: &ManifestToPush,
    reference: &str,
) -> Result<(), RegistryError> {
    client
        .put_manifest(
            &artifact.repository,
            reference,
            &manifest.bytes,
            &manifest.media_type,
            &manifest.digest,
        )
        .await
}

/// Puts the artifact's carried children the registry lacks (none are checked when `complete`).
async fn push_children(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    complete: bool,
    counters: &Counters,
) -> Result<(), MirrorError> {
    let repository = &artifact.repository;
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
                put(client, artifact, child, &child.digest)
                    .await
                    .map_err(|source| registry_error(format!("{repository}@{}", child.digest), source))?;
                counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            }
            Err(source) => return Err(registry_error(format!("{repository}@{}", child.digest), source)),
        }
    }
    Ok(())
}

/// Whether the artifact's top-level manifest is in the registry (asked only when not known yet).
async fn top_present(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    complete: bool,
) -> Result<bool, MirrorError> {
    if complete && !artifact.partial_index {
        Ok(true)
    } else if artifact.children.is_empty() && !artifact.partial_index {
        // The first check asked for this one manifest, and found it missing.
        Ok(false)
    } else {
        let (repository, top) = (&artifact.repository, &artifact.top);
        Ok(client
            .manifest_digest(repository, &top.digest)
            .await
            .map_err(|source| registry_error(format!("{repository}@{}", top.digest), source))?
            .is_some())
    }
}

/// Puts the missing top-level manifest, under its tag when it has one (the one request stores it,
/// by its digest too, and points the tag at it): whether it is in the registry now, whether it
/// was tagged, and the note for a partial index the registry refuses.
async fn put_top(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    counters: &Counters,
    progress: &dyn Job,
) -> Result<(bool, bool, Option<String>), MirrorError> {
    let (repository, top) = (&artifact.repository, &artifact.top);
    let reference = artifact.tag.clone().unwrap_or_else(|| top.digest.clone());
    match put(client, artifact, top, &reference).await {
        Ok(()) => {
            counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            let mut tagged = false;
            if let Some(name) = &artifact.tag {
                counters.tags_set.fetch_add(1, Ordering::Relaxed);
                progress.line(&format!("tagged {repository}:{name} -> {}", top.digest));
                tagged = true;
            }
            Ok((true, tagged, None))
        }
        Err(RegistryError::Rejected { detail, .. })
            if artifact.partial_index && detail.contains("MANIFEST_BLOB_UNKNOWN") =>
        {
            let note = format!(
                "the registry refuses an index whose other platforms it lacks ({detail}); the bundle carries {} platform manifest(s), pushed by digest",
                artifact.children.len()
            );
            Ok((false, false, Some(note)))
        }
        Err(source) => Err(registry_error(format!("{repository}@{}", top.digest), source)),
    }
}

/// Points the artifact's tag at `target` unless `tagged` already (or says in the note why no tag
/// is set): the tag the report names, and the note.
async fn settle_tag(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
    target: Option<&ManifestToPush>,
    tagged: bool,
    note: Option<String>,
    counters: &Counters,
    progress: &dyn Job,
) -> Result<(Option<String>, Option<String>), MirrorError> {
    let repository = &artifact.repository;
    if tagged {
        return Ok((artifact.tag.clone(), note));
    }
    if let (Some(name), Some(target)) = (&artifact.tag, target) {
        let current = client
            .manifest_digest(repository, name)
            .await
            .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
        if current.as_deref() != Some(target.digest.as_str()) {
            put(client, artifact, target, name)
                .await
                .map_err(|source| registry_error(format!("{repository}:{name}"), source))?;
            counters.tags_set.fetch_add(1, Ordering::Relaxed);
            progress.line(&format!("tagged {repository}:{name} -> {}", target.digest));
        }
        return Ok((Some(name.clone()), note));
    }
    if artifact.tag.is_some() {
        let note = format!(
            "{}; no tag set, since several platforms are carried",
            note.unwrap_or_default()
        );
        return Ok((None, Some(note)));
    }
    Ok((None, note))
}
