//! Moves frames between the client and the workspace until one side ends, then tells the other
//! side why with a close frame.
//!
//! - Backpressure: a frame is read from one side only after the previous one was flushed to the
//!   other (the sinks flush on every send), so a slow reader stalls its writer instead of making
//!   the proxy buffer; per connection at most one message (`--max-message-bytes`) is held.
//! - Keepalive: the client is pinged every `keepalive`; one silent for three intervals is
//!   dropped. Pings and pongs do not count as activity for the idle timeout.
//! - Idle timeout, the end of the drain period, and a periodic re-authorisation (a revoked token
//!   or a stopped workspace) also end the relay, each with its own close code and reason.
//!
//! Its parts: [`side`] (either end as a stream and a sink of frames), [`upstream`] (connecting
//! to the workspace's port) and [`limits`] (what sessions are admitted under).

pub mod limits;
pub mod side;
pub mod upstream;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use self::side::{Close, Frame, FrameSink, FrameStream};
use super::error::ProxyError;

/// The relay's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// No data in either direction for this long ends the relay.
    pub idle_timeout: Duration,
    /// How often the client is pinged.
    pub keepalive: Duration,
    /// How often the user's right to the workspace is checked again.
    pub recheck: Duration,
}

/// How a relay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client sent a close frame.
    ClientClosed(Option<Close>),
    /// The client's connection broke or ended without a close frame.
    ClientGone(String),
    /// The client sent a message over the size limit.
    ClientTooBig,
    /// The workspace sent a close frame (or ended its TCP stream).
    UpstreamClosed(Option<Close>),
    /// The workspace's connection broke.
    UpstreamGone(String),
    /// The workspace sent a message over the size limit.
    UpstreamTooBig,
    /// No data for the idle timeout.
    Idle,
    /// The client stopped answering pings.
    KeepaliveLost,
    /// The drain period after SIGTERM is over.
    ShuttingDown,
    /// The user may no longer use the workspace.
    Revoked(String),
}

impl End {
    /// The close frame the client gets (`None`: the client is gone or closed first).
    pub fn to_client(&self) -> Option<Close> {
        match self {
            Self::ClientClosed(_) | Self::ClientGone(_) | Self::KeepaliveLost => None,
            Self::ClientTooBig => Some(Close::new(1009, "message too big")),
            Self::UpstreamClosed(Some(close)) => Some(close.clone()),
            Self::UpstreamClosed(None) => Some(Close::new(1000, "the workspace closed the connection")),
            Self::UpstreamGone(reason) => {
                Some(Close::new(1011, &format!("workspace connection lost: {reason}")))
            }
            Self::UpstreamTooBig => Some(Close::new(
                1011,
                "the workspace sent a message over the size limit",
            )),
            Self::Idle => Some(Close::new(1001, "idle timeout")),
            Self::ShuttingDown => Some(Close::new(1001, "the proxy is shutting down; reconnect")),
            Self::Revoked(reason) => Some(Close::new(1008, reason)),
        }
    }

    /// The close frame the workspace gets (`None`: it is gone or closed first).
    pub fn to_upstream(&self) -> Option<Close> {
        match self {
            Self::UpstreamClosed(_) | Self::UpstreamGone(_) => None,
            Self::ClientClosed(Some(close)) if !matches!(close.code, 1005 | 1006 | 1015) => {
                Some(close.clone())
            }
            Self::ClientClosed(_) => Some(Close::new(1000, "")),
            Self::UpstreamTooBig => Some(Close::new(1009, "message too big")),
            Self::ClientGone(_) | Self::KeepaliveLost | Self::ClientTooBig => {
                Some(Close::new(1001, "the client went away"))
            }
            Self::Idle => Some(Close::new(1001, "idle timeout")),
            Self::ShuttingDown => Some(Close::new(1001, "the proxy is shutting down")),
            Self::Revoked(_) => Some(Close::new(1008, "access revoked")),
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClientClosed(_) => "client_closed",
            Self::ClientGone(_) => "client_gone",
            Self::ClientTooBig => "client_too_big",
            Self::UpstreamClosed(_) => "upstream_closed",
            Self::UpstreamGone(_) => "upstream_gone",
            Self::UpstreamTooBig => "upstream_too_big",
            Self::Idle => "idle",
            Self::KeepaliveLost => "keepalive_lost",
            Self::ShuttingDown => "shutting_down",
            Self::Revoked(_) => "revoked",
        }
    }
}

/// When data and any frame were last seen, in milliseconds since the relay started.
struct Activity {
    start: Instant,
    data: AtomicU64,
    alive: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            data: AtomicU64::new(0),
            alive: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn saw_data(&self) {
        let now = self.now();
        self.data.store(now, Ordering::Relaxed);
        self.alive.store(now, Ordering::Relaxed);
    }

    fn saw_frame(&self) {
        self.alive.store(self.now(), Ordering::Relaxed);
    }

