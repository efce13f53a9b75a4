//! What travels with an image besides its own manifests: its signatures, attestations and SBOMs
//! ("referrers"), as cosign and the OCI 1.1 referrers API attach them.
//!
//! cosign stores them under tags in the image's own repository, named after the digest they
//! are about (the *subject*): `sha256-<hex>.sig`, `.att` and `.sbom` ([`tag_for`]). Registries
//! that implement the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`) also list
//! manifests whose `subject` field names the digest; those have no tag, only an
//! `artifactType` ([`ReferrerKind::from_artifact_type`]).
//!
//! A cosign *simple-signing* signature is an image manifest whose layers have the media type
//! [`SIMPLE_SIGNING_MEDIA_TYPE`]: each layer's blob is the signed payload (JSON naming the
//! image's manifest digest) and its annotation [`COSIGN_SIGNATURE_ANNOTATION`] the base64
//! ECDSA signature over the payload's bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that holds the base64 signature over the payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `type` of a cosign simple-signing payload.
pub const COSIGN_PAYLOAD_TYPE: &str = "cosign container image signature";
/// The `artifactType` cosign gives signatures it attaches through the referrers API.
pub const COSIGN_SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// What a referrer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferrerKind {
    /// A signature (cosign's `.sig`).
    Signature,
    /// An attestation, e.g. in-toto provenance in a DSSE envelope (cosign's `.att`).
    Attestation,
    /// A software bill of materials (cosign's `.sbom`).
    Sbom,
    /// Any other artifact the referrers API lists.
    Other,
}

impl ReferrerKind {
    /// The kinds cosign stores under a tag, in the order `lock` looks for them.
    pub const TAGGED: [ReferrerKind; 3] = [
        ReferrerKind::Signature,
        ReferrerKind::Attestation,
        ReferrerKind::Sbom,
    ];

    /// The suffix of cosign's tag for this kind (`sig`, `att`, `sbom`); `None` for [`Self::Other`].
    pub fn tag_suffix(self) -> Option<&'static str> {
        match self {
            ReferrerKind::Signature => Some("sig"),
            ReferrerKind::Attestation => Some("att"),
            ReferrerKind::Sbom => Some("sbom"),
            ReferrerKind::Other => None,
        }
    }

    /// The kind of a referrer found through the referrers API, from its `artifactType`.
    pub fn from_artifact_type(artifact_type: &str) -> Self {
        let lower = artifact_type.to_ascii_lowercase();
        if lower == COSIGN_SIGNATURE_ARTIFACT_TYPE
            || lower.contains("simplesigning")
            || lower.contains(".sig.")
        {
            ReferrerKind::Signature
        } else if ["sbom", "spdx", "cyclonedx"]
            .iter()
            .any(|word| lower.contains(word))
        {
            ReferrerKind::Sbom
        } else if ["dsse", "in-toto", "intoto", "attestation", ".att."]
            .iter()
            .any(|word| lower.contains(word))
        {
            ReferrerKind::Attestation
        } else {
            ReferrerKind::Other
        }
    }
}

/// cosign's tag for the `kind` artifact about `subject` (`sha256:<hex>`): `sha256-<hex>.sig`,
/// `.att` or `.sbom`. `None` for [`ReferrerKind::Other`], or a subject that is not a digest.
pub fn tag_for(subject: &str, kind: ReferrerKind) -> Option<String> {
    let hex = subject.strip_prefix("sha256:")?;
    Some(format!("sha256-{hex}.{}", kind.tag_suffix()?))
}

/// A signature, attestation, SBOM or other referrer of an image, pinned by the digest of its
/// manifest: in the lock (`referrers` of an image) and in the bundle manifest, where it also
/// lists the blobs it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Referrer {
    /// The digest it is about: the image's own, or one of its carried platforms'.
    pub subject: String,
    /// Signature, attestation, SBOM or other.
    pub kind: ReferrerKind,
    /// cosign's tag it was found under and is restored under (`sha256-<hex>.sig`); absent when
    /// only the referrers API listed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The `artifactType` the referrers API gave, if it listed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Digest of its manifest (an image manifest).
    pub digest: String,
    /// Media type of its manifest.
    pub media_type: String,
    /// Size in bytes of its manifest.
    pub size: u64,
    /// In a bundle: every blob it uses (its manifest, config and layers), sorted by digest.
    /// Empty in the lock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<String>,
}

impl Referrer {
    /// Checks its digests and that its tag, if any, is exactly cosign's tag for its kind and
    /// subject (a lock or bundle cannot make `push` set any other tag).
    pub fn check(&self) -> Result<(), String> {
        crate::validate_digest(&self.subject)?;
        crate::validate_digest(&self.digest)?;
        let expected = tag_for(&self.subject, self.kind);
        match &self.tag {
            None => Ok(()),
            Some(tag) if Some(tag) == expected.as_ref() => Ok(()),
            Some(tag) => Err(format!(
                "tag {tag:?} is not cosign's tag for the {:?} of {} ({})",
                self.kind,
                self.subject,
                expected.unwrap_or_else(|| "none".to_owned())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_are_named_after_the_subject_digest() {
        let subject = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            tag_for(&subject, ReferrerKind::Signature),
            Some(format!("sha256-{}.sig", "ab".repeat(32)))
        );
        assert_eq!(tag_for(&subject, ReferrerKind::Other), None);
        let sbom = Referrer {
            subject: subject.clone(),
            kind: ReferrerKind::Sbom,
            tag: tag_for(&subject, ReferrerKind::Sbom),
            artifact_type: None,
            digest: format!("sha256:{}", "0".repeat(64)),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            size: 1,
            blobs: Vec::new(),
        };
        assert!(sbom.check().is_ok());
        let as_signature = Referrer {
            kind: ReferrerKind::Signature,
            ..sbom.clone()
        };
        assert!(as_signature.check().is_err());
        let retagged = Referrer {
            tag: Some("latest".to_owned()),
            ..sbom
        };
        assert!(retagged.check().is_err());
    }

    #[test]
    fn referrers_api_artifact_types_map_to_kinds() {
        for (artifact_type, kind) in [
            (COSIGN_SIGNATURE_ARTIFACT_TYPE, ReferrerKind::Signature),
            ("application/vnd.dsse.envelope.v1+json", ReferrerKind::Attestation),
            ("application/vnd.in-toto+json", ReferrerKind::Attestation),
            ("application/spdx+json", ReferrerKind::Sbom),
            ("application/vnd.cyclonedx+json", ReferrerKind::Sbom),
            ("application/vnd.example.thing", ReferrerKind::Other),
        ] {
            assert_eq!(
                ReferrerKind::from_artifact_type(artifact_type),
                kind,
                "{artifact_type}"
            );
        }
    }
}
