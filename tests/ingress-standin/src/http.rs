//! A small HTTP/1 server loop (plain or TLS) for `/healthz` and the admission webhook.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A response body: the whole body at once.
pub type Body = Full<Bytes>;

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response with `status`, `content_type` and `body`.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Serves `handler` on every connection `listener` accepts (through `tls` when given), until
/// the listener fails.
pub async fn serve<H, F>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = listener.accept().await?;
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                None => builder.serve_connection(TokioIo::new(stream), service).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), service).await,
                    Ok(Err(error)) => {
                        crate::log(format!("TLS handshake with {peer} failed: {error}"));
                        return;
                    }
                    Err(_) => return,
                },
            };
            if let Err(error) = result
                && !error.is_incomplete_message()
            {
                crate::log(format!("connection from {peer}: {error}"));
            }
        });
    }
}
