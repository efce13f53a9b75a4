//! A real single-node Kubernetes cluster: the [`KubeApiServer`] plus a node that runs pods.
//!
//! What runs for real: containerd with runc and the CNI bridge plugin, the kubelet, kube-proxy
//! (iptables), kube-scheduler and kube-controller-manager (which gives pods service-account
//! tokens), all built from Debian's Kubernetes 1.20.2 source (`scripts/build-kubernetes.sh`)
//! or Debian's packages. Pods pull their images from the tests' registries on loopback.
//!
//! What stands in, because no image or program for it exists here:
//! - Service DNS: dnsmasq fed by a watcher in the harness ([`dns`]), instead of CoreDNS;
//! - volumes: a provisioner in the harness making hostPath volumes ([`volumes`]);
//! - load balancers: addresses from [`LOAD_BALANCER_CIDR`] written into LoadBalancer Services'
//!   status by the harness, served by kube-proxy, as MetalLB would ([`load_balancer`]);
//! - NetworkPolicy enforcement: iptables chains the harness rebuilds from the policies, pods
//!   and namespaces, as a CNI policy engine would ([`network_policy`]); on by default,
//!   [`Cluster::set_network_policy_enforcement`] turns it off;
//! - the pod sandbox's pause image: the Kubernetes source's `pause.c`, imported into containerd.
//!
//! The node works on the host's network stack (it needs root): a bridge of the harness's own
//! with test-network addresses ([`network`]). The stand-ins are kept in step with the API server
//! twice a second by a watcher thread; [`Cluster::sync_stand_ins`] waits for its next pass.
//! kube-proxy owns the host's NAT rules, so one cluster runs on a machine at a time:
//! [`Cluster::start`] waits for a machine-wide lock.

mod cidr;
mod containerd;
pub(crate) mod dns;
mod load_balancer;
mod network;
mod network_policy;
mod volumes;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use kube::api::{Api, ListParams};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use self::cidr::Ipv4Cidr;
use self::containerd::Containerd;
use self::dns::{CLUSTER_DOMAIN, ServiceDns};
use self::load_balancer::LoadBalancerAllocator;
use self::network::PodNetwork;
pub use self::network::{BRIDGE, LOAD_BALANCER_CIDR, NODE_ADDRESS, POD_CIDR, SERVICE_CIDR};
use self::network_policy::NetworkPolicyEnforcer;
use self::volumes::VolumeProvisioner;
use crate::kubernetes::{ApiServerOptions, KubeApiServer};
use crate::process::{ServerProcess, free_port};
use crate::tls::write_file;
use crate::{Error, Result, binaries, io_context};

/// The node's name.
pub const NODE_NAME: &str = "coder-node";
/// An image every node holds (its pod sandbox's pause program): a pod that only needs to exist
/// and have an address can run it with `imagePullPolicy: Never`.
pub const PAUSE_IMAGE: &str = containerd::SANDBOX_IMAGE;
/// The machine-wide lock that one cluster holds while it runs.
const LOCK_PATH: &str = "/run/coder-testenv-node.lock";
/// How long the node may take to become Ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the watcher brings the stand-ins in step with the API server.
const WATCHER_PERIOD: Duration = Duration::from_millis(500);
/// How long a caller waits for a watcher pass (or a load-balancer address) before giving up.
const STAND_IN_TIMEOUT: Duration = Duration::from_secs(60);

/// The API server and a node running pods; dropping it stops every pod and program and removes
/// every file, mount, interface and rule it made.
pub struct Cluster {
    watcher: Option<Watcher>,
    kubelet: Option<ServerProcess>,
    containerd: Option<Containerd>,
    proxy: Option<ServerProcess>,
    controllers: Vec<ServerProcess>,
    api: Option<KubeApiServer>,
    network: Option<PodNetwork>,
    dir: Option<TempDir>,
    _lock: Flock<std::fs::File>,
}

