//! The envproxy's routes on the platform's origin: `/proxy/workspaces/{id}/ide/...` (HTTP and
//! WebSocket to code-server, for clients sending a token header: the dashboard's cookie is not
//! accepted there), `/proxy/workspaces/{id}/open` (into the workspace's own origin, see
//! [`super::workspace_host`]), `/proxy/workspaces/{id}/terminal` (WebSocket to the envagent
//! shell), `/proxy/workspaces/{id}/ssh` (WebSocket-wrapped TCP to the envagent SSH proxy),
//! `/healthz` and `/readyz`. Requests for a workspace host go to [`super::workspace_host`].

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde_json::json;
use tracing::Instrument;

use super::ProxyState;
use super::address::{IDE_PORT, SSH_PORT, TERMINAL_PORT};
use super::auth::{self, Credential, Grant, Source};
use super::error::ProxyError;
use super::forward::{self, strip_hop_by_hop};
use super::limits::Refusal;
use super::metrics;
use super::relay::{self, Timing};
use super::side::{self, Close, Frame};
use super::upstream::{self, Upstream};
use crate::cookies;

/// Every route, with the state and layers.
pub fn router(state: ProxyState) -> Router {
    let routes = Router::new()
        .route("/proxy/workspaces/{id}/ide", any(ide_root))
        .route("/proxy/workspaces/{id}/ide/", any(ide))
        .route("/proxy/workspaces/{id}/ide/{*rest}", any(ide))
        .route("/proxy/workspaces/{id}/open", get(super::workspace_host::open))
        .route("/proxy/workspaces/{id}/terminal", any(terminal))
        .route("/proxy/workspaces/{id}/ssh", any(ssh))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .fallback(|headers: HeaderMap| async move { ProxyError::NotFound("route").respond(&headers) });
    // Every request passes the workspace-host dispatch first, whatever its path and method.
    let routes = Router::new()
        .fallback_service(routes.with_state(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state,
            super::workspace_host::dispatch,
        ));
    crate::request_id::layer(routes)
}

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The platform's origin: a token header, or the dashboard's cookie where allowed.
    Platform,
    /// A workspace's own host: its workspace cookie only.
    WorkspaceHost,
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready when not draining and the manager accepts the envproxy's token.
async fn readyz(State(state): State<ProxyState>) -> Response {
    if *state.draining.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    match state.authorizer.client().envproxy_ping().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the manager refused or is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "manager_unavailable" })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_page(State(state): State<ProxyState>) -> Response {
    let gauges = metrics::Gauges {
        open_sessions: state.sessions.total(),
        reserved_bytes: state.sessions.reserved_bytes(),
        budget_bytes: state.limits.budget_bytes,
    };
    let mut response = state.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Where a route goes in the workspace.
enum Target {
    /// A WebSocket (or, for the IDE, plain HTTP) to this port and path.
    WebSocket { port: u16, path_and_query: String },
    /// Raw TCP to this port.
    Tcp { port: u16 },
}

/// `/ide` without the slash: code-server's pages use relative links, so redirect.
async fn ide_root(Path(id): Path<String>, request: Request) -> Response {
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::permanent(&format!(
        "/proxy/workspaces/{}/ide/{query}",
        crate::manager_client::path_segment(&id)
    ))
    .into_response()
}

async fn ide(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (id, rest) = match ide_path(&parts) {
        Some(found) => found,
        None => return ProxyError::NotFound("route").respond(&parts.headers),
    };
    // Workspace content is never served to the dashboard's cookie on the platform's origin: a
    // page there would act with the dashboard's session. Browsers go to the workspace's origin.
    let cookie = auth::credential(&parts.headers, &state.args.cookie_name)
        .is_some_and(|credential| credential.source == Source::Cookie);
    if cookie {
        if state.origins.is_some() && parts.method == Method::GET && !is_websocket(&parts.headers) {
            return Redirect::to(&format!(
                "/proxy/workspaces/{}/open",
                crate::manager_client::path_segment(&id)
            ))
            .into_response();
        }
        let refusal = ProxyError::WorkspaceOriginOnly;
        state.metrics.refused(refusal.code());
        return refusal.respond(&parts.headers);
    }
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut response = proxy_ide(state, parts, body, &id, format!("/{rest}{query}"), Via::Platform).await;
    // Should a browser get here anyway, the page runs in an opaque origin of its own.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("sandbox"),
    );
    response
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
            port: IDE_PORT,
            path_and_query,
        };
        return websocket(state, parts, id, target, via).await;
    }
    match admit(&state, &parts, id, via).await {
        Ok((_, credential)) => {
            state.metrics.http_request();
            let address = state.resolver.address(id, IDE_PORT);
            let headers = upstream_headers(&state, &parts, &credential);
            forward::forward(
                &state.http,
                format!("http://{address}{path_and_query}"),
                &parts,
                headers,
                body,
                &state.args.cookie_name,
            )
            .await
            .unwrap_or_else(|error| error.respond(&parts.headers))
        }
        Err(error) => error.respond(&parts.headers),
    }
}

