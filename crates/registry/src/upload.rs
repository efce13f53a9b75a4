//! The push side of the registry client: blob existence checks, cross-repository mounts,
//! monolithic uploads streamed from a byte range of a local file, manifest puts that keep the
//! exact bytes (and so the digest), and blob deletion for the writability probe.
//!
//! Every call authenticates with the `push,pull` scope ([`PUSH_ACTION`]), so one token (or one
//! set of Basic credentials) serves the whole push of a repository.

use std::sync::{Arc, OnceLock};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};

use super::{
    ACCEPTED_MANIFEST_MEDIA_TYPES, BodyFactory, Call, RegistryClient, RegistryError, Repository, header_value,
};

/// The authentication action of every push call (the Bearer scope `repository:<path>:push,pull`).
pub const PUSH_ACTION: &str = "push,pull";

/// How much of a blob is read from the file at a time (a piece).
const UPLOAD_CHUNK: usize = 1 << 20;

/// Pieces read ahead of the one being sent: with the one being read and the one the
/// connection holds, an upload holds `READ_AHEAD + 2` pieces (3 MiB), whatever the blob's size.
const READ_AHEAD: usize = 1;

/// A byte range of a local file: where a blob lies inside the bundle.
#[derive(Clone)]
pub struct FileRange {
    /// The file (or a split bundle's parts), shared by every upload (positioned reads need no
    /// seek).
    pub file: Arc<dyn crate::blob_io::RandomRead>,
    /// Where the blob's bytes start.
    pub offset: u64,
    /// How many bytes it has.
    pub size: u64,
}

/// An upload session the registry opened (`202 Accepted` with a `Location`).
#[derive(Debug, Clone)]
pub struct BlobUpload {
    location: String,
}

