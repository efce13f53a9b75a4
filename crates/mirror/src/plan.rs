//! The plan of a mirror run, from the bundle alone: per artifact its target repository, the
//! manifests to put (carried children of an index first) and the config and layer blobs they
//! use; per blob, where it lies in the bundle file and which artifacts need it. An image's
//! signatures, attestations and SBOMs are artifacts of their own here, in the image's
//! repository, under cosign's tag.

use std::collections::{BTreeMap, BTreeSet};

use coder_bundle::read::{BundleReader, EntryLocation};
use coder_bundle_spec::ImageReference;
use coder_bundle_spec::format::{BundleManifest, BundledArtifact, blob_path, is_index};
use coder_bundle_spec::referrer::Referrer;
use coder_registry::oci::{self, ImageManifest, IndexDocument};
use coder_registry::{Repository, sha256_digest};
use serde::Deserialize;

use crate::error::MirrorError;
use crate::report::ArtifactKind;
use crate::target::SiteRegistry;

/// One manifest or index to put.
pub(crate) struct ManifestToPush {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) bytes: Vec<u8>,
}

/// One artifact of the plan.
pub(crate) struct ArtifactPlan {
    pub(crate) name: String,
    pub(crate) kind: ArtifactKind,
    pub(crate) reference: String,
    pub(crate) repository: Repository,
    pub(crate) tag: Option<String>,
    pub(crate) top: ManifestToPush,
    /// The carried platform manifests of an index (empty for a single manifest).
    pub(crate) children: Vec<ManifestToPush>,
    /// Whether the index lists children the bundle does not carry.
    pub(crate) partial_index: bool,
    /// Config and layer digests.
    pub(crate) blobs: BTreeSet<String>,
    /// For a signature, attestation or SBOM: the digest it is about (pushed after the images).
    pub(crate) subject: Option<String>,
}

/// One blob of the plan.
pub(crate) struct BlobPlan {
    /// Where it lies in the bundle; `None` when a delta bundle left it out.
    pub(crate) location: Option<EntryLocation>,
    pub(crate) size: u64,
    /// Indexes into the artifact list, of the artifacts that use it.
    pub(crate) used_by: BTreeSet<usize>,
}

/// Builds the plan from the bundle alone: the artifacts, and per blob where it lies and who uses it.
pub(crate) fn plan(
    reader: &BundleReader,
    manifest: &BundleManifest,
    site: &SiteRegistry,
) -> Result<(Vec<ArtifactPlan>, BTreeMap<String, BlobPlan>), MirrorError> {
    let omitted: BTreeMap<&str, u64> = manifest
        .delta
        .iter()
        .flat_map(|delta| delta.omitted.iter())
        .map(|blob| (blob.digest.as_str(), blob.size))
        .collect();
    let mut artifacts = Vec::new();
    let mut blobs: BTreeMap<String, BlobPlan> = BTreeMap::new();
    let kinds = manifest
        .images
        .iter()
        .map(|artifact| (artifact, ArtifactKind::Image))
        .chain(
            manifest
                .charts
                .iter()
                .map(|artifact| (artifact, ArtifactKind::Chart)),
        );
    let mut planned_artifacts = Vec::new();
    for (artifact, kind) in kinds {
        let planned = plan_artifact(reader, artifact, kind, site)?;
        let referrers = artifact
            .referrers
            .iter()
            .map(|referrer| plan_referrer(reader, artifact, &planned.repository, referrer))
            .collect::<Result<Vec<_>, _>>()?;
        planned_artifacts.push((artifact, planned));
        planned_artifacts.extend(referrers.into_iter().map(|referrer| (artifact, referrer)));
    }
    for (index, (artifact, planned)) in planned_artifacts.into_iter().enumerate() {
        for digest in &planned.blobs {
            let location = reader.entries().get(&blob_path(digest)).copied();
            let size = match (location, omitted.get(digest.as_str())) {
                (Some(location), _) => location.size,
                (None, Some(size)) => *size,
                (None, None) => {
                    return Err(MirrorError::Bundle(format!(
                        "{}: blob {digest} of {} is missing from the bundle; run `coder-install verify` and use an intact bundle",
                        reader.path().display(),
                        artifact.reference
                    )));
                }
            };
            blobs
                .entry(digest.clone())
                .or_insert(BlobPlan {
                    location,
                    size,
                    used_by: BTreeSet::new(),
                })
                .used_by
                .insert(index);
        }
        artifacts.push(planned);
    }
    Ok((artifacts, blobs))
}