    fn since(&self, mark: &AtomicU64) -> Duration {
        Duration::from_millis(self.now().saturating_sub(mark.load(Ordering::Relaxed)))
    }
}

/// How long sending the final close frames may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Relays until one side ends, sends the close frames, and says how it ended. `shutdown`
/// turning true ends the relay; `still_allowed` is polled every `timing.recheck`.
pub async fn relay<F, Fut>(
    client: (FrameStream, FrameSink),
    upstream: (FrameStream, FrameSink),
    timing: Timing,
    mut shutdown: watch::Receiver<bool>,
    still_allowed: F,
) -> End
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), ProxyError>>,
{
    let (mut client_rx, mut client_tx) = client;
    let (mut upstream_rx, mut upstream_tx) = upstream;
    let activity = Activity::new();
    let end = tokio::select! {
        end = client_to_upstream(&mut client_rx, &mut upstream_tx, &activity) => end,
        end = upstream_to_client(&mut upstream_rx, &mut client_tx, &activity, timing.keepalive) => end,
        end = idle(&activity, timing.idle_timeout) => end,
        end = recheck(still_allowed, timing.recheck) => end,
        () = stopped(&mut shutdown) => End::ShuttingDown,
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        tokio::join!(
            close(&mut client_tx, end.to_client()),
            close(&mut upstream_tx, end.to_upstream()),
        )
    })
    .await;
    end
}

/// Completes when `shutdown` turns true (never if its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sends the close frame, if any, and closes the sink.
async fn close(sink: &mut FrameSink, close: Option<Close>) {
    if let Some(close) = close {
        let _ = sink.send(Frame::Close(Some(close))).await;
    }
    let _ = sink.close().await;
}

async fn client_to_upstream(client: &mut FrameStream, upstream: &mut FrameSink, activity: &Activity) -> End {
    loop {
        match client.next().await {
            None => return End::ClientGone("the connection ended".to_owned()),
            Some(Err(error)) if error.too_big => return End::ClientTooBig,
            Some(Err(error)) => return End::ClientGone(error.message),
            Some(Ok(Frame::Close(close))) => return End::ClientClosed(close),
            // The WebSocket library answers pings itself.
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => activity.saw_frame(),
            Some(Ok(frame)) => {
                activity.saw_data();
                if let Err(error) = upstream.send(frame).await {
                    return End::UpstreamGone(error.message);
                }
            }
        }
    }
}

async fn upstream_to_client(
    upstream: &mut FrameStream,
    client: &mut FrameSink,
    activity: &Activity,
    keepalive: Duration,
) -> End {
    let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = upstream.next() => match item {
                None => return End::UpstreamGone("the connection ended".to_owned()),
                Some(Err(error)) if error.too_big => return End::UpstreamTooBig,
                Some(Err(error)) => return End::UpstreamGone(error.message),
                Some(Ok(Frame::Close(close))) => return End::UpstreamClosed(close),
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                Some(Ok(frame)) => {
                    activity.saw_data();
                    if let Err(error) = client.send(frame).await {
                        return End::ClientGone(error.message);
                    }
                }
            },
            _ = ping.tick() => {
                if activity.since(&activity.alive) > keepalive * 3 {
                    return End::KeepaliveLost;
                }
                if let Err(error) = client.send(Frame::Ping(bytes::Bytes::new())).await {
                    return End::ClientGone(error.message);
                }
            }
        }
    }
}

async fn idle(activity: &Activity, timeout: Duration) -> End {
    loop {
        let quiet = activity.since(&activity.data);
        if quiet >= timeout {
            return End::Idle;
        }
        tokio::time::sleep(timeout - quiet).await;
    }
}

async fn recheck<F, Fut>(still_allowed: F, every: Duration) -> End
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), ProxyError>>,
{
    if every.is_zero() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(every).await;
        match still_allowed().await {
            Ok(()) => {}
            // The manager being briefly unreachable must not cut every open session.
            Err(ProxyError::Manager(error)) => {
                tracing::warn!(%error, "cannot re-check a session; keeping it open");
            }
            Err(refusal) => return End::Revoked(refusal.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_tells_the_other_side_why() {
        let gone = End::UpstreamGone("connection reset".to_owned());
        assert_eq!(gone.to_client().map(|c| c.code), Some(1011));
        assert!(gone.to_upstream().is_none());
        assert_eq!(End::ClientTooBig.to_client().map(|c| c.code), Some(1009));
        assert_eq!(End::Idle.to_client().map(|c| c.code), Some(1001));
        assert_eq!(End::Revoked("x".into()).to_client().map(|c| c.code), Some(1008));
        let closed = End::ClientClosed(Some(Close::new(4000, "bye")));
        assert_eq!(closed.to_upstream(), Some(Close::new(4000, "bye")));
        assert!(closed.to_client().is_none());
    }
}
