//! etcd plus a real kube-apiserver, started the way envtest starts them for operator tests.
//!
//! The API server serves with a certificate from a per-test [`TestCa`] and authenticates one
//! static token as a member of `system:masters`. There is no scheduler, controller-manager or
//! kubelet: objects are stored and validated, pods never run. Tests that need readiness patch
//! an object's status themselves.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{ServerProcess, accepts_connections, free_port, start_on_free_port};
use crate::registry::random_hex;
use crate::tls::{ServerCertFiles, TestCa, write_file};
use crate::{Error, Result, binaries, io_context};

/// A running etcd and kube-apiserver pair; dropping it stops both and deletes their data.
pub struct KubeApiServer {
    // Field order is drop order: the API server stops before etcd, and both before the directory goes.
    _apiserver: ServerProcess,
    _etcd: ServerProcess,
    addr: SocketAddr,
    token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    restricted_kubeconfig: PathBuf,
    service_account_key: PathBuf,
    ca_path: PathBuf,
    _dir: TempDir,
}

/// How to run the API server: [`Default`] is the node-less server on loopback that most tests use.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// The one address it listens on (and advertises to pods as the `kubernetes` Service's
    /// endpoint): loopback without a node; an address of the pod network's bridge with one.
    pub bind_address: IpAddr,
    /// The Service IP range (its first address is the `kubernetes` Service). Test networks
    /// only (198.18.0.0/15), never a private range.
    pub service_cidr: String,
    /// Whether the ServiceAccount admission plugin runs. It refuses every Pod until a
    /// controller-manager has made the namespace's `default` ServiceAccount, so it is off
    /// without one (as envtest does) and on with a node.
    pub service_account_admission: bool,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            service_cidr: "198.19.0.0/16".to_owned(),
            service_account_admission: false,
        }
    }
}

/// A user the test API server authenticates but RBAC grants nothing (beyond what every
/// authenticated user may do), for tests of "forbidden".
pub const RESTRICTED_USER: &str = "restricted";

/// The context, cluster and user name written into the kubeconfig.
pub const KUBECONFIG_CONTEXT: &str = "coder-install-test";

impl KubeApiServer {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until `/readyz` answers.
    pub async fn start() -> Result<Self> {
        Self::start_with(&ApiServerOptions::default()).await
    }

    /// Starts etcd on loopback and kube-apiserver as `options` say, and waits until `/readyz`
    /// answers.
    pub async fn start_with(options: &ApiServerOptions) -> Result<Self> {
        let etcd_binary = binaries::etcd()?;
        let apiserver_binary = binaries::kube_apiserver()?;
        let dir = tempfile::Builder::new()
            .prefix("testenv-kube-")
            .tempdir()
            .map_err(io_context("creating the API server's directory"))?;

        let (etcd, etcd_url) = start_on_free_port(|port| start_etcd(&etcd_binary, dir.path(), port)).await?;
        let credentials = Credentials::write(dir.path(), options)?;

        let dir_path = dir.path().to_owned();
        let bind_address = options.bind_address;
        let (apiserver, addr) = start_on_free_port(|port| {
            let command = apiserver_command(
                &apiserver_binary,
                options,
                &etcd_url,
                port,
                &dir_path,
                &credentials,
            );
            let log = dir_path.join("kube-apiserver.log");
            let addr = SocketAddr::new(bind_address, port);
            let ready_probe = ReadyProbe::new(addr, &credentials.token, &credentials.ca.cert_pem());
            async move {
                let ready_probe = ready_probe?;
                let mut process = ServerProcess::spawn("kube-apiserver", command, &log, Signal::SIGTERM)?;
                process
                    .wait_ready(Duration::from_secs(90), || ready_probe.probe())
                    .await?;
                Ok((process, addr))
            }
        })
        .await?;

        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &format!("https://{addr}"),
            &credentials.ca_path,
            &credentials.token,
        )?;
        let restricted_kubeconfig = dir.path().join("kubeconfig-restricted");
        write_kubeconfig(
            &restricted_kubeconfig,
            &format!("https://{addr}"),
            &credentials.ca_path,
            &credentials.restricted_token,
        )?;
        Ok(Self {
            _apiserver: apiserver,
            _etcd: etcd,
            addr,
            token: credentials.token,
            ca_pem: credentials.ca.cert_pem(),
            kubeconfig,
            restricted_kubeconfig,
            service_account_key: credentials.sa_key,
            ca_path: credentials.ca_path,
            _dir: dir,
        })
    }

    /// The private key that signs service-account tokens (PKCS#8 PEM): what the
    /// controller-manager needs to issue pods their tokens.
    pub fn service_account_key_path(&self) -> &Path {
        &self.service_account_key
    }

    /// The CA certificate file (PEM) that pods trust the API server by.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The address the API server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for [`RESTRICTED_USER`].
    pub fn restricted_kubeconfig_path(&self) -> &Path {
        &self.restricted_kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bearer token of the `admin` user (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig file for this server (context [`KUBECONFIG_CONTEXT`]), as `--kubeconfig` takes.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A `kube` client loaded from [`Self::kubeconfig_path`], exactly as the tool would load it.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from(&self.kubeconfig).await
    }
}

