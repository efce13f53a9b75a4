//! What can go wrong talking to a registry, told apart so that each has its own advice.

/// A registry operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401: no or wrong credentials.
    #[error("{registry}: authentication failed (401) for {repository}{}", if *with_credentials { "; the credentials given were refused" } else { "; log in (docker login, or --registry-username/--registry-password-stdin) or check the Docker config" })]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository asked for.
        repository: String,
        /// Whether credentials were sent.
        with_credentials: bool,
    },
    /// 403: authenticated, but not allowed.
    #[error(
        "{registry}: access to {repository} is forbidden (403); the account lacks {action} permission on it"
    )]
    Forbidden {
        /// The registry host.
        registry: String,
        /// The repository asked for.
        repository: String,
        /// `pull` or `push`.
        action: &'static str,
    },
    /// 404 for a manifest: the tag or digest does not exist.
    #[error("{reference}: not found in the registry (does the tag exist?)")]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
    },
    /// 404 for a blob.
    #[error("{registry}/{repository}: blob {digest} not found")]
    BlobNotFound {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob's digest.
        digest: String,
    },
    /// The content did not hash to the digest it was asked for.
    #[error(
        "{what}: the registry sent content with digest {actual}, expected {expected}; the registry or a proxy altered it"
    )]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The content had another size than its descriptor says.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was fetched.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// An obsolete Docker schema 1 manifest.
    #[error(
        "{reference}: is a Docker schema 1 manifest ({media_type}), which is obsolete and cannot be pinned by digest; rebuild or re-push the image with a current tool"
    )]
    Schema1 {
        /// The reference.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest or index that does not parse or breaks the rules.
    #[error("{reference}: invalid manifest: {reason}")]
    InvalidManifest {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other unexpected HTTP status.
    #[error("{url}: unexpected HTTP status {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Connection, TLS or protocol failure, after retries.
    #[error("{url}: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The underlying error (its chain says whether DNS, connect or TLS failed).
        #[source]
        source: reqwest::Error,
    },
    /// A token server answered without a token.
    #[error("{realm}: the token server's answer has no token")]
    TokenResponse {
        /// The token endpoint.
        realm: String,
    },
    /// 405 on a push: the registry (or this repository) takes no writes.
    #[error(
        "{registry}: refuses pushes to {repository} (HTTP 405{}): it is read-only (maintenance mode, a pull-through cache or a replica); push to a writable registry or ask its operators to enable writes",
        detail_suffix(detail)
    )]
    PushNotAllowed {
        /// The registry host.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// The registry's error code and message, if any.
        detail: String,
    },
    /// 404 on an upload: the repository (or its namespace, e.g. a Harbor project) does not exist
    /// and the registry does not create it on push.
    #[error(
        "{registry}: repository {repository} does not exist and the registry does not create it on push{}; create it (or its project) first, or choose another --registry prefix",
        detail_suffix(detail)
    )]
    RepositoryUnknown {
        /// The registry host.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// The registry's error code and message, if any.
        detail: String,
    },
    /// 413: the registry or a proxy in front of it limits request bodies.
    #[error(
        "{registry}: {what} ({size} bytes) is too large for the registry or a proxy in front of it (HTTP 413); push in smaller chunks (--chunk-size, e.g. 512K) or raise its request body limit (e.g. nginx client_max_body_size 0)"
    )]
    TooLarge {
        /// The registry host.
        registry: String,
        /// What was sent.
        what: String,
        /// Its size.
        size: u64,
    },
    /// The registry's storage is full.
    #[error(
        "{registry}: the registry's storage is full (HTTP {status}{}); free space or grow its storage, then re-run: what was pushed is kept and only the rest is sent",
        detail_suffix(detail)
    )]
    OutOfSpace {
        /// The registry host.
        registry: String,
        /// The status it answered.
        status: u16,
        /// The registry's error code and message, if any.
        detail: String,
    },
    /// 5xx after every retry.
    #[error(
        "{url}: the registry failed with HTTP {status} after retries{}; check the registry's logs and storage, then re-run (what was pushed is kept)",
        detail_suffix(detail)
    )]
    ServerError {
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
        /// The registry's error code and message, if any.
        detail: String,
    },
    /// 400 on a push: the registry refused the content.
    #[error(
        "{registry}/{repository}: the registry refused {what} (HTTP {status}{})",
        detail_suffix(detail)
    )]
    Rejected {
        /// The registry host.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// What was sent.
        what: String,
        /// The status.
        status: u16,
        /// The registry's error code and message (e.g. `MANIFEST_BLOB_UNKNOWN`).
        detail: String,
    },
    /// A token realm or upload location outside the registry's own origin asked for
    /// credentials, which are never sent there.
    #[error(
        "{registry}: {target} asked for credentials, but it is not the registry's own host ({reason}); \
         coder-install sends credentials only to the registry itself (over HTTPS unless the host is an \
         --insecure-registry). Check the registry's token realm and upload URLs, or pull anonymously"
    )]
    CredentialsWithheld {
        /// The registry host.
        registry: String,
        /// The URL that asked.
        target: String,
        /// Why it does not count as the registry.
        reason: String,
    },
    /// Local configuration: a CA file, a Docker config.
    #[error("{what}: {reason}")]
    Config {
        /// Which setting.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Local I/O while streaming content.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// `: <detail>` or nothing.
fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}
