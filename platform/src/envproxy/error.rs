//! The envproxy's refusals: JSON `{"error": {"code", "message", "detail"}}` like the manager's,
//! or a small HTML page when the client asked for HTML (a browser opening the IDE).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::manager_client::ClientError;

/// Why a proxied request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No credentials, or the manager refused them (401).
    #[error("authentication required")]
    Unauthenticated,
    /// The workspace exists but is neither the caller's nor the caller an admin (403).
    #[error("this workspace belongs to another user")]
    Forbidden,
    /// A cookie-authenticated WebSocket from another origin (403).
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// No such workspace, or no such route (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The workspace is not running (503).
    #[error("the workspace is not running (state {state})")]
    NotRunning {
        /// Its state.
        state: String,
    },
    /// The user has too many connections open (429).
    #[error("too many connections")]
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// The proxy holds as many sessions as its connection limit or memory budget allows (503).
    #[error("the proxy is at capacity")]
    AtCapacity,
    /// The proxy is draining before shutdown (503).
    #[error("the proxy is shutting down")]
    Draining,
    /// The workspace's port refused or failed (502).
    #[error("the workspace did not answer: {0}")]
    Upstream(String),
    /// The manager could not be asked (502).
    #[error("the manager is unavailable: {0}")]
    Manager(#[source] ClientError),
    /// A request the proxy cannot pass on (400).
    #[error("{0}")]
    BadRequest(String),
    /// A workspace host reached without its workspace cookie, or with one that does not open
    /// (401).
    #[error("open this workspace from the dashboard")]
    WorkspaceSessionRequired,
    /// A workspace ticket that is forged, expired, for another workspace, or used already (401).
    #[error("the workspace link is invalid or has expired")]
    BadTicket,
    /// The dashboard's cookie on a workspace's content on the platform's origin (403).
    #[error("workspaces are served from their own origin, not the platform's")]
    WorkspaceOriginOnly,
    /// No `--workspace-base-url`: browsers cannot open workspaces (503).
    #[error("this installation has no workspace domain")]
    NoWorkspaceOrigins,
    /// The manager could not record a workspace ticket's use (its database is down, or it
    /// cannot be reached), so the ticket is refused: a ticket is never taken unrecorded (503).
    #[error("the workspace link cannot be checked now: {0}")]
    TicketCheckUnavailable(#[source] ClientError),
}

impl ProxyError {
    /// Maps a failed manager call about the user's token.
    pub fn from_user_lookup(error: ClientError) -> Self {
        if error.is_unauthenticated() {
            Self::Unauthenticated
        } else {
            Self::Manager(error)
        }
    }

    /// Maps a failed manager call about a workspace.
    pub fn from_workspace_lookup(error: ClientError) -> Self {
        if error.is_not_found() {
            Self::NotFound("workspace")
        } else {
            Self::Manager(error)
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CrossOrigin | Self::WorkspaceOriginOnly => StatusCode::FORBIDDEN,
            Self::WorkspaceSessionRequired | Self::BadTicket => StatusCode::UNAUTHORIZED,
            Self::NoWorkspaceOrigins | Self::TicketCheckUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NotRunning { .. } | Self::Draining | Self::AtCapacity => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyConnections { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream(_) | Self::Manager(_) => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::CrossOrigin => "cross_origin",
            Self::NotFound(_) => "not_found",
            Self::NotRunning { .. } => "workspace_not_running",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::Draining => "shutting_down",
            Self::AtCapacity => "proxy_at_capacity",
            Self::Upstream(_) => "workspace_unreachable",
            Self::Manager(_) => "manager_unavailable",
            Self::BadRequest(_) => "bad_request",
            Self::WorkspaceSessionRequired => "workspace_session_required",
            Self::BadTicket => "invalid_ticket",
            Self::WorkspaceOriginOnly => "workspace_origin_only",
            Self::NoWorkspaceOrigins => "workspace_domain_not_configured",
            Self::TicketCheckUnavailable(_) => "ticket_check_unavailable",
        }
    }

    /// What the client is told to do about it.
    fn detail(&self) -> String {
        match self {
            Self::Unauthenticated => {
                "send a `Session-Token` header, `Authorization: Bearer <token>`, or log in to the dashboard"
                    .to_owned()
            }
            Self::NotRunning { state } => {
                format!("state {state}: start the workspace from the dashboard, then retry")
            }
            Self::TooManyConnections { limit } => {
                format!("at most {limit} connections per user; close some and retry")
            }
            Self::Draining => "retry: another replica takes new connections".to_owned(),
            Self::AtCapacity => {
                "every connection or all the memory the proxy may use for them is taken; retry shortly"
                    .to_owned()
            }
            Self::Manager(_) | Self::Upstream(_) => "see the envproxy's log for the request id".to_owned(),
            Self::TicketCheckUnavailable(_) => {
                "retry in a moment with \"Open IDE\" on the dashboard; if it persists, the manager's \
                 database is unavailable (see the envproxy's log for the request id)"
                    .to_owned()
            }
            Self::WorkspaceSessionRequired | Self::BadTicket | Self::WorkspaceOriginOnly => {
                "use \"Open IDE\" on the dashboard: it opens the workspace on its own origin".to_owned()
            }
            Self::NoWorkspaceOrigins => {
                "an admin sets the workspace domain (chart value workspaceBaseURL, envproxy flag --workspace-base-url)"
                    .to_owned()
            }
            _ => String::new(),
        }
    }

    /// The response, as HTML when `Accept` prefers it, else JSON.
    pub fn respond(&self, request_headers: &HeaderMap) -> Response {
        let wants_html = request_headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        let mut response = if wants_html {
            let page = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
                 <body><h1>{title}</h1><p>{detail}</p><p><a href=\"/\">Back to the dashboard</a></p></body></html>",
                title = crate::html::escape(&self.to_string()),
                detail = crate::html::escape(&self.detail()),
            );
            (self.status(), Html(page)).into_response()
        } else {
            self.json_response()
        };
        if matches!(
            self,
            Self::NotRunning { .. } | Self::Draining | Self::AtCapacity | Self::TicketCheckUnavailable(_)
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        response
    }

    fn json_response(&self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "proxy request failed");
        }
        let message = match self {
            // The manager's and the upstream's internals stay in the log.
            Self::Manager(_) => "the manager is unavailable".to_owned(),
            Self::TicketCheckUnavailable(_) => "the workspace link cannot be checked now".to_owned(),
            Self::Upstream(_) => "the workspace did not answer".to_owned(),
            other => other.to_string(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message, "detail": self.detail() } });
        (self.status(), axum::Json(body)).into_response()
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        self.json_response()
    }
}
