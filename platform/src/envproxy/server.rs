//! The envproxy's HTTP/1 server: hyper directly (not `axum::serve`) for a header read timeout
//! (slow-header clients are disconnected) and a bounded header buffer, and a graceful drain.
//!
//! Drain: when `shutdown` completes, the listener closes, `/readyz` fails, idle keep-alive
//! connections end and in-flight requests finish; open WebSocket sessions continue until they
//! end or `--drain-period` passes, then they are closed with 1001 and a reason. The process
//! ends when every session and connection has ended (or the period is over).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::routes::router;
use super::state::ProxyState;

/// The largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long closing the remaining sessions may take after the drain period.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Serves one HTTP/1 connection (with upgrades) until it ends, or gracefully once the drain starts.
async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    service: S,
    header_timeout: Duration,
    mut draining: watch::Receiver<bool>,
) where
    S: tower::Service<
            axum::extract::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = super::relay::stopped(&mut draining) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, %remote, "connection ended with an error");
    }
}

/// Serves until `shutdown` completes, then drains.
pub async fn serve(
    state: ProxyState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(state.clone());
    let header_timeout = state.config.header_timeout;
    // No cap on connections here: sessions are capped (per user and in all) when they open.
    let connections = coder_listen::accept_until(
        listener,
        None,
        shutdown,
        |error| tracing::warn!(%error, "accept failed"),
        |stream, remote| {
            let _ = stream.set_nodelay(true);
            let service = app
                .clone()
                .map_request(move |mut request: axum::extract::Request<_>| {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
                    request
                });
            let draining = state.draining.subscribe();
            serve_connection(stream, remote, service, header_timeout, draining)
        },
    )
    .await;
    state.draining.send_replace(true);
    let open = state.sessions.total();
    tracing::info!(open_sessions = open, drain_period = ?state.config.drain_period, "draining");
    // Upgraded connections leave hyper at once; the others finish their in-flight request.
    let drained = async {
        tokio::join!(state.sessions.all_closed(), connections.all_closed());
    };
    if tokio::time::timeout(state.config.drain_period, drained)
        .await
        .is_err()
    {
        tracing::info!(
            open_sessions = state.sessions.total(),
            "drain period over: closing the remaining sessions"
        );
        state.closing.send_replace(true);
        let _ = tokio::time::timeout(CLOSE_GRACE, state.sessions.all_closed()).await;
    }
    tracing::info!("envproxy stopped");
}
