//! The push side of the registry client: blob existence checks, cross-repository mounts,
//! monolithic uploads streamed from a byte range of a local file, manifest puts that keep the
//! exact bytes (and so the digest), and blob deletion for the writability probe.
//!
//! Every call authenticates with the `push,pull` scope ([`PUSH_ACTION`]), so one token (or one
//! set of Basic credentials) serves the whole push of a repository.

use std::sync::{Arc, OnceLock};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};

use crate::blob_io::{FileRange, file_range_body};

use super::{
    ACCEPTED_MANIFEST_MEDIA_TYPES, BodyFactory, Call, RegistryClient, RegistryError, Repository, header_value,
};

/// The authentication action of every push call (the Bearer scope `repository:<path>:push,pull`).
pub const PUSH_ACTION: &str = "push,pull";

/// An upload session the registry opened (`202 Accepted` with a `Location`).
#[derive(Debug, Clone)]
pub struct BlobUpload {
    pub(crate) location: String,
    /// The smallest chunk the registry takes (`OCI-Chunk-Min-Length`), if it says.
    pub(crate) min_chunk: Option<u64>,
}

impl BlobUpload {
    /// The session at `location`, no minimum chunk known.
    pub(crate) fn at(location: String) -> Self {
        Self {
            location,
            min_chunk: None,
        }
    }

    /// The URL that completes the upload as blob `digest` (`PUT <location>?digest=`).
    pub(crate) fn commit_url(&self, digest: &str) -> String {
        let separator = if self.location.contains('?') { '&' } else { '?' };
        format!("{}{separator}digest={digest}", self.location)
    }
}

/// What a cross-repository mount did.
#[derive(Debug)]
pub enum MountOutcome {
    /// `201 Created`: the blob is now linked into the repository; nothing was sent.
    Mounted,
    /// `202 Accepted`: the registry did not mount it and opened an upload session instead.
    NotMounted(BlobUpload),
}

/// What deleting a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// `202 Accepted` (or already gone).
    Deleted,
    /// `405`: the registry has deletes disabled (the default of the distribution registry).
    NotAllowed,
}

/// How a blob reached a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushOutcome {
    /// Its bytes were uploaded.
    Uploaded,
    /// It was mounted from another repository of the same registry.
    Mounted,
}

/// The largest blob sent in one request (`POST ?digest=` with the bytes): above it, a registry
/// that answers the form with a session instead would have been sent the bytes in vain.
const SINGLE_POST_MAX: u64 = 1 << 20;

