//! What the registry serves, worked out once at start from the bundle: per repository its tags,
//! manifests and blobs; every manifest's bytes and media type (held in memory: they are small
//! and checked against their digests here); every blob's place in the bundle file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use coder_bundle::read::{BundleReader, EntryLocation};
use coder_bundle_spec::ImageReference;
use coder_bundle_spec::format::{
    BundleManifest, BundledArtifact, OCI_MANIFEST_MEDIA_TYPE, blob_path, is_index,
};
use coder_registry::oci::{self, IndexDocument};
use serde::Serialize;

use crate::error::ServeError;

/// A manifest or index, as stored in the bundle.
#[derive(Debug, Clone)]
pub(crate) struct StoredManifest {
    /// Its exact bytes.
    pub(crate) bytes: Bytes,
    /// The media type it is served with.
    pub(crate) media_type: String,
}

/// One repository of the served registry.
#[derive(Debug, Default)]
pub(crate) struct RepositoryContent {
    /// Tag to manifest digest.
    pub(crate) tags: BTreeMap<String, String>,
    /// The manifests and indexes it holds (top-level ones and carried platform manifests).
    pub(crate) manifests: BTreeSet<String>,
    /// Every blob it holds: configs, layers, and its manifests (fetchable as blobs too).
    pub(crate) blobs: BTreeSet<String>,
}

/// Everything the registry serves.
#[derive(Debug)]
pub(crate) struct Content {
    /// Repository path (with the prefix) to its content.
    pub(crate) repositories: BTreeMap<String, RepositoryContent>,
    /// Manifest digest to its bytes and media type.
    pub(crate) manifests: HashMap<String, StoredManifest>,
    /// Blob digest to where it lies in the bundle file.
    pub(crate) blobs: HashMap<String, EntryLocation>,
}

/// One image or chart as served, for the start-up report.
#[derive(Debug, Clone, Serialize)]
pub struct ServedArtifact {
    /// Logical name from the spec.
    pub name: String,
    /// The original reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The repository path it is served under (`prefix/original-path`).
    pub repository: String,
    /// The tag it is served under, if the original reference had one.
    pub tag: Option<String>,
    /// The top-level manifest or index digest (what `apply` deploys by).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The carried platforms (`os/arch`), empty for a single manifest.
    pub platforms: Vec<String>,
}

/// The repository path a reference is served under: `prefix/original-path`, as `push` places it.
pub fn repository_path(prefix: &str, original: &ImageReference) -> String {
    if prefix.is_empty() {
        original.repository.clone()
    } else {
        format!("{prefix}/{}", original.repository)
    }
}

impl Content {
    /// Works out what `reader`'s bundle serves under `prefix`; every manifest is read and checked
    /// against its digest, every blob must be present (a delta bundle is refused).
    pub(crate) fn load(
        reader: &BundleReader,
        manifest: &BundleManifest,
        prefix: &str,
    ) -> Result<(Self, Vec<ServedArtifact>), ServeError> {
        let bundle = reader.path().display().to_string();
        if let Some(delta) = &manifest.delta {
            return Err(ServeError::Bundle(format!(
                "{bundle} is a delta bundle (made against {}): it leaves out {} blob(s) the registry would have to serve; \
                 serve a full bundle (made without --delta-from/--have-list)",
                delta.base,
                delta.omitted.len()
            )));
        }
        let mut content = Self {
            repositories: BTreeMap::new(),
            manifests: HashMap::new(),
            blobs: HashMap::new(),
        };
        for record in &manifest.blobs {
            let location = reader
                .entries()
                .get(&blob_path(&record.digest))
                .copied()
                .ok_or_else(|| {
                    ServeError::Bundle(format!(
                        "{bundle}: blob {} is missing; run `coder-install verify` and serve an intact bundle",
                        record.digest
                    ))
                })?;
            content.blobs.insert(record.digest.clone(), location);
        }
        let mut served = Vec::new();
        for artifact in manifest.images.iter().chain(&manifest.charts) {
            served.push(content.add_artifact(reader, artifact, prefix)?);
        }
        Ok((content, served))
    }

