//! `verify`: re-hash every entry of a bundle (streaming, in parallel), check it against the
//! bundle manifest, check the signature, and say which images a bad blob breaks.

use std::collections::BTreeSet;
use std::path::Path;

use coder_bundle_spec::format::{
    BLOBS_DIR, INDEX_PATH, LOCK_PATH, MANIFEST_PATH, SIGNATURE_PATH, SPEC_PATH, blob_path,
};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;

use crate::hashing::{HashJob, hash_in_parallel};
use crate::read::BundleReader;
use crate::signing;

/// The outcome of a verification.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// The bundle file.
    pub bundle: String,
    /// A split bundle's parts, in order (empty for a whole bundle).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// The parts of a split bundle whose bytes do not match its index: looked for when
    /// anything else was found wrong, to say which part to copy again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_parts: Vec<crate::bundle_file::DamagedPart>,
    /// Product and version from the bundle manifest.
    pub name: String,
    /// Release version.
    pub version: String,
    /// What the signature check found.
    pub signature: SignatureStatus,
    /// `sha256:` of the bundle manifest that was checked: later reads of the bundle are pinned
    /// to it ([`crate::read::BundleReader::manifest_pinned`]).
    pub manifest_digest: String,
    /// How many blobs were hashed.
    pub blobs_checked: usize,
    /// Blobs a delta bundle leaves out on purpose (the target has them).
    pub omitted_blobs: usize,
    /// How many bytes were hashed.
    pub bytes_checked: u64,
    /// Every problem found; empty when the bundle is intact.
    pub problems: Vec<String>,
    /// Per image and chart: intact or not, and the bad blobs it uses.
    pub artifacts: Vec<ArtifactVerdict>,
    /// Per image, what its cosign signatures say (`verify --image-key`); absent when no image
    /// key was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_signatures: Option<Vec<crate::read::image_signatures::ImageSignatureReport>>,
}

/// The signature's state.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum SignatureStatus {
    /// Signed, and the signature checks out with the given key.
    Verified,
    /// Signed, but no public key was given to check it.
    NotChecked,
    /// Not signed.
    Unsigned,
    /// The signature is missing where a key was given, or does not match.
    Invalid(String),
}

/// One image's or chart's verdict.
#[derive(Debug, Serialize)]
pub struct ArtifactVerdict {
    /// Logical name.
    pub name: String,
    /// Original reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Whether every blob it uses is present and intact.
    pub intact: bool,
    /// The digests of its blobs that are missing or corrupt.
    pub bad_blobs: Vec<String>,
}

impl VerifyReport {
    /// Whether the bundle passed every check (with image keys: every image signed by one).
    pub fn ok(&self) -> bool {
        self.passes(false)
    }

    /// Whether the bundle passed every check, images that carry no signature accepted when
    /// `unsigned_images_allowed` (`--allow-unsigned-images`; a bad signature still fails).
    pub fn passes(&self, unsigned_images_allowed: bool) -> bool {
        self.problems.is_empty()
            && !matches!(self.signature, SignatureStatus::Invalid(_))
            && self.images_not_signed(unsigned_images_allowed).is_empty()
    }

    /// The images whose signature check (`--image-key`) did not find them signed: bad ones, and
    /// unsigned ones unless `unsigned_allowed`.
    pub fn images_not_signed(
        &self,
        unsigned_allowed: bool,
    ) -> Vec<&crate::read::image_signatures::ImageSignatureReport> {
        self.image_signatures
            .iter()
            .flatten()
            .filter(|image| image.verdict.refused(unsigned_allowed))
            .collect()
    }
}

/// Verifies `bundle_path`; with `public_key`, a valid signature is required.
pub fn verify_bundle(
    bundle_path: &Path,
    public_key: Option<&VerifyingKey>,
    on_progress: &(dyn Fn(u64) + Sync),
) -> crate::Result<VerifyReport> {
    verify_reader(&BundleReader::open(bundle_path)?, public_key, on_progress)
}

/// [`verify_bundle`] of a bundle already opened (e.g. to size a progress display first).
pub fn verify_reader(
    reader: &BundleReader,
    public_key: Option<&VerifyingKey>,
    on_progress: &(dyn Fn(u64) + Sync),
) -> crate::Result<VerifyReport> {
    verify_opened(reader, public_key, on_progress)
        .map_err(|error| crate::read::with_damaged_parts(reader.file(), error))
}

