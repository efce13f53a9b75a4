//! The pull calls: a manifest or index by tag or digest, byte for byte and checked against its
//! digest, and a blob as a response the caller streams (hashing as it goes), or where the
//! registry redirects its download.

use coder_bundle_spec::format::{ACCEPTED_MANIFEST_MEDIA_TYPES, DOCKER_SCHEMA1_MEDIA_TYPES};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RANGE};
use reqwest::{Method, Response, StatusCode};

use crate::oci;
use crate::{
    MAX_MANIFEST_BYTES, RegistryClient, RegistryError, Repository, expect_success, header_value,
    read_limited, sha256_digest,
};

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (never re-serialised).
    pub bytes: Vec<u8>,
    /// The media type (from `Content-Type`, or the document's `mediaType`).
    pub media_type: String,
    /// `sha256:` of `bytes`.
    pub digest: String,
}

impl RegistryClient {
    /// Fetches a manifest or index by tag or digest, byte for byte, checking its digest.
    pub async fn manifest(
        &self,
        repository: &Repository,
        tag_or_digest: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let reference = format!("{repository}:{tag_or_digest}");
        let accept = ACCEPTED_MANIFEST_MEDIA_TYPES
            .iter()
            .chain(DOCKER_SCHEMA1_MEDIA_TYPES.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(&accept)?);
        let response = self
            .request(
                Method::GET,
                repository,
                &format!("manifests/{tag_or_digest}"),
                headers,
                "pull",
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound { reference });
        }
        let response = expect_success(response).await?;
        let header_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or(value).trim().to_owned());
        let advertised_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let url = response.url().to_string();
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, &url).await?;
        let digest = sha256_digest(&bytes);

        let expected = if tag_or_digest.starts_with("sha256:") {
            Some(tag_or_digest.to_owned())
        } else {
            advertised_digest
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: reference,
                expected,
                actual: digest,
            });
        }
        let media_type = match header_type {
            Some(media_type) if media_type != "application/json" && !media_type.is_empty() => media_type,
            _ => oci::media_type_of(&bytes).unwrap_or_default(),
        };
        if DOCKER_SCHEMA1_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(RegistryError::Schema1 {
                reference,
                media_type,
            });
        }
        if !ACCEPTED_MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(RegistryError::InvalidManifest {
                reference,
                reason: format!("unsupported media type {media_type:?}"),
            });
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Every tag of `repository` (`GET /v2/<repository>/tags/list`, following the `Link` to
    /// each next page); none when the registry does not know the repository.
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut path = "tags/list?n=1000".to_owned();
        loop {
            let response = self
                .request(Method::GET, repository, &path, HeaderMap::new(), "pull")
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            let response = expect_success(response).await?;
            let next = next_page(&response, &repository.repository);
            let url = response.url().to_string();
            let bytes = read_limited(response, MAX_MANIFEST_BYTES, &url).await?;
            let page: TagList = serde_json::from_slice(&bytes).map_err(|error| RegistryError::Io {
                context: format!("reading the tags of {repository}"),
                source: std::io::Error::other(error),
            })?;
            let added = page.tags.unwrap_or_default();
            let progressed = !added.is_empty();
            tags.extend(added);
            match next {
                Some(next) if progressed => path = next,
                _ => return Ok(tags),
            }
        }
    }

    /// Starts a blob download from byte `offset` (0 for all of it).
    ///
    /// Returns the response to stream and the offset it actually starts at: a registry that
    /// ignores `Range` answers 200 with the whole blob, and the offset is then 0.
    pub async fn blob(
        &self,
        repository: &Repository,
        digest: &str,
        offset: u64,
    ) -> Result<(Response, u64), RegistryError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(RANGE, header_value(&format!("bytes={offset}-"))?);
        }
        let response = self
            .request(
                Method::GET,
                repository,
                &format!("blobs/{digest}"),
                headers,
                "pull",
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(RegistryError::BlobNotFound {
                registry: repository.registry.clone(),
                repository: repository.repository.clone(),
                digest: digest.to_owned(),
            }),
            StatusCode::PARTIAL_CONTENT if offset > 0 => Ok((response, offset)),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // What we have is already complete or wrong; start again from zero.
                Box::pin(self.blob(repository, digest, 0)).await
            }
            _ => Ok((expect_success(response).await?, 0)),
        }
    }

    /// Where the registry sends a client that downloads this blob: the `Location` of its redirect
    /// answer, or `None` when it serves the blob itself. Needs a client made with
    /// [`Redirects::Report`]; nothing of the blob is downloaded.
    pub async fn blob_redirect(
        &self,
        repository: &Repository,
        digest: &str,
    ) -> Result<Option<url::Url>, RegistryError> {
        let response = self
            .request(
                Method::GET,
                repository,
                &format!("blobs/{digest}"),
                HeaderMap::new(),
                "pull",
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::BlobNotFound {
                registry: repository.registry.clone(),
                repository: repository.repository.clone(),
                digest: digest.to_owned(),
            });
        }
        if !response.status().is_redirection() {
            // Served here (the body is dropped unread): no other host is involved.
            expect_success(response).await?;
            return Ok(None);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                url: response.url().to_string(),
                status: response.status().as_u16(),
                body: "a redirect without a Location header".to_owned(),
            })?;
        // A relative Location stays on the registry itself.
        let target = response
            .url()
            .join(location)
            .map_err(|error| RegistryError::Config {
                what: format!("the redirect Location {location:?}"),
                reason: error.to_string(),
            })?;
        Ok(Some(target))
    }
}

/// The path (below `/v2/<repository>/`) of the next page a `Link: <...>; rel="next"` header
/// names, when it names one in the same repository.
fn next_page(response: &Response, repository: &str) -> Option<String> {
    let link = response.headers().get("link")?.to_str().ok()?;
    let target = link
        .split(';')
        .next()?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let path = target.split_once("/v2/").map_or(target, |(_, path)| path);
    path.strip_prefix(repository)?
        .strip_prefix('/')
        .map(str::to_owned)
}
