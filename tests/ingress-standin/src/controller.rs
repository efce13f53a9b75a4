//! `nginx-ingress-controller`: the sync loop. Once a second it lists what it follows (a poll,
//! not a watch: simple, and cheap at this scale), makes the plan, and when the rendered config
//! changed, checks it with `nginx -t`, swaps it in and reloads nginx.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressClass, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::model::{Plan, Settings, Snapshot, plan};
use crate::nginx::{
    DEFAULT_NGINX, Master, NginxError, remove_other_certificates, test_config, write_certificates,
    write_config,
};
use crate::render::{Layout, Ports, render};
use crate::shared::{Shared, is_of_class};
use crate::{certs, leader, log, webhook};

/// The controller's arguments: ingress-nginx's names for those the chart passes, and a few of
/// this stand-in's own.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nginx-ingress-controller",
    about = "ingress-standin: a stand-in for the ingress-nginx controller"
)]
pub struct ControllerArgs {
    /// `NAMESPACE/NAME` of the Service whose address goes into each Ingress's status.
    #[arg(long)]
    pub publish_service: Option<String>,
    /// The name of the Lease whose holder writes Ingress statuses.
    #[arg(long, default_value = "ingress-controller-leader")]
    pub election_id: String,
    /// The IngressClass `spec.controller` value this controller answers to.
    #[arg(long, default_value = "k8s.io/ingress-nginx")]
    pub controller_class: String,
    /// The IngressClass name whose Ingresses it serves (`spec.ingressClassName`).
    #[arg(long, default_value = "nginx")]
    pub ingress_class: String,
    /// `NAMESPACE/NAME` of the ConfigMap with nginx settings.
    #[arg(long)]
    pub configmap: Option<String>,
    /// The one namespace whose Ingresses, Services and Secrets it follows (required here).
    #[arg(long)]
    pub watch_namespace: String,
    /// The admission webhook's address (`:8443`); no webhook without it.
    #[arg(long)]
    pub validating_webhook: Option<String>,
    /// The webhook's certificate (PEM).
    #[arg(long)]
    pub validating_webhook_certificate: Option<PathBuf>,
    /// The webhook's key (PEM).
    #[arg(long)]
    pub validating_webhook_key: Option<PathBuf>,
    /// nginx's plain-HTTP port.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// nginx's HTTPS port.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// The port of `/healthz`.
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,
    /// (stand-in) The writable directory for nginx.conf, certificates, pid and temporary files.
    #[arg(long, default_value = "/etc/nginx")]
    pub state_dir: PathBuf,
    /// (stand-in) The nginx program.
    #[arg(long, default_value = DEFAULT_NGINX)]
    pub nginx_binary: PathBuf,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// There is no in-cluster configuration (not in a pod, or no service-account token).
    #[error("loading the in-cluster Kubernetes configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The Kubernetes client could not be made.
    #[error("making the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// nginx could not be configured or started.
    #[error(transparent)]
    Nginx(#[from] NginxError),
    /// nginx exited.
    #[error("nginx exited ({0}); stopping")]
    NginxExited(String),
    /// A file, port or signal operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("making the default certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// An argument is not usable.
    #[error("{0}")]
    Argument(String),
    /// The webhook's certificate or key is not usable.
    #[error("the validating webhook's certificate: {0}")]
    WebhookTls(String),
    /// Even an empty config was refused by `nginx -t`.
    #[error("nginx refuses even the config without Ingresses: {0}")]
    NoUsableConfig(NginxError),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControllerError {
    let context = context.into();
    move |source| ControllerError::Io { context, source }
}

/// Splits `NAMESPACE/NAME`.
fn namespaced(value: &str, what: &str) -> Result<(String, String), ControllerError> {
    match value.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(ControllerError::Argument(format!(
            "{what} must be NAMESPACE/NAME, not {value:?}"
        ))),
    }
}

/// The port of `:PORT` or `HOST:PORT`, listened on all addresses.
fn listen_address(value: &str) -> Result<SocketAddr, ControllerError> {
    let port = value
        .rsplit_once(':')
        .map_or(value, |(_, port)| port)
        .parse::<u16>()
        .map_err(|_| {
            ControllerError::Argument(format!("--validating-webhook must be :PORT, not {value:?}"))
        })?;
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Runs the controller until SIGTERM (a graceful nginx stop, then `Ok`) or until nginx dies.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let publish_service = args
        .publish_service
        .as_deref()
        .map(|value| namespaced(value, "--publish-service"))
        .transpose()?;
    let config_map = args
        .configmap
        .as_deref()
        .map(|value| namespaced(value, "--configmap"))
        .transpose()?;
    let client = Client::try_from(kube::Config::incluster()?)?;
    let (layout, scratch) = create_state_dirs(&args)?;
    let ports = Ports {
        http: args.http_port,
        https: args.https_port,
    };
    let default_certificate = certs::default_certificate()?.combined();
    let shared = Arc::new(Shared::default());

    start_healthz(args.healthz_port, shared.clone()).await?;
    if args.validating_webhook.is_some() {
        let validator = webhook::Validator {
            nginx: args.nginx_binary.clone(),
            scratch: scratch.clone(),
            ports,
            ingress_class: args.ingress_class.clone(),
            default_certificate: default_certificate.clone(),
            shared: shared.clone(),
        };
        start_webhook(&args, validator).await?;
    }
    start_leader_election(&args, client.clone(), shared.clone());

    let terminate = signal(SignalKind::terminate()).map_err(io_error("handling SIGTERM"))?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sync = Sync {
        args: &args,
        client,
        layout,
        ports,
        default_certificate,
        config_map,
        publish_service,
        shared: shared.clone(),
        master: None,
        live: None,
        refused: None,
        routes: Vec::new(),
        problems: BTreeSet::new(),
        last_error: None,
        class_missing_logged: false,
    };
    log(format!(
        "ingress-standin controller: class {} (controller {}), namespace {}, nginx {}",
        args.ingress_class,
        args.controller_class,
        args.watch_namespace,
        args.nginx_binary.display()
    ));
    sync_until_terminated(sync, ticks, terminate).await
}

/// Creates the state folder's layout and its `scratch` folder (for checking configurations);
/// returns both.
fn create_state_dirs(args: &ControllerArgs) -> Result<(Layout, PathBuf), ControllerError> {
    let layout = Layout::new(&args.state_dir);
    layout
        .create_dirs()
        .map_err(io_error(format!("creating {}", args.state_dir.display())))?;
    let scratch = args.state_dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(io_error(format!("creating {}", scratch.display())))?;
    Ok((layout, scratch))
}

/// Listens on the healthz port (all addresses) and serves `/healthz` there in a task of its own.
async fn start_healthz(port: u16, shared: Arc<Shared>) -> Result<(), ControllerError> {
    let healthz = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(io_error(format!("listening on the healthz port {port}")))?;
    tokio::spawn(serve_healthz(healthz, shared));
    Ok(())
}

/// Serves the admission webhook (TLS with `--validating-webhook-certificate` and `-key`) on the
/// `--validating-webhook` address in a task of its own, checking Ingresses with `validator`.
async fn start_webhook(args: &ControllerArgs, validator: webhook::Validator) -> Result<(), ControllerError> {
    let Some(address) = &args.validating_webhook else {
        return Ok(());
    };
    let (Some(certificate), Some(key)) = (&args.validating_webhook_certificate, &args.validating_webhook_key)
    else {
        return Err(ControllerError::Argument(
            "--validating-webhook needs --validating-webhook-certificate and --validating-webhook-key"
                .to_owned(),
        ));
    };
    let acceptor = webhook::tls_acceptor(certificate, key).map_err(ControllerError::WebhookTls)?;
    let address = listen_address(address)?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(io_error(format!("listening on the webhook address {address}")))?;
    tokio::spawn(webhook::serve(listener, acceptor, Arc::new(validator)));
    log(format!("admission webhook listening on {address}"));
    Ok(())
}

/// Takes part in the election of the leader (who writes the Ingresses' status) in a task of its
/// own, as the pod (`POD_NAME`, else `HOSTNAME`, else `ingress-standin`).
fn start_leader_election(args: &ControllerArgs, client: Client, shared: Arc<Shared>) {
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "ingress-standin".to_owned());
    tokio::spawn(leader::run(
        client,
        args.watch_namespace.clone(),
        args.election_id.clone(),
        identity,
        shared,
    ));
}

