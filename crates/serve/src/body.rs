//! Response bodies: small documents from memory, and blob ranges streamed from the bundle file.
//!
//! A blob range is read by one blocking task with positioned reads (`pread`) into fixed
//! [`CHUNK`]-sized buffers, handed to the connection through a channel of [`IN_FLIGHT`] chunks:
//! memory per download is bounded whatever the blob's size, and a client that reads slowly
//! stops the reader (the channel is full) instead of growing a queue. When the client goes
//! away, the body is dropped, the channel closes and the reader stops.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use coder_bundle::bundle_file::BundleFile;
use coder_registry::blob_io::RandomRead;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Bytes read from the bundle at once.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of what the connection has sent.
const IN_FLIGHT: usize = 4;

/// A response body.
pub(crate) enum Body {
    /// Nothing (HEAD answers, errors without a body).
    Empty,
    /// A document held in memory.
    Full(Option<Bytes>),
    /// A byte range of the bundle file.
    File(FileRange),
}

/// A byte range of the bundle file being streamed.
pub(crate) struct FileRange {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl Body {
    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// Streams `size` bytes of `file` from `offset`.
    pub(crate) fn file_range(file: Arc<BundleFile>, offset: u64, size: u64) -> Self {
        let (sender, chunks) = mpsc::channel(IN_FLIGHT);
        tokio::task::spawn_blocking(move || {
            let mut buffer = BytesMut::new();
            let mut done = 0u64;
            while done < size {
                // Reuses the buffer once the connection has sent (dropped) the earlier chunks.
                buffer.reserve(CHUNK);
                let want = usize::try_from(size - done).unwrap_or(CHUNK).min(CHUNK);
                buffer.resize(want, 0);
                let chunk = match file.read_range(&mut buffer[..want], offset + done) {
                    Ok(()) => Ok(buffer.split().freeze()),
                    Err(error) => Err(error),
                };
                let failed = chunk.is_err();
                if sender.blocking_send(chunk).is_err() || failed {
                    return;
                }
                done += want as u64;
            }
        });
        Self::File(FileRange {
            chunks,
            remaining: size,
        })
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::File(range) => {
                if range.remaining == 0 {
                    return Poll::Ready(None);
                }
                match range.chunks.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        range.remaining = range.remaining.saturating_sub(chunk.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                    Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                        "the bundle reader stopped before the end of the blob",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::File(range) => range.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64)),
            Self::File(range) => SizeHint::with_exact(range.remaining),
        }
    }
}