/// A `kube` client loaded from the kubeconfig at `path`.
pub(crate) async fn client_from(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| Error::Kubeconfig(error.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| Error::Kubeconfig(error.to_string()))?;
    kube::Client::try_from(config).map_err(|error| Error::Kubeconfig(error.to_string()))
}

/// What the API server is started with, written into its directory: its CA and serving
/// certificate, the service-account key pair, and the tokens file (the admin's and the
/// restricted user's tokens).
struct Credentials {
    /// The CA that signs the serving certificate (and that clients trust).
    ca: TestCa,
    /// The serving certificate and key.
    serving: ServerCertFiles,
    /// The CA certificate's file.
    ca_path: PathBuf,
    /// The service-account signing key (PKCS#8 PEM).
    sa_key: PathBuf,
    /// Its public half.
    sa_pub: PathBuf,
    /// The admin's token (`system:masters`).
    token: String,
    /// [`RESTRICTED_USER`]'s token.
    restricted_token: String,
    /// The static tokens file.
    tokens: PathBuf,
}

impl Credentials {
    /// Makes the CA, a serving certificate for every name pods reach the API server by (its
    /// address, `kubernetes...`, the first Service address), a service-account key pair and the
    /// two tokens, and writes them into `dir`.
    fn write(dir: &Path, options: &ApiServerOptions) -> Result<Self> {
        let ca = TestCa::new()?;
        // Pods reach the API server as the first Service address and by these names.
        let mut names = vec![
            options.bind_address.to_string(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ];
        names.extend(first_service_address(&options.service_cidr));
        let serving = ca.issue_server_cert_for(dir, "apiserver", &names)?;
        let ca_path = dir.join("ca.crt");
        ca.write_cert(&ca_path)?;
        // Service-account tokens need a signing key; any key pair will do (ECDSA P-256 here).
        let service_account_key = rcgen::KeyPair::generate()?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        write_file(&sa_key, service_account_key.serialize_pem().as_bytes())?;
        write_file(&sa_pub, service_account_key.public_key_pem().as_bytes())?;
        let token = random_hex(24)?;
        let restricted_token = random_hex(24)?;
        let tokens = dir.join("tokens.csv");
        write_file(
            &tokens,
            format!(
                "{token},admin,admin,system:masters\n{restricted_token},{RESTRICTED_USER},{RESTRICTED_USER}\n"
            )
            .as_bytes(),
        )?;
        Ok(Self {
            ca,
            serving,
            ca_path,
            sa_key,
            sa_pub,
            token,
            restricted_token,
            tokens,
        })
    }
}

/// The kube-apiserver command: on `port` of the options' address, storing in etcd at
/// `etcd_url`, serving and authenticating with `credentials`, RBAC on.
fn apiserver_command(
    binary: &Path,
    options: &ApiServerOptions,
    etcd_url: &str,
    port: u16,
    dir: &Path,
    credentials: &Credentials,
) -> Command {
    let bind_address = options.bind_address;
    let mut command = Command::new(binary);
    command
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg(format!("--secure-port={port}"))
        .arg(format!("--bind-address={bind_address}"))
        // Explicit, so the server also starts where there is no default route (a
        // network namespace with only loopback).
        .arg(format!("--advertise-address={bind_address}"))
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!("--tls-cert-file={}", credentials.serving.cert.display()))
        .arg(format!(
            "--tls-private-key-file={}",
            credentials.serving.key.display()
        ))
        .arg(format!("--token-auth-file={}", credentials.tokens.display()))
        .arg("--authorization-mode=RBAC")
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!(
            "--service-account-key-file={}",
            credentials.sa_pub.display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            credentials.sa_key.display()
        ))
        .arg(format!("--service-cluster-ip-range={}", options.service_cidr))
        .arg("--allow-privileged=true")
        // Reach kubelets by their address: looking up a node's name would ask the
        // host's resolvers, which are outside the test world.
        .arg("--kubelet-preferred-address-types=InternalIP");
    if !options.service_account_admission {
        // As envtest does: without a controller-manager no namespace ever gets its
        // default ServiceAccount, so this plugin would refuse every Pod.
        command.arg("--disable-admission-plugins=ServiceAccount");
    }
    command
}