/// [`verify_reader`] shown as a job (a "verifying" job from the caller's progress, sized by the
/// bundle): its bytes hashed so far, then the job finished, whatever the outcome.
pub fn verify_reported(
    reader: &BundleReader,
    public_key: Option<&VerifyingKey>,
    job: &dyn coder_progress::Job,
) -> crate::Result<VerifyReport> {
    let item = job.item("blobs", reader.file().len());
    let report = verify_reader(reader, public_key, &|done| item.set(done));
    drop(item);
    job.finish();
    report
}

/// Checks only the signature of a bundle verified earlier: its manifest must still hash to
/// `pinned` (the [`VerifyReport::manifest_digest`] of that verify, or the bundle is refused as
/// changed since), and the signature over it is checked as [`verify_bundle`] checks it. Blobs
/// are not re-hashed: every later read is by the digests of the pinned manifest.
pub fn verify_signature_pinned(
    reader: &BundleReader,
    pinned: &str,
    public_key: Option<&VerifyingKey>,
) -> crate::Result<SignatureStatus> {
    let manifest_bytes = reader.manifest_bytes()?;
    let actual = coder_registry::sha256_digest(&manifest_bytes);
    if actual != pinned {
        return Err(crate::BundleError::ChangedSinceVerified {
            path: reader.path().to_owned(),
            pinned: pinned.to_owned(),
            actual,
        });
    }
    signature_status(reader, &manifest_bytes, public_key)
}

/// What the bundle's signature over `manifest_bytes` says, with `public_key` if given.
fn signature_status(
    reader: &BundleReader,
    manifest_bytes: &[u8],
    public_key: Option<&VerifyingKey>,
) -> crate::Result<SignatureStatus> {
    Ok(match (reader.read_document(SIGNATURE_PATH)?, public_key) {
        (None, None) => SignatureStatus::Unsigned,
        (None, Some(_)) => {
            SignatureStatus::Invalid("the bundle is not signed, but a public key was given".to_owned())
        }
        (Some(_), None) => SignatureStatus::NotChecked,
        (Some(bytes), Some(key)) => match Signature::from_slice(&bytes) {
            Ok(signature) => match key.verify_strict(manifest_bytes, &signature) {
                Ok(()) => SignatureStatus::Verified,
                Err(_) => SignatureStatus::Invalid(format!(
                    "the signature does not match {MANIFEST_PATH} with key {}",
                    signing::fingerprint(key)
                )),
            },
            Err(_) => {
                SignatureStatus::Invalid(format!("{SIGNATURE_PATH} is not a 64-byte Ed25519 signature"))
            }
        },
    })
}

/// Verifies the bundle `reader` opened: its signature, every entry the manifest lists (present,
/// of its size, hashing to its digest), no unlisted blob, and per artifact whether it is intact.
fn verify_opened(
    reader: &BundleReader,
    public_key: Option<&VerifyingKey>,
    on_progress: &(dyn Fn(u64) + Sync),
) -> crate::Result<VerifyReport> {
    let bundle_path = reader.path();
    let manifest_bytes = reader.manifest_bytes()?;
    let manifest = coder_bundle_spec::format::BundleManifest::from_json(&manifest_bytes)?;
    let manifest_digest = coder_registry::sha256_digest(&manifest_bytes);
    let mut problems = Vec::new();

    let signature = signature_status(reader, &manifest_bytes, public_key)?;

    let expected = expected_entries(&manifest);
    let mut bad = BTreeSet::new();
    let to_hash = check_entries(reader, &expected, &mut problems, &mut bad);
    let omitted = manifest.delta.as_ref().map_or(0, |delta| delta.omitted.len());
    let bytes_checked = coder_registry::oci::total_size(to_hash.iter().map(|job| job.size));
    check_hashes(reader, &to_hash, on_progress, &mut problems, &mut bad)?;

    // A split bundle's index says which part a bad byte is in.
    let damaged_parts = match problems.is_empty() && !matches!(signature, SignatureStatus::Invalid(_)) {
        true => Vec::new(),
        false => reader.file().damaged_parts()?,
    };
    problems.extend(damaged_parts.iter().map(ToString::to_string));
    let parts = match reader.file().split() {
        Some(_) => reader
            .file()
            .paths()
            .map(|path| path.display().to_string())
            .collect(),
        None => Vec::new(),
    };

    let artifacts = artifact_verdicts(&manifest, &bad);
    Ok(VerifyReport {
        bundle: bundle_path.display().to_string(),
        parts,
        damaged_parts,
        name: manifest.name,
        version: manifest.version,
        signature,
        manifest_digest,
        blobs_checked: manifest.blobs.len(),
        omitted_blobs: omitted,
        bytes_checked,
        problems,
        artifacts,
        image_signatures: None,
    })
}

