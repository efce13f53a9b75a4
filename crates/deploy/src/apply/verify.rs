//! Step 1 of the pipeline, and the start of `push`, `template --bundle` and `serve`: the bundle
//! verified before anything of it is used (every blob re-hashed, its signature as the policy
//! asks, and with `--image-key` its images' cosign signatures), and opened once: the
//! [`VerifiedBundle`] is what every later step reads (the release, the push, the presence check).

use std::path::{Path, PathBuf};

use coder_bundle::read::image_signatures::{ImageSignatureVerdict, check_image_signatures, read_image_key};
use coder_bundle::read::verify::{SignatureStatus, verify_reported, verify_signature_pinned};
use coder_bundle::read::{BundleReader, OpenedBundle};
use coder_bundle::signing::{fingerprint, read_public_key};
use coder_mirror::SiteRegistry;
use coder_progress::Progress;
use ed25519_dalek::VerifyingKey;

use crate::release::Release;

/// Whose signature a bundle must carry.
#[derive(Debug, Clone)]
pub enum SignaturePolicy {
    /// Signed by the Ed25519 public key in this file (SPKI PEM).
    Key(PathBuf),
    /// Applied without checking who made it (said in the output and the install record).
    AllowUnsigned,
    /// Neither was asked for: a bundle is refused (connected installs have no bundle).
    Unspecified,
}

/// Which cosign signatures the bundle's images must carry.
#[derive(Debug, Clone, Default)]
pub struct ImageSignaturePolicy {
    /// ECDSA P-256 public keys (cosign.pub, SPKI PEM): a signature by any of them counts. None:
    /// image signatures are not checked.
    pub keys: Vec<PathBuf>,
    /// Accept images that carry no signature at all (a bad signature is still refused).
    pub allow_unsigned_images: bool,
}

/// A bundle that verified, opened once: what every later step reads, pinned to the manifest that
/// verified, and how its signatures were checked.
pub struct VerifiedBundle {
    /// The opened bundle.
    pub bundle: OpenedBundle,
    /// How the signatures were checked, for the output and the install record.
    pub signature: String,
}

impl VerifiedBundle {
    /// The release it holds, whose images go to `site`: its lock and chart read by the digests
    /// of the manifest that verified, and how it was checked recorded with it.
    pub fn release(&self, site: &SiteRegistry) -> crate::Result<Release> {
        let mut release = Release::from_opened(&self.bundle, site)?;
        release.signature.clone_from(&self.signature);
        Ok(release)
    }

    /// `sha256:` of the bundle manifest that verified.
    pub fn manifest_digest(&self) -> &str {
        self.bundle.manifest_digest()
    }

    /// Checks the images' cosign signatures as `policy` asks (nothing when it names no key),
    /// and adds what it found to [`VerifiedBundle::signature`]. A refusal names every image that
    /// is not signed and why, and says `undone`.
    pub fn require_image_signatures(
        &mut self,
        policy: &ImageSignaturePolicy,
        undone: &'static str,
        progress: &dyn Progress,
    ) -> crate::Result<()> {
        if policy.keys.is_empty() {
            return Ok(());
        }
        progress.step("check image signatures");
        let keys = policy
            .keys
            .iter()
            .map(|file| read_image_key(file))
            .collect::<Result<Vec<_>, _>>()?;
        // A few small documents (signature manifests, payloads, indexes), read by digest.
        let images = check_image_signatures(self.bundle.reader(), self.bundle.manifest(), &keys);
        let refused: Vec<String> = images
            .iter()
            .filter(|image| image.verdict.refused(policy.allow_unsigned_images))
            .map(|image| {
                format!(
                    "{} ({}): {}",
                    image.reference,
                    image.verdict.as_str(),
                    image.problems.join("; ")
                )
            })
            .collect();
        if !refused.is_empty() {
            return Err(crate::DeployError::ImagesNotSigned {
                undone,
                images: refused,
            });
        }
        let signed = images
            .iter()
            .filter(|image| image.verdict == ImageSignatureVerdict::Signed)
            .count();
        let fingerprints: Vec<String> = keys.iter().map(|key| key.fingerprint.clone()).collect();
        let summary = format!(
            "{signed} of {} images signed by {}{}",
            images.len(),
            fingerprints.join(", "),
            if signed < images.len() {
                " (the others carry no signature: --allow-unsigned-images)"
            } else {
                ""
            }
        );
        progress.line(&format!("    image signatures: {summary}"));
        self.signature = format!("{}; images: {summary}", self.signature);
        Ok(())
    }
}

