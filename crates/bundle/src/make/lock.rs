//! `lock`: resolve every tag of a spec to a digest, and (spec `signatures: true`) find each
//! image's signatures, attestations and SBOMs.

use coder_bundle_spec::format::is_index;
use coder_bundle_spec::referrer::{Referrer, ReferrerKind, tag_for};
use coder_bundle_spec::{
    BundleSpec, ChartSource, ImageLock, ImageReference, LOCK_FORMAT_VERSION, LockedArtifact, LockedPlatform,
    LockedSpec, Platform,
};

use coder_registry::oci::IndexDocument;
use coder_registry::{RegistryClient, RegistryError, Repository};
use futures_util::StreamExt;

use crate::BundleError;

/// How many images [`resolve`] asks about at once.
const RESOLVED_AT_ONCE: usize = 8;

/// Resolves every image (and OCI chart) of `spec` against its registry, several at a time.
pub async fn resolve(
    spec: &BundleSpec,
    client: &RegistryClient,
    on_resolved: &dyn Fn(&LockedArtifact),
) -> crate::Result<ImageLock> {
    // Every reference parsed before any request, so that a typo fails at once.
    let references = spec
        .images
        .iter()
        .map(|image| ImageReference::parse(&image.reference))
        .collect::<Result<Vec<_>, _>>()?;
    // Several at a time (a far registry costs a round trip each), reported in the spec's order.
    let mut resolved = futures_util::stream::iter(spec.images.iter().zip(&references))
        .map(|(image, reference)| async move {
            resolve_one(&image.name, reference, spec, client)
                .await
                .map_err(|error| BundleError::artifact("image", &image.name, &image.reference, error))
        })
        .buffered(RESOLVED_AT_ONCE);
    let mut images = Vec::with_capacity(spec.images.len());
    while let Some(locked) = resolved.next().await {
        let locked = locked?;
        on_resolved(&locked);
        images.push(locked);
    }
    let mut charts = Vec::new();
    for chart in &spec.charts {
        if let ChartSource::Oci(reference) = chart.source()? {
            let locked = resolve_one(&chart.name, &reference, spec, client).await?;
            let locked = LockedArtifact {
                reference: chart.reference.clone().unwrap_or_default(),
                ..locked
            };
            on_resolved(&locked);
            charts.push(locked);
        }
    }
    Ok(ImageLock {
        version: LOCK_FORMAT_VERSION,
        spec: LockedSpec {
            name: spec.name.clone(),
            version: spec.version.clone(),
            signatures: spec.signatures,
        },
        locked_at: jiff::Timestamp::now().round(jiff::Unit::Second)?,
        images,
        charts,
    })
}

async fn resolve_one(
    name: &str,
    reference: &ImageReference,
    spec: &BundleSpec,
    client: &RegistryClient,
) -> crate::Result<LockedArtifact> {
    let repository = Repository::of(reference);
    let manifest = client.manifest(&repository, reference.tag_or_digest()).await?;
    // The digests whose signatures travel: the artifact's own and its carried platforms'.
    let mut subjects = vec![manifest.digest.clone()];
    let mut platforms = Vec::new();
    if is_index(&manifest.media_type) {
        let index: IndexDocument = serde_json::from_slice(&manifest.bytes)?;
        let missing = index.first_missing(&spec.platforms);
        for entry in index.manifests {
            let Some(platform) = entry.platform else { continue };
            let carried = Platform::is_carried(
                &spec.platforms,
                &platform.os,
                &platform.architecture,
                platform.variant.as_deref(),
            );
            if carried && !is_index(&entry.media_type) {
                subjects.push(entry.digest.clone());
            }
            platforms.push(LockedPlatform {
                platform: platform.to_platform().to_string(),
                digest: entry.digest,
                media_type: entry.media_type,
                size: entry.size,
            });
        }
        if let Some(wanted) = missing {
            return Err(BundleError::PlatformMissing {
                wanted: wanted.to_string(),
                available: platforms.iter().map(|p| p.platform.clone()).collect(),
            });
        }
    }
    let referrers = if spec.signatures {
        find_referrers(client, &repository, &subjects)
            .await
            .map_err(|error| BundleError::Referrers(Box::new(error)))?
    } else {
        Vec::new()
    };
    Ok(LockedArtifact {
        name: name.to_owned(),
        reference: reference.original.clone(),
        digest: manifest.digest,
        media_type: manifest.media_type,
        size: manifest.bytes.len() as u64,
        platforms,
        referrers,
    })
}

