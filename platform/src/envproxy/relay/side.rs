//! One end of a relayed connection, whatever its protocol: the client's WebSocket (axum), the
//! workspace's WebSocket (tungstenite) or the workspace's raw TCP stream (SSH), all seen as a
//! stream and a sink of [`Frame`]s.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ws::{self, WebSocket};
use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, protocol::CloseFrame, protocol::frame::coding::CloseCode};

/// How much a TCP read takes at once (one frame's worth).
const TCP_READ_CHUNK: usize = 16 * 1024;
/// The longest close reason the protocol allows (a control frame carries 125 bytes, 2 are the code).
const MAX_CLOSE_REASON: usize = 123;

/// A close frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The status code (1000 normal, 1001 going away, 1008 policy, 1009 too big, 1011 server-side failure; 1014 "bad gateway" is avoided: common client libraries refuse it).
    pub code: u16,
    /// Why, at most 123 bytes.
    pub reason: String,
}

impl Close {
    /// A close frame, its reason cut to what fits.
    pub fn new(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            reason: reason[..end].to_owned(),
        }
    }
}

/// A message, protocol-neutral. `Text` holds valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(Bytes),
    /// A binary message (or a chunk of a TCP stream).
    Binary(Bytes),
    /// A ping.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The end, with or without a status.
    Close(Option<Close>),
}

/// Why a side failed.
#[derive(Debug, Clone)]
pub struct SideError {
    /// The peer sent a message or frame over `--max-message-bytes`.
    pub too_big: bool,
    /// What happened.
    pub message: String,
}

impl SideError {
    fn new(message: impl ToString) -> Self {
        Self {
            too_big: false,
            message: message.to_string(),
        }
    }

    fn from_tungstenite(error: &tungstenite::Error) -> Self {
        Self {
            too_big: matches!(error, tungstenite::Error::Capacity(_)),
            message: error.to_string(),
        }
    }
}

/// The receiving half of a side.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, SideError>> + Send>>;
/// The sending half of a side.
pub type FrameSink = Pin<Box<dyn Sink<Frame, Error = SideError> + Send>>;

/// The client's WebSocket.
pub fn client(socket: WebSocket) -> (FrameStream, FrameSink) {
    let (sink, stream) = socket.split();
    let stream = stream.map(|item| match item {
        Ok(message) => Ok(from_axum(message)),
        Err(error) => {
            let inner = error.into_inner();
            Err(match inner.downcast_ref::<tungstenite::Error>() {
                Some(error) => SideError::from_tungstenite(error),
                None => SideError::new(inner),
            })
        }
    });
    let sink = FrameSinkOver::new(sink, to_axum, SideError::new);
    (Box::pin(stream), Box::pin(sink))
}

/// A WebSocket to the workspace.
pub fn upstream_websocket(socket: WebSocketStream<TcpStream>) -> (FrameStream, FrameSink) {
    let (sink, stream) = socket.split();
    let stream = stream.map(|item| match item {
        Ok(message) => Ok(from_tungstenite(message)),
        Err(error) => Err(SideError::from_tungstenite(&error)),
    });
    let sink = FrameSinkOver::new(sink, to_tungstenite, |error: tungstenite::Error| {
        SideError::from_tungstenite(&error)
    });
    (Box::pin(stream), Box::pin(sink))
}

/// A raw TCP stream to the workspace: what it sends becomes binary messages; messages from the
/// client are written as bytes; a close shuts the write side down.
pub fn upstream_tcp(stream: TcpStream) -> (FrameStream, FrameSink) {
    let (read, write) = stream.into_split();
    let frames = futures::stream::unfold(Some(read), |read| async move {
        let mut read = read?;
        let mut buffer = BytesMut::with_capacity(TCP_READ_CHUNK);
        match read.read_buf(&mut buffer).await {
            Ok(0) => Some((
                Ok(Frame::Close(Some(Close::new(
                    1000,
                    "the workspace closed the connection",
                )))),
                None,
            )),
            Ok(_) => Some((Ok(Frame::Binary(buffer.freeze())), Some(read))),
            Err(error) => Some((Err(SideError::new(error)), None)),
        }
    });
    let sink = futures::sink::unfold(write, |mut write, frame: Frame| async move {
        match frame {
            Frame::Binary(bytes) | Frame::Text(bytes) => {
                write.write_all(&bytes).await.map_err(SideError::new)?;
            }
            Frame::Close(_) => write.shutdown().await.map_err(SideError::new)?,
            Frame::Ping(_) | Frame::Pong(_) => {}
        }
        Ok::<_, SideError>(write)
    });
    (Box::pin(frames), Box::pin(sink))
}

/// A sink of [`Frame`]s over a WebSocket library's sink of messages: each frame is converted as it
/// is sent, and every error is mapped, however many there are.
///
/// futures' own adapters do not fit a sink that is used again after it failed, which the relay
/// does when it closes both sides: `sink_map_err` keeps its function only until the first error
/// and panics on the second ("polled MapErr after completion"), and `with` polls a conversion
/// that failed again.
struct FrameSinkOver<S, M, C, E> {
    sink: S,
    convert: C,
    map_error: E,
    message: PhantomData<fn(M)>,
}

impl<S, M, C, E> FrameSinkOver<S, M, C, E>
where
    S: Sink<M> + Unpin,
    C: Fn(Frame) -> Result<M, SideError> + Unpin,
    E: Fn(S::Error) -> SideError + Unpin,
{
    fn new(sink: S, convert: C, map_error: E) -> Self {
        Self {
            sink,
            convert,
            map_error,
            message: PhantomData,
        }
    }
}

