//! `verify --image-key`: the cosign simple-signing signatures that travel with a bundle's images
//! (spec `signatures: true`), checked offline against the site's ECDSA P-256 public keys.
//!
//! A signature counts for an image when, in one of the image's `.sig` artifacts, a layer of media
//! type [`SIMPLE_SIGNING_MEDIA_TYPE`] holds a payload whose signature (the layer's
//! [`COSIGN_SIGNATURE_ANNOTATION`], base64 ASN.1 DER ECDSA P-256 / SHA-256 over the payload's
//! bytes) verifies with one of the keys, whose `critical.image.docker-manifest-digest` is the
//! digest the artifact is about, and whose `critical.identity.docker-reference` names the image's
//! own repository (a signature of the same bytes published as another image does not count).
//! Every manifest and payload is read from the bundle by its digest and hashed before it is used;
//! the signature is checked before the payload is parsed.
//!
//! Per image the verdict is [`ImageSignatureVerdict::Signed`] (its own digest, or every carried
//! platform's, has such a signature, and the bundle carries no child of its index that is not
//! listed as a carried platform: push would upload such a child, and a node could run it), [`ImageSignatureVerdict::Unsigned`] (no signature travels
//! with it) or [`ImageSignatureVerdict::Bad`] (signatures travel with it, but none of them
//! counts: another key, an altered payload or signature, a payload about another image, a
//! damaged blob).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine;
use coder_bundle_spec::format::{BundleManifest, BundledArtifact, blob_path};
use coder_bundle_spec::referrer::{
    COSIGN_PAYLOAD_TYPE, COSIGN_SIGNATURE_ANNOTATION, Referrer, ReferrerKind, SIMPLE_SIGNING_MEDIA_TYPE,
};
use coder_bundle_spec::{ImageReference, normalised_repository_name};
use coder_registry::oci::IndexDocument;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};

use crate::read::BundleReader;

/// The largest signature manifest read (the distribution registry's manifest limit).
const MAX_SIGNATURE_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest simple-signing payload read: a payload is a few hundred bytes of JSON.
const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// A public key that image signatures are checked with.
#[derive(Debug, Clone)]
pub struct ImageKey {
    /// Where it was read from.
    pub source: String,
    /// `p256:` and the first 16 hex digits of the SHA-256 of its SPKI DER.
    pub fingerprint: String,
    key: VerifyingKey,
}

impl ImageKey {
    /// A key from its SPKI PEM text (`-----BEGIN PUBLIC KEY-----`, as `cosign generate-key-pair`
    /// writes `cosign.pub`); `source` names it in messages.
    pub fn from_pem(text: &str, source: &str) -> crate::Result<Self> {
        let key =
            VerifyingKey::from_public_key_pem(text).map_err(|error| crate::BundleError::ImageKeyNotP256 {
                key: source.to_owned(),
                reason: error.to_string(),
            })?;
        let der = key
            .to_public_key_der()
            .map_err(|error| crate::BundleError::ImageKeyEncoding {
                key: source.to_owned(),
                reason: error.to_string(),
            })?;
        use sha2::Digest;
        let fingerprint = format!(
            "p256:{}",
            &hex::encode(sha2::Sha256::digest(der.as_bytes()))[..16]
        );
        Ok(Self {
            source: source.to_owned(),
            fingerprint,
            key,
        })
    }
}

/// Reads an image key (SPKI PEM) from a file.
pub fn read_image_key(path: &Path) -> crate::Result<ImageKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| crate::BundleError::file("reading image key", path, error))?;
    ImageKey::from_pem(&text, &path.display().to_string())
}

/// What the signatures of one image say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSignatureVerdict {
    /// Signed by one of the keys: the image's digest, or every carried platform's.
    Signed,
    /// No signature travels with the image.
    Unsigned,
    /// Signatures travel with it, but none of them counts (see the problems).
    Bad,
}

impl ImageSignatureVerdict {
    /// Whether an image with this verdict is refused: a bad signature always, no signature
    /// unless `unsigned_allowed` (`--allow-unsigned-images`).
    pub fn refused(self, unsigned_allowed: bool) -> bool {
        match self {
            ImageSignatureVerdict::Signed => false,
            ImageSignatureVerdict::Unsigned => !unsigned_allowed,
            ImageSignatureVerdict::Bad => true,
        }
    }

