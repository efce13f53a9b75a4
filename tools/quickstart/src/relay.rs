//! A TCP relay from a loopback port to the load balancer's address: Chromium sends every
//! `*.localhost` name to loopback (no `/etc/hosts` edit, and a secure context), so the quick
//! start's platform is `https://coder.localhost:PORT/` and its workspaces
//! `https://ws-<id>.workspaces.localhost:PORT/`, each connection relayed byte for byte to the
//! ingress controller, which sees the name in TLS (SNI) and in `Host`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The relay's listeners (IPv4 loopback, and IPv6 loopback on the same port where the machine
/// has it: Chromium may try `::1` first); stopped on drop.
pub struct LoopbackRelay {
    port: u16,
    target: Arc<Mutex<Option<SocketAddr>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl LoopbackRelay {
    /// Listens on `preferred` (or, when it is taken, a free port) on 127.0.0.1 and ::1; until
    /// [`LoopbackRelay::relay_to`] names the target, connections are closed at once. The port
    /// comes first because the platform's access URL names it.
    pub async fn start(preferred: u16) -> anyhow::Result<Self> {
        let v4 = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, preferred))).await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .await
                .context("binding a loopback port for the relay")?,
        };
        let port = v4.local_addr()?.port();
        // Without IPv6 loopback (or with the port taken there) Chromium uses 127.0.0.1.
        let v6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .await
            .ok();
        let target = Arc::new(Mutex::new(None));
        let tasks = std::iter::once(v4)
            .chain(v6)
            .map(|listener| tokio::spawn(relay(listener, target.clone())))
            .collect();
        Ok(Self { port, target, tasks })
    }

    /// Relays every new connection to `target` (the load balancer's address and port).
    pub fn relay_to(&self, target: SocketAddr) {
        if let Ok(mut current) = self.target.lock() {
            *current = Some(target);
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LoopbackRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts connections and copies each both ways to the target until either side closes.
async fn relay(listener: TcpListener, target: Arc<Mutex<Option<SocketAddr>>>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let Some(target) = target.lock().ok().and_then(|target| *target) else {
            continue; // no target yet: the connection is closed
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}
