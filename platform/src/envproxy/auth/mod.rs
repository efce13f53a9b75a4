//! Who is calling and whether they may reach a workspace: the user's token (header, bearer or
//! the dashboard's cookie) is checked by the manager (`GET /api/v0/users/me`), the workspace is
//! looked up with the envproxy's token, and the rule is owner or admin. Answers are cached for
//! `--auth-cache-ttl`, which bounds how long a revoked token or a stopped workspace stays usable
//! (open WebSockets re-check at that interval too).

pub mod cache;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

use self::cache::TtlCache;
use super::error::ProxyError;
use crate::api_types::SESSION_TOKEN_HEADER;
use crate::api_types::{User, Workspace};
use crate::cookies::{HOST_PREFIX, cookie_values, cookies, is_platform_cookie};
use crate::manager_client::{Caller, ManagerClient};

/// Where the token came from (cookies need an origin check; every form is stripped upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Session-Token: T`.
    Header,
    /// `Authorization: Bearer T`.
    Bearer,
    /// The dashboard's session cookie (platform origin only).
    Cookie,
    /// A workspace host's own cookie ([`WORKSPACE_COOKIE`](crate::cookies::WORKSPACE_COOKIE)), good for
    /// that workspace only.
    WorkspaceCookie,
}

impl Source {
    /// Whether the browser sends it by itself (so the request's origin must be checked).
    pub fn is_ambient(self) -> bool {
        matches!(self, Self::Cookie | Self::WorkspaceCookie)
    }
}

/// A presented token.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The token.
    pub token: String,
    /// Where it was found.
    pub source: Source,
}

/// The tokens a request presents, to be tried in order: `Session-Token` alone, else
/// `Authorization: Bearer` alone, else every dashboard session cookie: those named
/// `__Host-<cookie_name>` (what the dashboard sets when its cookies are `Secure`; no other host
/// can set them) first, then those of the plain name. Empty when there is none.
pub fn credentials(headers: &HeaderMap, cookie_name: &str) -> Vec<Credential> {
    if let Some(token) = headers.get(SESSION_TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return vec![Credential {
            token: token.trim().to_owned(),
            source: Source::Header,
        }];
    }
    if let Some(authorization) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = authorization.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return vec![Credential {
            token: token.trim().to_owned(),
            source: Source::Bearer,
        }];
    }
    let prefixed = format!("{HOST_PREFIX}{cookie_name}");
    cookie_values(headers, &prefixed)
        .chain(cookie_values(headers, cookie_name))
        .map(|token| Credential {
            token: token.to_owned(),
            source: Source::Cookie,
        })
        .collect()
}

/// Removes the caller's Coder credentials before a request goes to the workspace: the workspace
/// runs user code, and an admin's token must not reach a member's workspace. Every platform
/// cookie ([`is_platform_cookie`]) goes, whichever credential was used.
pub fn strip_credentials(headers: &mut HeaderMap, credential: &Credential, cookie_name: &str) {
    headers.remove(SESSION_TOKEN_HEADER);
    if credential.source == Source::Bearer {
        headers.remove(header::AUTHORIZATION);
    }
    let kept: Vec<String> = cookies(headers)
        .filter(|(name, _)| !is_platform_cookie(name, cookie_name))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// What an authorised request may use.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The caller.
    pub user: User,
    /// The workspace (running).
    pub workspace: Workspace,
}

/// Asks the manager, through a short cache.
#[derive(Debug)]
pub struct Authorizer {
    client: ManagerClient,
    users: TtlCache<User>,
    workspaces: TtlCache<Workspace>,
    ttl: Duration,
}

/// Cached entries at most (tokens and workspaces each).
const CACHE_CAPACITY: usize = 10_000;

impl Authorizer {
    /// An authorizer asking `client`, caching answers for `ttl`.
    pub fn new(client: ManagerClient, ttl: Duration) -> Self {
        Self {
            client,
            users: TtlCache::new(ttl, CACHE_CAPACITY),
            workspaces: TtlCache::new(ttl, CACHE_CAPACITY),
            ttl,
        }
    }

    /// The cache lifetime, which is also how often open connections re-check.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The manager client.
    pub fn client(&self) -> &ManagerClient {
        &self.client
    }

