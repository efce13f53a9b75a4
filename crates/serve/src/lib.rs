//! coder-serve: a bundle file served as a read-only OCI registry (`coder-install serve`), for
//! sites that have no registry of their own.
//!
//! It speaks the pull half of the OCI distribution API (`/v2/`, manifests by tag and digest,
//! blobs with `Range`, the tags list and the catalog, `GET` and `HEAD`), with the content laid
//! out as `push` would place it in a site registry: `PREFIX/<original repository path>`, each
//! image under its original tag. Pushes and deletes get 405 `UNSUPPORTED`.
//!
//! Nothing is extracted: at start ([`ServedBundle::open`]) the bundle's tar is indexed and its
//! manifests read and checked against their digests ([`content`]); blobs are then streamed
//! straight from their offsets in the bundle file through fixed buffers (`body`). Paths are
//! parsed against the distribution grammar before any lookup (`routes`), so `..` and other
//! escapes never reach one; lookups are in tables built from the bundle manifest, never on a
//! file system. Optional HTTPS (`tls`) and htpasswd basic authentication (`auth`).
//!
//! Whoever can connect is held to [`ServeLimits`]: a cap on open connections, a deadline for
//! request heads and idle keep-alive connections, a deadline for a client that takes no bytes
//! of an answer (`conn`), a few bcrypt checks at a time, and a failed-login budget per client
//! (`login_limit`). No thread ever waits on a client (`body`).
//!
//! Verifying the bundle (hashes and signature) is the caller's job before [`ServedBundle::open`]
//! (`coder-install serve` runs the same check as `verify`), which takes the bundle as the caller
//! opened and verified it, pinned to the manifest that verified.

mod auth;
mod body;
mod conn;
mod content;
mod error;
mod handler;
mod login_limit;
mod range;
mod routes;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coder_bundle::read::OpenedBundle;
use coder_progress::Progress;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use auth::Htpasswd;
use conn::StallGuard;
pub use content::{ServedArtifact, repository_path};
pub use error::ServeError;
use handler::{State, Stats};
pub use login_limit::FailureLimit;

/// The largest request head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long in-flight requests may run on after a shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// How to serve a bundle.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Path prefix every repository is served under (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// HTTPS: the PEM certificate chain and its PEM key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Basic authentication: an htpasswd file of bcrypt entries.
    pub htpasswd: Option<PathBuf>,
    /// What any one client may hold or cost.
    pub limits: ServeLimits,
}

/// What clients may hold or cost: the bounds that keep a registry open to anyone who can
/// connect serving everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once; more wait in the listen queue until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head (or finish the TLS handshake),
    /// and how long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// How long a client may take no bytes of an answer before its connection is dropped.
    pub stall_timeout: Duration,
    /// bcrypt checks run at once (the rest wait their turn).
    pub concurrent_password_checks: usize,
    /// Failed logins allowed per client before it is answered 429.
    pub failed_logins: FailureLimit,
}

impl Default for ServeLimits {
    /// 1024 connections, 30 s idle, 60 s stalled, 4 bcrypt checks at once, 10 failed logins in
    /// a row then one every 6 s.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            concurrent_password_checks: 4,
            failed_logins: FailureLimit::default(),
        }
    }
}

/// A bundle ready to be served.
pub struct ServedBundle {
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    artifacts: Vec<ServedArtifact>,
    name: String,
    version: String,
}

/// What a running registry serves, for the start-up report.
#[derive(Debug, Clone, Serialize)]
pub struct ServeSummary {
    /// Product name from the bundle.
    pub name: String,
    /// Release version from the bundle.
    pub version: String,
    /// The address it listens on.
    pub listen: String,
    /// `http://ADDR` or `https://ADDR`.
    pub url: String,
    /// What `apply --registry` takes to deploy from it: `HOST:PORT[/PREFIX]`, with this
    /// machine's host name when it listens on every address (`0.0.0.0`, `::`).
    pub registry: String,
    /// The path prefix.
    pub prefix: String,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    /// Whether it requires basic authentication.
    pub auth: bool,
    /// The repositories served, sorted.
    pub repositories: Vec<String>,
    /// Every image and chart, where it is served.
    pub artifacts: Vec<ServedArtifact>,
}

/// What a registry served before it stopped.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServeTotals {
    /// Requests answered.
    pub requests: u64,
    /// Blob bytes sent.
    pub blob_bytes: u64,
    /// Requests refused for want of valid credentials.
    pub unauthorized: u64,
}

impl ServedBundle {
    /// Works out what the opened (and verified) `bundle` serves; reads the TLS and htpasswd files.
    pub fn open(bundle: &OpenedBundle, options: &ServeOptions) -> Result<Self, ServeError> {
        let prefix = options.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() && !routes::valid_name(&prefix) {
            return Err(ServeError::Config {
                what: format!("--prefix {prefix:?}"),
                reason: "not a repository path: lower-case letters, digits, and `.`, `_`, `-` inside \
                         `/`-separated components, e.g. coder or site/mirror"
                    .to_owned(),
            });
        }
        bundle.check_unchanged()?;
        let (reader, manifest) = (bundle.reader(), bundle.manifest());
        let (content, artifacts) = content::Content::load(reader, manifest, &prefix)?;
        let tls = options
            .tls
            .as_ref()
            .map(|(cert, key)| tls::acceptor(cert, key))
            .transpose()?;
        let limits = options.limits;
        let auth = options
            .htpasswd
            .as_deref()
            .map(Htpasswd::read)
            .transpose()?
            .map(|htpasswd| {
                auth::PasswordGate::new(htpasswd, limits.concurrent_password_checks, limits.failed_logins)
            });
        let file = Arc::clone(reader.file());
        Ok(Self {
            state: Arc::new(State {
                content,
                file,
                auth,
                stats: Stats::default(),
            }),
            tls,
            limits,
            artifacts,
            name: manifest.name.clone(),
            version: manifest.version.clone(),
        })
    }

