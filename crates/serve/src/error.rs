//! Why the registry could not start, and the distribution API's error answers.

use http::StatusCode;

/// Why `serve` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bundle cannot be served (damaged, a delta bundle, changed since it was verified).
    #[error("{0}")]
    Bundle(String),
    /// The bundle could not be read.
    #[error(transparent)]
    Read(#[from] coder_bundle::BundleError),
    /// A configuration file (certificate, key, htpasswd) is unusable.
    #[error("{what}: {reason}")]
    Config {
        /// Which file or option.
        what: String,
        /// What is wrong with it, and what to do.
        reason: String,
    },
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}; pick another --listen address or stop what uses it")]
    Listen {
        /// The address.
        addr: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// An error answer of the distribution API: its code, HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// 404: the blob is not in the repository.
    BlobUnknown,
    /// 404: the manifest is not in the repository.
    ManifestUnknown,
    /// 404: the repository is not known.
    NameUnknown,
    /// 400: the repository name is outside the grammar.
    NameInvalid,
    /// 400: the digest is outside the grammar.
    DigestInvalid,
    /// 400: the manifest reference is neither a tag nor a digest.
    TagInvalid,
    /// 401: credentials are needed or were refused.
    Unauthorized,
    /// 429: the client failed to log in too often.
    TooManyRequests,
    /// 405: the registry is read-only.
    Unsupported,
    /// 400: a pagination parameter is not a number.
    PaginationNumberInvalid,
}

impl ApiError {
    /// The code, status and message the distribution registry answers with.
    pub(crate) fn parts(self) -> (&'static str, StatusCode, &'static str) {
        match self {
            Self::BlobUnknown => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND, "blob unknown to registry"),
            Self::ManifestUnknown => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND, "manifest unknown"),
            Self::NameUnknown => (
                "NAME_UNKNOWN",
                StatusCode::NOT_FOUND,
                "repository name not known to registry",
            ),
            Self::NameInvalid => ("NAME_INVALID", StatusCode::BAD_REQUEST, "invalid repository name"),
            Self::DigestInvalid => (
                "DIGEST_INVALID",
                StatusCode::BAD_REQUEST,
                "provided digest did not match uploaded content",
            ),
            Self::TagInvalid => (
                "TAG_INVALID",
                StatusCode::BAD_REQUEST,
                "manifest tag did not match URI",
            ),
            Self::Unauthorized => (
                "UNAUTHORIZED",
                StatusCode::UNAUTHORIZED,
                "authentication required",
            ),
            Self::TooManyRequests => (
                "TOOMANYREQUESTS",
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
            ),
            Self::Unsupported => (
                "UNSUPPORTED",
                StatusCode::METHOD_NOT_ALLOWED,
                "The operation is unsupported: this registry is a read-only bundle (coder-install serve)",
            ),
            Self::PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                StatusCode::BAD_REQUEST,
                "invalid number of results requested",
            ),
        }
    }

    /// The JSON error body, `{"errors":[{"code","message","detail"}]}`.
    pub(crate) fn body(self, detail: &str) -> String {
        let (code, _, message) = self.parts();
        serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": detail }] }).to_string()
    }
}
