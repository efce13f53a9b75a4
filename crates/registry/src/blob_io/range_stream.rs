//! A byte range of a file as a stream of pieces, read ahead of the sending on a blocking
//! thread through a few recycled buffers: how an upload's body is made without holding the blob.

use std::sync::{Arc, OnceLock};

/// How much of a range is read from the file at a time (a piece).
const PIECE: usize = 1 << 20;

/// Pieces read ahead of the one being sent: with the one being read and the one the
/// connection holds, a stream holds `READ_AHEAD + 2` pieces (3 MiB), whatever the blob's size.
const READ_AHEAD: usize = 1;

/// A byte range of a local file (a blob inside a bundle, say), streamed as a request body.
#[derive(Clone)]
pub struct FileRange {
    /// The file (or a split bundle's parts), shared by every upload (positioned reads need no
    /// seek).
    pub file: Arc<dyn crate::blob_io::RandomRead>,
    /// Where the blob's bytes start.
    pub offset: u64,
    /// How many bytes it has.
    pub size: u64,
}

/// A request body that streams `source` in [`PIECE`] pieces (see [`file_range_stream`]).
pub(crate) fn file_range_body(
    source: &FileRange,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    read_failure: Arc<OnceLock<String>>,
) -> reqwest::Body {
    reqwest::Body::wrap_stream(file_range_stream(source, on_progress, read_failure))
}

/// The bytes of `source` in [`PIECE`] pieces. If the file cannot be read, the stream
/// ends with an error (so the registry never commits a part) and `read_failure` says why.
///
/// A blocking task reads the pieces in order (positioned reads of the file, off the async
/// threads) one piece ahead of the sending: while the connection sends a piece, the next is
/// read. At most [`READ_AHEAD`] + 2 pieces are held per upload.
fn file_range_stream(
    source: &FileRange,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    read_failure: Arc<OnceLock<String>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let (pieces, received) = tokio::sync::mpsc::channel(READ_AHEAD);
    let source = source.clone();
    tokio::task::spawn_blocking(move || read_pieces(&source, &pieces, &read_failure));
    on_progress(0);
    futures_util::stream::unfold((received, 0u64), move |(mut received, sent)| {
        let on_progress = on_progress.clone();
        async move {
            let piece = received.recv().await?;
            let sent = sent + piece.as_ref().map_or(0, |piece| piece.len() as u64);
            if piece.is_ok() {
                on_progress(sent);
            }
            Some((piece, (received, sent)))
        }
    })
}

/// The producer of [`file_range_stream`]: reads `source` piece by piece and hands each on.
/// Stops early when the body is dropped (the request failed).
fn read_pieces(
    source: &FileRange,
    pieces: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    read_failure: &OnceLock<String>,
) {
    let mut done = 0u64;
    // Buffers come back here once the connection has sent their piece, and are read into again:
    // no allocation or zeroing per piece.
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    while done < source.size {
        let want = PIECE.min((source.size - done) as usize);
        let at = source.offset + done;
        let mut buffer = recycled.try_recv().unwrap_or_else(|_| vec![0u8; PIECE]);
        buffer.resize(want, 0);
        if let Err(error) = source.file.read_range(&mut buffer, at) {
            let _ = read_failure.set(format!("could not read at byte {at}: {error}"));
            let _ = pieces.blocking_send(Err(error));
            return;
        }
        done += want as u64;
        let piece = bytes::Bytes::from_owner(RecycledPiece {
            buffer,
            recycle: recycle.clone(),
        });
        if pieces.blocking_send(Ok(piece)).is_err() {
            return;
        }
    }
}

/// A piece of a stream over a buffer that goes back to its reader when the piece is dropped.
struct RecycledPiece {
    buffer: Vec<u8>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for RecycledPiece {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for RecycledPiece {
    fn drop(&mut self) {
        // The reader may be gone (the stream is over): then the buffer is simply freed.
        let _ = self.recycle.send(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `content` between a head and a tail, and the range of `content` in it.
    fn range_of(dir: &std::path::Path, content: &[u8]) -> FileRange {
        let path = dir.join("bundle");
        std::fs::write(&path, [b"head".as_slice(), content, b"tail"].concat()).expect("write");
        FileRange {
            file: Arc::new(std::fs::File::open(&path).expect("open")),
            offset: 4,
            size: content.len() as u64,
        }
    }

    #[tokio::test]
    async fn a_file_range_body_streams_the_range_in_pieces() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..(3 * PIECE + 17)).map(|i| (i % 251) as u8).collect();
        let range = range_of(dir.path(), &content);
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = {
            let seen = seen.clone();
            Arc::new(move |done: u64| seen.store(done, std::sync::atomic::Ordering::Relaxed))
        };
        let read_failure: Arc<OnceLock<String>> = Arc::default();
        let mut stream = std::pin::pin!(file_range_stream(&range, progress, read_failure.clone()));
        let mut streamed = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            assert!(chunk.len() <= PIECE);
            streamed.extend_from_slice(&chunk);
        }
        assert_eq!(streamed, content);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::Relaxed),
            content.len() as u64
        );
        assert!(read_failure.get().is_none());

        // A range past the end of the file cannot be read: the stream ends with an error.
        let beyond = FileRange {
            size: range.size + 10,
            ..range
        };
        let mut stream = std::pin::pin!(file_range_stream(&beyond, Arc::new(|_| {}), read_failure.clone()));
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            failed |= chunk.is_err();
        }
        assert!(failed, "an unreadable range must fail the body");
        assert!(
            read_failure
                .get()
                .is_some_and(|problem| problem.contains("could not read"))
        );
    }
}
