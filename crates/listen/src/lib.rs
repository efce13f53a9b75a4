//! The accept loop that `serve` and the envproxy share: connections are accepted until a
//! shutdown, each served in a task of its own, at most a cap of them at once (more wait in the
//! listen queue, unaccepted), an accept error (out of file descriptors and the like) reported and
//! waited out instead of spun on, and the open connections counted so that a drain can wait for
//! them to end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long the loop waits after a failed accept before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The connections being served, counted.
#[derive(Clone, Debug)]
pub struct OpenConnections(Arc<watch::Sender<usize>>);

impl Default for OpenConnections {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl OpenConnections {
    /// How many are open now.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Completes once none is open.
    pub async fn all_closed(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }

    fn enter(&self) -> Counted {
        self.0.send_modify(|open| *open += 1);
        Counted(Arc::clone(&self.0))
    }
}

/// One open connection; dropping it uncounts it.
struct Counted(Arc<watch::Sender<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open = open.saturating_sub(1));
    }
}

/// Accepts connections on `listener` until `shutdown` completes (then drops the listener) and
/// serves each with `serve` in its own task, at most `max_connections` at once (`None`: no cap;
/// at the cap, new connections wait in the listen queue until one ends). A failed accept goes to
/// `on_accept_error` and is retried after a short wait. Returns the open connections, for the
/// caller's drain.
pub async fn accept_until<Serve, Served>(
    listener: TcpListener,
    max_connections: Option<usize>,
    shutdown: impl Future<Output = ()>,
    on_accept_error: impl Fn(&std::io::Error),
    mut serve: Serve,
) -> OpenConnections
where
    Serve: FnMut(TcpStream, SocketAddr) -> Served,
    Served: Future<Output = ()> + Send + 'static,
{
    let open = OpenConnections::default();
    let slots = max_connections.map(|max| Arc::new(Semaphore::new(max.max(1))));
    tokio::pin!(shutdown);
    loop {
        let slot = match &slots {
            Some(slots) => tokio::select! {
                slot = Arc::clone(slots).acquire_owned() => match slot {
                    Ok(slot) => Some(slot),
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    on_accept_error(&error);
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let counted = open.enter();
        let served = serve(stream, remote);
        tokio::spawn(async move {
            served.await;
            drop(counted);
            drop(slot);
        });
    }
    drop(listener);
    open
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Connections beyond the cap wait unaccepted until one ends; the count follows them, and
    /// the loop ends at shutdown.
    #[tokio::test]
    async fn at_the_cap_new_connections_wait_until_one_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let served = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let counter = Arc::clone(&served);
        let accepting = tokio::spawn(accept_until(
            listener,
            Some(2),
            async move {
                let _ = stopped.await;
            },
            |_| {},
            move |mut stream, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut released = released.clone();
                async move {
                    let _ = released.wait_for(|released| *released).await;
                    let _ = stream.write_all(b"bye").await;
                }
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(address).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(served.load(Ordering::SeqCst), 2, "the third waits at the cap");
        release.send_replace(true);
        for client in &mut clients {
            let mut bytes = Vec::new();
            client.read_to_end(&mut bytes).await.expect("read");
            assert_eq!(bytes, b"bye");
        }
        assert_eq!(
            served.load(Ordering::SeqCst),
            3,
            "the third was served once a slot freed"
        );
        let _ = stop.send(());
        let open = accepting.await.expect("the loop ends at shutdown");
        tokio::time::timeout(Duration::from_secs(5), open.all_closed())
            .await
            .expect("every connection ended");
        assert_eq!(open.count(), 0);
    }
}