impl Cluster {
    /// Starts the API server and the node, and waits until the node is Ready and the
    /// controllers work. Prints a line per step to stderr (the first start takes a while).
    /// NetworkPolicies are enforced from the start (see
    /// [`Cluster::set_network_policy_enforcement`]).
    pub async fn start() -> Result<Self> {
        refuse_without_root()?;
        let programs = NodePrograms::find()?;
        progress("waiting for the machine-wide node lock");
        let lock = tokio::task::spawn_blocking(take_machine_lock)
            .await
            .map_err(|error| Error::Node(format!("taking the node lock: {error}")))??;
        let dir = tempfile::Builder::new()
            .prefix("testenv-node-")
            .tempdir()
            .map_err(io_context("creating the node's directory"))?;
        let mut cluster = Self::nothing_started(lock);
        let root = dir.path().to_owned();
        cluster.dir = Some(dir);

        progress("pod network: bridge, routes, forwarding");
        cluster.network = Some(clean_up_and_create_pod_network(&programs)?);

        progress("kube-apiserver and etcd");
        let api = KubeApiServer::start_with(&ApiServerOptions {
            bind_address: IpAddr::V4(Ipv4Addr::from(NODE_ADDRESS)),
            service_cidr: SERVICE_CIDR.to_owned(),
            service_account_admission: true,
        })
        .await?;
        let kubeconfig = api.kubeconfig_path().to_owned();

        progress("service DNS stand-in (dnsmasq)");
        let dns = ServiceDns::start(&root).await?;

        progress("containerd, and the pause image");
        let containerd = Containerd::start(&root.join("containerd"), &programs.pause).await?;
        let endpoint = containerd.endpoint();
        cluster.containerd = Some(containerd);

        progress("kube-controller-manager and kube-scheduler");
        cluster
            .controllers
            .push(start_controller_manager(&programs, &root, &api)?);
        cluster
            .controllers
            .push(start_scheduler(&programs, &root, &kubeconfig)?);
        cluster.api = Some(api);

        progress("kube-proxy (iptables) and the kubelet");
        cluster.proxy = Some(start_kube_proxy(&programs, &root, &kubeconfig)?);
        cluster.kubelet = Some(start_kubelet(&programs, &root, &kubeconfig, &endpoint)?);

        progress("stand-ins: load balancers, NetworkPolicy enforcement");
        cluster.watcher = Some(Watcher::start(
            kubeconfig,
            StandIns {
                dns,
                volumes: VolumeProvisioner::new(&root.join("volumes")),
                load_balancers: LoadBalancerAllocator::new()?,
                network_policies: NetworkPolicyEnforcer::start(&root)?,
            },
            &root,
        )?);

        progress("waiting for the node to be Ready");
        cluster.wait_until_ready().await?;
        progress("the node is Ready");
        Ok(cluster)
    }

    /// A cluster holding the machine-wide `lock` with nothing started yet: [`Cluster::start`]
    /// fills it in step by step, so that a failed step stops what the earlier ones started.
    fn nothing_started(lock: Flock<std::fs::File>) -> Self {
        Self {
            watcher: None,
            kubelet: None,
            containerd: None,
            proxy: None,
            controllers: Vec::new(),
            api: None,
            network: None,
            dir: None,
            _lock: lock,
        }
    }

    /// The API server.
    pub fn api(&self) -> &KubeApiServer {
        self.api.as_ref().expect("set while the cluster exists")
    }

    /// Lets the node pull images from `host` (`HOST:PORT`, e.g. a test registry) over plain HTTP.
    pub fn trust_plain_http_registry(&self, host: &str) -> Result<()> {
        self.containerd
            .as_ref()
            .expect("set while the cluster exists")
            .trust_plain_http_registry(host)
    }

    /// Configures the node's registries from a folder in containerd's `config_path` layout (what
    /// `coder-install node-config` writes under `certs.d/`), copied as it is.
    pub fn install_registry_config(&self, config: &std::path::Path) -> Result<()> {
        self.containerd
            .as_ref()
            .expect("set while the cluster exists")
            .install_registry_config(config)
    }

    /// Turns the NetworkPolicy stand-in's enforcement on (the default) or off, and waits until
    /// the node's rules say so: off, every packet passes whatever the policies say, for tests
    /// that show what fails without them. Connections already open are not cut either way.
    pub async fn set_network_policy_enforcement(&self, enforce: bool) -> Result<()> {
        self.watcher()
            .control
            .enforce_network_policies
            .store(enforce, Ordering::SeqCst);
        self.sync_stand_ins().await
    }

