//! Admission and proxying, the same on the platform's origin ([`super::routes`]) and on a
//! workspace's own host ([`super::workspace_origin`]): who may reach the workspace ([`admit`]),
//! then plain HTTP ([`proxy_ide`], through [`forward`]) or a relayed WebSocket or TCP session
//! ([`websocket`], through [`super::relay`]), to the address [`address`] gives.

pub mod address;
pub mod forward;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use self::forward::strip_hop_by_hop;
use super::auth::{self, Credential, Grant, Source};
use super::error::ProxyError;
use super::relay::limits::{Refusal, SessionSlot};
use super::relay::side::{self, Close, Frame};
use super::relay::upstream::{self, Upstream};
use super::relay::{self, Timing};
use super::state::ProxyState;
use super::workspace_origin::ticket::Kind;
use crate::cookies;
use coder_topology::CODE_SERVER_PORT;

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The platform's origin: a token header, or the dashboard's cookie where allowed.
    Platform,
    /// A workspace's own host: its workspace cookie only.
    WorkspaceHost,
}

/// Where a route goes in the workspace.
pub(super) enum Target {
    /// A WebSocket (or, for the IDE, plain HTTP) to this port and path.
    WebSocket {
        /// The workspace port.
        port: u16,
        /// The path and query there.
        path_and_query: String,
    },
    /// Raw TCP to this port.
    Tcp {
        /// The workspace port.
        port: u16,
    },
}

/// Proxies an IDE request (HTTP, or a WebSocket upgrade) to code-server after admission.
pub(super) async fn proxy_ide(
    state: ProxyState,
    parts: Parts,
    body: axum::body::Body,
    id: &str,
    path_and_query: String,
    via: Via,
) -> Response {
    if is_websocket(&parts.headers) {
        let target = Target::WebSocket {
            port: CODE_SERVER_PORT,
            path_and_query,
        };
        return websocket(state, parts, id, target, via).await;
    }
    match admit(&state, &parts, id, via).await {
        Ok((_, credential)) => {
            state.metrics.http_request();
            let address = state.resolver.address(id, CODE_SERVER_PORT);
            let headers = upstream_headers(&state, &parts, &credential);
            forward::forward(
                &state.http,
                format!("http://{address}{path_and_query}"),
                &parts,
                headers,
                body,
                &state.config.cookie_name,
            )
            .await
            .unwrap_or_else(|error| error.respond(&parts.headers))
        }
        Err(error) => error.respond(&parts.headers),
    }
}

pub(super) fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

pub(super) fn request_id(headers: &HeaderMap) -> Option<&str> {
    crate::request_id::of(headers)
}

/// Authenticates and authorises: 503 while draining, 401, 403 for an ambient cookie used from
/// another origin, then the manager's verdict (404, 403, 503 not running). Of several session
/// cookies (one may be planted) the first that the manager accepts for this workspace is used.
async fn admit_checks(
    state: &ProxyState,
    parts: &Parts,
    id: &str,
    via: Via,
) -> Result<(Grant, Credential), ProxyError> {
    if *state.draining.borrow() {
        return Err(ProxyError::Draining);
    }
    let candidates = match via {
        Via::Platform => auth::credentials(&parts.headers, &state.config.cookie_name),
        Via::WorkspaceHost => vec![workspace_cookie(state, &parts.headers, id)?],
    };
    let first = candidates.first().ok_or(ProxyError::Unauthenticated)?;
    if first.source.is_ambient() {
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let needs_same_origin = unsafe_method || is_websocket(&parts.headers);
        if (needs_same_origin && !cookies::same_origin(&parts.headers))
            || cookies::cross_origin_subresource(&parts.headers)
        {
            return Err(ProxyError::CrossOrigin);
        }
    }
    // A refused or another user's token (a planted cookie) does not stop the next candidate;
    // what holds for every token (no such workspace, not running, no manager) stops at once.
    let mut refusal = ProxyError::Unauthenticated;
    for credential in candidates {
        match state
            .authorizer
            .authorize(&credential.token, id, request_id(&parts.headers))
            .await
        {
            Ok(grant) => return Ok((grant, credential)),
            Err(ProxyError::Unauthenticated) => {}
            Err(ProxyError::Forbidden) => refusal = ProxyError::Forbidden,
            Err(other) => return Err(other),
        }
    }
    Err(refusal)
}