impl RegistryClient {
    /// Whether `repository` has blob `digest` (`HEAD /v2/<repository>/blobs/<digest>`).
    pub async fn blob_exists(&self, repository: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let response = self.blob_request(Method::HEAD, repository, digest).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(push_failure(response, repository, &format!("a check for blob {digest}"), 0).await),
        }
    }

    /// The digest that `reference` (a tag or digest) names in `repository`, if it exists
    /// (`HEAD /v2/<repository>/manifests/<reference>`).
    pub async fn manifest_digest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            header_value(&ACCEPTED_MANIFEST_MEDIA_TYPES.join(", "))?,
        );
        let response = self
            .request(
                Method::HEAD,
                repository,
                &format!("manifests/{reference}"),
                headers,
                PUSH_ACTION,
            )
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => {
                return Err(push_failure(
                    response,
                    repository,
                    &format!("a check for manifest {reference}"),
                    0,
                )
                .await);
            }
        }
        match response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
        {
            Some(digest) => Ok(Some(digest.to_owned())),
            None if reference.starts_with("sha256:") => Ok(Some(reference.to_owned())),
            // No digest header: fetch the manifest and hash it.
            None => Ok(Some(self.manifest(repository, reference).await?.digest)),
        }
    }

    /// Opens an upload session in `repository` (`POST /v2/<repository>/blobs/uploads/`).
    pub async fn start_upload(&self, repository: &Repository) -> Result<BlobUpload, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self
            .request(Method::POST, repository, "blobs/uploads/", headers, PUSH_ACTION)
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(push_failure(response, repository, "an upload", 0).await);
        }
        self.upload_session(&response, repository)
    }

    /// Asks the registry to link blob `digest` from repository `from` (same registry) into
    /// `repository`, without sending it. A registry that cannot opens an upload instead.
    pub async fn mount_blob(
        &self,
        repository: &Repository,
        digest: &str,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let url = self.api_url(repository, &format!("blobs/uploads/?mount={digest}&from={from}"));
        let response = self
            .send_authorized(Call {
                method: Method::POST,
                url,
                repository,
                headers,
                action: PUSH_ACTION,
                body: None,
                also_pull_from: Some(from),
                attempts: self.options.attempts,
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::NotMounted(
                self.upload_session(&response, repository)?,
            )),
            _ => Err(push_failure(response, repository, &format!("a mount of blob {digest}"), 0).await),
        }
    }

    /// Finishes `upload` with one `PUT ?digest=` whose body streams `source` through a few
    /// fixed buffers. `on_progress` gets the bytes sent so far.
    ///
    /// The bytes are not hashed here: the registry hashes what it receives and commits it only if
    /// it is `digest` (the distribution spec requires the check, and a pull checks again), so a
    /// second hash on this side would only spend the CPU the registry needs. A range that cannot
    /// be read fails with [`RegistryError::Io`]; whether a refusal was the source's fault (bytes
    /// that do not hash to `digest`) is for the caller, who knows what the source is, to tell.
    pub async fn finish_upload(
        &self,
        repository: &Repository,
        upload: BlobUpload,
        digest: &str,
        source: &FileRange,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(), RegistryError> {
        // The session is spent by a failed PUT; the caller retries from a new one.
        let url = upload.commit_url(digest);
        let result = self
            .send_range(
                (Method::PUT, url),
                repository,
                source,
                digest,
                HeaderMap::new(),
                on_progress,
            )
            .await;
        let response = result?;
        if response.status() != StatusCode::CREATED {
            return Err(push_failure(response, repository, &format!("blob {digest}"), source.size).await);
        }
        check_digest_answer(&response, digest, &format!("{repository}@{digest} (blob)"))
    }

    /// Sends `source` as the body of one request (`method` to `url`, `headers` beside the
    /// content type and length), once: an upload session is not retried blind. A range that
    /// cannot be read is [`RegistryError::Io`], whatever the registry answered.
    pub(crate) async fn send_range(
        &self,
        (method, url): (Method, String),
        repository: &Repository,
        source: &FileRange,
        digest: &str,
        mut headers: HeaderMap,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Response, RegistryError> {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, header_value(&source.size.to_string())?);
        let read_failure: Arc<OnceLock<String>> = Arc::default();
        let body = {
            let (source, read_failure) = (source.clone(), read_failure.clone());
            move || file_range_body(&source, on_progress.clone(), read_failure.clone())
        };
        let result = self
            .send_authorized(Call {
                method,
                url,
                repository,
                headers,
                action: PUSH_ACTION,
                body: Some(&body as BodyFactory<'_>),
                attempts: 1,
                also_pull_from: None,
            })
            .await;
        match read_failure.get() {
            Some(problem) => Err(RegistryError::Io {
                context: format!("reading blob {digest} to upload it"),
                source: std::io::Error::other(problem.clone()),
            }),
            None => result,
        }
    }

    /// Puts blob `digest` (the bytes of `source`) into `repository`: mounted from `mount_from`
    /// when given and the registry allows it, uploaded otherwise, whole or in chunks (see
    /// [`RegistryClient::upload_chunk_size`]; a whole blob refused as too large is sent again in
    /// chunks). Connection failures and 5xx answers start a new upload, up to the client's
    /// attempts.
    pub async fn push_blob(
        &self,
        repository: &Repository,
        digest: &str,
        source: &FileRange,
        mount_from: Option<&str>,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<BlobPushOutcome, RegistryError> {
        let mut attempt = 1;
        loop {
            let (sent, min_chunk) = match mount_from {
                Some(from) => match self.mount_blob(repository, digest, from).await? {
                    MountOutcome::Mounted => return Ok(BlobPushOutcome::Mounted),
                    MountOutcome::NotMounted(upload) => {
                        self.send_into(upload, repository, digest, source, &on_progress)
                            .await
                    }
                },
                None if self.single_post_worth_trying(source.size) => {
                    match self
                        .post_whole_blob(repository, digest, source, on_progress.clone())
                        .await
                    {
                        Ok(None) => (Ok(()), 0),
                        Ok(Some(upload)) => {
                            self.send_into(upload, repository, digest, source, &on_progress)
                                .await
                        }
                        Err(error) => (Err(error), 0),
                    }
                }
                None => {
                    let upload = self.start_upload(repository).await?;
                    self.send_into(upload, repository, digest, source, &on_progress)
                        .await
                }
            };
            match sent {
                Ok(()) => return Ok(BlobPushOutcome::Uploaded),
                // A whole blob too large for a proxy: again, in chunks (a new session: the
                // refused one is spent), without counting an attempt.
                Err(refusal @ RegistryError::TooLarge { .. }) if self.upload_chunk_size().is_none() => {
                    self.chunks_after_refusal(None, min_chunk, refusal)?;
                    on_progress(0);
                }
                Err(error @ (RegistryError::Transport { .. } | RegistryError::ServerError { .. }))
                    if attempt < self.options.attempts =>
                {
                    let delay = std::time::Duration::from_millis(250 * 4u64.pow(attempt - 1));
                    self.report_retry(
                        &format!("upload of {digest}"),
                        attempt,
                        &coder_progress::error_chain(&error),
                        delay,
                    );
                    on_progress(0);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends `source` into the open session `upload`, whole or in chunks as the client does
    /// now; returns the outcome and the smallest chunk the registry said it takes (0: none).
    async fn send_into(
        &self,
        upload: BlobUpload,
        repository: &Repository,
        digest: &str,
        source: &FileRange,
        on_progress: &Arc<dyn Fn(u64) + Send + Sync>,
    ) -> (Result<(), RegistryError>, u64) {
        let min_chunk = upload.min_chunk.unwrap_or(0);
        let sent = match self.upload_chunk_size() {
            Some(_) => {
                self.upload_in_chunks(repository, upload, digest, source, on_progress.clone())
                    .await
            }
            None => {
                self.finish_upload(repository, upload, digest, source, on_progress.clone())
                    .await
            }
        };
        (sent, min_chunk)
    }

    /// Whether a blob of `size` bytes goes up in one request (`POST ?digest=` with the bytes):
    /// a small one, whole (not in chunks), while no registry has refused the form to this client.
    fn single_post_worth_trying(&self, size: u64) -> bool {
        size <= SINGLE_POST_MAX
            && self.upload_chunk_size().is_none()
            && !self
                .single_post_refused
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Uploads blob `digest` in one request, the distribution spec's single `POST`: `None` when
    /// the registry committed it (201), or the upload session it opened instead (202: it does not
    /// take the bytes this way; the client stops trying, and the caller sends them by `PUT`).
    async fn post_whole_blob(
        &self,
        repository: &Repository,
        digest: &str,
        source: &FileRange,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Option<BlobUpload>, RegistryError> {
        let url = self.api_url(repository, &format!("blobs/uploads/?digest={digest}"));
        let response = self
            .send_range(
                (Method::POST, url),
                repository,
                source,
                digest,
                HeaderMap::new(),
                on_progress,
            )
            .await?;
        match response.status() {
            StatusCode::CREATED => {
                check_digest_answer(&response, digest, &format!("{repository}@{digest} (blob)"))?;
                Ok(None)
            }
            StatusCode::ACCEPTED => {
                self.single_post_refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(Some(self.upload_session(&response, repository)?))
            }
            _ => Err(push_failure(response, repository, &format!("blob {digest}"), source.size).await),
        }
    }

    /// Uploads a small in-memory blob (POST, then one PUT with the bytes), e.g. a probe.
    pub async fn push_small_blob(
        &self,
        repository: &Repository,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = super::sha256_digest(bytes);
        let upload = self.start_upload(repository).await?;
        let url = upload.commit_url(&digest);
        let what = format!("blob {digest}");
        // One attempt: the upload session is spent by a failed PUT.
        let response = self
            .put_bytes(repository, url, "application/octet-stream", bytes, 1, &what)
            .await?;
        check_digest_answer(&response, &digest, &format!("{repository}@{digest} (blob)"))?;
        Ok(digest)
    }

    /// PUTs in-memory `bytes` to `url` and expects `201 Created`.
    async fn put_bytes(
        &self,
        repository: &Repository,
        url: String,
        content_type: &str,
        bytes: &[u8],
        attempts: u32,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header_value(content_type)?);
        let body = || reqwest::Body::from(bytes.to_vec());
        let response = self
            .send_authorized(Call {
                method: Method::PUT,
                url,
                repository,
                headers,
                action: PUSH_ACTION,
                body: Some(&body as BodyFactory<'_>),
                also_pull_from: None,
                attempts,
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(push_failure(response, repository, what, bytes.len() as u64).await);
        }
        Ok(response)
    }

    /// Puts a manifest or index under `reference` (its digest or a tag) with its exact bytes and
    /// media type, and checks that the registry computed the same digest.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let url = self.api_url(repository, &format!("manifests/{reference}"));
        let what = format!("manifest {digest} (as {reference})");
        let response = self
            .put_bytes(repository, url, media_type, bytes, self.options.attempts, &what)
            .await?;
        check_digest_answer(&response, digest, &format!("{repository}:{reference} (manifest)"))
    }

    /// Deletes blob `digest` from `repository`; a registry with deletes disabled answers 405,
    /// which is [`DeleteOutcome::NotAllowed`], not an error.
    pub async fn delete_blob(
        &self,
        repository: &Repository,
        digest: &str,
    ) -> Result<DeleteOutcome, RegistryError> {
        let response = self.blob_request(Method::DELETE, repository, digest).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NOT_FOUND => Ok(DeleteOutcome::Deleted),
            StatusCode::METHOD_NOT_ALLOWED => Ok(DeleteOutcome::NotAllowed),
            _ => Err(push_failure(response, repository, &format!("a delete of blob {digest}"), 0).await),
        }
    }

    /// `HEAD` or `DELETE /v2/<repository>/blobs/<digest>`.
    async fn blob_request(
        &self,
        method: Method,
        repository: &Repository,
        digest: &str,
    ) -> Result<Response, RegistryError> {
        self.request(
            method,
            repository,
            &format!("blobs/{digest}"),
            HeaderMap::new(),
            PUSH_ACTION,
        )
        .await
    }

    /// An upload `Location` as the registry wrote it, made absolute (a path is on the registry's
    /// own origin).
    pub(crate) fn absolute_location(&self, location: &str, repository: &Repository) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base_url(&repository.registry))
        } else {
            location.to_owned()
        }
    }

    /// The upload session of a `202 Accepted` answer: its `Location`, made absolute.
    fn upload_session(
        &self,
        response: &Response,
        repository: &Repository,
    ) -> Result<BlobUpload, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| RegistryError::Rejected {
                registry: repository.registry.clone(),
                repository: repository.repository.clone(),
                what: "an upload".to_owned(),
                status: response.status().as_u16(),
                detail: "the answer has no Location header".to_owned(),
            })?;
        let location = self.absolute_location(location, repository);
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        Ok(BlobUpload { location, min_chunk })
    }
}

/// Checks a `Docker-Content-Digest` answer (when given) against the digest sent.
pub(crate) fn check_digest_answer(
    response: &Response,
    digest: &str,
    what: &str,
) -> Result<(), RegistryError> {
    match response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok())
    {
        Some(answered) if answered != digest => Err(RegistryError::DigestMismatch {
            what: what.to_owned(),
            expected: digest.to_owned(),
            actual: answered.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Turns a failed push answer into the error that says what to do.
pub(crate) async fn push_failure(
    response: Response,
    repository: &Repository,
    what: &str,
    size: u64,
) -> RegistryError {
    let status = response.status();
    let url = response.url().to_string();
    let body = super::error_body(response).await;
    classify_push_failure(status, &url, &body, repository, what, size)
}

/// [`push_failure`] on a status and body already read.
fn classify_push_failure(
    status: StatusCode,
    url: &str,
    body: &str,
    repository: &Repository,
    what: &str,
    size: u64,
) -> RegistryError {
    let detail = error_detail(body);
    let registry = repository.registry.clone();
    let lower = body.to_ascii_lowercase();
    let out_of_space = status == StatusCode::INSUFFICIENT_STORAGE
        || [
            "no space left",
            "insufficient storage",
            "quota exceeded",
            "disk full",
            "\"err\":28",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
    if out_of_space {
        return RegistryError::OutOfSpace {
            registry,
            status: status.as_u16(),
            detail,
        };
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => RegistryError::PushNotAllowed {
            registry,
            repository: repository.repository.clone(),
            detail,
        },
        StatusCode::NOT_FOUND if lower.contains("name_unknown") || what == "an upload" => {
            RegistryError::RepositoryUnknown {
                registry,
                repository: repository.repository.clone(),
                detail,
            }
        }
        StatusCode::PAYLOAD_TOO_LARGE => RegistryError::TooLarge {
            registry,
            what: what.to_owned(),
            size,
        },
        status if status.is_server_error() => RegistryError::ServerError {
            url: url.to_owned(),
            status: status.as_u16(),
            detail,
        },
        StatusCode::BAD_REQUEST => RegistryError::Rejected {
            registry,
            repository: repository.repository.clone(),
            what: what.to_owned(),
            status: status.as_u16(),
            detail,
        },
        status => RegistryError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        },
    }
}

/// `CODE: message (detail)` of the first error of a distribution-spec error body, or the start of
/// the body as it is.
fn error_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(errors) => errors
            .errors
            .iter()
            .map(|entry| {
                let detail = match &entry.detail {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(text) => format!(" ({text})"),
                    other => format!(" ({other})"),
                };
                format!("{}: {}{detail}", entry.code, entry.message)
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body.trim().chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository() -> Repository {
        Repository {
            registry: "registry.site:5000".into(),
            repository: "mirror/library/db".into(),
        }
    }

    fn classify(status: u16, body: &str, what: &str) -> RegistryError {
        classify_push_failure(
            StatusCode::from_u16(status).expect("status"),
            "https://registry.site:5000/v2/x",
            body,
            &repository(),
            what,
            42,
        )
    }

    #[test]
    fn push_failures_say_what_to_do() {
        let read_only = classify(
            405,
            r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#,
            "an upload",
        );
        assert!(
            matches!(read_only, RegistryError::PushNotAllowed { .. }),
            "{read_only}"
        );
        assert!(read_only.to_string().contains("read-only"), "{read_only}");

        let full = classify(
            500,
            r#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":{"Op":"write","Path":"/var/lib/registry/x","Err":28}}]}"#,
            "blob sha256:x",
        );
        assert!(matches!(full, RegistryError::OutOfSpace { .. }), "{full}");
        assert!(full.to_string().contains("free space"), "{full}");
        assert!(matches!(
            classify(507, "", "blob"),
            RegistryError::OutOfSpace { .. }
        ));

        let large = classify(413, "<html>Request Entity Too Large</html>", "blob sha256:x");
        assert!(large.to_string().contains("client_max_body_size"), "{large}");

        let unknown = classify(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            "an upload",
        );
        assert!(
            matches!(unknown, RegistryError::RepositoryUnknown { .. }),
            "{unknown}"
        );
        assert!(unknown.to_string().contains("create it"), "{unknown}");

        let server = classify(503, "busy", "blob");
        assert!(server.to_string().contains("re-run"), "{server}");

        let rejected = classify(
            400,
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:00"}]}"#,
            "manifest",
        );
        let text = rejected.to_string();
        assert!(
            text.contains("MANIFEST_BLOB_UNKNOWN") && text.contains("sha256:00"),
            "{text}"
        );
    }

    /// A registry that demands Bearer tokens, on a raw socket: records each token request's
    /// query and answers every authorized call with `answer`.
    async fn token_registry(answer: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("address").to_string();
        let queries: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (recorded, realm) = (queries.clone(), format!("http://{host}/token"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let target = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let response = if let Some(query) = target.strip_prefix("/token?") {
                    if let Ok(mut queries) = recorded.lock() {
                        queries.push(query.to_owned());
                    }
                    let body = r#"{"token":"secret-token"}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else if request.contains("Bearer secret-token") {
                    format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (host, queries)
    }

    fn client_for(host: &str) -> RegistryClient {
        RegistryClient::new(super::super::RegistryOptions {
            insecure_registries: vec![host.to_owned()],
            attempts: 1,
            ..Default::default()
        })
        .expect("client")
    }

    #[tokio::test]
    async fn bearer_tokens_are_asked_for_push_and_pull_and_a_mount_also_reads_its_source() {
        let (host, queries) = token_registry("404 Not Found").await;
        let client = client_for(&host);
        let repository = Repository {
            registry: host.clone(),
            repository: "mirror/team/app".into(),
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(!client.blob_exists(&repository, &digest).await.expect("HEAD"));
        let recorded = queries.lock().expect("queries").clone();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert!(
            recorded[0].contains("scope=repository%3Amirror%2Fteam%2Fapp%3Apush%2Cpull"),
            "{recorded:?}"
        );
        assert!(recorded[0].contains("service=test"), "{recorded:?}");

        let (host, queries) = token_registry("201 Created").await;
        let client = client_for(&host);
        let repository = Repository {
            registry: host.clone(),
            repository: "mirror/library/db".into(),
        };
        let outcome = client
            .mount_blob(&repository, &digest, "mirror/team/app")
            .await
            .expect("mount");
        assert!(matches!(outcome, MountOutcome::Mounted));
        let recorded = queries.lock().expect("queries").clone();
        assert!(
            recorded[0].contains("scope=repository%3Amirror%2Flibrary%2Fdb%3Apush%2Cpull")
                && recorded[0].contains("scope=repository%3Amirror%2Fteam%2Fapp%3Apull"),
            "{recorded:?}"
        );
    }

    /// SIMULATED (a raw socket): a registry that takes the one-request upload (`POST ?digest=`
    /// with the bytes: 201) when `takes_single_post`, else answers it by opening a session (202),
    /// as the distribution registry 2.8 the other tests run does. No registry packaged here takes
    /// the form, so its path is shown with this stand-in. Records each request's line; reads
    /// each body by its `Content-Length`.
    async fn registry_stand_in(takes_single_post: bool) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("address").to_string();
        let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let recorded = lines.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut socket = tokio::io::BufReader::new(socket);
                    loop {
                        let mut line = String::new();
                        if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            if socket.read_line(&mut header).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if header.trim().is_empty() {
                                break;
                            }
                            if let Some((name, value)) = header.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; length];
                        if socket.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let line = line.trim().to_owned();
                        let answer = if line.starts_with("POST")
                            && !(takes_single_post && line.contains("?digest="))
                        {
                            "202 Accepted\r\nLocation: /v2/mirror/app/blobs/uploads/session".to_owned()
                        } else {
                            let digest = line.split("digest=").nth(1).unwrap_or_default();
                            let digest = digest
                                .split_whitespace()
                                .next()
                                .unwrap_or_default()
                                .replace("%3A", ":");
                            format!("201 Created\r\nDocker-Content-Digest: {digest}")
                        };
                        if let Ok(mut lines) = recorded.lock() {
                            lines.push(format!("{line} ({length} bytes)"));
                        }
                        let response = format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\n\r\n");
                        if socket.get_mut().write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (host, lines)
    }

    /// Pushes two small blobs to the stand-in; returns each request's method, whether it named
    /// the digest, and its body's size.
    async fn push_two_small_blobs(takes_single_post: bool) -> Vec<String> {
        let (host, lines) = registry_stand_in(takes_single_post).await;
        let client = client_for(&host);
        let repository = Repository {
            registry: host.clone(),
            repository: "mirror/app".into(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blobs");
        std::fs::write(&path, b"first blobsecond blob").expect("write");
        let file: Arc<dyn crate::blob_io::RandomRead> = Arc::new(std::fs::File::open(&path).expect("open"));
        for (offset, size) in [(0, 10), (10, 11)] {
            let source = FileRange {
                file: file.clone(),
                offset,
                size,
            };
            let bytes =
                std::fs::read(&path).expect("read")[offset as usize..(offset + size) as usize].to_vec();
            let digest = super::super::sha256_digest(&bytes);
            let outcome = client
                .push_blob(&repository, &digest, &source, None, Arc::new(|_| {}))
                .await
                .expect("push a blob");
            assert!(matches!(outcome, BlobPushOutcome::Uploaded));
        }
        let lines = lines.lock().expect("lines").clone();
        lines
            .iter()
            .map(|line| {
                let (method, rest) = line.split_once(' ').unwrap_or_default();
                let query = if rest.contains("?digest=") { "?digest" } else { "" };
                let bytes = line.rsplit_once('(').map(|(_, bytes)| bytes).unwrap_or_default();
                format!("{method}{query} ({bytes}")
            })
            .collect()
    }

    #[tokio::test]
    async fn a_registry_that_answers_the_one_request_upload_with_a_session_gets_post_and_put() {
        let shapes = push_two_small_blobs(false).await;
        // The first blob: the one request, refused by a session, then its bytes by PUT; the
        // second: no second try of the form.
        assert_eq!(
            shapes,
            [
                "POST?digest (10 bytes)",
                "PUT?digest (10 bytes)",
                "POST (0 bytes)",
                "PUT?digest (11 bytes)"
            ]
        );
    }

    #[tokio::test]
    async fn a_registry_that_takes_the_one_request_upload_gets_one_request_per_small_blob() {
        let shapes = push_two_small_blobs(true).await;
        assert_eq!(shapes, ["POST?digest (10 bytes)", "POST?digest (11 bytes)"]);
    }
}