    /// 401 unless the token is valid, 404 unless the workspace exists, 403 unless the caller owns
    /// it or is an admin, 503 unless it is running.
    pub async fn authorize(
        &self,
        token: &str,
        workspace_id: &str,
        request_id: Option<&str>,
    ) -> Result<Grant, ProxyError> {
        let user = self.user(token, request_id).await?;
        let valid_id = !workspace_id.is_empty()
            && workspace_id.len() <= 64
            && workspace_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_id {
            return Err(ProxyError::NotFound("workspace"));
        }
        let workspace = match self.workspaces.get(workspace_id) {
            Some(workspace) => workspace,
            None => {
                let workspace = self
                    .client
                    .workspace_for_envproxy(workspace_id, request_id)
                    .await
                    .map_err(ProxyError::from_workspace_lookup)?;
                self.workspaces.insert(workspace_id.to_owned(), workspace.clone());
                workspace
            }
        };
        if workspace.owner_id != user.id && !user.is_admin() {
            return Err(ProxyError::Forbidden);
        }
        if workspace.state != "ON" {
            return Err(ProxyError::NotRunning {
                state: workspace.state,
            });
        }
        Ok(Grant { user, workspace })
    }

    async fn user(&self, token: &str, request_id: Option<&str>) -> Result<User, ProxyError> {
        if token.is_empty() {
            return Err(ProxyError::Unauthenticated);
        }
        // Keyed by the token's hash: the cache never holds a usable token.
        let key = hex::encode(Sha256::digest(token.as_bytes()));
        if let Some(user) = self.users.get(&key) {
            return Ok(user);
        }
        match self.client.me(Caller::user(token, request_id)).await {
            Ok(user) => {
                self.users.insert(key, user.clone());
                Ok(user)
            }
            Err(error) => {
                self.users.remove(&key);
                Err(ProxyError::from_user_lookup(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::cookies::test_headers(pairs)
    }

    fn credential(h: &HeaderMap, cookie_name: &str) -> Option<Credential> {
        credentials(h, cookie_name).into_iter().next()
    }

    #[test]
    fn tokens_come_from_header_bearer_or_cookie() {
        let h = headers(&[("session-token", " t1 "), ("authorization", "Bearer t2")]);
        let c = credential(&h, "coder_session").expect("found");
        assert_eq!((c.token.as_str(), c.source), ("t1", Source::Header));
        let h = headers(&[("authorization", "bearer t2")]);
        assert_eq!(
            credential(&h, "coder_session").expect("found").source,
            Source::Bearer
        );
        let h = headers(&[("cookie", "a=1; coder_session=t3"), ("authorization", "Basic x")]);
        let c = credential(&h, "coder_session").expect("found");
        assert_eq!((c.token.as_str(), c.source), ("t3", Source::Cookie));
        assert!(credential(&headers(&[("cookie", "a=1")]), "coder_session").is_none());
        // Every session cookie, the `__Host-` ones first.
        let h = headers(&[(
            "cookie",
            "coder_session=p; __Host-coder_session=h1; __Host-coder_session=h2",
        )]);
        let tokens: Vec<String> = credentials(&h, "coder_session")
            .into_iter()
            .map(|c| c.token)
            .collect();
        assert_eq!(tokens, ["h1", "h2", "p"]);
    }

    #[test]
    fn credentials_are_stripped_and_other_cookies_kept() {
        let mut h = headers(&[
            ("session-token", "t"),
            ("authorization", "Bearer t"),
            ("cookie", "a=1; coder_session=t"),
            ("cookie", "b=2"),
        ]);
        let c = credential(&h, "coder_session").expect("found");
        strip_credentials(&mut h, &c, "coder_session");
        assert!(h.get("session-token").is_none());
        // Only the form used is removed from Authorization (the header form here).
        assert!(h.get("authorization").is_some());
        assert_eq!(h.get("cookie").expect("kept"), "a=1; b=2");
        let mut h = headers(&[(
            "cookie",
            "__Host-coder_csrf=x; coder_workspace_session=y; CODER_SESSION=z; coder_sessions=kept",
        )]);
        strip_credentials(&mut h, &c, "coder_session");
        assert_eq!(h.get("cookie").expect("kept"), "coder_sessions=kept");
    }
}