impl<S, M, C, E> Sink<Frame> for FrameSinkOver<S, M, C, E>
where
    S: Sink<M> + Unpin,
    C: Fn(Frame) -> Result<M, SideError> + Unpin,
    E: Fn(S::Error) -> SideError + Unpin,
{
    type Error = SideError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SideError>> {
        let this = self.get_mut();
        Pin::new(&mut this.sink).poll_ready(cx).map_err(&this.map_error)
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<(), SideError> {
        let this = self.get_mut();
        let message = (this.convert)(frame)?;
        Pin::new(&mut this.sink)
            .start_send(message)
            .map_err(&this.map_error)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SideError>> {
        let this = self.get_mut();
        Pin::new(&mut this.sink).poll_flush(cx).map_err(&this.map_error)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SideError>> {
        let this = self.get_mut();
        Pin::new(&mut this.sink).poll_close(cx).map_err(&this.map_error)
    }
}

fn from_axum(message: ws::Message) -> Frame {
    match message {
        ws::Message::Text(text) => Frame::Text(Bytes::from(text)),
        ws::Message::Binary(bytes) => Frame::Binary(bytes),
        ws::Message::Ping(bytes) => Frame::Ping(bytes),
        ws::Message::Pong(bytes) => Frame::Pong(bytes),
        ws::Message::Close(close) => Frame::Close(close.map(|c| Close::new(c.code, c.reason.as_str()))),
    }
}

fn to_axum(frame: Frame) -> Result<ws::Message, SideError> {
    Ok(match frame {
        Frame::Text(bytes) => ws::Message::Text(ws::Utf8Bytes::try_from(bytes).map_err(SideError::new)?),
        Frame::Binary(bytes) => ws::Message::Binary(bytes),
        Frame::Ping(bytes) => ws::Message::Ping(bytes),
        Frame::Pong(bytes) => ws::Message::Pong(bytes),
        Frame::Close(close) => ws::Message::Close(close.map(|c| ws::CloseFrame {
            code: c.code,
            reason: ws::Utf8Bytes::from(c.reason),
        })),
    })
}

fn from_tungstenite(message: tungstenite::Message) -> Frame {
    match message {
        tungstenite::Message::Text(text) => Frame::Text(Bytes::from(text)),
        tungstenite::Message::Binary(bytes) => Frame::Binary(bytes),
        tungstenite::Message::Ping(bytes) => Frame::Ping(bytes),
        tungstenite::Message::Pong(bytes) => Frame::Pong(bytes),
        tungstenite::Message::Close(close) => {
            Frame::Close(close.map(|c| Close::new(u16::from(c.code), c.reason.as_str())))
        }
        // Raw frames only appear when writing; a reader never yields them.
        tungstenite::Message::Frame(frame) => Frame::Binary(frame.into_payload()),
    }
}

fn to_tungstenite(frame: Frame) -> Result<tungstenite::Message, SideError> {
    Ok(match frame {
        Frame::Text(bytes) => {
            tungstenite::Message::Text(tungstenite::Utf8Bytes::try_from(bytes).map_err(SideError::new)?)
        }
        Frame::Binary(bytes) => tungstenite::Message::Binary(bytes),
        Frame::Ping(bytes) => tungstenite::Message::Ping(bytes),
        Frame::Pong(bytes) => tungstenite::Message::Pong(bytes),
        Frame::Close(close) => tungstenite::Message::Close(close.map(|c| CloseFrame {
            code: CloseCode::from(c.code),
            reason: c.reason.into(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use futures::SinkExt;

    use super::*;

    /// A connection that is gone: every operation fails.
    struct Broken;

    impl Sink<ws::Message> for Broken {
        type Error = std::io::Error;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }

        fn start_send(self: Pin<&mut Self>, _: ws::Message) -> Result<(), Self::Error> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
    }

    /// The relay writes to a side, fails, then sends a close frame and closes it: each failure is
    /// an error, never a panic (with `sink_map_err` the second one panicked).
    #[tokio::test]
    async fn a_sink_that_failed_keeps_reporting_errors() {
        let mut sink = FrameSinkOver::new(Broken, to_axum, SideError::new);
        let failed = sink.send(Frame::Binary(Bytes::from_static(b"data"))).await;
        assert!(failed.is_err_and(|error| error.message.contains("broken pipe")));
        let close = sink.send(Frame::Close(Some(Close::new(1001, "bye")))).await;
        assert!(close.is_err());
        assert!(sink.close().await.is_err());
    }

    /// A frame the library cannot carry is refused, and the sink goes on working.
    #[tokio::test]
    async fn a_frame_that_cannot_be_converted_is_refused_once() {
        let (sink, _stream) = futures::channel::mpsc::unbounded::<ws::Message>();
        let mut sink = FrameSinkOver::new(sink, to_axum, SideError::new);
        let invalid = sink.send(Frame::Text(Bytes::from_static(&[0xff, 0xfe]))).await;
        assert!(invalid.is_err());
        sink.send(Frame::Binary(Bytes::from_static(b"next")))
            .await
            .expect("the next frame goes through");
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let close = Close::new(1011, &long);
        assert!(close.reason.len() <= MAX_CLOSE_REASON);
        assert!(close.reason.chars().all(|c| c == 'é'));
    }
}
