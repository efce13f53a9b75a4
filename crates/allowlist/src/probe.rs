//! Probes: can this host actually reach what the install needs?
//!
//! For each endpoint, in order, each step with its own timeout: resolve the host (A and AAAA
//! through the system resolver), connect over TCP (each address until one answers), complete a
//! TLS handshake with SNI (recording the certificate's subject, issuer and expiry), and for a
//! registry API, `GET /v2/` on that same connection (200 and 401 both mean reachable; a 401's
//! bearer challenge names the token service, which is learnt as another endpoint). Probes run
//! in parallel under one global deadline. Each result says which step failed and how.
//!
//! Learning where blobs live: for each registry, one real blob request (the image's config, a
//! few hundred bytes, never downloaded) without following redirects; the `Location` host is
//! the blob storage the nodes will be sent to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_bundle_spec::format::is_index;
use coder_bundle_spec::{BundleSpec, ImageLock, ImageReference};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::endpoints::{
    EndpointRole, Evidence, Origin, RequiredEndpoint, Scheme, locked_manifest_digest, registry_api_host,
    url_host,
};
use crate::AllowlistError;
use coder_registry::oci::{ImageManifest, IndexDocument};
use coder_registry::{Challenge, Redirects, RegistryClient, RegistryOptions, Repository};

/// How probes run.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The timeout of each step (resolve, connect, handshake, request).
    pub step_timeout: Duration,
    /// The deadline of all probes together.
    pub deadline: Duration,
    /// Registry access for learning redirects (plain-HTTP registries, credentials); its extra
    /// CA certificates are trusted by every TLS probe too, beside the system's.
    pub registry: RegistryOptions,
}

/// The step of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeStep {
    /// Name resolution.
    Dns,
    /// The TCP connection.
    Connect,
    /// The TLS handshake.
    Tls,
    /// The HTTP request.
    Http,
    /// Not probed: the endpoint is a family of hosts, or the global deadline passed first.
    NotRun,
}

/// How a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The name does not resolve (or resolves to no address).
    NotFound,
    /// The host answered the connection with a refusal (nothing listens there).
    Refused,
    /// No route to the network or host (firewalled or isolated).
    NoRoute,
    /// The step did not finish within its timeout (or the global deadline).
    Timeout,
    /// The TLS handshake failed (untrusted or mismatched certificate, not TLS at all, ...).
    TlsError,
    /// The server answered with an HTTP status that does not mean reachable.
    HttpStatus,
    /// The endpoint is a `*.domain` family: there is no single host to probe.
    Pattern,
    /// Anything else (the message says what).
    Other,
}

/// A failed probe: which step, how, and the underlying message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFailure {
    /// The step that failed.
    pub step: ProbeStep,
    /// How it failed.
    pub kind: FailureKind,
    /// The message, for people.
    pub message: String,
}

/// A resolved address and the record type it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedAddress {
    /// `A` or `AAAA`.
    pub record: String,
    /// The address.
    pub address: IpAddr,
}

/// The certificate the server presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The end of its validity.
    pub not_after: jiff::Timestamp,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The addresses the host resolved to.
    pub addresses: Vec<ResolvedAddress>,
    /// The address the TCP connection was made to.
    pub connected_to: Option<SocketAddr>,
    /// The server's certificate, when TLS was completed.
    pub certificate: Option<CertificateSummary>,
    /// The HTTP status of `GET /v2/`, for a registry API.
    pub http_status: Option<u16>,
    /// The token service a registry's bearer challenge named.
    pub token_service: Option<String>,
    /// Why it is not reachable; `None` when it is.
    pub failure: Option<ProbeFailure>,
    /// How long the probe took.
    pub elapsed_ms: u64,
}

impl ProbeResult {
    /// Whether every step succeeded.
    pub fn reachable(&self) -> bool {
        self.failure.is_none()
    }

    fn not_run(kind: FailureKind, message: String) -> Self {
        Self {
            addresses: Vec::new(),
            connected_to: None,
            certificate: None,
            http_status: None,
            token_service: None,
            failure: Some(ProbeFailure {
                step: ProbeStep::NotRun,
                kind,
                message,
            }),
            elapsed_ms: 0,
        }
    }
}

/// Probes endpoints: one TLS configuration and options for a whole run.
pub struct Prober {
    tls: tokio_rustls::TlsConnector,
    options: ProbeOptions,
    /// Why some system CA certificates could not be loaded (probes still run without them).
    pub warnings: Vec<String>,
}