    /// Adds one image or chart: its top-level manifest, carried children, blobs and tag.
    fn add_artifact(
        &mut self,
        reader: &BundleReader,
        artifact: &BundledArtifact,
        prefix: &str,
    ) -> Result<ServedArtifact, ServeError> {
        let original = ImageReference::parse(&artifact.reference)
            .map_err(|error| ServeError::Bundle(format!("{}: {error}", artifact.reference)))?;
        let repository = repository_path(prefix, &original);
        let top = self.add_manifest(reader, &artifact.digest, &artifact.media_type)?;
        let mut manifests = vec![artifact.digest.clone()];
        if is_index(&top.media_type) {
            let index: IndexDocument = serde_json::from_slice(&top.bytes).map_err(|error| {
                ServeError::Bundle(format!(
                    "{}: index {} does not parse: {error}",
                    artifact.reference, artifact.digest
                ))
            })?;
            let carried: BTreeSet<&str> = artifact
                .platforms
                .iter()
                .map(|platform| platform.digest.as_str())
                .collect();
            for child in index
                .manifests
                .iter()
                .filter(|child| carried.contains(child.digest.as_str()))
            {
                self.add_manifest(reader, &child.digest, &child.media_type)?;
                manifests.push(child.digest.clone());
            }
        }
        for digest in &artifact.blobs {
            if !self.blobs.contains_key(digest) {
                return Err(ServeError::Bundle(format!(
                    "{}: blob {digest} of {} is not in the bundle manifest's blob list",
                    reader.path().display(),
                    artifact.reference
                )));
            }
        }
        let entry = self.repositories.entry(repository.clone()).or_default();
        if let Some(tag) = &original.tag {
            entry.tags.insert(tag.clone(), artifact.digest.clone());
        }
        entry.blobs.extend(artifact.blobs.iter().cloned());
        entry.blobs.extend(manifests.iter().cloned());
        entry.manifests.extend(manifests);
        Ok(ServedArtifact {
            name: artifact.name.clone(),
            reference: artifact.reference.clone(),
            repository,
            tag: original.tag.clone(),
            digest: artifact.digest.clone(),
            media_type: top.media_type,
            platforms: artifact
                .platforms
                .iter()
                .map(|platform| platform.platform.clone())
                .collect(),
        })
    }

    /// Reads a manifest from the bundle (checked against its digest) and keeps it.
    fn add_manifest(
        &mut self,
        reader: &BundleReader,
        digest: &str,
        descriptor_media_type: &str,
    ) -> Result<StoredManifest, ServeError> {
        if let Some(stored) = self.manifests.get(digest) {
            return Ok(stored.clone());
        }
        let bundle = reader.path().display();
        let bytes = reader
            .read_document(&blob_path(digest))
            .map_err(|error| ServeError::Bundle(coder_progress::error_chain(&error)))?
            .ok_or_else(|| {
                ServeError::Bundle(format!(
                    "{bundle}: manifest {digest} is missing; run `coder-install verify` and serve an intact bundle"
                ))
            })?;
        let actual = coder_registry::sha256_digest(&bytes);
        if actual != digest {
            return Err(ServeError::Bundle(format!(
                "{bundle}: manifest {digest} hashes to {actual}: the bundle is damaged; run `coder-install verify`"
            )));
        }
        let media_type = if descriptor_media_type.is_empty() {
            oci::media_type_of(&bytes).unwrap_or_else(|| OCI_MANIFEST_MEDIA_TYPE.to_owned())
        } else {
            descriptor_media_type.to_owned()
        };
        let stored = StoredManifest {
            bytes: Bytes::from(bytes),
            media_type,
        };
        self.manifests.insert(digest.to_owned(), stored.clone());
        Ok(stored)
    }
}