    /// `signed`, `unsigned` or `bad`, as the JSON output spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSignatureVerdict::Signed => "signed",
            ImageSignatureVerdict::Unsigned => "unsigned",
            ImageSignatureVerdict::Bad => "bad",
        }
    }
}

/// One image's signature check.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSignatureReport {
    /// Logical name.
    pub name: String,
    /// The original reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The image's top-level digest.
    pub digest: String,
    /// The verdict.
    pub verdict: ImageSignatureVerdict,
    /// Fingerprints of the keys with a valid signature.
    pub signed_by: Vec<String>,
    /// The digests with a valid signature (the image's own, or its platforms').
    pub signed_digests: Vec<String>,
    /// How many simple-signing signatures travel with the image.
    pub signatures: usize,
    /// Why it is unsigned or bad; for a signed image, the signatures that do not count.
    pub problems: Vec<String>,
}

/// Checks the signatures of every image of `manifest` (read from `reader`) with `keys`.
pub fn check_image_signatures(
    reader: &BundleReader,
    manifest: &BundleManifest,
    keys: &[ImageKey],
) -> Vec<ImageSignatureReport> {
    let carries_any = manifest
        .images
        .iter()
        .any(|artifact| !artifact.referrers.is_empty());
    manifest
        .images
        .iter()
        .map(|artifact| check_image(reader, manifest, artifact, keys, carries_any))
        .collect()
}

fn check_image(
    reader: &BundleReader,
    manifest: &BundleManifest,
    artifact: &BundledArtifact,
    keys: &[ImageKey],
    carries_any: bool,
) -> ImageSignatureReport {
    let mut problems = Vec::new();
    let (valid, signatures) = match ImageReference::parse(&artifact.reference) {
        Ok(reference) => valid_signatures(
            reader,
            manifest,
            artifact,
            &reference.repository_name(),
            keys,
            &mut problems,
        ),
        Err(error) => {
            problems.push(format!("its reference does not parse: {error}"));
            (BTreeMap::new(), 0)
        }
    };
    let platforms: Vec<&str> = artifact
        .platforms
        .iter()
        .map(|platform| platform.digest.as_str())
        .collect();
    let top_signed = valid.contains_key(&artifact.digest);
    let platforms_signed =
        !platforms.is_empty() && platforms.iter().all(|digest| valid.contains_key(*digest));
    let unlisted = if top_signed || !platforms_signed {
        Vec::new()
    } else {
        unlisted_children(reader, manifest, artifact)
    };
    let verdict =
        if top_signed || (platforms_signed && unlisted.is_empty()) {
            ImageSignatureVerdict::Signed
        } else if signatures == 0 && problems.is_empty() {
            problems.push(if carries_any {
                "no signature travels with it".to_owned()
            } else {
                "no signature travels with it: the bundle carries no signatures at all (make it from a spec \
             with `signatures: true`)"
                    .to_owned()
            });
            ImageSignatureVerdict::Unsigned
        } else {
            if platforms_signed {
                problems.extend(unlisted);
            } else if !valid.is_empty() {
                problems.push(format!(
                "only {} of its {} platform(s) have a valid signature, and the image's own digest has none",
                platforms.iter().filter(|digest| valid.contains_key(**digest)).count(),
                platforms.len()
            ));
            }
            ImageSignatureVerdict::Bad
        };
    ImageSignatureReport {
        name: artifact.name.clone(),
        reference: artifact.reference.clone(),
        digest: artifact.digest.clone(),
        verdict,
        signed_by: valid
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        signed_digests: valid.keys().cloned().collect(),
        signatures,
        problems,
    }
}