impl Prober {
    /// A prober trusting the system's CA certificates and `options.registry.ca_files`.
    pub fn new(options: ProbeOptions) -> crate::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let mut warnings: Vec<String> = native
            .errors
            .iter()
            .map(|error| format!("loading the system's CA certificates: {error}"))
            .collect();
        let (_, unreadable) = roots.add_parsable_certificates(native.certs);
        if unreadable > 0 {
            warnings.push(format!("{unreadable} system CA certificates could not be parsed"));
        }
        for path in &options.registry.ca_files {
            let bad_ca = |reason: String| AllowlistError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|error| bad_ca(format!("cannot be read: {error}")))?;
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|error| bad_ca(format!("not PEM certificates: {error}")))?;
            if certificates.is_empty() {
                return Err(bad_ca("holds no PEM certificate".to_owned()));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| bad_ca(error.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            options,
            warnings,
        })
    }

    /// Probes every endpoint in parallel; each result is in the endpoints' order. A probe still
    /// running at `deadline` is reported as a timeout at the step it had reached.
    pub async fn probe_all(
        &self,
        endpoints: &[RequiredEndpoint],
        deadline: tokio::time::Instant,
    ) -> Vec<ProbeResult> {
        let probes = endpoints.iter().map(|endpoint| async move {
            match tokio::time::timeout_at(deadline, self.probe(endpoint)).await {
                Ok(result) => result,
                Err(_) => ProbeResult::not_run(
                    FailureKind::Timeout,
                    format!(
                        "the global probe deadline ({}) passed first",
                        format_duration(self.options.deadline)
                    ),
                ),
            }
        });
        futures_util::future::join_all(probes).await
    }

    /// Probes one endpoint: resolve, connect, TLS (https), `GET /v2/` (registry APIs).
    pub async fn probe(&self, endpoint: &RequiredEndpoint) -> ProbeResult {
        if endpoint.is_pattern() {
            return ProbeResult::not_run(
                FailureKind::Pattern,
                format!(
                    "{} is a family of hosts: there is no one host to probe",
                    endpoint.host
                ),
            );
        }
        let started = Instant::now();
        let mut result = ProbeResult::not_run(FailureKind::Other, String::new());
        result.failure = self.run_steps(endpoint, &mut result).await.err();
        result.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        result
    }

    async fn run_steps(
        &self,
        endpoint: &RequiredEndpoint,
        result: &mut ProbeResult,
    ) -> Result<(), ProbeFailure> {
        let step_timeout = self.options.step_timeout;
        result.addresses = resolve(&endpoint.host, endpoint.port, step_timeout).await?;
        let stream = connect(&result.addresses, endpoint.port, step_timeout).await?;
        result.connected_to = stream.peer_addr().ok();
        let is_registry = endpoint.role == EndpointRole::RegistryApi;
        let host_header = if endpoint.port == endpoint.scheme.default_port() {
            endpoint.host.clone()
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        };
        let response = match endpoint.scheme {
            Scheme::Https => {
                let server_name =
                    ServerName::try_from(endpoint.host.clone()).map_err(|error| ProbeFailure {
                        step: ProbeStep::Tls,
                        kind: FailureKind::TlsError,
                        message: format!("{} cannot be a TLS server name: {error}", endpoint.host),
                    })?;
                let tls = step(
                    ProbeStep::Tls,
                    step_timeout,
                    self.tls.connect(server_name, stream),
                )
                .await?
                .map_err(|error| ProbeFailure {
                    step: ProbeStep::Tls,
                    kind: FailureKind::TlsError,
                    message: error.to_string(),
                })?;
                result.certificate = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| summarise_certificate(leaf));
                if !is_registry {
                    return Ok(());
                }
                registry_ping(tls, &host_header, step_timeout).await?
            }
            Scheme::Http if is_registry => registry_ping(stream, &host_header, step_timeout).await?,
            Scheme::Http => return Ok(()),
        };
        result.http_status = Some(response.status);
        result.token_service = response.token_realm;
        match response.status {
            200 | 401 => Ok(()),
            status => Err(ProbeFailure {
                step: ProbeStep::Http,
                kind: FailureKind::HttpStatus,
                message: format!("GET /v2/ answered HTTP {status} (200 or 401 mean a registry)"),
            }),
        }
    }

    /// For each registry API among `endpoints`, the hosts it sends blob downloads to and the
    /// token service it names; problems are returned as notes.
    pub async fn learn_redirects(
        &self,
        endpoints: &[RequiredEndpoint],
        spec: &BundleSpec,
        lock: &ImageLock,
    ) -> (Vec<RequiredEndpoint>, Vec<String>) {
        let client = match RegistryClient::new(RegistryOptions {
            redirects: Redirects::Report,
            attempts: 1,
            ..self.options.registry.clone()
        }) {
            Ok(client) => client,
            Err(error) => {
                return (
                    Vec::new(),
                    vec![format!("could not learn blob redirects: {error}")],
                );
            }
        };
        let Ok(references) = spec.image_references() else {
            return (Vec::new(), Vec::new());
        };
        // One image per registry API is enough: the registry redirects all of them alike.
        let mut wanted: Vec<(&RequiredEndpoint, &str, &ImageReference)> = Vec::new();
        for endpoint in endpoints
            .iter()
            .filter(|endpoint| endpoint.role == EndpointRole::RegistryApi)
        {
            let image = references.iter().find(|(_, reference)| {
                registry_api_host(&reference.registry, endpoint.scheme)
                    == (endpoint.host.clone(), endpoint.port)
            });
            if let Some((name, reference)) = image {
                wanted.push((endpoint, name, reference));
            }
        }
        let learning = wanted.into_iter().map(|(endpoint, name, reference)| {
            let client = &client;
            async move {
                let found = tokio::time::timeout(
                    self.options.step_timeout * 4,
                    blob_redirect_of(client, reference, locked_manifest_digest(lock, name)),
                )
                .await;
                match found {
                    Ok(Ok(Some(target))) => Ok(redirect_endpoint(&target, endpoint, name)),
                    Ok(Ok(None)) => Ok(None),
                    Ok(Err(error)) => Err(format!(
                        "could not learn where {} sends blob downloads: {}",
                        reference.registry,
                        coder_progress::error_chain(&error)
                    )),
                    Err(_) => Err(format!(
                        "could not learn where {} sends blob downloads: no answer within {}",
                        reference.registry,
                        format_duration(self.options.step_timeout * 4)
                    )),
                }
            }
        });
        let mut learnt = Vec::new();
        let mut notes = Vec::new();
        for outcome in futures_util::future::join_all(learning).await {
            match outcome {
                Ok(Some(endpoint)) => learnt.push(endpoint),
                Ok(None) => {}
                Err(note) => notes.push(note),
            }
        }
        (learnt, notes)
    }
}

