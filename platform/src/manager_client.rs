//! A typed client of the manager's HTTP API, for the envproxy and the dashboard.
//!
//! Neither of them reaches PostgreSQL (the NetworkPolicies let only the manager in): they
//! authenticate users by calling the manager with the user's own token, and the envproxy looks
//! workspaces up with its own token (`Coder-Envproxy-Token`). Every call forwards the caller's
//! request id, so one id follows a request through both services' logs. The objects it reads
//! are the manager's own types ([`crate::api_types`]).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api_types::paging::{MAX_LIMIT, parse_next_link};
use crate::api_types::{
    ENVPROXY_TOKEN_HEADER, SESSION_TOKEN_HEADER, TicketRedeemed, TicketRedemption, User, Workspace,
};

/// A failed call to the manager.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The manager answered with an error body (or an unexpected status).
    #[error("the manager answered {status}: {code}: {message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The manager's stable error code (`unauthenticated`, `not_found`, ...).
        code: String,
        /// The manager's message.
        message: String,
        /// The manager's detail.
        detail: String,
    },
    /// The manager could not be reached, or its answer could not be read.
    #[error("the manager is unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The manager's answer is not the expected JSON.
    #[error("unexpected answer from the manager: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status the manager answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the manager refused the credentials (401).
    pub fn is_unauthenticated(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// Whether the manager said the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// Who is calling the manager, and under which request id.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The user's session token, if the call is made on a user's behalf.
    pub token: Option<&'a str>,
    /// The request id to forward in `x-request-id`.
    pub request_id: Option<&'a str>,
    /// The `X-Forwarded-For` chain to send, ending with the address the caller saw (the
    /// dashboard forwards a login's client address for the manager's per-address limit).
    pub forwarded_for: Option<&'a str>,
}

impl<'a> Caller<'a> {
    /// A call on behalf of the user holding `token`.
    pub fn user(token: &'a str, request_id: Option<&'a str>) -> Self {
        Self {
            token: Some(token),
            request_id,
            forwarded_for: None,
        }
    }

    /// An anonymous call (login).
    pub fn anonymous(request_id: Option<&'a str>) -> Self {
        Self {
            token: None,
            request_id,
            forwarded_for: None,
        }
    }

    /// The same call, sending `chain` as `X-Forwarded-For`.
    pub fn forwarding(self, chain: &'a str) -> Self {
        Self {
            forwarded_for: Some(chain),
            ..self
        }
    }
}

/// A client of one manager.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
    base: String,
    envproxy_token: Option<String>,
}

impl ManagerClient {
    /// A client of the manager at `base` (e.g. `http://coder-manager:8080`), with the envproxy's
    /// token when the caller is the envproxy.
    pub fn new(base: &str, envproxy_token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(ClientError::Unreachable)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            envproxy_token,
        })
    }

    /// The manager's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request: the answer's headers and body when it succeeded, else the manager's
    /// error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        caller: Caller<'_>,
        body: Option<&Value>,
    ) -> Result<(HeaderMap, Bytes), ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = caller.token {
            request = request.header(SESSION_TOKEN_HEADER, token);
        }
        if let Some(id) = caller.request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(chain) = caller.forwarded_for {
            request = request.header("x-forwarded-for", chain);
        }
        if path.starts_with("/api/private/envproxy/")
            && let Some(token) = &self.envproxy_token
        {
            request = request.header(ENVPROXY_TOKEN_HEADER, token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(ClientError::Unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(ClientError::Unreachable)?;
        if !status.is_success() {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let text = |key: &str| value["error"][key].as_str().unwrap_or_default().to_owned();
            return Err(ClientError::Api {
                status,
                code: text("code"),
                message: text("message"),
                detail: text("detail"),
            });
        }
        Ok((headers, bytes))
    }

    /// Sends one request and decodes a JSON answer (`Value::Null` for an empty body).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        caller: Caller<'_>,
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.send(method, path, caller, body).await?;
        decode(&bytes)
    }

    /// Every row of a paginated list (`GET /api/v0/users`, `/api/v0/workspaces`,
    /// `/api/v0/api-keys`): pages of [`MAX_LIMIT`] rows, following each answer's `Link` to the
    /// next until the last page.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        caller: Caller<'_>,
    ) -> Result<Vec<T>, ClientError> {
        let mut rows = Vec::new();
        let mut next = Some(format!("{path}?limit={MAX_LIMIT}"));
        while let Some(page) = next.take() {
            let (headers, bytes) = self.send(Method::GET, &page, caller, None).await?;
            rows.extend(decode::<Vec<T>>(&bytes)?);
            next = headers
                .get_all(LINK)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(parse_next_link)
                .map(str::to_owned);
        }
        Ok(rows)
    }

    /// `GET /api/v0/users/me`: who holds this token (401 if nobody).
    pub async fn me(&self, caller: Caller<'_>) -> Result<User, ClientError> {
        self.call(Method::GET, "/api/v0/users/me", caller, None).await
    }

    /// `GET /api/private/envproxy/workspaces/{id}` with the envproxy token: any workspace.
    pub async fn workspace_for_envproxy(
        &self,
        id: &str,
        request_id: Option<&str>,
    ) -> Result<Workspace, ClientError> {
        let path = format!("/api/private/envproxy/workspaces/{}", path_segment(id));
        self.call(Method::GET, &path, Caller::anonymous(request_id), None)
            .await
    }

    /// `POST /api/private/envproxy/tickets/redeem` with the envproxy token: records a workspace
    /// ticket's use in the database; `true` for the first redemption of `nonce` only.
    pub async fn redeem_ticket(
        &self,
        nonce: &str,
        expires: i64,
        request_id: Option<&str>,
    ) -> Result<bool, ClientError> {
        let body = serde_json::to_value(TicketRedemption {
            nonce: nonce.to_owned(),
            expires,
        })
        .map_err(|error| ClientError::Decode(error.to_string()))?;
        let answer: TicketRedeemed = self
            .call(
                Method::POST,
                "/api/private/envproxy/tickets/redeem",
                Caller::anonymous(request_id),
                Some(&body),
            )
            .await?;
        Ok(answer.redeemed)
    }

    /// `GET /api/private/envproxy/ping`: whether the manager accepts the envproxy token.
    pub async fn envproxy_ping(&self) -> Result<(), ClientError> {
        let _: Value = self
            .call(Method::GET, "/api/private/envproxy/ping", Caller::default(), None)
            .await?;
        Ok(())
    }
}

/// Decodes a JSON answer (`Value::Null` for an empty body).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    let bytes = if bytes.is_empty() { &b"null"[..] } else { bytes };
    serde_json::from_slice(bytes).map_err(|error| ClientError::Decode(error.to_string()))
}

/// Percent-encodes everything but unreserved characters, for an id placed in a path.
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("abc-123"), "abc-123");
        assert_eq!(path_segment("../x?y#z"), "..%2Fx%3Fy%23z");
    }
}
