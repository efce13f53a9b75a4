//! The OCI 1.1 referrers tag schema, for a site registry without the referrers API: a referrer
//! that only the upstream referrers API listed (it has no cosign tag) is put by digest, and then
//! listed in the index tagged `sha256-<subject hex>` in its repository, which is where OCI 1.1
//! clients look when the registry has no `GET /v2/<name>/referrers/<digest>`. A site registry
//! with the API lists it by its `subject` field on its own, and gets no such tag.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use coder_bundle_spec::format::{OCI_INDEX_MEDIA_TYPE, is_index};
use coder_progress::Job;
use coder_registry::{RegistryClient, RegistryError, Repository, sha256_digest};
use serde_json::{Value, json};

use crate::error::{MirrorError, registry_error};
use crate::plan::ArtifactPlan;
use crate::report::Counters;

/// The fallback tag of `subject` (`sha256:<hex>` → `sha256-<hex>`).
fn fallback_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

/// Lists every untagged referrer in its subject's fallback index, where the site registry has no
/// referrers API; entries already there are kept, and an index that already lists them all is
/// left alone.
pub(crate) async fn update_fallback_indexes(
    client: &RegistryClient,
    artifacts: &[ArtifactPlan],
    counters: &Counters,
    progress: &dyn Job,
) -> Result<(), MirrorError> {
    let mut groups: BTreeMap<(String, &str), (&Repository, Vec<&ArtifactPlan>)> = BTreeMap::new();
    for artifact in artifacts.iter().filter(|artifact| artifact.tag.is_none()) {
        let Some(subject) = &artifact.subject else {
            continue;
        };
        groups
            .entry((artifact.repository.to_string(), subject.as_str()))
            .or_insert((&artifact.repository, Vec::new()))
            .1
            .push(artifact);
    }
    for ((_, subject), (repository, referrers)) in groups {
        let what = || format!("{repository}:{}", fallback_tag(subject));
        let has_api = client
            .referrers(repository, subject)
            .await
            .map_err(|source| registry_error(format!("{repository} (referrers of {subject})"), source))?;
        if has_api.is_some() {
            continue;
        }
        let mut entries = existing_entries(client, repository, &fallback_tag(subject))
            .await
            .map_err(|source| registry_error(what(), source))?;
        let before = entries.len();
        for referrer in referrers {
            if !entries
                .iter()
                .any(|entry| entry["digest"] == referrer.top.digest.as_str())
            {
                entries.push(descriptor(referrer));
            }
        }
        if entries.len() == before {
            continue;
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": entries,
        }))
        .map_err(|error| MirrorError::Bundle(format!("{}: {error}", what())))?;
        client
            .put_manifest(
                repository,
                &fallback_tag(subject),
                &index,
                OCI_INDEX_MEDIA_TYPE,
                &sha256_digest(&index),
            )
            .await
            .map_err(|source| registry_error(what(), source))?;
        counters.tags_set.fetch_add(1, Ordering::Relaxed);
        progress.line(&format!(
            "listed {} referrer(s) of {subject} in {} (the registry has no referrers API)",
            entries.len() - before,
            what()
        ));
    }
    Ok(())
}

/// The entries of the fallback index already at `tag`, if any.
async fn existing_entries(
    client: &RegistryClient,
    repository: &Repository,
    tag: &str,
) -> Result<Vec<Value>, RegistryError> {
    let manifest = match client.manifest(repository, tag).await {
        Ok(manifest) => manifest,
        Err(RegistryError::ManifestNotFound { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let invalid = |reason: String| RegistryError::InvalidManifest {
        reference: format!("{repository}:{tag}"),
        reason,
    };
    if !is_index(&manifest.media_type) {
        return Err(invalid(format!(
            "the referrers fallback tag holds a {}, not an index; remove the tag and push again",
            manifest.media_type
        )));
    }
    let index: Value = serde_json::from_slice(&manifest.bytes).map_err(|error| invalid(error.to_string()))?;
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

/// A referrer's entry in the fallback index: its descriptor, with its artifact type and
/// annotations, as the referrers API would list it.
fn descriptor(referrer: &ArtifactPlan) -> Value {
    let manifest: Value = serde_json::from_slice(&referrer.top.bytes).unwrap_or_default();
    let mut entry = json!({
        "mediaType": referrer.top.media_type,
        "digest": referrer.top.digest,
        "size": referrer.top.bytes.len(),
    });
    if let Some(artifact_type) = coder_registry::oci::artifact_type_of(&referrer.top.bytes) {
        entry["artifactType"] = json!(artifact_type);
    }
    if let Some(annotations) = manifest.get("annotations").filter(|value| value.is_object()) {
        entry["annotations"] = annotations.clone();
    }
    entry
}