    /// Waits until the node's watcher has made a whole pass that began after this call, so that
    /// the stand-ins (service DNS, volumes, load-balancer addresses, NetworkPolicy rules) reflect
    /// what the API server held at the call; fails with what that pass could not do.
    pub async fn sync_stand_ins(&self) -> Result<()> {
        let control = &self.watcher().control;
        let pass = control.passes_started.load(Ordering::SeqCst) + 1;
        let started = Instant::now();
        while control.passes_done.load(Ordering::SeqCst) < pass {
            if started.elapsed() > STAND_IN_TIMEOUT {
                return Err(Error::Node(format!(
                    "the node's watcher made no pass in {STAND_IN_TIMEOUT:?}; see {}",
                    self.log_dir().join("watcher.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let error = control
            .last_pass_error
            .lock()
            .map(|error| error.clone())
            .unwrap_or_default();
        if error.is_empty() {
            Ok(())
        } else {
            Err(Error::Node(format!("the node's watcher: {error}")))
        }
    }

    /// The address the load-balancer stand-in gave the LoadBalancer Service `namespace/name`
    /// (from [`LOAD_BALANCER_CIDR`]), waiting until it has one; the host and pods reach it.
    pub async fn load_balancer_address(&self, namespace: &str, name: &str) -> Result<Ipv4Addr> {
        let range: Ipv4Cidr = LOAD_BALANCER_CIDR
            .parse()
            .map_err(|error| Error::Node(format!("the load-balancer range: {error}")))?;
        let services: Api<Service> = Api::namespaced(self.api().client().await?, namespace);
        let started = Instant::now();
        loop {
            let service = services.get_opt(name).await?;
            let address = service
                .as_ref()
                .and_then(|service| service.status.as_ref())
                .and_then(|status| status.load_balancer.as_ref())
                .and_then(|balancer| balancer.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|ingress| ingress.ip.as_deref()?.parse::<Ipv4Addr>().ok())
                .find(|address| range.contains(*address));
            if let Some(address) = address {
                return Ok(address);
            }
            if started.elapsed() > STAND_IN_TIMEOUT {
                let kind = service
                    .and_then(|service| service.spec)
                    .and_then(|spec| spec.type_)
                    .unwrap_or_else(|| "no such Service".to_owned());
                return Err(Error::Node(format!(
                    "Service {namespace}/{name} ({kind}) got no load-balancer address in {STAND_IN_TIMEOUT:?}; see {}",
                    self.log_dir().join("watcher.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn watcher(&self) -> &Watcher {
        self.watcher.as_ref().expect("set while the cluster exists")
    }

    /// The directory holding every program's log (`kubelet.log`, `containerd/containerd.log`,
    /// `dnsmasq.log`, `watcher.log`, `network-policy.rules`, ...), for a test that fails to show.
    pub fn log_dir(&self) -> &Path {
        self.dir.as_ref().expect("set while the cluster exists").path()
    }

    /// One line per pod in `namespace`: phase, and each container's state and restarts; for
    /// failure messages.
    pub async fn describe_pods(&self, namespace: &str) -> String {
        let Ok(client) = self.api().client().await else {
            return "(no client)".to_owned();
        };
        let pods = match Api::<Pod>::namespaced(client, namespace)
            .list(&ListParams::default())
            .await
        {
            Ok(pods) => pods,
            Err(error) => return format!("(listing pods: {error})"),
        };
        let mut lines = Vec::new();
        for pod in pods.items {
            let name = pod.metadata.name.unwrap_or_default();
            let status = pod.status.unwrap_or_default();
            let mut line = format!("{name}: {}", status.phase.unwrap_or_default());
            let containers = status
                .init_container_statuses
                .into_iter()
                .flatten()
                .chain(status.container_statuses.into_iter().flatten());
            for container in containers {
                let state = container.state.unwrap_or_default();
                let state = if let Some(waiting) = state.waiting {
                    format!(
                        "waiting ({}: {})",
                        waiting.reason.unwrap_or_default(),
                        waiting.message.unwrap_or_default()
                    )
                } else if let Some(terminated) = state.terminated {
                    format!(
                        "terminated ({}, exit {})",
                        terminated.reason.unwrap_or_default(),
                        terminated.exit_code
                    )
                } else {
                    "running".to_owned()
                };
                line.push_str(&format!(
                    "; {} {state}, ready {}, restarts {}",
                    container.name, container.ready, container.restart_count
                ));
            }
            for condition in status.conditions.into_iter().flatten() {
                if condition.status != "True" && condition.message.is_some() {
                    line.push_str(&format!(
                        "; {}: {}",
                        condition.type_,
                        condition.message.unwrap_or_default()
                    ));
                }
            }
            lines.push(line);
        }
        lines.join("\n")
    }

    async fn wait_until_ready(&self) -> Result<()> {
        let client = self.api().client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        let started = Instant::now();
        let mut reason = String::from("not checked yet");
        while started.elapsed() < NODE_READY_TIMEOUT {
            let node_ready = nodes.get_opt(NODE_NAME).await.map(|node| {
                node.and_then(|node| node.status)
                    .and_then(|status| status.conditions)
                    .into_iter()
                    .flatten()
                    .any(|condition| condition.type_ == "Ready" && condition.status == "True")
            });
            // The controller-manager works once it has made the default ServiceAccount.
            let accounts_made = matches!(accounts.get_opt("default").await, Ok(Some(_)));
            reason = match node_ready {
                Ok(true) if accounts_made => return Ok(()),
                Ok(true) => "the controller-manager has not made the default ServiceAccount".to_owned(),
                Ok(false) => format!("node {NODE_NAME} is not Ready"),
                Err(error) => error.to_string(),
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = self.log_dir().join("kubelet.log");
        Err(Error::Node(format!(
            "{reason} after {NODE_READY_TIMEOUT:?}; see {} and the other logs in {}",
            log.display(),
            self.log_dir().display()
        )))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Order matters: nothing may restart pods while they are killed, and nothing may be
        // mounted when the directory goes.
        self.watcher.take();
        network_policy::remove_leftovers();
        self.kubelet.take();
        self.containerd.take();
        self.proxy.take();
        if let Ok(program) = binaries::kubernetes_program("kube-proxy") {
            kube_proxy_cleanup(&program);
        }
        network::remove_kube_chains();
        self.controllers.clear();
        self.api.take();
        if let Some(dir) = &self.dir {
            unmount_everything_under(dir.path());
        }
        self.network.take();
        self.dir.take();
    }
}

/// The programs a node runs, found before anything starts.
struct NodePrograms {
    kubelet: PathBuf,
    kube_proxy: PathBuf,
    scheduler: PathBuf,
    controller_manager: PathBuf,
    pause: PathBuf,
}

impl NodePrograms {
    fn find() -> Result<Self> {
        for (program, package) in [
            ("containerd", "install it with `apt-get install containerd`"),
            ("ctr", "install it with `apt-get install containerd`"),
            ("runc", "install it with `apt-get install runc`"),
            ("dnsmasq", "install it with `apt-get install dnsmasq-base`"),
            ("iptables", "install it with `apt-get install iptables`"),
            ("conntrack", "install it with `apt-get install conntrack`"),
            ("ip", "install it with `apt-get install iproute2`"),
        ] {
            binaries::node_package_program(program, package)?;
        }
        if !Path::new("/usr/lib/cni/bridge").exists() {
            return Err(Error::Node(
                "the CNI plugins are missing from /usr/lib/cni: install them with `apt-get install containernetworking-plugins`".to_owned(),
            ));
        }
        Ok(Self {
            kubelet: binaries::kubernetes_program("kubelet")?,
            kube_proxy: binaries::kubernetes_program("kube-proxy")?,
            scheduler: binaries::kubernetes_program("kube-scheduler")?,
            controller_manager: binaries::kubernetes_program("kube-controller-manager")?,
            pause: binaries::kubernetes_program("pause")?,
        })
    }
}

fn progress(step: &str) {
    eprintln!("testenv node: {step}");
}

/// Refuses to start a node without root (it makes a bridge, iptables rules, mounts, containers).
fn refuse_without_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Node(
            "a node needs root (network bridge, iptables, mounts, containers): run the tests as root"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Removes what a killed run may have left behind (kube-proxy's rules, the NetworkPolicy
/// stand-in's), then creates the pod network: the bridge, routes, forwarding.
fn clean_up_and_create_pod_network(programs: &NodePrograms) -> Result<PodNetwork> {
    kube_proxy_cleanup(&programs.kube_proxy);
    network::remove_kube_chains();
    network_policy::remove_leftovers();
    PodNetwork::create()
}

fn take_machine_lock() -> Result<Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(io_context(format!("opening {LOCK_PATH}")))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Error::Node(format!("locking {LOCK_PATH}: {errno}")))
}

/// A node program started in the background; its readiness shows through the API server.
fn spawn(name: &'static str, command: Command, dir: &Path) -> Result<ServerProcess> {
    ServerProcess::spawn(name, command, &dir.join(format!("{name}.log")), Signal::SIGTERM)
}

fn start_controller_manager(
    programs: &NodePrograms,
    dir: &Path,
    api: &KubeApiServer,
) -> Result<ServerProcess> {
    let mut command = Command::new(&programs.controller_manager);
    command
        .arg(format!("--kubeconfig={}", api.kubeconfig_path().display()))
        .arg("--leader-elect=false")
        .arg("--port=0")
        .arg("--secure-port=0")
        .arg(format!(
            "--service-account-private-key-file={}",
            api.service_account_key_path().display()
        ))
        .arg(format!("--root-ca-file={}", api.ca_path().display()))
        .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
        .arg("--cluster-name=coder-testenv");
    spawn("kube-controller-manager", command, dir)
}

fn start_scheduler(programs: &NodePrograms, dir: &Path, kubeconfig: &Path) -> Result<ServerProcess> {
    let mut command = Command::new(&programs.scheduler);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--leader-elect=false")
        .arg("--port=0")
        .arg("--secure-port=0");
    spawn("kube-scheduler", command, dir)
}

fn start_kube_proxy(programs: &NodePrograms, dir: &Path, kubeconfig: &Path) -> Result<ServerProcess> {
    let mut command = Command::new(&programs.kube_proxy);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg("--proxy-mode=iptables")
        .arg(format!("--cluster-cidr={POD_CIDR}"))
        .arg(format!("--nodeport-addresses={POD_CIDR}"))
        .arg(format!("--healthz-bind-address=127.0.0.1:{}", free_port()?))
        .arg(format!("--metrics-bind-address=127.0.0.1:{}", free_port()?))
        // Leave the host's conntrack settings alone (these VMs may not allow changing them).
        .arg("--conntrack-max-per-core=0")
        .arg("--conntrack-tcp-timeout-established=0")
        .arg("--conntrack-tcp-timeout-close-wait=0")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    spawn("kube-proxy", command, dir)
}

fn start_kubelet(
    programs: &NodePrograms,
    dir: &Path,
    kubeconfig: &Path,
    endpoint: &str,
) -> Result<ServerProcess> {
    let address = Ipv4Addr::from(NODE_ADDRESS);
    let resolv_conf = dir.join("resolv.conf");
    // Pods get the cluster's DNS only: the host's resolvers are outside the test world.
    write_file(
        &resolv_conf,
        b"# coder-testenv: no resolvers beyond the cluster's DNS\n",
    )?;
    let config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address.to_string(),
        "port": free_port()?,
        "readOnlyPort": 0,
        "healthzPort": 0,
        // These VMs: cgroup v1 without systemd, no swap accounting, no CAP_SYS_RESOURCE.
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": false,
        "enforceNodeAllocatable": [],
        "failSwapOn": false,
        "clusterDNS": [address.to_string()],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": resolv_conf,
        "authentication": { "anonymous": { "enabled": true }, "webhook": { "enabled": false } },
        "authorization": { "mode": "AlwaysAllow" },
        "evictionHard": { "memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": false,
        "volumePluginDir": dir.join("kubelet-plugins"),
    });
    let config_path = dir.join("kubelet.json");
    let text = serde_json::to_vec_pretty(&config)
        .map_err(|error| Error::Node(format!("kubelet config: {error}")))?;
    write_file(&config_path, &text)?;
    let mut command = Command::new(&programs.kubelet);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--config={}", config_path.display()))
        .arg("--container-runtime=remote")
        .arg(format!("--container-runtime-endpoint={endpoint}"))
        .arg(format!("--root-dir={}", dir.join("kubelet").display()))
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg(format!("--node-ip={address}"))
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    spawn("kubelet", command, dir)
}

/// Removes kube-proxy's iptables chains and rules.
fn kube_proxy_cleanup(kube_proxy: &Path) {
    let _ = Command::new(kube_proxy)
        .arg("--cleanup")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output();
}

/// Detaches every mount point under `dir` (containers' root filesystems, pods' secret volumes,
/// network namespaces), deepest first.
fn unmount_everything_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` octal escapes.
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(position) = rest.find('\\') {
        out.push_str(&rest[..position]);
        let code = rest
            .get(position + 1..position + 4)
            .and_then(|octal| u8::from_str_radix(octal, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[position + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[position + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

/// The harness's stand-ins for cluster services, brought in step by the [`Watcher`].
struct StandIns {
    dns: ServiceDns,
    volumes: VolumeProvisioner,
    load_balancers: LoadBalancerAllocator,
    network_policies: NetworkPolicyEnforcer,
}

impl StandIns {
    /// One pass over every stand-in (each tries, whatever the others did); what failed, as
    /// `stand-in: error` lines, or nothing.
    async fn sync(&mut self, client: &kube::Client, enforce_network_policies: bool) -> String {
        let results = [
            ("service DNS", self.dns.sync(client).await),
            ("volumes", self.volumes.sync(client).await),
            ("load balancers", self.load_balancers.sync(client).await),
            (
                "NetworkPolicy enforcement",
                self.network_policies.sync(client, enforce_network_policies).await,
            ),
        ];
        results
            .into_iter()
            .filter_map(|(stand_in, result)| result.err().map(|error| format!("{stand_in}: {error}")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What the cluster asks of its watcher thread, and what the thread reports back.
#[derive(Default)]
struct WatcherControl {
    stop: AtomicBool,
    enforce_network_policies: AtomicBool,
    /// The number of the last pass begun (the first is 1).
    passes_started: AtomicU64,
    /// The number of the last pass finished.
    passes_done: AtomicU64,
    /// What the last finished pass could not do (empty: nothing failed).
    last_pass_error: Mutex<String>,
}

/// The harness's stand-ins (service DNS, volumes, load balancers, NetworkPolicy enforcement),
/// kept in step with the API server twice a second on a thread of their own; they stop (and
/// remove what they made on the host) when this is dropped.
struct Watcher {
    control: Arc<WatcherControl>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(kubeconfig: PathBuf, mut stand_ins: StandIns, dir: &Path) -> Result<Self> {
        let control = Arc::new(WatcherControl {
            enforce_network_policies: AtomicBool::new(true),
            ..WatcherControl::default()
        });
        let log_path = dir.join("watcher.log");
        let shared = control.clone();
        let thread = std::thread::Builder::new()
            .name("testenv-node-watcher".to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                runtime.block_on(async move {
                    let mut last_error = String::new();
                    let mut client = None;
                    while !shared.stop.load(Ordering::SeqCst) {
                        let pass = shared.passes_started.fetch_add(1, Ordering::SeqCst) + 1;
                        if client.is_none() {
                            client = crate::kubernetes::client_from(&kubeconfig).await.ok();
                        }
                        let error = match &client {
                            Some(client) => {
                                let enforce = shared.enforce_network_policies.load(Ordering::SeqCst);
                                stand_ins.sync(client, enforce).await
                            }
                            None => "no client for the API server yet".to_owned(),
                        };
                        if error != last_error && !error.is_empty() {
                            log_watcher_error(&log_path, &error);
                        }
                        if let Ok(mut last) = shared.last_pass_error.lock() {
                            last.clone_from(&error);
                        }
                        last_error = error;
                        shared.passes_done.store(pass, Ordering::SeqCst);
                        tokio::time::sleep(WATCHER_PERIOD).await;
                    }
                    // The stand-ins' host state (the NetworkPolicy chains) goes with them.
                    drop(stand_ins);
                });
            })
            .map_err(io_context("starting the node's watcher thread"))?;
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }
}

/// Appends `error` to the watcher's log, with the time since the Unix epoch.
fn log_watcher_error(path: &Path, error: &str) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "[{seconds}] {error}");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_with_escaped_spaces_are_read_back() {
        assert_eq!(unescape_mount_path("/tmp/a\\040b/c"), PathBuf::from("/tmp/a b/c"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