    /// Every image and chart, where it is served.
    pub fn artifacts(&self) -> &[ServedArtifact] {
        &self.artifacts
    }

    /// Opens the listening socket on `listen` (`HOST:PORT`; port 0 picks a free one).
    pub async fn bind(self, listen: &str) -> Result<BoundRegistry, ServeError> {
        let listen_error = |source| ServeError::Listen {
            addr: listen.to_owned(),
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        Ok(BoundRegistry {
            registry: self,
            listener,
            addr,
        })
    }
}

/// A registry with its listening socket open, not yet serving.
pub struct BoundRegistry {
    registry: ServedBundle,
    listener: TcpListener,
    addr: SocketAddr,
}

impl BoundRegistry {
    /// The address it listens on (with the port picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it serves and where, for the start-up report.
    pub fn summary(&self, prefix: &str) -> ServeSummary {
        let tls = self.registry.tls.is_some();
        let listen = self.addr.to_string();
        let prefix = prefix.trim_matches('/').to_owned();
        let reachable = if self.addr.ip().is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .map_or_else(|| listen.clone(), |name| format!("{name}:{}", self.addr.port()))
        } else {
            listen.clone()
        };
        ServeSummary {
            name: self.registry.name.clone(),
            version: self.registry.version.clone(),
            url: format!("{}://{listen}", if tls { "https" } else { "http" }),
            registry: if prefix.is_empty() {
                reachable
            } else {
                format!("{reachable}/{prefix}")
            },
            listen,
            prefix,
            tls,
            auth: self.registry.state.auth.is_some(),
            repositories: self.registry.state.content.repositories.keys().cloned().collect(),
            artifacts: self.registry.artifacts.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests run
    /// for up to 10 s. At most [`ServeLimits::max_connections`] connections are open at once.
    /// Accept failures and connection errors go to `progress` as warnings.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        progress: &'static dyn Progress,
    ) -> ServeTotals {
        let Self {
            registry, listener, ..
        } = self;
        let (stopping, _) = watch::channel(false);
        // At the cap, new connections wait in the listen queue until one closes.
        let open = coder_listen::accept_until(
            listener,
            Some(registry.limits.max_connections),
            shutdown,
            |error| progress.warning(&format!("accepting a connection failed: {error}")),
            |stream, remote| {
                let connection = Connection {
                    state: Arc::clone(&registry.state),
                    tls: registry.tls.clone(),
                    limits: registry.limits,
                    remote,
                };
                let stop = stopping.subscribe();
                async move {
                    if let Err(error) = connection.serve(stream, stop).await {
                        progress.warning(&format!("connection from {remote}: {error}"));
                    }
                }
            },
        )
        .await;
        stopping.send_replace(true);
        let _ = tokio::time::timeout(DRAIN, open.all_closed()).await;
        let stats = &registry.state.stats;
        ServeTotals {
            requests: stats.requests.load(Ordering::Relaxed),
            blob_bytes: stats.blob_bytes.load(Ordering::Relaxed),
            unauthorized: stats.unauthorized.load(Ordering::Relaxed),
        }
    }
}

/// Whether a connection ended because of the client, not of the server: it went away
/// mid-request or mid-answer, stayed idle past the head timeout (pooled keep-alive
/// connections do), or took no bytes past the stall timeout. Not worth a warning.
fn client_went_away(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() || error.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
            );
        }
        source = inner.source();
    }
    false
}

/// Completes when a shutdown was asked for (or the registry is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One accepted connection, with what serving it needs.
struct Connection {
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    remote: SocketAddr,
}

impl Connection {
    /// Serves the connection (after its TLS handshake), until it ends or a shutdown drains it.
    async fn serve(self, stream: TcpStream, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        let Self {
            state,
            tls,
            limits,
            remote,
        } = self;
        let client = remote.ip();
        let service = service_fn(move |request| handler::handle(Arc::clone(&state), request, client));
        let builder = {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout)
                .max_buf_size(MAX_HEAD_BYTES);
            builder
        };
        let stream = StallGuard::new(stream, limits.stall_timeout);
        macro_rules! drive {
            ($io:expr) => {{
                let connection = builder.serve_connection(TokioIo::new($io), service);
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    () = stopped(&mut stop) => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                served.or_else(|error| {
                    if client_went_away(&error) {
                        Ok(())
                    } else {
                        Err(error.to_string())
                    }
                })
            }};
        }
        match tls {
            None => drive!(stream),
            Some(acceptor) => {
                let stream = tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream))
                    .await
                    .map_err(|_| "the TLS handshake timed out".to_owned())?
                    .map_err(|error| format!("TLS handshake: {error}"))?;
                drive!(stream)
            }
        }
    }
}