/// [`admit_checks`], counting refusals.
pub(super) async fn admit(
    state: &ProxyState,
    parts: &Parts,
    id: &str,
    via: Via,
) -> Result<(Grant, Credential), ProxyError> {
    admit_checks(state, parts, id, via)
        .await
        .inspect_err(|error| state.metrics.refused(error.code()))
}

/// The client's headers as the workspace gets them.
fn upstream_headers(state: &ProxyState, parts: &Parts, credential: &Credential) -> HeaderMap {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    auth::strip_credentials(&mut headers, credential, &state.config.cookie_name);
    headers.remove(header::HOST);
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    forward::add_forwarded(&mut headers, &parts.headers, client_ip);
    headers
}

/// Admits, connects to the workspace, upgrades the client and relays. A workspace that refuses
/// still gets the client upgraded, then closed with 1011 and the reason (browsers cannot read
/// a failed handshake's status).
pub(super) async fn websocket(
    state: ProxyState,
    mut parts: Parts,
    id: &str,
    target: Target,
    via: Via,
) -> Response {
    let (grant, credential) = match admit(&state, &parts, id, via).await {
        Ok(admitted) => admitted,
        Err(error) => return error.respond(&parts.headers),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ProxyError::BadRequest(format!(
                "a WebSocket upgrade is required: {}",
                rejection.body_text()
            ))
            .respond(&parts.headers);
        }
    };
    let slot = match take_slot(&state, &grant) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.respond(&parts.headers),
    };
    let connected = connect(&state, &parts, id, &target, &credential).await;
    let upgrade = client_upgrade(upgrade, state.config.max_message_bytes, &connected);
    let session = Session {
        workspace: id.to_owned(),
        port: match target {
            Target::Tcp { port } | Target::WebSocket { port, .. } => port,
        },
        user: grant.user.id.clone(),
        credential,
        request_id: request_id(&parts.headers).map(str::to_owned),
        timing: Timing {
            idle_timeout: state.config.idle_timeout,
            keepalive: state.config.keepalive_interval,
            recheck: state.authorizer.ttl(),
        },
        shutdown: state.closing.subscribe(),
    };
    let span = tracing::Span::current();
    upgrade
        .on_upgrade(move |socket| {
            async move {
                let _slot = slot;
                session.run(state, side::client(socket), connected).await;
            }
            .instrument(span)
        })
        .into_response()
}

/// A session slot for `grant`'s user, or the refusal (counted): too many of this user's, or no
/// room left in all.
fn take_slot(state: &ProxyState, grant: &Grant) -> Result<SessionSlot, ProxyError> {
    state
        .sessions
        .acquire(&grant.user.id, &state.limits)
        .map_err(|refusal| {
            let refusal = match refusal {
                Refusal::PerUser => ProxyError::TooManyConnections {
                    limit: state.limits.per_user,
                },
                Refusal::Capacity => ProxyError::AtCapacity,
            };
            state.metrics.refused(refusal.code());
            refusal
        })
}

/// Connects to the workspace's port: raw TCP, or a WebSocket handshake carrying the client's
/// headers (credentials stripped).
async fn connect(
    state: &ProxyState,
    parts: &Parts,
    id: &str,
    target: &Target,
    credential: &Credential,
) -> Result<Upstream, String> {
    match target {
        Target::Tcp { port } => upstream::connect_tcp(&state.resolver.address(id, *port)).await,
        Target::WebSocket { port, path_and_query } => {
            let headers = upstream_headers(state, parts, credential);
            let address = state.resolver.address(id, *port);
            upstream::connect_websocket(&address, path_and_query, &headers, state.config.max_message_bytes)
                .await
        }
    }
}

