//! cosign's signature and attestation artifacts, built the way cosign builds them (there is no
//! cosign binary here), with an ECDSA P-256 key made by the test.
//!
//! A simple-signing signature of an image is an OCI image manifest tagged
//! `sha256-<image hex>.sig` in the image's repository; each of its layers (media type
//! [`SIMPLE_SIGNING`]) is a payload naming the image's digest, with the base64 ASN.1 DER
//! ECDSA signature of the payload's bytes in the layer annotation [`SIGNATURE_ANNOTATION`].
//!
//! ```no_run
//! # async fn example(registry: &coder_testenv::Registry, image: &coder_testenv::fixture::Image) -> coder_testenv::Result<()> {
//! use coder_testenv::cosign::{SigningKey, signature_artifact, simple_signing_payload, tag_for};
//! let key = SigningKey::generate()?;
//! let payload = simple_signing_payload("registry.example/team/app", image.digest());
//! let signature = signature_artifact(&[(payload.clone(), key.sign(&payload))])?;
//! registry.push_image(&format!("team/app:{}", tag_for(image.digest(), "sig")), &signature).await?;
//! std::fs::write("cosign.pub", key.public_pem()?).expect("write");
//! # Ok(()) }
//! ```

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json;

use crate::fixture::{Blob, Image, Platform};
use crate::{Error, Result};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of an in-toto attestation layer (a DSSE envelope), as cosign attaches it.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// An ECDSA P-256 signing key, as `cosign generate-key-pair` makes.
pub struct SigningKey(p256::ecdsa::SigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        loop {
            let mut scalar = [0u8; 32];
            getrandom::fill(&mut scalar)
                .map_err(|error| Error::InvalidArgument(format!("no random bytes: {error}")))?;
            // A scalar of zero or beyond the group order is refused; draw again.
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&scalar) {
                return Ok(Self(key));
            }
        }
    }

    /// The public key in SPKI PEM, as `cosign.pub`.
    pub fn public_pem(&self) -> Result<String> {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| Error::InvalidArgument(format!("encoding a public key: {error}")))
    }

    /// The base64 ASN.1 DER ECDSA (SHA-256) signature of `payload`, as cosign annotates it.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: p256::ecdsa::Signature = self.0.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }
}

/// cosign's simple-signing payload for the image `digest` at `docker_reference` (the
/// repository, without tag).
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// cosign's tag for the `suffix` (`sig`, `att`, `sbom`) artifact of `digest`.
pub fn tag_for(digest: &str, suffix: &str) -> String {
    format!("sha256-{}.{suffix}", digest.trim_start_matches("sha256:"))
}

/// A `.sig` artifact: one simple-signing layer per `(payload, base64 signature)`.
pub fn signature_artifact(signatures: &[(Vec<u8>, String)]) -> Result<Image> {
    artifact(
        signatures
            .iter()
            .map(|(payload, signature)| {
                (
                    Blob::new(SIMPLE_SIGNING, payload.clone()),
                    Some((SIGNATURE_ANNOTATION, signature.as_str())),
                )
            })
            .collect(),
    )
}

/// An `.att` (or `.sbom`) artifact: one layer of `media_type` holding `content`.
pub fn attachment_artifact(media_type: &str, content: &[u8]) -> Result<Image> {
    artifact(vec![(Blob::new(media_type, content.to_vec()), None)])
}

/// An OCI 1.1 referrer of `subject` (what the referrers API lists): `artifactType`
/// `artifact_type`, the empty config, one layer of that media type holding `content`, and the
/// `subject` descriptor.
pub fn referrer_artifact(artifact_type: &str, content: &[u8], subject: &Blob) -> Result<Image> {
    let config = Blob::new("application/vnd.oci.empty.v1+json", b"{}".to_vec());
    let layer = Blob::new(artifact_type, content.to_vec());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "subject": subject.descriptor(),
    });
    Ok(Image {
        manifest: Blob::new("application/vnd.oci.image.manifest.v1+json", to_json(&manifest)?),
        config,
        layers: vec![layer],
        platform: no_platform(),
    })
}

/// Artifacts have no platform.
fn no_platform() -> Platform {
    Platform {
        os: String::new(),
        architecture: String::new(),
    }
}

/// An image manifest over `layers` (each with an optional annotation), with the config cosign
/// writes: the layers' digests as `diff_ids`, no platform.
fn artifact(layers: Vec<(Blob, Option<(&str, &str)>)>) -> Result<Image> {
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|(blob, _)| &blob.digest).collect::<Vec<_>>() },
    });
    let config = Blob::new("application/vnd.oci.image.config.v1+json", to_json(&config)?);
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|(blob, annotation)| {
            let mut descriptor = blob.descriptor();
            if let Some((key, value)) = annotation {
                descriptor["annotations"] = json!({ *key: value });
            }
            descriptor
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": descriptors,
    });
    let manifest = Blob::new("application/vnd.oci.image.manifest.v1+json", to_json(&manifest)?);
    Ok(Image {
        manifest,
        config,
        layers: layers.into_iter().map(|(blob, _)| blob).collect(),
        platform: no_platform(),
    })
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|error| Error::InvalidArgument(format!("serialising cosign JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_artifact_is_a_cosign_manifest_with_annotated_payload_layers() {
        let key = SigningKey::generate().expect("key");
        let digest = format!("sha256:{}", "c".repeat(64));
        let payload = simple_signing_payload("r.example/app", &digest);
        let signature = key.sign(&payload);
        let artifact = signature_artifact(&[(payload.clone(), signature.clone())]).expect("artifact");
        let manifest: serde_json::Value = serde_json::from_slice(&artifact.manifest.data).expect("JSON");
        assert_eq!(manifest["layers"][0]["mediaType"], SIMPLE_SIGNING);
        assert_eq!(
            manifest["layers"][0]["annotations"][SIGNATURE_ANNOTATION],
            signature.as_str()
        );
        assert_eq!(artifact.layers[0].data, payload);
        assert!(
            key.public_pem()
                .expect("PEM")
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(tag_for(&digest, "sig"), format!("sha256-{}.sig", "c".repeat(64)));
    }
}