/// The signatures, attestations and SBOMs of `subjects` in `repository`: cosign's tags
/// (`sha256-<hex>.sig`, `.att`, `.sbom`), then what the referrers API lists where the registry
/// has it (an artifact found both ways is recorded once, with its tag). Each is pinned by the
/// digest of its manifest, which must be an image manifest (they are carried as images are).
pub async fn find_referrers(
    client: &RegistryClient,
    repository: &Repository,
    subjects: &[String],
) -> crate::Result<Vec<Referrer>> {
    let mut found: Vec<Referrer> = Vec::new();
    for subject in subjects {
        for kind in ReferrerKind::TAGGED {
            let Some(tag) = tag_for(subject, kind) else {
                continue;
            };
            let manifest = match client.manifest(repository, &tag).await {
                Ok(manifest) => manifest,
                Err(RegistryError::ManifestNotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            check_image_manifest(&manifest.media_type, &manifest.digest, repository, &tag)?;
            found.push(Referrer {
                subject: subject.clone(),
                kind,
                tag: Some(tag),
                artifact_type: None,
                size: manifest.bytes.len() as u64,
                digest: manifest.digest,
                media_type: manifest.media_type,
                blobs: Vec::new(),
            });
        }
        let Some(listed) = client.referrers(repository, subject).await? else {
            continue;
        };
        for entry in listed {
            if found
                .iter()
                .any(|known| known.subject == *subject && known.digest == entry.digest)
            {
                continue;
            }
            let manifest = client.manifest(repository, &entry.digest).await?;
            check_image_manifest(
                &manifest.media_type,
                &manifest.digest,
                repository,
                &format!("a referrer of {subject}"),
            )?;
            if manifest.bytes.len() as u64 != entry.size {
                return Err(RegistryError::SizeMismatch {
                    what: format!("{repository}@{} (a referrer of {subject})", entry.digest),
                    expected: entry.size,
                    actual: manifest.bytes.len() as u64,
                }
                .into());
            }
            let artifact_type = entry
                .artifact_type
                .or_else(|| coder_registry::oci::artifact_type_of(&manifest.bytes));
            found.push(Referrer {
                subject: subject.clone(),
                kind: artifact_type
                    .as_deref()
                    .map_or(ReferrerKind::Other, ReferrerKind::from_artifact_type),
                tag: None,
                artifact_type,
                size: manifest.bytes.len() as u64,
                digest: manifest.digest,
                media_type: manifest.media_type,
                blobs: Vec::new(),
            });
        }
    }
    Ok(found)
}

/// Referrers travel as images do, so each must be an image manifest, not an index.
fn check_image_manifest(
    media_type: &str,
    digest: &str,
    repository: &Repository,
    found_as: &str,
) -> crate::Result<()> {
    if is_index(media_type) {
        return Err(BundleError::ReferrerIsIndex {
            repository: repository.to_string(),
            digest: digest.to_owned(),
            found_as: found_as.to_owned(),
            media_type: media_type.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A registry with the referrers API, just enough of one: `routes` maps a request path to
    /// `(content type, body)`; anything else is 404.
    async fn serve(routes: BTreeMap<String, (String, Vec<u8>)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
                let (status, content_type, body) = match routes.get(&path) {
                    Some((content_type, body)) => ("200 OK", content_type.clone(), body.clone()),
                    None => (
                        "404 Not Found",
                        "application/json".to_owned(),
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            }
        });
        host
    }

    fn manifest(config_media_type: &str, artifact_type: Option<&str>) -> Vec<u8> {
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": coder_bundle_spec::format::OCI_MANIFEST_MEDIA_TYPE,
            "config": { "mediaType": config_media_type, "digest": format!("sha256:{}", "c".repeat(64)), "size": 2 },
            "layers": [],
        });
        if let Some(artifact_type) = artifact_type {
            manifest["artifactType"] = serde_json::json!(artifact_type);
        }
        serde_json::to_vec(&manifest).expect("JSON")
    }

    #[tokio::test]
    async fn referrers_come_from_cosign_tags_and_the_referrers_api_each_once() {
        let subject = format!("sha256:{}", "a".repeat(64));
        let oci = coder_bundle_spec::format::OCI_MANIFEST_MEDIA_TYPE.to_owned();
        let signature = manifest("application/vnd.oci.image.config.v1+json", None);
        let sbom = manifest("application/vnd.oci.empty.v1+json", Some("application/spdx+json"));
        let (signature_digest, sbom_digest) = (
            coder_registry::sha256_digest(&signature),
            coder_registry::sha256_digest(&sbom),
        );
        let listed = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": coder_bundle_spec::format::OCI_INDEX_MEDIA_TYPE,
            "manifests": [
                { "mediaType": oci, "digest": signature_digest, "size": signature.len(),
                  "artifactType": coder_bundle_spec::referrer::COSIGN_SIGNATURE_ARTIFACT_TYPE },
                { "mediaType": oci, "digest": sbom_digest, "size": sbom.len() },
            ],
        });
        let tag = tag_for(&subject, ReferrerKind::Signature).expect("tag");
        let routes = BTreeMap::from([
            (
                format!("/v2/team/app/manifests/{tag}"),
                (oci.clone(), signature.clone()),
            ),
            (
                format!("/v2/team/app/manifests/{signature_digest}"),
                (oci.clone(), signature),
            ),
            (
                format!("/v2/team/app/manifests/{sbom_digest}"),
                (oci.clone(), sbom),
            ),
            (
                format!("/v2/team/app/referrers/{subject}"),
                (
                    coder_bundle_spec::format::OCI_INDEX_MEDIA_TYPE.to_owned(),
                    serde_json::to_vec(&listed).expect("JSON"),
                ),
            ),
        ]);
        let host = serve(routes).await;
        let client = RegistryClient::new(coder_registry::RegistryOptions {
            insecure_registries: vec![host.clone()],
            attempts: 1,
            ..Default::default()
        })
        .expect("client");
        let repository = Repository {
            registry: host,
            repository: "team/app".to_owned(),
        };
        let found = find_referrers(&client, &repository, std::slice::from_ref(&subject))
            .await
            .expect("referrers");
        let summary: Vec<(ReferrerKind, Option<&str>, &str, Option<&str>)> = found
            .iter()
            .map(|referrer| {
                (
                    referrer.kind,
                    referrer.tag.as_deref(),
                    referrer.digest.as_str(),
                    referrer.artifact_type.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    ReferrerKind::Signature,
                    Some(tag.as_str()),
                    signature_digest.as_str(),
                    None
                ),
                (
                    ReferrerKind::Sbom,
                    None,
                    sbom_digest.as_str(),
                    Some("application/spdx+json")
                ),
            ]
        );
        assert!(
            found
                .iter()
                .all(|referrer| referrer.subject == subject && referrer.check().is_ok())
        );
    }
}