/// The signatures of `artifact` that count, as the keys' fingerprints by the digest they sign,
/// and how many simple-signing signatures travel with it; what is wrong with the others goes
/// to `problems`. `repository` is the image's `registry/repository`, which a payload must name.
fn valid_signatures(
    reader: &BundleReader,
    manifest: &BundleManifest,
    artifact: &BundledArtifact,
    repository: &str,
    keys: &[ImageKey],
    problems: &mut Vec<String>,
) -> (BTreeMap<String, BTreeSet<String>>, usize) {
    let subjects: BTreeSet<&str> = std::iter::once(artifact.digest.as_str())
        .chain(artifact.platforms.iter().map(|platform| platform.digest.as_str()))
        .collect();
    let mut valid: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut signatures = 0;
    for referrer in artifact
        .referrers
        .iter()
        .filter(|referrer| referrer.kind == ReferrerKind::Signature)
    {
        let name = referrer.tag.as_deref().unwrap_or(&referrer.digest);
        if !subjects.contains(referrer.subject.as_str()) {
            problems.push(format!(
                "{name}: is about {}, which is not this image nor one of its carried platforms",
                referrer.subject
            ));
            continue;
        }
        let layers = match signature_layers(reader, manifest, referrer) {
            Ok(layers) => layers,
            Err(problem) => {
                problems.push(format!("{name}: {problem}"));
                continue;
            }
        };
        for layer in layers {
            signatures += 1;
            let expected = Expected {
                digest: &referrer.subject,
                repository,
            };
            match layer
                .and_then(|(payload, signature)| check_simple_signing(&payload, &signature, &expected, keys))
            {
                Ok(fingerprint) => {
                    valid
                        .entry(referrer.subject.clone())
                        .or_default()
                        .insert(fingerprint);
                }
                Err(problem) => problems.push(format!("{name}: {problem}")),
            }
        }
    }
    (valid, signatures)
}

/// The children of `artifact`'s index that the bundle carries but does not list as carried
/// platforms, each as a problem: push would upload them with the index, so a node could pull
/// one instead of the signed platform beside it. Empty for a single manifest.
fn unlisted_children(
    reader: &BundleReader,
    manifest: &BundleManifest,
    artifact: &BundledArtifact,
) -> Vec<String> {
    let bytes = match read_blob(reader, manifest, &artifact.digest, MAX_SIGNATURE_MANIFEST_BYTES) {
        Ok(bytes) => bytes,
        Err(problem) => return vec![format!("its index: {problem}")],
    };
    // Read as push reads it (coder-registry's index document), so both see the same children.
    let index: IndexDocument = match serde_json::from_slice(&bytes) {
        Ok(index) => index,
        Err(error) => return vec![format!("its index {} does not parse: {error}", artifact.digest)],
    };
    index
        .manifests
        .iter()
        .filter(|child| manifest.blob(&child.digest).is_some())
        .filter(|child| !artifact.platforms.iter().any(|platform| platform.digest == child.digest))
        .map(|child| {
            format!(
                "its index lists {}, which the bundle carries but does not list as a carried platform (it is unsigned as far as this check goes)",
                child.digest
            )
        })
        .collect()
}

/// The parts of a signature manifest read here.
#[derive(Deserialize)]
struct SignatureManifest {
    #[serde(default)]
    layers: Vec<SignatureLayer>,
}

#[derive(Deserialize)]
struct SignatureLayer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// One simple-signing layer: its payload and base64 signature, or what is wrong with it.
type LayerContent = Result<(Vec<u8>, String), String>;

/// The simple-signing layers of a `.sig` artifact, each read by its digest.
fn signature_layers(
    reader: &BundleReader,
    manifest: &BundleManifest,
    referrer: &Referrer,
) -> Result<Vec<LayerContent>, String> {
    let bytes = read_blob(reader, manifest, &referrer.digest, MAX_SIGNATURE_MANIFEST_BYTES)?;
    let document: SignatureManifest = serde_json::from_slice(&bytes)
        .map_err(|error| format!("its manifest {} does not parse: {error}", referrer.digest))?;
    let layers: Vec<LayerContent> = document
        .layers
        .into_iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .map(|layer| {
            let signature = layer
                .annotations
                .get(COSIGN_SIGNATURE_ANNOTATION)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "layer {} has no {COSIGN_SIGNATURE_ANNOTATION} annotation",
                        layer.digest
                    )
                })?;
            if layer.size > MAX_PAYLOAD_BYTES {
                return Err(format!(
                    "layer {} claims {} bytes, more than a signed payload can be",
                    layer.digest, layer.size
                ));
            }
            let payload = read_blob(reader, manifest, &layer.digest, MAX_PAYLOAD_BYTES)?;
            Ok((payload, signature))
        })
        .collect();
    if layers.is_empty() {
        return Err(format!(
            "its manifest {} has no {SIMPLE_SIGNING_MEDIA_TYPE} layer (not a cosign simple-signing signature)",
            referrer.digest
        ));
    }
    Ok(layers)
}

