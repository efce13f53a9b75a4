//! Connections that stop taking bytes: the socket wrapper that cuts them off.
//!
//! A client that opens a download and never reads fills the kernel's buffers, and every write
//! of the answer then waits. [`StallGuard`] gives such a wait a deadline: when the client has
//! accepted no byte for the stall timeout, the write fails (`TimedOut`), hyper drops the
//! connection, and what it held (the file range's read-ahead, the connection slot) is freed.
//! Time spent waiting for a request is not the guard's business: hyper's head timeout covers
//! it.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket whose writes fail once the peer has taken no bytes for `timeout`.
pub(crate) struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// The deadline of the write that is waiting, if one is.
    deadline: Pin<Box<Sleep>>,
    /// Whether `deadline` belongs to a write that is waiting now.
    waiting: bool,
}

impl<T> StallGuard<T> {
    /// Wraps `inner`; a write that makes no progress for `timeout` fails.
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }

    /// What a write (or flush, or shutdown) that returned `polled` means: progress clears the
    /// deadline; waiting starts it, or fails once it has passed.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client took no bytes for {} s; connection dropped",
                    self.timeout.as_secs_f64()
                ),
            ))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_writer_whose_peer_never_reads_fails_after_the_timeout_and_one_that_reads_does_not() {
        let (client, server) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(server, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let error = guarded
            .write_all(&[0u8; 64 * 1024])
            .await
            .expect_err("nobody reads");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(client);

        // A slow reader that keeps taking bytes is never cut off, however long the whole takes
        // (here about twice the timeout).
        let (mut client, server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += tokio::io::AsyncReadExt::read(&mut client, &mut buffer)
                    .await
                    .expect("read");
            }
        });
        let mut guarded = StallGuard::new(server, Duration::from_millis(800));
        guarded
            .write_all(&[0u8; 16 * 1024])
            .await
            .expect("a slow reader is served");
        reader.await.expect("reader");
    }
}