/// Syncs once a tick until SIGTERM (stops nginx gracefully, then `Ok`) or until nginx exits
/// (an error).
async fn sync_until_terminated(
    mut sync: Sync<'_>,
    mut ticks: tokio::time::Interval,
    mut terminate: tokio::signal::unix::Signal,
) -> Result<(), ControllerError> {
    loop {
        tokio::select! {
            _ = ticks.tick() => sync.once().await?,
            status = wait_for(&mut sync.master) => {
                return Err(ControllerError::NginxExited(status));
            }
            _ = terminate.recv() => {
                log("SIGTERM: stopping nginx gracefully");
                if let Some(master) = sync.master.take() {
                    let status = master.quit().await.map_err(io_error("waiting for nginx to quit"))?;
                    log(format!("nginx stopped ({status})"));
                }
                return Ok(());
            }
        }
    }
}

/// Waits for nginx to exit (forever while it has not started).
async fn wait_for(master: &mut Option<Master>) -> String {
    match master {
        Some(master) => match master.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("waiting for it failed: {error}"),
        },
        None => std::future::pending().await,
    }
}

/// The sync loop's state.
struct Sync<'a> {
    args: &'a ControllerArgs,
    client: Client,
    layout: Layout,
    ports: Ports,
    default_certificate: Vec<u8>,
    config_map: Option<(String, String)>,
    publish_service: Option<(String, String)>,
    shared: Arc<Shared>,
    master: Option<Master>,
    /// The config nginx runs.
    live: Option<String>,
    /// The last config `nginx -t` refused (not checked again until it changes).
    refused: Option<String>,
    routes: Vec<String>,
    problems: BTreeSet<String>,
    last_error: Option<String>,
    class_missing_logged: bool,
}