/// A blob the bundle manifest lists, read whole (at most `limit` bytes) and checked against its
/// digest.
fn read_blob(
    reader: &BundleReader,
    manifest: &BundleManifest,
    digest: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    if manifest.blob(digest).is_none() {
        let omitted = manifest
            .delta
            .iter()
            .flat_map(|delta| &delta.omitted)
            .any(|blob| blob.digest == digest);
        return Err(if omitted {
            format!(
                "blob {digest} is left out of this delta bundle (its base carries it); check the base bundle's signatures"
            )
        } else {
            format!("blob {digest} is not in the bundle")
        });
    }
    let path = blob_path(digest);
    let location = reader
        .entries()
        .get(&path)
        .ok_or_else(|| format!("{path} is missing from the bundle"))?;
    if location.size > limit {
        return Err(format!(
            "{path} is {} bytes, more than a signature's parts can be",
            location.size
        ));
    }
    let bytes = reader
        .read_document(&path)
        .map_err(|error| format!("reading {path}: {error}"))?
        .ok_or_else(|| format!("{path} is missing from the bundle"))?;
    let actual = coder_registry::sha256_digest(&bytes);
    if actual != digest {
        return Err(format!("{path} is damaged: it hashes to {actual}"));
    }
    Ok(bytes)
}

/// The parts of a simple-signing payload that are checked.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: PayloadIdentity,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PayloadIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// What a signature's payload must be about.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The manifest digest it signs (`critical.image.docker-manifest-digest`).
    pub digest: &'a str,
    /// The image's repository, `registry/repository` (`critical.identity.docker-reference`;
    /// compared normalised, so `nginx` and `docker.io/library/nginx` are the same).
    pub repository: &'a str,
}