/// The client's upgrade with the proxy's buffer and message limits, answering the subprotocol
/// the workspace chose.
fn client_upgrade(
    upgrade: WebSocketUpgrade,
    limit: usize,
    connected: &Result<Upstream, String>,
) -> WebSocketUpgrade {
    let mut upgrade = upgrade
        .read_buffer_size(upstream::IO_BUFFER_BYTES)
        .write_buffer_size(upstream::IO_BUFFER_BYTES)
        .max_write_buffer_size(upstream::max_write_buffer(limit))
        .max_message_size(limit)
        .max_frame_size(limit);
    if let Ok(Upstream {
        protocol: Some(protocol),
        ..
    }) = connected
    {
        upgrade.set_selected_protocol(protocol.clone());
    }
    upgrade
}

/// One relayed session, once the client is upgraded.
struct Session {
    workspace: String,
    port: u16,
    user: String,
    credential: Credential,
    request_id: Option<String>,
    timing: Timing,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Session {
    /// Relays between the upgraded client and the workspace (or closes the client with 1011
    /// when the workspace refused), re-checking the caller's access as it goes.
    async fn run(
        self,
        state: ProxyState,
        client: (side::FrameStream, side::FrameSink),
        connected: Result<Upstream, String>,
    ) {
        let Self {
            workspace,
            port,
            user,
            credential,
            request_id,
            timing,
            shutdown,
        } = self;
        let upstream = match connected {
            Ok(upstream) => upstream,
            Err(reason) => {
                tracing::warn!(%workspace, port, %reason, "workspace port unreachable");
                state.metrics.session_ended("upstream_refused");
                let (_, mut sink) = client;
                let close = Close::new(1011, &format!("workspace port {port} unreachable: {reason}"));
                let _ = futures::SinkExt::send(&mut sink, Frame::Close(Some(close))).await;
                let _ = futures::SinkExt::close(&mut sink).await;
                return;
            }
        };
        tracing::info!(%workspace, port, %user, "websocket session started");
        state.metrics.session_started();
        let started = std::time::Instant::now();
        let authorizer = state.authorizer.clone();
        let still_allowed = || {
            let authorizer = authorizer.clone();
            let token = credential.token.clone();
            let workspace = workspace.clone();
            let request_id = request_id.clone();
            async move {
                authorizer
                    .authorize(&token, &workspace, request_id.as_deref())
                    .await
                    .map(|_| ())
            }
        };
        let end = relay::relay(client, upstream.side, timing, shutdown, still_allowed).await;
        state.metrics.session_ended(end.label());
        tracing::info!(
            %workspace,
            port,
            end = end.label(),
            detail = ?end,
            seconds = started.elapsed().as_secs_f64(),
            "websocket session ended"
        );
    }
}

/// The credential on workspace `id`'s host: its workspace cookie (`__Host-` prefixed over HTTPS),
/// opened and checked to be for this workspace. Every cookie of that name is tried, so that one
/// another workspace's page planted for the parent domain cannot shadow the real one. Nothing
/// else authenticates there (not the dashboard's cookie, not a header).
fn workspace_cookie(state: &ProxyState, headers: &HeaderMap, id: &str) -> Result<Credential, ProxyError> {
    let secure = state.origins.as_ref().is_some_and(|origins| origins.is_https());
    let claims = cookies::cookie_values(headers, cookies::workspace_cookie_name(secure))
        .find_map(|sealed| state.sealer.open_for(Kind::Cookie, sealed, id))
        .ok_or(ProxyError::WorkspaceSessionRequired)?;
    Ok(Credential {
        token: claims.token,
        source: Source::WorkspaceCookie,
    })
}