impl Sync<'_> {
    async fn once(&mut self) -> Result<(), ControllerError> {
        let snapshot = match self.fetch().await {
            Ok(snapshot) => {
                self.last_error = None;
                snapshot
            }
            Err(error) => {
                let message = format!("listing Ingresses and their objects failed: {error}");
                if self.last_error.as_ref() != Some(&message) {
                    log(&message);
                    self.last_error = Some(message);
                }
                return Ok(());
            }
        };
        let plan = plan(&snapshot, &self.default_certificate);
        let problems: BTreeSet<String> = plan.problems.iter().map(ToString::to_string).collect();
        for problem in problems.difference(&self.problems) {
            log(problem);
        }
        self.problems = problems;
        let ingresses = snapshot.ingresses.clone();
        *self.shared.snapshot.write().await = Some(snapshot);
        self.apply(&plan).await?;
        if self.shared.leading.load(Ordering::Relaxed)
            && let Err(error) = self.publish_status(&ingresses).await
        {
            log(format!("updating Ingress statuses failed: {error}"));
        }
        Ok(())
    }

    /// Checks and swaps in the config for `plan` if it changed.
    async fn apply(&mut self, plan: &Plan) -> Result<(), ControllerError> {
        let config = render(plan, &self.layout, self.ports);
        if self.live.as_ref() == Some(&config) || self.refused.as_ref() == Some(&config) {
            return Ok(());
        }
        match self.check(&config, &plan.certificates).await {
            Ok(()) => {}
            Err(NginxError::Refused { output }) => {
                log(format!(
                    "nginx -t refused the new config; keeping the last good one:\n{output}"
                ));
                if self.master.is_none() {
                    // No good config yet: start with the default server alone.
                    let empty = crate::model::plan(
                        &Snapshot {
                            settings: plan.settings.clone(),
                            ..Snapshot::default()
                        },
                        &self.default_certificate,
                    );
                    let fallback = render(&empty, &self.layout, self.ports);
                    self.check(&fallback, &empty.certificates)
                        .await
                        .map_err(ControllerError::NoUsableConfig)?;
                    self.swap_in(fallback, &empty)?;
                }
                self.refused = Some(config);
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        }
        self.swap_in(config, plan)
    }

    async fn check(&self, config: &str, certificates: &BTreeMap<String, Vec<u8>>) -> Result<(), NginxError> {
        write_certificates(&self.layout, certificates)?;
        write_config(&self.layout.candidate_config(), config)?;
        test_config(
            &self.args.nginx_binary,
            &self.layout,
            &self.layout.candidate_config(),
        )
        .await
    }

    /// Makes the checked candidate the live config and starts or reloads nginx.
    fn swap_in(&mut self, config: String, plan: &Plan) -> Result<(), ControllerError> {
        std::fs::rename(self.layout.candidate_config(), self.layout.config())
            .map_err(io_error("replacing nginx.conf"))?;
        let routes = plan.routes();
        let added: Vec<&String> = routes
            .iter()
            .filter(|route| !self.routes.contains(route))
            .collect();
        let removed: Vec<&String> = self
            .routes
            .iter()
            .filter(|route| !routes.contains(route))
            .collect();
        let mut changes = String::new();
        for route in &added {
            changes.push_str(&format!("; + {route}"));
        }
        for route in &removed {
            changes.push_str(&format!("; - {route}"));
        }
        if added.is_empty() && removed.is_empty() && self.master.is_some() {
            changes.push_str("; routes unchanged (certificates or settings changed)");
        }
        match &self.master {
            None => {
                self.master = Some(Master::start(&self.args.nginx_binary, &self.layout)?);
                self.shared.serving.store(true, Ordering::Relaxed);
                log(format!("nginx started with {} route(s){changes}", routes.len()));
            }
            Some(master) => {
                master.reload()?;
                log(format!("nginx reloaded{changes}"));
            }
        }
        remove_other_certificates(&self.layout, &plan.certificates)?;
        self.routes = routes;
        self.live = Some(config);
        self.refused = None;
        Ok(())
    }

    /// Lists what the controller follows.
    async fn fetch(&mut self) -> Result<Snapshot, kube::Error> {
        let namespace = &self.args.watch_namespace;
        let class = Api::<IngressClass>::all(self.client.clone())
            .get_opt(&self.args.ingress_class)
            .await?;
        let ours = class
            .as_ref()
            .and_then(|class| class.spec.as_ref())
            .and_then(|spec| spec.controller.as_deref())
            == Some(self.args.controller_class.as_str());
        if !ours && !self.class_missing_logged {
            log(format!(
                "IngressClass {} does not exist or is not for controller {}: serving no Ingress until it is",
                self.args.ingress_class, self.args.controller_class
            ));
        }
        self.class_missing_logged = !ours;
        let mut ingresses = Vec::new();
        if ours {
            ingresses = Api::<Ingress>::namespaced(self.client.clone(), namespace)
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|ingress| is_of_class(ingress, &self.args.ingress_class))
                .collect();
        }
        let services = Api::<Service>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        let secrets = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        let mut settings = Settings::default();
        if let Some((namespace, name)) = &self.config_map
            && let Some(config_map) = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
        {
            let (read, warnings) = Settings::from_config_map(&config_map.data.unwrap_or_default());
            for warning in warnings {
                if self.problems.insert(warning.clone()) {
                    log(warning);
                }
            }
            settings = read;
        }
        Ok(Snapshot {
            ingresses,
            services,
            secrets,
            settings,
        })
    }

    /// Writes the published Service's address into each Ingress's `status.loadBalancer`.
    async fn publish_status(&self, ingresses: &[Ingress]) -> Result<(), kube::Error> {
        let Some((namespace, name)) = &self.publish_service else {
            return Ok(());
        };
        let Some(service) = Api::<Service>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
        else {
            return Ok(());
        };
        let addresses = service_addresses(&service);
        for ingress in ingresses {
            let current = ingress
                .status
                .as_ref()
                .and_then(|status| status.load_balancer.as_ref())
                .and_then(|balancer| balancer.ingress.clone())
                .unwrap_or_default();
            if current == addresses {
                continue;
            }
            let mut updated = ingress.clone();
            updated.status = Some(IngressStatus {
                load_balancer: Some(IngressLoadBalancerStatus {
                    ingress: (!addresses.is_empty()).then(|| addresses.clone()),
                }),
            });
            let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
            let ingress_name = ingress.metadata.name.as_deref().unwrap_or_default();
            Api::<Ingress>::namespaced(self.client.clone(), namespace)
                .replace_status(ingress_name, &PostParams::default(), &updated)
                .await?;
            let shown: Vec<String> = addresses
                .iter()
                .filter_map(|address| address.ip.clone().or_else(|| address.hostname.clone()))
                .collect();
            log(format!(
                "ingress {namespace}/{ingress_name}: status address set to {shown:?}"
            ));
        }
        Ok(())
    }
}