/// The endpoint a token challenge's realm names.
pub fn token_service_endpoint(realm: &str, registry: &RequiredEndpoint) -> Option<RequiredEndpoint> {
    let url = url::Url::parse(realm).ok()?;
    let mut endpoint = endpoint_of_url(&url, registry)?;
    endpoint.role = EndpointRole::TokenService;
    endpoint.why = format!("the token service {}'s challenge names", registry.host);
    Some(endpoint)
}

fn redirect_endpoint(
    target: &url::Url,
    registry: &RequiredEndpoint,
    image: &str,
) -> Option<RequiredEndpoint> {
    let mut endpoint = endpoint_of_url(target, registry)?;
    endpoint.needed_by = vec![format!("image {image}")];
    endpoint.why = format!("{} redirects blob downloads here", registry.host);
    Some(endpoint)
}

/// A learnt endpoint at `url`'s host, unless that is the registry itself.
fn endpoint_of_url(url: &url::Url, registry: &RequiredEndpoint) -> Option<RequiredEndpoint> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    let host = url_host(url)?;
    let port = url.port_or_known_default()?;
    if (scheme, host.as_str(), port) == (registry.scheme, registry.host.as_str(), registry.port) {
        return None;
    }
    Some(RequiredEndpoint {
        scheme,
        host,
        port,
        path: None,
        role: EndpointRole::BlobStorage,
        origin: Origin::Redirect,
        evidence: Evidence::Probed,
        needed_by: registry.needed_by.clone(),
        why: String::new(),
    })
}

/// Where the registry sends a download of one small blob (the config) of `reference`.
async fn blob_redirect_of(
    client: &RegistryClient,
    reference: &ImageReference,
    locked_digest: Option<String>,
) -> crate::Result<Option<url::Url>> {
    let repository = Repository::of(reference);
    let tag_or_digest = locked_digest.unwrap_or_else(|| reference.tag_or_digest().to_owned());
    let mut manifest = client.manifest(&repository, &tag_or_digest).await?;
    if is_index(&manifest.media_type) {
        let index: IndexDocument = serde_json::from_slice(&manifest.bytes)?;
        let first = index
            .manifests
            .first()
            .ok_or_else(|| AllowlistError::EmptyIndex {
                reference: reference.to_string(),
            })?;
        manifest = client.manifest(&repository, &first.digest).await?;
    }
    let manifest: ImageManifest = serde_json::from_slice(&manifest.bytes)?;
    Ok(client.blob_redirect(&repository, &manifest.config.digest).await?)
}