/// Checks one simple-signing signature: `signature` (base64 ASN.1 DER) over `payload` by one of
/// `keys`, and the payload about the `expected` digest and repository. Returns the fingerprint
/// of the key that signed it, or what is wrong.
pub fn check_simple_signing(
    payload: &[u8],
    signature: &str,
    expected: &Expected<'_>,
    keys: &[ImageKey],
) -> Result<String, String> {
    let subject = expected.digest;
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| format!("the {COSIGN_SIGNATURE_ANNOTATION} annotation is not base64"))?;
    let signature = Signature::from_der(&der)
        .map_err(|_| "the signature is not an ASN.1 DER ECDSA P-256 signature".to_owned())?;
    let key = keys
        .iter()
        .find(|key| key.key.verify(payload, &signature).is_ok())
        .ok_or_else(|| {
            format!(
                "the signature does not verify with {} (made with another key, or the payload or signature was altered)",
                keys.iter()
                    .map(|key| format!("{} ({})", key.fingerprint, key.source))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let payload: Payload = serde_json::from_slice(payload).map_err(|error| {
        format!(
            "signed by {}, but the payload does not parse: {error}",
            key.fingerprint
        )
    })?;
    if payload.critical.kind != COSIGN_PAYLOAD_TYPE {
        return Err(format!(
            "signed by {}, but the payload's type is {:?}, not {COSIGN_PAYLOAD_TYPE:?}",
            key.fingerprint, payload.critical.kind
        ));
    }
    if payload.critical.image.digest != subject {
        return Err(format!(
            "signed by {}, but the payload is about {}, not {subject}",
            key.fingerprint, payload.critical.image.digest
        ));
    }
    let signed_for = &payload.critical.identity.docker_reference;
    let same_repository = match (
        normalised_repository_name(signed_for),
        normalised_repository_name(expected.repository),
    ) {
        (Ok(signed_for), Ok(repository)) => signed_for == repository,
        _ => false,
    };
    if !same_repository {
        return Err(format!(
            "signed by {} for {signed_for:?}, not for this image's repository {} (a signature of the same \
             bytes published as another image)",
            key.fingerprint, expected.repository
        ));
    }
    Ok(key.fingerprint.clone())
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::LineEnding;

    use super::*;

    fn key(seed: u8) -> (SigningKey, ImageKey) {
        let signing = SigningKey::from_slice(&[seed; 32]).expect("a valid scalar");
        let pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM");
        let public = ImageKey::from_pem(&pem, &format!("key{seed}.pub")).expect("key");
        (signing, public)
    }

    fn sign(key: &SigningKey, payload: &[u8]) -> String {
        let signature: Signature = key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    fn payload_for(repository: &str, digest: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{repository}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{COSIGN_PAYLOAD_TYPE}"}},"optional":null}}"#
        )
        .into_bytes()
    }

    fn payload(digest: &str) -> Vec<u8> {
        payload_for("r.example.com/app", digest)
    }

    fn about(subject: &str) -> Expected<'_> {
        Expected {
            digest: subject,
            repository: "r.example.com/app",
        }
    }

    #[test]
    fn a_signature_counts_only_for_the_repository_it_names() {
        let subject = format!("sha256:{}", "a".repeat(64));
        let (signing, public) = key(5);
        let keys = std::slice::from_ref(&public);
        // The same bytes signed as another image: its digest matches, its identity does not.
        let elsewhere = payload_for("r.example.com/debug-shell", &subject);
        let error = check_simple_signing(&elsewhere, &sign(&signing, &elsewhere), &about(&subject), keys)
            .expect_err("another repository");
        assert!(
            error.contains("debug-shell") && error.contains("r.example.com/app"),
            "{error}"
        );
        // No identity at all.
        let bare = format!(
            r#"{{"critical":{{"image":{{"docker-manifest-digest":"{subject}"}},"type":"{COSIGN_PAYLOAD_TYPE}"}}}}"#
        )
        .into_bytes();
        assert!(check_simple_signing(&bare, &sign(&signing, &bare), &about(&subject), keys).is_err());
        // Docker Hub's names are one repository however written.
        let hub = payload_for("index.docker.io/library/nginx", &subject);
        let nginx = Expected {
            digest: &subject,
            repository: "docker.io/library/nginx",
        };
        assert_eq!(
            check_simple_signing(&hub, &sign(&signing, &hub), &nginx, keys),
            Ok(public.fingerprint.clone())
        );
    }

    #[test]
    fn a_signature_counts_only_with_the_key_and_the_images_digest() {
        let subject = format!("sha256:{}", "a".repeat(64));
        let (signing, public) = key(7);
        let (other_signing, other_public) = key(9);
        let good = payload(&subject);

        assert_eq!(
            check_simple_signing(
                &good,
                &sign(&signing, &good),
                &about(&subject),
                std::slice::from_ref(&public)
            ),
            Ok(public.fingerprint.clone())
        );
        // Another key: does not verify; with both keys given, it does.
        let by_other = sign(&other_signing, &good);
        let error = check_simple_signing(&good, &by_other, &about(&subject), std::slice::from_ref(&public))
            .expect_err("wrong key");
        assert!(error.contains("does not verify"), "{error}");
        assert_eq!(
            check_simple_signing(
                &good,
                &by_other,
                &about(&subject),
                &[public.clone(), other_public.clone()]
            ),
            Ok(other_public.fingerprint.clone())
        );
        // An altered payload.
        let mut altered = good.clone();
        altered[10] ^= 1;
        assert!(
            check_simple_signing(
                &altered,
                &sign(&signing, &good),
                &about(&subject),
                std::slice::from_ref(&public)
            )
            .is_err()
        );
        // A valid signature about another image.
        let elsewhere = payload(&format!("sha256:{}", "b".repeat(64)));
        let error = check_simple_signing(
            &elsewhere,
            &sign(&signing, &elsewhere),
            &about(&subject),
            std::slice::from_ref(&public),
        )
        .expect_err("other image");
        assert!(error.contains("is about sha256:bbbb"), "{error}");
        // Not base64, not DER.
        assert!(check_simple_signing(&good, "%%%", &about(&subject), std::slice::from_ref(&public)).is_err());
        assert!(
            check_simple_signing(&good, "AAAA", &about(&subject), std::slice::from_ref(&public)).is_err()
        );
    }

    #[test]
    fn keys_that_are_not_p256_pem_are_refused_with_advice() {
        let error = ImageKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "x.pub",
        )
        .expect_err("not a key")
        .to_string();
        assert!(error.contains("x.pub") && error.contains("cosign"), "{error}");
        let (_, public) = key(3);
        assert!(public.fingerprint.starts_with("p256:") && public.fingerprint.len() == 21);
    }
}
