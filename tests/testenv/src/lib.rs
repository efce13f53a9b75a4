//! The real servers that coder-install's tests run against, started by the tests themselves.
//!
//! Every server runs on `127.0.0.1` with a free port and its own temporary data directory, and
//! is stopped and cleaned up when its handle is dropped (also when a test panics):
//!
//! - [`Registry`]: the CNCF distribution registry (Debian's `docker-registry`), in three
//!   flavours ([`RegistryFlavour`]): plain HTTP, HTTPS with basic auth, and deletes enabled.
//! - [`KubeApiServer`]: etcd plus a real kube-apiserver, envtest style, with a kubeconfig that the
//!   `kube` crate loads. There is no scheduler or kubelet: pods never run.
//! - [`Postgres`]: PostgreSQL 15, run as an unprivileged user.
//! - [`BodyLimitProxy`]: NGINX in front of a server with a cap on request bodies (413 over it),
//!   as site registries often sit.
//! - [`ThrottledLink`]: a slow link in front of a server (a loopback relay at a fixed rate) that
//!   counts the bytes the server sent through it.
//! - [`cli`]: a program's exit checked, its output returned.
//! - [`fixture`]: small but real OCI images (gzip tar layers, configs, manifests, multi-arch
//!   indexes) pushed to a test registry.
//! - [`cosign`]: cosign's signature and attestation artifacts, signed with a P-256 key.
//!
//! A server binary that cannot be found is an [`Error::MissingBinary`] naming how to install it:
//! tests fail, they never skip. `scripts/install-system-deps.sh` and
//! `scripts/build-kubernetes.sh` install everything.

mod binaries;
mod body_limit_proxy;
pub mod browser;
pub mod cli;
pub mod cosign;
pub mod dependency_images;
pub mod fixture;
pub mod front_door_walk;
mod kubernetes;
mod link;
mod node;
mod postgres;
mod process;
mod registry;
mod site_tls;
mod tls;

pub use body_limit_proxy::BodyLimitProxy;
pub use kubernetes::{ApiServerOptions, KUBECONFIG_CONTEXT, KubeApiServer, mark_deployment_available};
pub use link::ThrottledLink;
pub use node::LOAD_BALANCER_CIDR;
pub use node::{BRIDGE, Cluster, NODE_ADDRESS, NODE_NAME, PAUSE_IMAGE, POD_CIDR, SERVICE_CIDR};
pub use postgres::Postgres;
pub use registry::{BLOB_REDIRECT_BASE, Registry, RegistryFlavour};
pub use site_tls::{ACCESS_TLS_SECRET, SiteTls, WORKSPACE_TLS_SECRET};
pub use tls::{ServerCertFiles, TestCa};

use std::path::PathBuf;
use std::time::Duration;

/// Why a test server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server binary is not installed; `hint` says how to install it.
    #[error("{what} not found (looked in: {looked_in}); {hint}")]
    MissingBinary {
        /// The binary that was looked for.
        what: &'static str,
        /// Where it was looked for.
        looked_in: String,
        /// How to install it.
        hint: &'static str,
    },
    /// A server exited or never became ready; `log` is the tail of its output.
    #[error(
        "{server} did not become ready within {waited:?}: {reason}\n--- last lines of {log_path} ---\n{log}"
    )]
    NotReady {
        /// Which server.
        server: &'static str,
        /// How long we waited.
        waited: Duration,
        /// What was observed last.
        reason: String,
        /// The server's log file.
        log_path: PathBuf,
        /// The last lines of that log.
        log: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A test CA or certificate could not be made.
    #[error("generating test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A registry operation of the fixture builder failed.
    #[error("registry operation on {reference}: {source}")]
    Registry {
        /// The image reference being pushed or pulled.
        reference: String,
        /// The underlying client error.
        source: oci_client::errors::OciDistributionError,
    },
    /// An HTTP client could not be built or a request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A database operation failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A helper was called with an argument it cannot use.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// A kubeconfig could not be written or loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// The node (containerd, kubelet, its network) could not be set up.
    #[error("node: {0}")]
    Node(String),
}

/// A result whose error is a test-environment [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done.
pub(crate) fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