impl BlobUpload {
    /// The URL that completes the upload as blob `digest` (`PUT <location>?digest=`).
    fn commit_url(&self, digest: &str) -> String {
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
    /// second hash on this side would only spend the CPU the registry needs. When the registry
    /// refuses the upload, the range is hashed here, to tell a damaged bundle (say so, and to
    /// run `verify`) from a registry's own refusal.
    pub async fn finish_upload(
        &self,
        repository: &Repository,
        upload: BlobUpload,
        digest: &str,
        source: &FileRange,
        on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(), RegistryError> {
        let url = upload.commit_url(digest);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, header_value(&source.size.to_string())?);
        let read_failure: Arc<OnceLock<String>> = Arc::default();
        let body = {
            let read_failure = read_failure.clone();
            let source = source.clone();
            move || file_range_body(&source, on_progress.clone(), read_failure.clone())
        };
        let result = self
            .send_authorized(Call {
                method: Method::PUT,
                url,
                repository,
                headers,
                action: PUSH_ACTION,
                body: Some(&body as BodyFactory<'_>),
                // The session is spent by a failed PUT; the caller retries from a new one.
                attempts: 1,
                also_pull_from: None,
            })
            .await;
        if let Some(problem) = read_failure.get() {
            return Err(bundle_damaged(digest, problem.clone()));
        }
        let response = result?;
        if response.status() != StatusCode::CREATED {
            let failure = push_failure(response, repository, &format!("blob {digest}"), source.size).await;
            return Err(blame_a_damaged_bundle(source, digest, failure).await);
        }
        check_digest_answer(&response, digest, &format!("{repository}@{digest} (blob)"))
    }

    /// Puts blob `digest` (the bytes of `source`) into `repository`: mounted from `mount_from`
    /// when given and the registry allows it, uploaded otherwise. Connection failures and 5xx
    /// answers start a new upload, up to the client's attempts.
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
            let upload = match mount_from {
                Some(from) => match self.mount_blob(repository, digest, from).await? {
                    MountOutcome::Mounted => return Ok(BlobPushOutcome::Mounted),
                    MountOutcome::NotMounted(upload) => upload,
                },
                None => self.start_upload(repository).await?,
            };
            match self
                .finish_upload(repository, upload, digest, source, on_progress.clone())
                .await
            {
                Ok(()) => return Ok(BlobPushOutcome::Uploaded),
                Err(error @ (RegistryError::Transport { .. } | RegistryError::ServerError { .. }))
                    if attempt < self.options.attempts =>
                {
                    let delay = std::time::Duration::from_millis(250 * 4u64.pow(attempt - 1));
                    self.report_retry(
                        &format!("upload of {digest}"),
                        attempt,
                        &coder_report::error_chain(&error),
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
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base_url(&repository.registry))
        } else {
            location.to_owned()
        };
        Ok(BlobUpload { location })
    }
}

/// A request body that streams `source` in [`UPLOAD_CHUNK`] pieces (see [`file_range_stream`]).
fn file_range_body(
    source: &FileRange,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    read_failure: Arc<OnceLock<String>>,
) -> reqwest::Body {
    reqwest::Body::wrap_stream(file_range_stream(source, on_progress, read_failure))
}

/// The bytes of `source` in [`UPLOAD_CHUNK`] pieces. If the file cannot be read, the stream
/// ends with an error (so the registry never commits a part) and `read_failure` says why.
///
/// A blocking task reads the pieces in order (positioned reads of the bundle, off the async
/// threads) one piece ahead of the sending: while the connection sends a piece, the next is
/// read. At most [`READ_AHEAD`] + 2 pieces are held per upload.
fn file_range_stream(
    source: &FileRange,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    read_failure: Arc<OnceLock<String>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let (pieces, received) = tokio::sync::mpsc::channel(READ_AHEAD);
    let source = source.clone();
    tokio::task::spawn_blocking(move || read_pieces(&source, &pieces, &read_failure));
    on_progress(0);
    futures_util::stream::unfold((received, 0u64), move |(mut received, sent)| {
        let on_progress = on_progress.clone();
        async move {
            let piece = received.recv().await?;
            let sent = sent + piece.as_ref().map_or(0, |piece| piece.len() as u64);
            if piece.is_ok() {
                on_progress(sent);
            }
            Some((piece, (received, sent)))
        }
    })
}

/// The producer of [`file_range_stream`]: reads `source` piece by piece and hands each on.
/// Stops early when the body is dropped (the request failed).
fn read_pieces(
    source: &FileRange,
    pieces: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    read_failure: &OnceLock<String>,
) {
    let mut done = 0u64;
    // Buffers come back here once the connection has sent their piece, and are read into again:
    // no allocation or zeroing per piece.
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    while done < source.size {
        let want = UPLOAD_CHUNK.min((source.size - done) as usize);
        let at = source.offset + done;
        let mut buffer = recycled.try_recv().unwrap_or_else(|_| vec![0u8; UPLOAD_CHUNK]);
        buffer.resize(want, 0);
        if let Err(error) = source.file.read_range(&mut buffer, at) {
            let _ = read_failure.set(format!("the bundle could not be read at byte {at}: {error}"));
            let _ = pieces.blocking_send(Err(error));
            return;
        }
        done += want as u64;
        let piece = bytes::Bytes::from_owner(RecycledPiece {
            buffer,
            recycle: recycle.clone(),
        });
        if pieces.blocking_send(Ok(piece)).is_err() {
            return;
        }
    }
}

/// The registry refused an upload of `source` as `digest`: if the bytes in the bundle do not
/// hash to `digest`, the bundle is damaged, and that is the error; otherwise the registry's
/// `failure` is.
async fn blame_a_damaged_bundle(source: &FileRange, digest: &str, failure: RegistryError) -> RegistryError {
    if !matches!(
        failure,
        RegistryError::Rejected { .. } | RegistryError::Status { .. }
    ) {
        return failure;
    }
    let range = source.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        crate::blob_io::hash_range(range.file.as_ref(), range.offset, range.size, &mut |_| {})
    })
    .await;
    match hashed {
        Ok(Ok(hasher)) => {
            let actual = crate::blob_io::digest_of(hasher);
            if actual == digest {
                failure
            } else {
                bundle_damaged(digest, format!("its bytes hash to {actual}, not {digest}"))
            }
        }
        Ok(Err(error)) => bundle_damaged(digest, format!("the bundle could not be read: {error}")),
        Err(_) => failure,
    }
}