/// The manifests and blobs of one artifact.
fn plan_artifact(
    reader: &BundleReader,
    artifact: &BundledArtifact,
    kind: ArtifactKind,
    site: &SiteRegistry,
) -> Result<ArtifactPlan, MirrorError> {
    let original = ImageReference::parse(&artifact.reference)
        .map_err(|error| MirrorError::Bundle(format!("{}: {error}", artifact.reference)))?;
    let repository = Repository {
        registry: site.host.clone(),
        repository: site.repository_path_for(&original),
    };
    let top = read_manifest(reader, &artifact.digest, &artifact.media_type)?
        .ok_or_else(|| missing_manifest(reader, &artifact.digest, &artifact.reference))?;
    let mut children = Vec::new();
    let mut partial_index = false;
    let mut blobs = BTreeSet::new();
    if is_index(&top.media_type) {
        let index: IndexDocument = parse(&top, &artifact.reference)?;
        for child in index.manifests {
            // Only the platforms the bundle manifest lists as carried (what verify checked, and
            // what serve serves): a child that is in the bundle but not listed is not pushed.
            let listed = artifact
                .platforms
                .iter()
                .any(|platform| platform.digest == child.digest);
            let carried = if listed {
                read_manifest(reader, &child.digest, &child.media_type)?
            } else {
                None
            };
            match carried {
                Some(child) => {
                    blobs.extend(image_blobs(&child, &artifact.reference)?);
                    children.push(child);
                }
                None => partial_index = true,
            }
        }
    } else {
        blobs.extend(image_blobs(&top, &artifact.reference)?);
    }
    Ok(ArtifactPlan {
        name: artifact.name.clone(),
        kind,
        reference: artifact.reference.clone(),
        repository,
        tag: original.tag.clone(),
        top,
        children,
        partial_index,
        blobs,
        subject: None,
    })
}

