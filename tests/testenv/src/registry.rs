//! The CNCF distribution registry (Debian's `docker-registry`) as a test server.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tempfile::TempDir;

use crate::process::{ServerProcess, accepts_connections, start_on_free_port};
use crate::tls::{TestCa, write_file};
use crate::{Result, binaries, io_context};

/// Which kind of registry to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFlavour {
    /// Plain HTTP, anonymous, deletes refused (the registry's default).
    Plain,
    /// HTTPS with a certificate from a per-test [`TestCa`], and htpasswd basic auth.
    TlsBasicAuth,
    /// HTTPS with a certificate from a per-test [`TestCa`], anonymous (a site registry with a
    /// private CA that the nodes pull from without a login).
    Tls,
    /// Plain HTTP, anonymous, with `storage.delete.enabled`.
    DeleteEnabled,
    /// Plain HTTP, anonymous, in read-only maintenance mode: every push is refused (405).
    ReadOnly,
    /// Plain HTTP, anonymous, and every blob download is redirected (307) to
    /// [`BLOB_REDIRECT_BASE`], as registries backed by object storage or a CDN do (the
    /// registry's own `redirect` storage middleware).
    RedirectingBlobs,
}

/// Where a [`RegistryFlavour::RedirectingBlobs`] registry sends blob downloads: a host under the
/// reserved `.test` domain, which never resolves, so following the redirect cannot leave the
/// machine.
pub const BLOB_REDIRECT_BASE: &str = "https://blobs.registry.test/";

/// A running registry; dropping it stops the server and deletes its storage.
pub struct Registry {
    // Declared first so that it is dropped (the server stopped) before the directory is removed.
    _process: ServerProcess,
    flavour: RegistryFlavour,
    addr: SocketAddr,
    tls: Option<RegistryTls>,
    credentials: Option<(String, String)>,
    dir: TempDir,
}

struct RegistryTls {
    ca_pem: String,
    ca_file: PathBuf,
}

/// The user name of the [`RegistryFlavour::TlsBasicAuth`] registry.
const USERNAME: &str = "coder-test";

impl Registry {
    /// Starts a registry of the given flavour on a free loopback port and waits until it listens.
    pub async fn start(flavour: RegistryFlavour) -> Result<Self> {
        let binary = binaries::docker_registry()?;
        start_on_free_port(|port| Self::start_on(binary.clone(), flavour, port)).await
    }

    async fn start_on(binary: PathBuf, flavour: RegistryFlavour, port: u16) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testenv-registry-")
            .tempdir()
            .map_err(io_context("creating the registry's directory"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: {delete}\n  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: {read_only}\n\
             http:\n  addr: {addr}\n{middleware}",
            root = dir.path().join("storage").display(),
            delete = flavour == RegistryFlavour::DeleteEnabled,
            read_only = flavour == RegistryFlavour::ReadOnly,
            middleware = if flavour == RegistryFlavour::RedirectingBlobs {
                format!(
                    "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {BLOB_REDIRECT_BASE}\n"
                )
            } else {
                String::new()
            },
        );

        let (mut tls, mut credentials) = (None, None);
        if matches!(flavour, RegistryFlavour::Tls | RegistryFlavour::TlsBasicAuth) {
            let ca = TestCa::new()?;
            let ca_file = dir.path().join("ca.crt");
            ca.write_cert(&ca_file)?;
            let server = ca.issue_server_cert(dir.path(), "registry")?;
            let _ = write!(
                config,
                "  tls:\n    certificate: {}\n    key: {}\n",
                server.cert.display(),
                server.key.display(),
            );
            tls = Some(RegistryTls {
                ca_pem: ca.cert_pem(),
                ca_file,
            });
        }
        if flavour == RegistryFlavour::TlsBasicAuth {
            let password = random_hex(16)?;
            // bcrypt's minimum cost keeps start-up fast; the registry accepts any cost.
            let hash = bcrypt::hash(&password, 4).map_err(|error| crate::Error::Io {
                context: "hashing the registry password".to_owned(),
                source: std::io::Error::other(error),
            })?;
            let htpasswd = dir.path().join("htpasswd");
            write_file(&htpasswd, format!("{USERNAME}:{hash}\n").as_bytes())?;
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: coder-install-test\n    path: {}\n",
                htpasswd.display(),
            );
            credentials = Some((USERNAME.to_owned(), password));
        }

        let config_path = dir.path().join("config.yml");
        write_file(&config_path, config.as_bytes())?;
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config_path);
        let mut process = ServerProcess::spawn(
            "docker-registry",
            command,
            &dir.path().join("registry.log"),
            Signal::SIGTERM,
        )?;
        process
            .wait_ready(Duration::from_secs(20), || accepts_connections(addr))
            .await?;
        Ok(Self {
            _process: process,
            flavour,
            addr,
            tls,
            credentials,
            dir,
        })
    }

    /// The flavour this registry was started with.
    pub fn flavour(&self) -> RegistryFlavour {
        self.flavour
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on (e.g. to put a [`crate::ThrottledLink`] in front of it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A reference to `repository_and_tag` (e.g. `team/app:1.0`) on this registry.
    pub fn reference(&self, repository_and_tag: &str) -> Reference {
        Reference::with_tag(
            self.host(),
            repository_and_tag
                .split_once(':')
                .map_or(repository_and_tag, |(repo, _)| repo)
                .to_owned(),
            repository_and_tag
                .split_once(':')
                .map_or("latest", |(_, tag)| tag)
                .to_owned(),
        )
    }

    /// The user name and password, for the basic-auth flavour.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// How `oci-client` authenticates to this registry.
    pub fn auth(&self) -> RegistryAuth {
        match self.credentials() {
            Some((user, password)) => RegistryAuth::Basic(user.to_owned(), password.to_owned()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// The test CA certificate (PEM) that signed the HTTPS flavour's server certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|tls| tls.ca_pem.as_str())
    }

    /// The same CA certificate as a file, for tools that take a path (e.g. `--registry-ca`).
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca_file.as_path())
    }

    /// An `oci-client` configured for this registry: plain HTTP or the test CA as a trusted root.
    pub fn oci_client(&self) -> Client {
        let mut config = ClientConfig::default();
        match &self.tls {
            Some(tls) => {
                config.protocol = ClientProtocol::Https;
                config.extra_root_certificates = vec![Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: tls.ca_pem.as_bytes().to_vec(),
                }];
            }
            None => config.protocol = ClientProtocol::Http,
        }
        Client::new(config)
    }

    /// A `reqwest` client that trusts this registry's CA, for raw HTTP API calls in tests.
    pub fn http_client(&self) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = &self.tls {
            builder = builder.tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes())?]);
        }
        Ok(builder.build()?)
    }

    /// The registry's storage root: what a test inspects to assert nothing was pushed.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

/// `bytes` random bytes from the kernel, hex encoded.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut buffer))
        .map_err(io_context("reading /dev/urandom"))?;
    Ok(hex::encode(buffer))
}