/// Runs one step under its timeout.
async fn step<T>(
    step: ProbeStep,
    timeout: Duration,
    future: impl std::future::Future<Output = T>,
) -> Result<T, ProbeFailure> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| ProbeFailure {
            step,
            kind: FailureKind::Timeout,
            message: format!("no answer within {}", format_duration(timeout)),
        })
}

async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<ResolvedAddress>, ProbeFailure> {
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(address) => vec![address],
        Err(_) => step(ProbeStep::Dns, timeout, tokio::net::lookup_host((host, port)))
            .await?
            .map_err(|error| ProbeFailure {
                step: ProbeStep::Dns,
                kind: FailureKind::NotFound,
                message: format!("{host} does not resolve: {error}"),
            })?
            .map(|addr| addr.ip())
            .collect(),
    };
    let mut resolved: Vec<ResolvedAddress> = Vec::new();
    for address in addresses {
        if resolved.iter().all(|known| known.address != address) {
            resolved.push(ResolvedAddress {
                record: if address.is_ipv4() { "A" } else { "AAAA" }.to_owned(),
                address,
            });
        }
    }
    if resolved.is_empty() {
        return Err(ProbeFailure {
            step: ProbeStep::Dns,
            kind: FailureKind::NotFound,
            message: format!("{host} resolves to no address"),
        });
    }
    Ok(resolved)
}

/// Connects to each address in turn; the error is the last address's.
async fn connect(
    addresses: &[ResolvedAddress],
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ProbeFailure> {
    let mut last = None;
    for address in addresses {
        let target = SocketAddr::new(address.address, port);
        match step(ProbeStep::Connect, timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => {
                let kind = match error.kind() {
                    std::io::ErrorKind::ConnectionRefused => FailureKind::Refused,
                    std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable => {
                        FailureKind::NoRoute
                    }
                    std::io::ErrorKind::TimedOut => FailureKind::Timeout,
                    _ => FailureKind::Other,
                };
                last = Some(ProbeFailure {
                    step: ProbeStep::Connect,
                    kind,
                    message: format!("{target}: {error}"),
                });
            }
            Err(mut timeout) => {
                timeout.message = format!("{target}: {}", timeout.message);
                last = Some(timeout);
            }
        }
    }
    Err(last.unwrap_or(ProbeFailure {
        step: ProbeStep::Connect,
        kind: FailureKind::Other,
        message: "no address to connect to".to_owned(),
    }))
}

/// The status and bearer realm of a registry's `GET /v2/`.
struct PingResponse {
    status: u16,
    token_realm: Option<String>,
}

/// Sends `GET /v2/` on an open connection and reads the status line and headers.
async fn registry_ping(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    host_header: &str,
    timeout: Duration,
) -> Result<PingResponse, ProbeFailure> {
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: coder-install/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(1024);
        let mut buffer = [0_u8; 1024];
        // Up to the end of the headers, at most 16 KiB.
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 << 10 {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = step(ProbeStep::Http, timeout, exchange)
        .await?
        .map_err(|error| ProbeFailure {
            step: ProbeStep::Http,
            kind: FailureKind::Other,
            message: format!("GET /v2/: {error}"),
        })?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeFailure {
            step: ProbeStep::Http,
            kind: FailureKind::Other,
            message: format!(
                "GET /v2/: not an HTTP answer ({:?})",
                text.chars().take(40).collect::<String>()
            ),
        })?;
    let token_realm = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("www-authenticate"))
        .and_then(|(_, value)| Challenge::parse(value.trim()))
        .and_then(|challenge| match challenge {
            Challenge::Bearer { realm, .. } => Some(realm),
            Challenge::Basic => None,
        });
    Ok(PingResponse { status, token_realm })
}

fn summarise_certificate(leaf: &CertificateDer<'_>) -> Option<CertificateSummary> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(CertificateSummary {
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        not_after: jiff::Timestamp::from_second(certificate.validity().not_after.timestamp()).ok()?,
    })
}

/// `1.5s`, `30s`, `2m`: a duration the way the flags take it.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}