async fn start_etcd(binary: &Path, dir: &Path, client_port: u16) -> Result<(ServerProcess, String)> {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{}", free_port()?);
    let mut command = Command::new(binary);
    command
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"));
    let mut process = ServerProcess::spawn("etcd", command, &dir.join("etcd.log"), Signal::SIGTERM)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], client_port));
    process
        .wait_ready(Duration::from_secs(30), || accepts_connections(addr))
        .await?;
    Ok((process, client_url))
}

/// Polls `/readyz` with the admin token, trusting only the test CA.
struct ReadyProbe {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl ReadyProbe {
    fn new(addr: SocketAddr, token: &str, ca_pem: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            url: format!("https://{addr}/readyz"),
            token: token.to_owned(),
        })
    }

    async fn probe(&self) -> Result<bool, String> {
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| format!("GET {}: {error}", self.url))?;
        if response.status().is_success() {
            Ok(true)
        } else {
            Err(format!("GET {} answered {}", self.url, response.status()))
        }
    }
}

/// The first host address of `cidr` (`198.19.0.0/16` gives `198.19.0.1`): the `kubernetes`
/// Service's cluster IP. `None` for anything but an IPv4 network.
fn first_service_address(cidr: &str) -> Option<String> {
    let network: std::net::Ipv4Addr = cidr.split_once('/')?.0.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(network) + 1).to_string())
}

/// Writes a kubeconfig (JSON, which every YAML reader accepts) with token auth and the test CA.
fn write_kubeconfig(path: &Path, server: &str, ca_path: &Path, token: &str) -> Result<()> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": KUBECONFIG_CONTEXT,
        "clusters": [{
            "name": KUBECONFIG_CONTEXT,
            "cluster": { "server": server, "certificate-authority": ca_path },
        }],
        "users": [{ "name": KUBECONFIG_CONTEXT, "user": { "token": token } }],
        "contexts": [{
            "name": KUBECONFIG_CONTEXT,
            "context": { "cluster": KUBECONFIG_CONTEXT, "user": KUBECONFIG_CONTEXT, "namespace": "default" },
        }],
    });
    let text =
        serde_json::to_vec_pretty(&kubeconfig).map_err(|error| Error::Kubeconfig(error.to_string()))?;
    write_file(path, &text)
}

/// Test-side stand-in for the deployment controller and kubelets, which the test API server
/// does not run: patches the Deployment's status to say all its replicas are up and available.
///
/// Only tests call this; it is how code that waits for readiness is exercised without nodes.
pub async fn mark_deployment_available(client: &kube::Client, namespace: &str, name: &str) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments.get(name).await?;
    let replicas = deployment.spec.and_then(|spec| spec.replicas).unwrap_or(1);
    let status = serde_json::json!({
        "status": {
            "observedGeneration": deployment.metadata.generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "simulated by coder-testenv (the test API server runs no kubelets)",
            }],
        }
    });
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}