/// A signature, attestation or SBOM of `artifact`: its manifest and blobs, into the image's
/// repository, under cosign's tag (checked to be exactly that tag) when it has one.
fn plan_referrer(
    reader: &BundleReader,
    artifact: &BundledArtifact,
    repository: &Repository,
    referrer: &Referrer,
) -> Result<ArtifactPlan, MirrorError> {
    // It must be about this artifact (its digest or a carried platform's), so that a bundle
    // cannot make push tag anything else in the repository.
    let about_it = referrer.subject == artifact.digest
        || artifact
            .platforms
            .iter()
            .any(|platform| platform.digest == referrer.subject);
    referrer
        .check()
        .and_then(|()| {
            if about_it {
                Ok(())
            } else {
                Err(format!(
                    "it is about {}, which is neither this artifact nor one of its platforms",
                    referrer.subject
                ))
            }
        })
        .map_err(|reason| {
            MirrorError::Bundle(format!(
                "{}: its referrer {}: {reason}; the bundle manifest is inconsistent, use an intact bundle",
                artifact.reference, referrer.digest
            ))
        })?;
    let top = read_manifest(reader, &referrer.digest, &referrer.media_type)?
        .ok_or_else(|| missing_manifest(reader, &referrer.digest, &artifact.reference))?;
    let blobs = image_blobs(&top, &artifact.reference)?.into_iter().collect();
    Ok(ArtifactPlan {
        name: artifact.name.clone(),
        kind: referrer.kind.into(),
        reference: artifact.reference.clone(),
        repository: repository.clone(),
        tag: referrer.tag.clone(),
        top,
        children: Vec::new(),
        partial_index: false,
        blobs,
        subject: Some(referrer.subject.clone()),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(manifest: &ManifestToPush, reference: &str) -> Result<T, MirrorError> {
    serde_json::from_slice(&manifest.bytes).map_err(|error| {
        MirrorError::Bundle(format!(
            "{reference}: manifest {} in the bundle does not parse: {error}",
            manifest.digest
        ))
    })
}

/// The config and layer digests of an image manifest.
fn image_blobs(manifest: &ManifestToPush, reference: &str) -> Result<Vec<String>, MirrorError> {
    let image: ImageManifest = parse(manifest, reference)?;
    Ok(std::iter::once(image.config.digest)
        .chain(image.layers.into_iter().map(|layer| layer.digest))
        .collect())
}

/// A manifest's bytes from the bundle (checked against its digest), or `None` if not carried.
fn read_manifest(
    reader: &BundleReader,
    digest: &str,
    descriptor_media_type: &str,
) -> Result<Option<ManifestToPush>, MirrorError> {
    let bytes = reader
        .read_document(&blob_path(digest))
        .map_err(|error| MirrorError::Bundle(coder_progress::error_chain(&error)))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(MirrorError::Bundle(format!(
            "{}: manifest {digest} hashes to {actual}: the bundle is damaged; run `coder-install verify`",
            reader.path().display()
        )));
    }
    let media_type = if descriptor_media_type.is_empty() {
        oci::media_type_of(&bytes)
            .unwrap_or_else(|| coder_bundle_spec::format::OCI_MANIFEST_MEDIA_TYPE.to_owned())
    } else {
        descriptor_media_type.to_owned()
    };
    Ok(Some(ManifestToPush {
        digest: digest.to_owned(),
        media_type,
        bytes,
    }))
}

fn missing_manifest(reader: &BundleReader, digest: &str, reference: &str) -> MirrorError {
    MirrorError::Bundle(format!(
        "{}: the manifest {digest} of {reference} is missing; run `coder-install verify` and use an intact bundle",
        reader.path().display()
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    /// A bundle written blob by blob into a temporary folder: enough of the format for the
    /// plan (the bundle manifest, its blobs), none of the checks `verify` makes.
    #[derive(Default)]
    struct Fixture {
        blobs: BTreeMap<String, Vec<u8>>,
        images: Vec<Value>,
    }

    impl Fixture {
        fn blob(&mut self, bytes: Vec<u8>) -> Value {
            let digest = sha256_digest(&bytes);
            let descriptor = json!({ "digest": digest, "size": bytes.len() });
            self.blobs.insert(digest, bytes);
            descriptor
        }

        /// An image manifest with one layer of `content`; returns its descriptor.
        fn image(&mut self, content: &str) -> Value {
            let config = self.blob(b"{}".to_vec());
            let layer = self.blob(content.as_bytes().to_vec());
            let manifest = json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config["digest"], "size": config["size"] },
                "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer["digest"], "size": layer["size"] }],
            });
            self.blob(serde_json::to_vec(&manifest).expect("manifest"))
        }

        /// Lists an artifact; `platforms` as (platform, digest).
        fn artifact(&mut self, name: &str, top: &Value, media_type: &str, platforms: &[(&str, &Value)]) {
            let used: Vec<&String> = self.blobs.keys().collect();
            self.images.push(json!({
                "name": name, "ref": format!("upstream.example/team/{name}:1"), "digest": top["digest"],
                "media_type": media_type, "size": 0, "blobs": used,
                "platforms": platforms.iter().map(|(platform, child)| json!({ "platform": platform, "digest": child["digest"] })).collect::<Vec<_>>(),
            }));
        }

        fn write(&self, dir: &std::path::Path) -> std::path::PathBuf {
            let manifest = json!({
                "format_version": 1, "tool": "test", "created": "2026-12-07T00:00:00Z", "name": "coder",
                "version": "1.0.0", "platforms": ["linux/amd64"], "index_digest": "", "spec_digest": "",
                "lock_digest": "", "images": self.images, "charts": [],
                "blobs": self.blobs.iter().map(|(digest, bytes)| json!({ "digest": digest, "size": bytes.len() })).collect::<Vec<_>>(),
                "total_size": 0,
            });
            let path = dir.join("test.bundle");
            let mut builder = tar::Builder::new(std::fs::File::create(&path).expect("bundle"));
            let mut append = |name: &str, bytes: &[u8]| {
                let mut header = tar::Header::new_ustar();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                builder.append_data(&mut header, name, bytes).expect("append");
            };
            append(
                "coder-bundle/manifest.json",
                &serde_json::to_vec(&manifest).expect("manifest"),
            );
            for (digest, bytes) in &self.blobs {
                append(&blob_path(digest), bytes);
            }
            builder.finish().expect("finish");
            path
        }
    }

    fn plan_of(fixture: &Fixture) -> Result<(Vec<ArtifactPlan>, BTreeMap<String, BlobPlan>), MirrorError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let reader = BundleReader::open(&fixture.write(dir.path())).expect("open");
        let manifest = reader.manifest().expect("manifest");
        plan(
            &reader,
            &manifest,
            &"site.example:5000/mirror".parse().expect("site"),
        )
    }

    #[test]
    fn only_the_listed_platforms_of_an_index_are_pushed_and_shared_blobs_are_planned_once() {
        let mut fixture = Fixture::default();
        let listed = fixture.image("listed");
        let unlisted = fixture.image("unlisted");
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": unlisted["digest"], "size": unlisted["size"], "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": OCI_MANIFEST, "digest": listed["digest"], "size": listed["size"], "platform": { "os": "linux", "architecture": "amd64" } },
        ]});
        let index = fixture.blob(serde_json::to_vec(&index).expect("index"));
        fixture.artifact("app", &index, OCI_INDEX, &[("linux/amd64", &listed)]);
        // A second image with the same layer as the listed child.
        let single = fixture.image("listed");
        fixture.artifact("tool", &single, OCI_MANIFEST, &[]);

        let (artifacts, blobs) = plan_of(&fixture).expect("plan");
        let app = &artifacts[0];
        assert_eq!(app.repository.repository, "mirror/team/app");
        let children: Vec<&str> = app.children.iter().map(|child| child.digest.as_str()).collect();
        assert_eq!(children, [listed["digest"].as_str().expect("digest")]);
        assert!(app.partial_index, "an index with a child left behind is partial");
        let shared = sha256_digest(b"listed");
        assert_eq!(blobs[&shared].used_by, BTreeSet::from([0, 1]));
        assert!(
            !blobs.contains_key(&sha256_digest(b"unlisted")),
            "the unlisted child's layer is not pushed"
        );
    }

    #[test]
    fn a_blob_missing_from_the_bundle_is_named_with_what_to_do() {
        let mut fixture = Fixture::default();
        let image = fixture.image("content");
        fixture.artifact("app", &image, OCI_MANIFEST, &[]);
        fixture.blobs.remove(&sha256_digest(b"content"));
        let error = plan_of(&fixture).err().expect("refused").to_string();
        assert!(
            error.contains(&sha256_digest(b"content")) && error.contains("coder-install verify"),
            "{error}"
        );
    }
}
