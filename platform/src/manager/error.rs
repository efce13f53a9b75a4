//! The API's errors and their JSON form, `{"error": {"code", "message", "detail"}}`.
//!
//! Every failure a handler returns is an [`ApiError`]; its status and stable `code` are chosen
//! here, in one place. Internal causes (SQL errors, Kubernetes errors) are logged, never sent:
//! clients get a generic message.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code, e.g. `invalid_name`.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// Which field, or how to fix it.
        detail: String,
    },
    /// The request body is larger than the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request body is not declared as JSON.
    #[error("expected a JSON body")]
    UnsupportedMediaType,
    /// No valid credentials were presented.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's role may not use this endpoint (never said about a particular object).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The object does not exist, or is not the caller's to see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No route for this path.
    #[error("no such endpoint")]
    NoRoute,
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with existing state (a duplicate email or workspace name, ...).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code, e.g. `email_taken`.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// Too many attempts; try again after `retry_after_secs`.
    #[error("too many attempts")]
    RateLimited {
        /// Seconds until an attempt is allowed again.
        retry_after_secs: u64,
    },
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// The database schema is older than this manager.
    #[error("database migrations are pending")]
    MigrationsPending,
    /// The Kubernetes API cannot be reached or refused a request.
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] kube::Error),
    /// The manager runs without a Kubernetes client.
    #[error("workspace orchestration is not configured")]
    KubernetesNotConfigured,
    /// The envproxy routes are disabled: the manager was started without its token file.
    #[error("the envproxy token is not configured")]
    EnvproxyNotConfigured,
    /// The install is air-gapped and no license in force allows it: the platform is read-only
    /// until an admin uploads one.
    #[error("{message}")]
    AirgapLicenseRequired {
        /// What is wrong and what to do.
        message: String,
        /// The license problem's stable kind (`no_license`, `expired`, `airgap_feature_missing`, ...).
        detail: String,
    },
    /// Anything else: a bug or an unexpected server-side failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a code, a message and a detail.
    pub fn bad_request(code: &'static str, message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::AirgapLicenseRequired { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable(_)
            | Self::MigrationsPending
            | Self::KubernetesNotConfigured
            | Self::EnvproxyNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Kubernetes(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::AirgapLicenseRequired { .. } => "airgap_license_required",
            Self::NotFound(_) | Self::NoRoute => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::MigrationsPending => "migrations_pending",
            Self::Kubernetes(_) => "kubernetes_error",
            Self::KubernetesNotConfigured => "kubernetes_unavailable",
            Self::EnvproxyNotConfigured => "envproxy_not_configured",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The message and the detail that the client sees (nothing internal).
    fn public_text(&self) -> (String, String) {
        match self {
            Self::BadRequest { message, detail, .. } | Self::AirgapLicenseRequired { message, detail } => {
                (message.clone(), detail.clone())
            }
            Self::Conflict { message, .. } => (message.clone(), String::new()),
            Self::RateLimited { retry_after_secs } => (
                "too many attempts".to_owned(),
                format!("try again in {retry_after_secs} s"),
            ),
            Self::DatabaseUnavailable(_) => (
                "the database is unavailable".to_owned(),
                "the manager cannot reach PostgreSQL; retry later (GET /readyz reports recovery)".to_owned(),
            ),
            Self::MigrationsPending => (
                self.to_string(),
                "the database schema is behind this manager; run `coder-service migrate`".to_owned(),
            ),
            Self::Kubernetes(_) => (
                "the Kubernetes API refused or failed the request".to_owned(),
                "see the manager's log for the request id".to_owned(),
            ),
            Self::Internal(_) => (
                "internal error".to_owned(),
                "see the manager's log for the request id".to_owned(),
            ),
            Self::PayloadTooLarge => (
                self.to_string(),
                "the body is larger than the configured limit".to_owned(),
            ),
            Self::UnsupportedMediaType => (
                self.to_string(),
                "send `Content-Type: application/json`".to_owned(),
            ),
            Self::Unauthenticated(_) => (
                self.to_string(),
                "send a `Session-Token` header or `Authorization: Bearer <token>`".to_owned(),
            ),
            other => (other.to_string(), String::new()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::DatabaseUnavailable(error),
            // The server is shutting down or restarting (admin_shutdown, crash_shutdown,
            // cannot_connect_now): the same for the client as being unreachable.
            sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("57P")) => {
                Self::DatabaseUnavailable(error)
            }
            _ => Self::Internal(format!("database: {error}")),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(bytes) if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            JsonRejection::JsonSyntaxError(error) => {
                Self::bad_request("malformed_json", "the body is not valid JSON", error.body_text())
            }
            JsonRejection::JsonDataError(error) => Self::bad_request(
                "invalid_body",
                "the body does not match the expected fields",
                error.body_text(),
            ),
            other => Self::bad_request("invalid_body", "the body could not be read", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
        }
        let (message, detail) = self.public_text();
        let body = json!({ "error": { "code": self.code(), "message": message, "detail": detail } });
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