/// Blob `digest` could not be pushed because of the bundle (`problem`).
fn bundle_damaged(digest: &str, problem: String) -> RegistryError {
    RegistryError::Io {
        context: format!("reading blob {digest} from the bundle"),
        source: std::io::Error::other(format!(
            "{problem}: the bundle is damaged; run `coder-install verify` and use an intact copy"
        )),
    }
}

/// A piece of an upload over a buffer that goes back to its reader when the piece is dropped.
struct RecycledPiece {
    buffer: Vec<u8>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for RecycledPiece {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for RecycledPiece {
    fn drop(&mut self) {
        // The reader may be gone (the upload is over): then the buffer is simply freed.
        let _ = self.recycle.send(std::mem::take(&mut self.buffer));
    }
}

/// Checks a `Docker-Content-Digest` answer (when given) against the digest sent.
fn check_digest_answer(response: &Response, digest: &str, what: &str) -> Result<(), RegistryError> {
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
pub(super) async fn push_failure(
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

    /// A file holding `content` between a head and a tail, and the range of `content` in it.
    fn range_of(dir: &std::path::Path, content: &[u8]) -> FileRange {
        let path = dir.join("bundle");
        std::fs::write(&path, [b"head".as_slice(), content, b"tail"].concat()).expect("write");
        FileRange {
            file: Arc::new(std::fs::File::open(&path).expect("open")),
            offset: 4,
            size: content.len() as u64,
        }
    }

    #[tokio::test]
    async fn a_file_range_body_streams_the_range_in_pieces() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..(3 * UPLOAD_CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let range = range_of(dir.path(), &content);
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = {
            let seen = seen.clone();
            Arc::new(move |done: u64| seen.store(done, std::sync::atomic::Ordering::Relaxed))
        };
        let read_failure: Arc<OnceLock<String>> = Arc::default();
        let mut stream = std::pin::pin!(file_range_stream(&range, progress, read_failure.clone()));
        let mut streamed = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            assert!(chunk.len() <= UPLOAD_CHUNK);
            streamed.extend_from_slice(&chunk);
        }
        assert_eq!(streamed, content);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::Relaxed),
            content.len() as u64
        );
        assert!(read_failure.get().is_none());

        // A range past the end of the file cannot be read: the stream ends with an error.
        let beyond = FileRange {
            size: range.size + 10,
            ..range
        };
        let mut stream = std::pin::pin!(file_range_stream(&beyond, Arc::new(|_| {}), read_failure.clone()));
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            failed |= chunk.is_err();
        }
        assert!(failed, "an unreadable range must fail the body");
        assert!(
            read_failure
                .get()
                .is_some_and(|problem| problem.contains("could not be read"))
        );
    }

    #[tokio::test]
    async fn a_refused_upload_is_blamed_on_the_bundle_only_when_its_bytes_do_not_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = b"the blob's bytes".to_vec();
        let range = range_of(dir.path(), &content);
        let digest = super::super::sha256_digest(&content);
        let refusal = || {
            classify(
                400,
                r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
                "blob",
            )
        };

        let intact = blame_a_damaged_bundle(&range, &digest, refusal())
            .await
            .to_string();
        assert!(
            intact.contains("DIGEST_INVALID") && !intact.contains("damaged"),
            "{intact}"
        );

        let other = format!("sha256:{}", "0".repeat(64));
        let damaged = blame_a_damaged_bundle(&range, &other, refusal())
            .await
            .to_string();
        assert!(
            damaged.contains(&format!("hash to {digest}, not {other}"))
                && damaged.contains("the bundle is damaged")
                && damaged.contains("coder-install verify"),
            "{damaged}"
        );

        // Refusals that are not about the bytes are not checked against the bundle.
        let not_allowed = classify(405, "", "blob");
        let kept = blame_a_damaged_bundle(&range, &other, not_allowed)
            .await
            .to_string();
        assert!(!kept.contains("damaged"), "{kept}");
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
}
