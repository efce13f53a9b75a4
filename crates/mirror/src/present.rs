//! `apply --no-push`: the site registry already holds the bundle (it is `coder-install serve` of
//! it, or the bundle was pushed before); check that every image and chart is there by digest,
//! writing nothing.

use std::time::Instant;

use coder_bundle::read::OpenedBundle;
use coder_registry::RegistryClient;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::MirrorError;
use crate::plan::ArtifactPlan;
use crate::report::{MirrorReport, MirroredArtifact};
use crate::{MirrorOptions, SiteRegistry};

/// Checks with `HEAD` requests that `site` serves every image and chart of `bundle` by digest
/// (the top-level manifest or index, and each carried platform manifest); sends nothing. The
/// report reads like a push that found everything present. Missing content is one error that
/// names every missing manifest and what to do.
pub async fn check_bundle_present(
    bundle: &OpenedBundle,
    site: &SiteRegistry,
    options: &MirrorOptions,
) -> Result<MirrorReport, MirrorError> {
    let started = Instant::now();
    let (artifacts, _) = crate::plan::plan(bundle.reader(), bundle.manifest(), site)?;
    let client = RegistryClient::new(options.registry.clone())?;
    let checked: Vec<(MirroredArtifact, Vec<String>, usize)> = futures_util::stream::iter(artifacts.iter())
        .map(|artifact| check_artifact(&client, artifact))
        .buffered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let missing: Vec<String> = checked
        .iter()
        .flat_map(|(_, missing, _)| missing.clone())
        .collect();
    if !missing.is_empty() {
        return Err(MirrorError::NotPresent {
            registry: site.to_string(),
            missing,
        });
    }
    let manifests_present = checked.iter().map(|(_, _, present)| present).sum();
    Ok(MirrorReport {
        bundle: bundle.path().display().to_string(),
        registry: site.to_string(),
        artifacts: checked.into_iter().map(|(artifact, _, _)| artifact).collect(),
        blobs_uploaded: 0,
        blobs_mounted: 0,
        blobs_present: 0,
        blobs_skipped: 0,
        manifests_pushed: 0,
        manifests_present,
        tags_set: 0,
        bytes_sent: 0,
        upload_chunk_size: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One artifact: which of its manifests are missing, and how many are present.
async fn check_artifact(
    client: &RegistryClient,
    artifact: &ArtifactPlan,
) -> Result<(MirroredArtifact, Vec<String>, usize), MirrorError> {
    let repository = &artifact.repository;
    let mut missing = Vec::new();
    let mut present = 0;
    let mut top_present = false;
    for manifest in artifact.children.iter().chain([&artifact.top]) {
        let what = format!("{repository}@{}", manifest.digest);
        match client.manifest_digest(repository, &manifest.digest).await {
            Ok(Some(_)) => {
                present += 1;
                top_present = std::ptr::eq(manifest, &artifact.top);
            }
            Ok(None) => missing.push(format!("{what} ({})", artifact.reference)),
            Err(source) => {
                return Err(MirrorError::Checking {
                    what,
                    source: Box::new(source),
                });
            }
        }
    }
    // A registry that refused a partial index at push time holds the one carried platform
    // manifest instead (see `push`): deploy by that.
    let mut pull_digest = artifact.top.digest.clone();
    if let ([only], false) = (artifact.children.as_slice(), top_present)
        && artifact.partial_index
        && missing.len() == 1
    {
        missing.clear();
        pull_digest.clone_from(&only.digest);
    }
    let mirrored = MirroredArtifact {
        name: artifact.name.clone(),
        kind: artifact.kind,
        reference: artifact.reference.clone(),
        repository: repository.to_string(),
        digest: artifact.top.digest.clone(),
        complete: pull_digest == artifact.top.digest,
        pull_digest,
        tag: artifact.tag.clone(),
        note: None,
        subject: artifact.subject.clone(),
    };
    Ok((mirrored, missing, present))
}