/// The addresses ingress-nginx publishes for a Service: a LoadBalancer's status addresses and
/// external IPs, a ClusterIP Service's cluster IP.
fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let spec = service.spec.clone().unwrap_or_default();
    let mut addresses = Vec::new();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        for balancer in service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|balancer| balancer.ingress.as_ref())
            .into_iter()
            .flatten()
        {
            addresses.push(IngressLoadBalancerIngress {
                ip: balancer.ip.clone(),
                hostname: balancer.hostname.clone(),
                ports: None,
            });
        }
    } else if matches!(spec.type_.as_deref(), None | Some("ClusterIP"))
        && let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None")
    {
        addresses.push(IngressLoadBalancerIngress {
            ip: Some(ip),
            ..IngressLoadBalancerIngress::default()
        });
    }
    for ip in spec.external_ips.into_iter().flatten() {
        addresses.push(IngressLoadBalancerIngress {
            ip: Some(ip),
            ..IngressLoadBalancerIngress::default()
        });
    }
    addresses
}

/// Answers `/healthz` with 200 once nginx serves its first config, 503 before.
async fn serve_healthz(listener: TcpListener, shared: Arc<Shared>) {
    use hyper::StatusCode;
    let handler = move |request: hyper::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            match request.uri().path() {
                "/healthz" if shared.serving.load(Ordering::Relaxed) => {
                    crate::http::respond(StatusCode::OK, "text/plain", "ok")
                }
                "/healthz" => crate::http::respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "nginx is not serving yet",
                ),
                _ => crate::http::respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
            }
        }
    };
    if let Err(error) = crate::http::serve(listener, None, handler).await {
        log(format!("the healthz server stopped: {error}"));
    }
}
