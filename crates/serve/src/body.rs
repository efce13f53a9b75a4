//! Response bodies: small documents from memory, and blob ranges streamed from the bundle file.
//!
//! A blob range is read a [`CHUNK`] at a time, each chunk by a short blocking task (one
//! positioned read, `pread`, then it returns), at most [`READ_AHEAD`] of them ahead of what the
//! connection has sent. No blocking thread ever waits on a client: a client that reads slowly
//! (or never) only leaves its finished chunks waiting in its body, so memory per download is
//! bounded whatever the blob's size, and the blocking pool stays free for everyone else. When
//! the client goes away, the body is dropped with the reads it started (each ends on its own).

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use coder_bundle::bundle_file::BundleFile;
use coder_registry::blob_io::RandomRead;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes read from the bundle at once.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of what the connection has sent.
const READ_AHEAD: usize = 2;

/// A response body.
pub(crate) enum Body {
    /// Nothing (HEAD answers, errors without a body).
    Empty,
    /// A document held in memory.
    Full(Option<Bytes>),
    /// A byte range of the bundle file.
    File(FileRange),
}

/// One chunk read: its bytes, and the buffer they were split from (reused for a later chunk
/// once the connection has sent them).
type ChunkRead = JoinHandle<std::io::Result<(Bytes, BytesMut)>>;

/// A byte range of the bundle file being streamed.
pub(crate) struct FileRange {
    file: Arc<BundleFile>,
    /// Where the next read starts.
    next_offset: u64,
    /// Bytes no read has been started for yet.
    unread: u64,
    /// Bytes not yet handed to the connection.
    remaining: u64,
    /// The reads started, in order.
    reads: VecDeque<ChunkRead>,
    /// A buffer for the next read.
    spare: Option<BytesMut>,
}

impl Body {
    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// Streams `size` bytes of `file` from `offset`.
    pub(crate) fn file_range(file: Arc<BundleFile>, offset: u64, size: u64) -> Self {
        Self::File(FileRange {
            file,
            next_offset: offset,
            unread: size,
            remaining: size,
            reads: VecDeque::with_capacity(READ_AHEAD),
            spare: None,
        })
    }
}

impl FileRange {
    /// Starts reads until [`READ_AHEAD`] are under way or the range is all asked for.
    fn start_reads(&mut self) {
        while self.reads.len() < READ_AHEAD && self.unread > 0 {
            let want = usize::try_from(self.unread).unwrap_or(CHUNK).min(CHUNK);
            let offset = self.next_offset;
            let file = Arc::clone(&self.file);
            let mut buffer = self.spare.take().unwrap_or_default();
            self.reads.push_back(tokio::task::spawn_blocking(move || {
                // Reclaims the buffer's memory when the chunks split from it have been sent.
                buffer.reserve(CHUNK);
                buffer.resize(want, 0);
                file.read_range(&mut buffer[..want], offset)?;
                Ok((buffer.split().freeze(), buffer))
            }));
            self.next_offset += want as u64;
            self.unread -= want as u64;
        }
    }

    /// The next chunk, once its read is done.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.start_reads();
        let Some(read) = self.reads.front_mut() else {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "the bundle reader stopped before the end of the blob",
            ))));
        };
        let done = match Pin::new(read).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(done) => done,
        };
        self.reads.pop_front();
        match done {
            Ok(Ok((chunk, spare))) => {
                self.spare = Some(spare);
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                // The next read runs while the connection sends this chunk.
                self.start_reads();
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(Err(error)) => Poll::Ready(Some(Err(error))),
            Err(stopped) => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "reading the bundle stopped: {stopped}"
            ))))),
        }
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
            Self::File(range) => range
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
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
