//! Reaching the cluster: a client from the kubeconfig and context the user names, the server's
//! version, and discovery of the APIs it serves.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

use crate::render::PdbApi;

/// Which cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// A kubeconfig file; default: `$KUBECONFIG`, then `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; default: its current context.
    pub context: Option<String>,
}

/// A connected cluster: the client and what the API server serves.
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The server's version (`major.minor`, e.g. `1.20`).
    pub version: ServerVersion,
    discovery: Discovery,
}

/// The API server's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest Kubernetes release the charts support.
pub const OLDEST_SUPPORTED: ServerVersion = ServerVersion { major: 1, minor: 20 };

/// Why the cluster could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig is missing, unreadable or names no such context.
    #[error("kubeconfig: {0}; pass --kubeconfig FILE (and --context NAME) for the target cluster")]
    Kubeconfig(String),
    /// The API server did not answer, or its certificate was refused.
    #[error(
        "the Kubernetes API server at {url} is unreachable: {reason}; check the address, the network path and the CA in the kubeconfig"
    )]
    Unreachable {
        /// The server URL from the kubeconfig.
        url: String,
        /// The underlying error, with its causes.
        reason: String,
    },
    /// The server is too old.
    #[error("the API server runs Kubernetes {found}; coder-install supports {OLDEST_SUPPORTED} and newer")]
    Unsupported {
        /// What it runs.
        found: ServerVersion,
    },
    /// A request was refused.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Connects and discovers the served APIs.
pub async fn connect(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
    let config_options = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|error| {
                ClusterError::Kubeconfig(format!("{}: {}", path.display(), chain(&error)))
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &config_options)
                .await
                .map_err(|error| ClusterError::Kubeconfig(format!("{}: {}", path.display(), chain(&error))))?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&config_options)
            .await
            .map_err(|error| ClusterError::Kubeconfig(chain(&error)))?,
        None => kube::Config::infer()
            .await
            .map_err(|error| ClusterError::Kubeconfig(chain(&error)))?,
    };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|error| ClusterError::Kubeconfig(chain(&error)))?;
    let unreachable = |error: kube::Error| ClusterError::Unreachable {
        url: url.clone(),
        reason: chain(&error),
    };
    let info = client.apiserver_version().await.map_err(unreachable)?;
    let version = ServerVersion {
        major: leading_number(&info.major),
        minor: leading_number(&info.minor),
    };
    if version < OLDEST_SUPPORTED {
        return Err(ClusterError::Unsupported { found: version });
    }
    let discovery = Discovery::new(client.clone()).run().await.map_err(unreachable)?;
    Ok(Cluster {
        client,
        version,
        discovery,
    })
}

/// `"20+"` → 20.
fn leading_number(text: &str) -> u32 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl Cluster {
    /// The API resource and scope for an `apiVersion` and `kind`, if the server serves it.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        self.discovery
            .resolve_gvk(&gvk)
            .map(|(resource, capabilities): (ApiResource, ApiCapabilities)| {
                (resource, capabilities.scope == Scope::Namespaced)
            })
    }

    /// Which PodDisruptionBudget API the server serves (`policy/v1` when both are).
    pub fn pdb_api(&self) -> PdbApi {
        if self.resolve("policy/v1", "PodDisruptionBudget").is_some() {
            PdbApi::V1
        } else {
            PdbApi::V1Beta1
        }
    }
}
