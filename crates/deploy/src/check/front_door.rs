//! The platform's access URL, reached as a user's browser reaches it: the access URL's host sent
//! to one address (the load balancer's, or `--resolve`'s; else DNS), TLS that trusts the
//! system's CAs and the site's (`--ca`), HTTP requests and WebSockets on it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::error::CheckError;
use super::install::Install;

/// How long one request, connection or handshake may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A byte stream a WebSocket runs on: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A WebSocket through the front door.
pub type Socket = WebSocketStream<Box<dyn Stream>>;

/// The access URL and how to reach it.
pub struct FrontDoor {
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    base: String,
    host: String,
    port: u16,
    https: bool,
    /// Where the host is sent; `None`: DNS.
    address: Option<IpAddr>,
}

/// The TLS client configuration: the system's CAs and `ca_pem`'s certificates.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, CheckError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = ca_pem {
        let bad = |reason: String| CheckError::Ca(reason);
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|error| bad(error.to_string()))?;
            roots.add(certificate).map_err(|error| bad(error.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("it holds no PEM certificate".to_owned()));
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        .map_err(|error| CheckError::Ca(format!("TLS set-up: {error}")))
}

impl FrontDoor {
    /// The front door of `install`, its host sent to `address` (DNS when `None`), trusting
    /// `ca_pem` beside the system's CAs.
    pub fn new(
        install: &Install,
        address: Option<IpAddr>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, CheckError> {
        let host = install.host();
        let port = install.port();
        let tls = tls_config(ca_pem)?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT);
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| CheckError::Ca(error.to_string()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(address) = address {
            // Port 0: the URL's port is kept.
            builder = builder.resolve(&host, SocketAddr::new(address, 0));
        }
        let http = builder
            .build()
            .map_err(|error| CheckError::Ca(format!("HTTP client: {error}")))?;
        Ok(Self {
            http,
            tls: Arc::new(tls),
            base: install.base(),
            https: install.access_url.scheme() == "https",
            host,
            port,
            address,
        })
    }

    /// The access URL's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address and port a connection goes to, as text.
    pub fn target(&self) -> String {
        match self.address {
            Some(address) => SocketAddr::new(address, self.port).to_string(),
            None => format!("{}:{} (DNS)", self.host, self.port),
        }
    }

    /// A TCP connection to the access URL's address.
    pub async fn tcp(&self) -> Result<TcpStream, String> {
        let connect = async {
            match self.address {
                Some(address) => TcpStream::connect(SocketAddr::new(address, self.port)).await,
                None => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(format!("connecting to {}: {error}", self.target())),
            Err(_) => Err(format!(
                "connecting to {}: no answer in {} s",
                self.target(),
                REQUEST_TIMEOUT.as_secs()
            )),
        }
    }

    /// A connection on which HTTP can be spoken: TLS with the host's name when the access URL is
    /// `https://`, the certificate checked.
    pub async fn stream(&self) -> Result<Box<dyn Stream>, String> {
        let tcp = self.tcp().await?;
        if !self.https {
            return Ok(Box::new(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|error| format!("{}: {error}", self.host))?;
        let handshake = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp);
        match tokio::time::timeout(REQUEST_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(error)) => Err(format!("TLS with {} at {}: {error}", self.host, self.target())),
            Err(_) => Err(format!(
                "TLS with {}: no answer in {} s",
                self.host,
                REQUEST_TIMEOUT.as_secs()
            )),
        }
    }

    /// A request to `path` of the access URL, with `token` as the bearer when given.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/json");
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Opens a WebSocket to `path` of the access URL with `token` as the bearer.
    pub async fn websocket(&self, path: &str, token: &str) -> Result<Socket, String> {
        let scheme = if self.https { "wss" } else { "ws" };
        let url = format!("{scheme}://{}:{}{path}", self.host, self.port);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|error| format!("{url}: {error}"))?;
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the session token is not a valid header value".to_owned())?;
        request.headers_mut().insert("authorization", bearer);
        let stream = self.stream().await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::client_async(request, stream)).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|body| String::from_utf8_lossy(body).into_owned())
                    .unwrap_or_default();
                Err(format!("{path} answered {} {}", response.status(), body.trim()))
            }
            Ok(Err(error)) => Err(format!("{path}: {error}")),
            Err(_) => Err(format!("{path}: no WebSocket in {} s", REQUEST_TIMEOUT.as_secs())),
        }
    }
}