/// The workspace id and the path after `/ide/`, from the raw (still percent-encoded) path.
fn ide_path(parts: &Parts) -> Option<(String, String)> {
    let rest = parts.uri.path().strip_prefix("/proxy/workspaces/")?;
    let (id, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("ide/")?;
    Some((id.to_owned(), rest.to_owned()))
}

async fn terminal(State(state): State<ProxyState>, Path(id): Path<String>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = Target::WebSocket {
        port: TERMINAL_PORT,
        path_and_query: format!("/{query}"),
    };
    websocket(state, parts, &id, target, Via::Platform).await
}

async fn ssh(State(state): State<ProxyState>, Path(id): Path<String>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    websocket(state, parts, &id, Target::Tcp { port: SSH_PORT }, Via::Platform).await
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
/// another origin, then the manager's verdict (404, 403, 503 not running).
async fn admit_checks(
    state: &ProxyState,
    parts: &Parts,
    id: &str,
    via: Via,
) -> Result<(Grant, Credential), ProxyError> {
    if *state.draining.borrow() {
        return Err(ProxyError::Draining);
    }
    let credential = match via {
        Via::Platform => {
            auth::credential(&parts.headers, &state.args.cookie_name).ok_or(ProxyError::Unauthenticated)?
        }
        Via::WorkspaceHost => super::workspace_host::credential(state, &parts.headers, id)?,
    };
    if credential.source.is_ambient() {
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let needs_same_origin = unsafe_method || is_websocket(&parts.headers);
        if (needs_same_origin && !cookies::same_origin(&parts.headers))
            || cookies::cross_origin_subresource(&parts.headers)
        {
            return Err(ProxyError::CrossOrigin);
        }
    }
    let grant = state
        .authorizer
        .authorize(&credential.token, id, request_id(&parts.headers))
        .await?;
    Ok((grant, credential))
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
    auth::strip_credentials(&mut headers, credential, &state.args.cookie_name);
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
async fn websocket(state: ProxyState, mut parts: Parts, id: &str, target: Target, via: Via) -> Response {
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
    let slot = match state.sessions.acquire(&grant.user.id, &state.limits) {
        Ok(slot) => slot,
        Err(refusal) => {
            let refusal = match refusal {
                Refusal::PerUser => ProxyError::TooManyConnections {
                    limit: state.limits.per_user,
                },
                Refusal::Capacity => ProxyError::AtCapacity,
            };
            state.metrics.refused(refusal.code());
            return refusal.respond(&parts.headers);
        }
    };
    let connected = match &target {
        Target::Tcp { port } => upstream::connect_tcp(&state.resolver.address(id, *port)).await,
        Target::WebSocket { port, path_and_query } => {
            let headers = upstream_headers(&state, &parts, &credential);
            let address = state.resolver.address(id, *port);
            upstream::connect_websocket(&address, path_and_query, &headers, state.args.max_message_bytes)
                .await
        }
    };
    let port = match target {
        Target::Tcp { port } | Target::WebSocket { port, .. } => port,
    };
    let limit = state.args.max_message_bytes;
    let mut upgrade = upgrade
        .read_buffer_size(upstream::IO_BUFFER_BYTES)
        .write_buffer_size(upstream::IO_BUFFER_BYTES)
        .max_write_buffer_size(upstream::max_write_buffer(limit))
        .max_message_size(limit)
        .max_frame_size(limit);
    if let Ok(Upstream {
        protocol: Some(protocol),
        ..
    }) = &connected
    {
        upgrade.set_selected_protocol(protocol.clone());
    }
    let timing = Timing {
        idle_timeout: state.args.idle_timeout,
        keepalive: state.args.keepalive_interval,
        recheck: state.authorizer.ttl(),
    };
    let user = grant.user.id.clone();
    let workspace = id.to_owned();
    let request_id = request_id(&parts.headers).map(str::to_owned);
    let span = tracing::Span::current();
    let shutdown = state.closing.subscribe();
    upgrade
        .on_upgrade(move |socket| {
            async move {
                let _slot = slot;
                let client = side::client(socket);
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
            .instrument(span)
        })
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn ide_paths_keep_their_encoding() {
        let request = axum::http::Request::builder()
            .uri("/proxy/workspaces/abc/ide/static/a%20b.js?x=1")
            .body(Body::empty())
            .expect("request");
        let (parts, _) = request.into_parts();
        assert_eq!(
            ide_path(&parts),
            Some(("abc".to_owned(), "static/a%20b.js".to_owned()))
        );
    }
}
