//! `--image-key` for the commands that use a bundle (`apply`, `push`, `template`): the images'
//! cosign signatures checked offline, after the bundle verified and against the same pinned
//! manifest, before anything is pushed or rendered.

use std::path::PathBuf;

use coder_bundle::image_signatures::{ImageSignatureVerdict, read_image_key, verify_image_signatures};
use coder_report::Reporter;

use super::VerifiedBundle;

/// Which cosign signatures the bundle's images must carry.
#[derive(Debug, Clone, Default)]
pub struct ImageSignaturePolicy {
    /// ECDSA P-256 public keys (cosign.pub, SPKI PEM): a signature by any of them counts. None:
    /// image signatures are not checked.
    pub keys: Vec<PathBuf>,
    /// Accept images that carry no signature at all (a bad signature is still refused).
    pub allow_unsigned_images: bool,
}

/// Checks the images of the verified bundle at `path` as `policy` asks; returns what to say
/// about it (`None` when no key was given). A refusal names every image that is not signed and
/// why, and says `undone`.
pub async fn check_image_signatures(
    path: &std::path::Path,
    verified: &VerifiedBundle,
    policy: &ImageSignaturePolicy,
    undone: &'static str,
    reporter: &dyn Reporter,
) -> crate::Result<Option<String>> {
    if policy.keys.is_empty() {
        return Ok(None);
    }
    reporter.step("check image signatures");
    let keys = policy
        .keys
        .iter()
        .map(|file| read_image_key(file))
        .collect::<Result<Vec<_>, _>>()?;
    let fingerprints: Vec<String> = keys.iter().map(|key| key.fingerprint.clone()).collect();
    let (path, pinned) = (path.to_owned(), verified.manifest_digest.clone());
    let images = tokio::task::spawn_blocking(move || verify_image_signatures(&path, &pinned, &keys))
        .await
        .map_err(crate::DeployError::VerificationStopped)??;
    let refused: Vec<String> = images
        .iter()
        .filter(|image| match image.verdict {
            ImageSignatureVerdict::Signed => false,
            ImageSignatureVerdict::Unsigned => !policy.allow_unsigned_images,
            ImageSignatureVerdict::Bad => true,
        })
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
    reporter.line(&format!("    image signatures: {summary}"));
    Ok(Some(summary))
}