/// Every entry the bundle should have: its path, the digest it should hash to, and (for a blob)
/// its size.
fn expected_entries(
    manifest: &coder_bundle_spec::format::BundleManifest,
) -> Vec<(String, String, Option<u64>)> {
    let mut expected: Vec<(String, String, Option<u64>)> = manifest
        .blobs
        .iter()
        .map(|blob| (blob_path(&blob.digest), blob.digest.clone(), Some(blob.size)))
        .collect();
    expected.push((INDEX_PATH.to_owned(), manifest.index_digest.clone(), None));
    expected.push((SPEC_PATH.to_owned(), manifest.spec_digest.clone(), None));
    expected.push((LOCK_PATH.to_owned(), manifest.lock_digest.clone(), None));
    expected
}

/// Checks the `expected` entries are there with their sizes, and that no blob is there unlisted:
/// the problems (and the digests they make bad), and the entries left to hash.
fn check_entries(
    reader: &BundleReader,
    expected: &[(String, String, Option<u64>)],
    problems: &mut Vec<String>,
    bad: &mut BTreeSet<String>,
) -> Vec<HashJob> {
    let mut to_hash: Vec<HashJob> = Vec::new();
    for (path, digest, size) in expected {
        match reader.entries().get(path) {
            None => {
                problems.push(format!("{path} is missing"));
                bad.insert(digest.clone());
            }
            Some(location) if size.is_some_and(|size| size != location.size) => {
                problems.push(format!(
                    "{path} has {} bytes, the manifest says {}",
                    location.size,
                    size.unwrap_or_default()
                ));
                bad.insert(digest.clone());
            }
            Some(location) => to_hash.push(HashJob {
                name: path.clone(),
                digest: digest.clone(),
                offset: location.offset,
                size: location.size,
            }),
        }
    }
    let listed: BTreeSet<&str> = expected.iter().map(|(path, _, _)| path.as_str()).collect();
    for path in reader.entries().keys() {
        if path.starts_with(BLOBS_DIR) && !listed.contains(path.as_str()) {
            problems.push(format!("{path} is not listed in the bundle manifest"));
        }
    }
    to_hash
}

/// Hashes the entries `to_hash` (in parallel), adding a problem and a bad digest per mismatch.
fn check_hashes(
    reader: &BundleReader,
    to_hash: &[HashJob],
    on_progress: &(dyn Fn(u64) + Sync),
    problems: &mut Vec<String>,
    bad: &mut BTreeSet<String>,
) -> crate::Result<()> {
    for (path, digest, actual) in hash_in_parallel(reader.file().as_ref(), to_hash, on_progress)? {
        if actual != digest {
            problems.push(format!(
                "{path} is corrupt: its content hashes to {actual}, expected {digest}"
            ));
            bad.insert(digest);
        }
    }
    Ok(())
}

/// Per image and chart: whether it is intact, and the `bad` blobs it uses (its signatures,
/// attestations and SBOMs travel with it: a bad blob of theirs breaks it too).
fn artifact_verdicts(
    manifest: &coder_bundle_spec::format::BundleManifest,
    bad: &BTreeSet<String>,
) -> Vec<ArtifactVerdict> {
    manifest
        .images
        .iter()
        .chain(&manifest.charts)
        .map(|artifact| {
            let bad_blobs: Vec<String> = artifact
                .blobs
                .iter()
                .chain(artifact.referrers.iter().flat_map(|referrer| &referrer.blobs))
                .filter(|digest| bad.contains(*digest))
                .cloned()
                .collect();
            ArtifactVerdict {
                name: artifact.name.clone(),
                reference: artifact.reference.clone(),
                intact: bad_blobs.is_empty(),
                bad_blobs,
            }
        })
        .collect()
}
