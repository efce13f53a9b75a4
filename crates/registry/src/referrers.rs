//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>` lists the manifests whose
//! `subject` is that digest (signatures, attestations, SBOMs). Registries without it (the CNCF
//! distribution registry 2.x among them) answer 404; callers then rely on cosign's tags.

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};

use coder_bundle_spec::format::OCI_INDEX_MEDIA_TYPE;

use crate::oci::{IndexDocument, IndexEntry};
use crate::{
    MAX_MANIFEST_BYTES, RegistryClient, RegistryError, Repository, expect_success, header_value, read_limited,
};

impl RegistryClient {
    /// The referrers of `digest` in `repository`, as the registry's referrers API lists them;
    /// `None` when the registry has no referrers API (it answers 404, 400 or 405: a registry
    /// that has one answers 200, with an empty list when nothing refers to the digest).
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &str,
    ) -> Result<Option<Vec<IndexEntry>>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(OCI_INDEX_MEDIA_TYPE)?);
        let response = self
            .request(
                Method::GET,
                repository,
                &format!("referrers/{digest}"),
                headers,
                "pull",
            )
            .await?;
        if matches!(
            response.status(),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(None);
        }
        let response = expect_success(response).await?;
        let url = response.url().to_string();
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, &url).await?;
        parse_referrers(&bytes, &url).map(Some)
    }
}

/// The entries of a referrers answer (an OCI index).
fn parse_referrers(bytes: &[u8], url: &str) -> Result<Vec<IndexEntry>, RegistryError> {
    let index: IndexDocument =
        serde_json::from_slice(bytes).map_err(|error| RegistryError::InvalidManifest {
            reference: url.to_owned(),
            reason: format!("the referrers answer is not an OCI index: {error}"),
        })?;
    for entry in &index.manifests {
        coder_bundle_spec::validate_digest(&entry.digest).map_err(|reason| {
            RegistryError::InvalidManifest {
                reference: url.to_owned(),
                reason,
            }
        })?;
    }
    Ok(index.manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referrers_answer_gives_its_entries_with_their_artifact_types() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let answer = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":12,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}}]}}"#
        );
        let entries = parse_referrers(answer.as_bytes(), "u").expect("parse");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest, digest);
        assert_eq!(
            entries[0].artifact_type.as_deref(),
            Some("application/vnd.dev.cosign.artifact.sig.v1+json")
        );
        let bad = answer.replace(&digest, "sha256:zz");
        assert!(parse_referrers(bad.as_bytes(), "u").is_err());
        assert!(parse_referrers(b"404 page not found", "u").is_err());
    }
}
