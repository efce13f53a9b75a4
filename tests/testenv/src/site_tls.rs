//! TLS as a site gives it to the platform: a private CA, a certificate for the access host and a
//! wildcard certificate for the workspaces' hosts, stored as the `kubernetes.io/tls` Secrets the
//! chart's Ingress names (`ingress.tlsSecret`, `ingress.workspaceTlsSecret`), and the clients
//! that trust that CA: an HTTP client, and a home folder whose NSS database Chromium reads.
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> coder_testenv::Result<()> {
//! let dir = tempfile::tempdir().expect("dir");
//! let tls = coder_testenv::SiteTls::new(dir.path(), "coder.example.test", "ws.example.test")?;
//! tls.create_secrets(&client, "coder").await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http;

use crate::tls::{ServerCertFiles, TestCa};
use crate::{Error, Result, io_context};

/// The Secret holding the access host's certificate (the chart value `ingress.tlsSecret`).
pub const ACCESS_TLS_SECRET: &str = "coder-tls";
/// The Secret holding the workspaces' wildcard certificate (`ingress.workspaceTlsSecret`).
pub const WORKSPACE_TLS_SECRET: &str = "coder-workspaces-tls";

/// A site's private CA and the platform's two certificates, as files in one folder.
pub struct SiteTls {
    dir: PathBuf,
    ca: TestCa,
    access_host: String,
    workspace_domain: String,
    access: ServerCertFiles,
    workspaces: ServerCertFiles,
}

impl SiteTls {
    /// Makes a CA (`ca.crt` in `dir`), a certificate for `access_host` and one for
    /// `*.<workspace_domain>` (the hosts `ws-<id>.<workspace_domain>`).
    pub fn new(dir: &Path, access_host: &str, workspace_domain: &str) -> Result<Self> {
        let ca = TestCa::new()?;
        ca.write_cert(&dir.join("ca.crt"))?;
        let access = ca.issue_server_cert_for(dir, "access", &[access_host.to_owned()])?;
        let workspaces = ca.issue_server_cert_for(dir, "workspaces", &[format!("*.{workspace_domain}")])?;
        Ok(Self {
            dir: dir.to_owned(),
            ca,
            access_host: access_host.to_owned(),
            workspace_domain: workspace_domain.to_owned(),
            access,
            workspaces,
        })
    }

    /// The CA certificate's file (PEM): what a site's browsers and clients are told to trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The access host's certificate and key files.
    pub fn access_cert(&self) -> &ServerCertFiles {
        &self.access
    }

    /// The workspaces' wildcard certificate and key files.
    pub fn workspace_cert(&self) -> &ServerCertFiles {
        &self.workspaces
    }

    /// Creates `namespace` if needed and stores both certificates as the Secrets
    /// [`ACCESS_TLS_SECRET`] and [`WORKSPACE_TLS_SECRET`] (what `kubectl create secret tls`
    /// makes), by server-side apply, so that a second call changes nothing.
    pub async fn create_secrets(&self, client: &kube::Client, namespace: &str) -> Result<()> {
        let params = PatchParams::apply("coder-testenv").force();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .patch(
                namespace,
                &params,
                &Patch::Apply(with_kind(&object, "v1", "Namespace")?),
            )
            .await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for (name, files) in [
            (ACCESS_TLS_SECRET, &self.access),
            (WORKSPACE_TLS_SECRET, &self.workspaces),
        ] {
            let read =
                |path: &Path| std::fs::read(path).map_err(io_context(format!("reading {}", path.display())));
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(BTreeMap::from([
                    ("tls.crt".to_owned(), ByteString(read(&files.cert)?)),
                    ("tls.key".to_owned(), ByteString(read(&files.key)?)),
                ])),
                ..Secret::default()
            };
            secrets
                .patch(name, &params, &Patch::Apply(with_kind(&secret, "v1", "Secret")?))
                .await?;
        }
        Ok(())
    }

    /// An HTTP client that trusts the CA and sends the access host and each of
    /// `workspace_hosts` to `address` (the load balancer's address), as the site's DNS would, on
    /// each URL's port (80 for `http://`, 443 for `https://`); it follows no redirects, so that
    /// tests see them.
    pub fn http_client(&self, address: IpAddr, workspace_hosts: &[String]) -> Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes())?;
        // Port 0: reqwest keeps the URL's port.
        let address = SocketAddr::new(address, 0);
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .resolve(&self.access_host, address);
        for host in workspace_hosts {
            builder = builder.resolve(host, address);
        }
        Ok(builder.build()?)
    }

    /// Opens a WebSocket to `url` (`wss://HOST/...`) through `address` (the load balancer's
    /// address and port), over TLS that trusts only the site's CA, with `headers` added to the
    /// upgrade request (e.g. `authorization`).
    pub async fn websocket(
        &self,
        address: SocketAddr,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WebSocketStream<TlsStream<TcpStream>>> {
        use rustls::pki_types::pem::PemObject as _;
        let invalid = |what: String| Error::InvalidArgument(what);
        let mut request = url
            .into_client_request()
            .map_err(|error| invalid(format!("WebSocket URL {url}: {error}")))?;
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|error| invalid(format!("header name {name}: {error}")))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|error| invalid(format!("header value for {name}: {error}")))?;
            request.headers_mut().insert(name, value);
        }
        let host = request
            .uri()
            .host()
            .ok_or_else(|| invalid(format!("{url} names no host")))?
            .to_owned();
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem().as_bytes())
            .map_err(|error| invalid(format!("the site CA: {error}")))?;
        roots
            .add(ca)
            .map_err(|error| invalid(format!("the site CA: {error}")))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("TLS versions: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|error| invalid(format!("{host}: {error}")))?;
        let tcp = TcpStream::connect(address)
            .await
            .map_err(io_context(format!("connecting to {address} for {url}")))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(io_context(format!("TLS with {host} at {address}")))?;
        let (socket, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(|error| invalid(format!("WebSocket upgrade at {url}: {error}")))?;
        Ok(socket)
    }

    /// Chromium's address-mapping flag for these hosts: the access host and every host under
    /// the workspace domain go to `address` (no DNS, no `/etc/hosts`).
    pub fn host_resolver_rules(&self, address: IpAddr) -> String {
        format!(
            "--host-resolver-rules=MAP {} {address}, MAP *.{} {address}",
            self.access_host, self.workspace_domain
        )
    }

    /// A home folder (`DIR/home`) whose NSS database (`.pki/nssdb`, where Chromium on Linux
    /// looks) trusts the CA for web sites: run Chromium (and chromedriver) with `HOME` set to it.
    /// Uses `certutil` (Debian package `libnss3-tools`); a second call returns the same home.
    pub fn chromium_home(&self) -> Result<PathBuf> {
        let home = self.dir.join("home");
        let database = home.join(".pki/nssdb");
        if database.join("cert9.db").exists() {
            return Ok(home); // made by an earlier call
        }
        std::fs::create_dir_all(&database).map_err(io_context(format!("creating {}", database.display())))?;
        let database = format!("sql:{}", database.display());
        certutil(&["-N", "--empty-password", "-d", &database])?;
        let ca = self.ca_path().display().to_string();
        certutil(&[
            "-A",
            "-n",
            "coder-site-ca",
            "-t",
            "C,,",
            "-i",
            &ca,
            "-d",
            &database,
        ])?;
        Ok(home)
    }
}

/// Runs `certutil` with `args`, failing with its output.
fn certutil(args: &[&str]) -> Result<()> {
    let output = Command::new("certutil")
        .args(args)
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingBinary {
                what: "certutil",
                looked_in: "PATH".to_owned(),
                hint: "install it with `apt-get install libnss3-tools`",
            },
            _ => Error::Io {
                context: "running certutil".to_owned(),
                source,
            },
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "certutil {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `object` as JSON with its `apiVersion` and `kind`, which server-side apply needs.
fn with_kind<T: serde::Serialize>(object: &T, api_version: &str, kind: &str) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(object)
        .map_err(|error| Error::InvalidArgument(format!("serializing a {kind}: {error}")))?;
    value["apiVersion"] = serde_json::Value::from(api_version);
    value["kind"] = serde_json::Value::from(kind);
    Ok(value)
}