/// Verifies the bundle at `path` before it is used: every blob's digest, and the signature as
/// `policy` asks. A refusal says `undone` (what was not done because of it).
pub async fn verify_before_use(
    path: &Path,
    policy: &SignaturePolicy,
    undone: &'static str,
    progress: &dyn Progress,
) -> crate::Result<VerifiedBundle> {
    let key = signature_key(policy, undone)?;
    progress.step(&format!("verify {}", path.display()));
    let signature = key.as_ref().map_or_else(
        || "NOT checked (--allow-unsigned)".to_owned(),
        |key| format!("verified with key {}", fingerprint(key)),
    );
    let path = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || BundleReader::open(&path))
        .await
        .map_err(crate::DeployError::VerificationStopped)??;
    // Hashing every blob of a bundle of several GB takes a while: it shows as a job.
    let job = progress.job("verifying", reader.file().len());
    let (reader, report) = tokio::task::spawn_blocking(move || {
        verify_reported(&reader, key.as_ref(), job.as_ref()).map(|report| (reader, report))
    })
    .await
    .map_err(crate::DeployError::VerificationStopped)??;
    if !report.ok() {
        let mut problems = report.problems.clone();
        if let SignatureStatus::Invalid(reason) = &report.signature {
            problems.push(format!("signature: {reason}"));
        }
        return Err(crate::DeployError::BundleRefused { undone, problems });
    }
    progress.line(&format!("    signature: {signature}"));
    Ok(VerifiedBundle {
        bundle: OpenedBundle::from_reader(reader, Some(&report.manifest_digest))?,
        signature,
    })
}

/// [`verify_before_use`] trusting an earlier `verify` of the same file for its blobs (large
/// bundles, restarts of `serve`): its manifest must still hash to `pinned`, and the signature
/// over it is checked as `policy` asks; the blobs are not re-hashed (every later read goes by the
/// digests of the pinned manifest).
pub async fn verify_signature_before_use(
    path: &Path,
    policy: &SignaturePolicy,
    pinned: &str,
    undone: &'static str,
    progress: &dyn Progress,
) -> crate::Result<VerifiedBundle> {
    let key = signature_key(policy, undone)?;
    progress.step(&format!("check the signature of {}", path.display()));
    let not_hashed = format!("manifest pinned to {pinned} by an earlier verify; blobs not re-hashed");
    let signature = match &key {
        Some(key) => format!("verified with key {} ({not_hashed})", fingerprint(key)),
        None => format!("NOT checked (--allow-unsigned; {not_hashed})"),
    };
    let (path, pinned) = (path.to_owned(), pinned.to_owned());
    let (bundle, status) = tokio::task::spawn_blocking(move || {
        let bundle = OpenedBundle::open(&path, Some(&pinned))?;
        verify_signature_pinned(bundle.reader(), &pinned, key.as_ref()).map(|status| (bundle, status))
    })
    .await
    .map_err(crate::DeployError::VerificationStopped)??;
    if let SignatureStatus::Invalid(reason) = status {
        return Err(crate::DeployError::BundleRefused {
            undone,
            problems: vec![format!("signature: {reason}")],
        });
    }
    progress.line(&format!("    signature: {signature}"));
    Ok(VerifiedBundle { bundle, signature })
}

/// The public key `policy` names (none with `--allow-unsigned`); no policy at all is refused.
fn signature_key(policy: &SignaturePolicy, undone: &'static str) -> crate::Result<Option<VerifyingKey>> {
    match policy {
        SignaturePolicy::Key(file) => Ok(Some(
            read_public_key(file).map_err(coder_bundle::BundleError::from)?,
        )),
        SignaturePolicy::AllowUnsigned => Ok(None),
        SignaturePolicy::Unspecified => Err(crate::DeployError::SignaturePolicyMissing { undone }),
    }
}
