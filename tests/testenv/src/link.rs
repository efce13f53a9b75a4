//! A slow network link in front of a test server: a TCP relay on loopback that passes the
//! server's answers on at a fixed rate (shared by every connection, like one link) and counts the
//! bytes the server sent through it.
//!
//! The relay reads from the server only as fast as the link carries (one slice at a time, then
//! it waits for the link), so what the server has sent but the client has not received is never
//! more than a slice per connection; the count is of the bytes read from the server, so a client
//! killed mid-transfer is charged with whatever was on its way to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{Result, io_context};

/// How much the relay reads from the server at a time.
const SLICE: usize = 16 << 10;

/// A running link; dropping it closes the listener and every connection through it.
pub struct ThrottledLink {
    addr: SocketAddr,
    from_server: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    relay: Option<std::thread::JoinHandle<()>>,
}

impl ThrottledLink {
    /// Starts a link on a free loopback port to `server`, carrying `bytes_per_second` from the
    /// server to its clients (requests go through unthrottled). The relay runs on a thread of its
    /// own, so a test may block (e.g. waiting for a command) while clients use the link.
    pub fn start(server: SocketAddr, bytes_per_second: u64) -> Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(io_context("binding the throttled link"))?;
        let addr = listener
            .local_addr()
            .map_err(io_context("the throttled link's address"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_context("starting the throttled link's runtime"))?;
        let from_server = Arc::new(AtomicU64::new(0));
        let link = Arc::new(LinkSchedule {
            bytes_per_second: bytes_per_second.max(1),
            free_at: tokio::sync::Mutex::new(Instant::now()),
        });
        let counter = Arc::clone(&from_server);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                // Owned here: when the relay stops, every connection is dropped with it.
                let mut connections = JoinSet::new();
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let (link, counter) = (Arc::clone(&link), Arc::clone(&counter));
                        connections.spawn(async move {
                            if let Ok(upstream) = TcpStream::connect(server).await {
                                relay_connection(client, upstream, &link, &counter).await;
                            }
                        });
                        while connections.try_join_next().is_some() {}
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    () = accept => {}
                }
            });
        });
        Ok(Self {
            addr,
            from_server,
            stop: Some(stop),
            relay: Some(relay),
        })
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference that goes through the link.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The bytes the server has sent through the link so far (headers and bodies).
    pub fn bytes_from_server(&self) -> u64 {
        self.from_server.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottledLink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(relay) = self.relay.take() {
            let _ = relay.join();
        }
    }
}

/// The link's timetable: when it is next free to carry a slice.
struct LinkSchedule {
    bytes_per_second: u64,
    free_at: tokio::sync::Mutex<Instant>,
}

impl LinkSchedule {
    /// Books the link for `bytes` and returns when they have crossed it.
    async fn book(&self, bytes: usize) -> Instant {
        let mut free_at = self.free_at.lock().await;
        let start = (*free_at).max(Instant::now());
        *free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        *free_at
    }
}

/// Relays one connection: client to server as fast as it comes, server to client through the
/// link. Ends when either side closes.
async fn relay_connection(client: TcpStream, upstream: TcpStream, link: &LinkSchedule, counter: &AtomicU64) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let answers = async {
        let mut slice = vec![0u8; SLICE];
        loop {
            let read = match upstream_read.read(&mut slice).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            counter.fetch_add(read as u64, Ordering::SeqCst);
            tokio::time::sleep_until(link.book(read).await).await;
            if client_write.write_all(&slice[..read]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // The answers decide: once the server is done (or the client gone), the connection is.
    tokio::select! {
        () = answers => {}
        () = async { requests.await; std::future::pending::<()>().await } => {}
    }
}
