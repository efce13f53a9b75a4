//! The quick start: brings up a local world with no internet and runs what a site runs in it.
//!
//! The world, all on loopback: a registry standing in for the public upstream, a second one as
//! the site registry, and a real single-node Kubernetes cluster ([`Cluster`]: API server,
//! containerd, kubelet, kube-proxy, scheduler, controller-manager; it needs root). The platform
//! image is built (trusting the test license key) and pushed upstream with the third-party
//! images; a private CA makes the platform's certificates, stored as the TLS Secrets the chart
//! names; then `lock` → `bundle` → `verify` → `apply --bundle --wait` (with a test enterprise
//! license, the ingress on) → `status`, printing each command as it runs it. The platform's
//! pods really run behind the chart's ingress controller: the quick start relays a loopback port
//! to the load balancer's address, walks the dashboard in headless Chromium at
//! `https://coder.localhost:PORT/` (sign in, create a workspace, open its editor and terminal),
//! and prints that URL, the CA to trust and the admin's credentials.
//!
//! What stands in, because there is no internet and no image for it here: the cluster's
//! service DNS, volumes, load balancer and NetworkPolicy engine (the harness's); the PostgreSQL,
//! workspace and ingress controller images, built from Debian's packages and the harness's
//! programs (`coder_testenv::dependency_images`).
//!
//! Run it through `scripts/quickstart.sh` (as root), which builds what it needs: the
//! Kubernetes programs, a `coder-install` that trusts the test license key (a debug build with
//! `coder-license/test-keys`), and the `workspace-standin` program the workspace image holds.
//!
//! The quick start itself does not link the test key (no `test-keys` feature here: through
//! feature unification that would make every binary built at the root trust it, and make
//! `cargo build --release` at the root fail). It reads the TEST-ONLY private key from
//! `crates/license/test-keys/` in the checkout at run time to sign its license.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use coder_license::{Claims, FORMAT_VERSION, Features, SigningKey, Tier};
use coder_testenv::browser::{Browser, BrowserOptions};
use coder_testenv::dependency_images::{
    ingress_certgen_image, ingress_controller_image, postgres_image, workspace_image,
};
use coder_testenv::front_door_walk::FrontDoorWalk;
use coder_testenv::{ACCESS_TLS_SECRET, Cluster, Registry, RegistryFlavour, SiteTls, WORKSPACE_TLS_SECRET};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::{Value, json};

mod relay;

use relay::LoopbackRelay;

/// Run the whole air-gapped install locally, with nothing but loopback (needs root: the node).
#[derive(Debug, Parser)]
#[command(name = "quickstart")]
struct Args {
    /// Stop the local world when done instead of keeping it up for exploring.
    #[arg(long)]
    exit: bool,
    /// Where to keep the work files (spec, lock, bundle, license). Default: a temporary folder.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The coder-install binary (built with the test license key trusted).
    #[arg(long, default_value = "target/debug/coder-install", value_name = "PATH")]
    coder_install: PathBuf,
}

/// The platform's namespace (the chart's default).
const NAMESPACE: &str = "coder";

/// The first admin's email (the manager creates this user at its first start).
const ADMIN_EMAIL: &str = "admin@coder.local";

/// The platform's host: Chromium sends every `*.localhost` name to loopback, where the quick
/// start relays to the load balancer.
const ACCESS_HOST: &str = "coder.localhost";
/// The workspaces' domain: workspace `<id>` at `ws-<id>.workspaces.localhost`.
const WORKSPACE_DOMAIN: &str = "workspaces.localhost";
/// The loopback port the quick start tries first for the platform (another when it is taken).
const PREFERRED_PORT: u16 = 8443;
/// The chart's ingress controller Service (type LoadBalancer).
const INGRESS_SERVICE: &str = "coder-ingress-nginx-controller";

/// How long `apply --wait` may take for every workload to turn Ready (image pulls, initdb,
/// migrations).
const APPLY_TIMEOUT: &str = "10m";

/// The default spec's third-party images, with the upstream paths they take the place of.
const THIRD_PARTY: [(&str, &str); 4] = [
    ("postgres", "library/postgres:13"),
    ("ingress-nginx-controller", "ingress-nginx/controller:v1.11.2"),
    (
        "ingress-nginx-certgen",
        "ingress-nginx/kube-webhook-certgen:v1.4.3",
    ),
    ("workspace", "codercom/enterprise-base:ubuntu"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let repository = std::env::current_dir()?;
    check_can_run(&repository)?;
    let temporary = tempfile_dir(&args)?;
    let work = temporary.as_path();

    section("1. the local world (loopback only)");
    let (upstream, site, cluster) = start_world().await?;

    section("2. the images, built and pushed upstream");
    push_images(&upstream).await?;

    section("3. on the connected host: lock, bundle, verify");
    let tool = Tool {
        coder_install: repository.join(&args.coder_install),
        docker_config: work.join("docker"),
    };
    let bundle = lock_bundle_verify(&tool, work, &upstream.host(), &repository)?;

    section("4. inside the air gap: the site's TLS, then apply the bundle (enterprise license)");
    let license = work.join("coder.license");
    std::fs::write(&license, enterprise_license(&repository)?)?;
    let site_registry = format!("{}/coder", site.host());
    let kubeconfig = text(cluster.api().kubeconfig_path());
    cluster
        .trust_plain_http_registry(&site.host())
        .context("letting the node pull from the site registry")?;
    println!(
        "the node pulls from the site registry {} over plain HTTP",
        site.host()
    );
    let tls = site_tls(&work.join("tls"))?;
    let client = cluster.api().client().await?;
    tls.create_secrets(&client, NAMESPACE).await?;
    print_site_tls(&tls);
    // The loopback port comes first: the access URL names it.
    let relay = LoopbackRelay::start(PREFERRED_PORT).await?;
    let port = relay.port();
    let access_url = format!("https://{ACCESS_HOST}:{port}");
    run(&mut tool.command(&["license", "inspect", &text(&license)]))?;
    let install = Install {
        bundle: &bundle,
        license: &license,
        site_registry: &site_registry,
        site_host: &site.host(),
        kubeconfig: &kubeconfig,
        port,
    };
    apply_bundle(&tool, &install, &cluster).await?;

    section("5. what is installed");
    run(&mut tool.command(&["status", "--kubeconfig", &kubeconfig]))?;

    section("6. the front door: the load balancer, the ingress controller, TLS");
    relay_to_load_balancer(&cluster, &relay).await?;
    let password = admin_password(&client).await?;
    check_login(&tls, &access_url, &password).await?;

    section("7. a person's walk in Chromium: sign in, a workspace, its editor and terminal");
    walk_in_chromium(&client, &tls, &access_url, &password, work).await?;
    print_how_to_sign_in(&access_url, &password, &tls, &work.join("tls"));

    section("done");
    print_real_world_equivalents(work);
    if !args.exit {
        keep_up_until_ctrl_c(&tool, &install).await?;
    }
    println!("stopping the local world");
    drop(relay);
    drop(client);
    drop((upstream, site, cluster));
    Ok(())
}

/// Refuses to run outside the repository's root or without root (the node needs it).
fn check_can_run(repository: &Path) -> anyhow::Result<()> {
    if !repository.join("charts/coder/Chart.yaml").exists() {
        bail!("run the quick start from the repository's root (scripts/quickstart.sh does)");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the quick start runs a real Kubernetes node (network bridge, iptables, mounts, containers), \
             which needs root: run `sudo scripts/quickstart.sh`"
        );
    }
    Ok(())
}

/// Step 1: starts the upstream and site registries and the single-node cluster together, and
/// prints where they are and what in them is real and what stands in.
async fn start_world() -> anyhow::Result<(Registry, Registry, Cluster)> {
    println!(
        "starting two registries and a single-node Kubernetes cluster (about 30 s; it waits if another\n\
         cluster holds the machine-wide node lock)"
    );
    let (upstream, site, cluster) = tokio::join!(
        Registry::start(RegistryFlavour::Plain),
        Registry::start(RegistryFlavour::Plain),
        Cluster::start(),
    );
    let (upstream, site) = (upstream?, site?);
    let cluster = cluster.context("starting the single-node cluster")?;
    println!(
        "upstream registry (stands in for the public registries): {}",
        upstream.host()
    );
    println!(
        "site registry (inside the air gap):                      {}",
        site.host()
    );
    println!(
        "Kubernetes API server {} (kubeconfig {})",
        cluster.api().url(),
        cluster.api().kubeconfig_path().display()
    );
    println!(
        "Runs for real: kube-apiserver and etcd, containerd (runc, CNI bridge), the kubelet, kube-proxy\n\
         (iptables), kube-scheduler, kube-controller-manager; the platform's own image; nginx.\n\
         Stands in: service DNS (dnsmasq fed by the harness, not CoreDNS); volumes (a hostPath\n\
         provisioner); the load balancer (addresses from 198.18.1.0/24, as MetalLB would); the\n\
         NetworkPolicy engine (iptables chains of the harness's, as Calico would); the PostgreSQL,\n\
         workspace and ingress controller images (Debian's packages and the harness's programs:\n\
         the chart's ingress-nginx Deployment runs Debian's nginx under a small controller).\n\
         Node logs: {}",
        cluster.log_dir().display()
    );
    Ok((upstream, site, cluster))
}

/// Step 2: builds the platform image (trusting the test license key) and pushes it upstream,
/// then builds each third-party image's stand-in and pushes it under the upstream path it
/// takes the place of.
async fn push_images(upstream: &Registry) -> anyhow::Result<()> {
    let platform_image = format!("{}/coderenvs/coder-service:1.0.0", upstream.host());
    println!(
        "building the platform image (trusting the test license key); this may take several minutes\n\
         on a cold machine"
    );
    run(Command::new("scripts/build-platform-image.sh")
        .args(["--profile", "dev", "--test-keys", "--push", &platform_image])
        .args(["--insecure-registry", &upstream.host()]))?;
    for (name, path) in THIRD_PARTY {
        let (image, what) = third_party_image(name)?;
        upstream.push_image(path, &image).await?;
        println!("{path} pushed upstream: {what}");
    }
    Ok(())
}

/// Builds the stand-in for the third-party image `name` (saying so for the slow ones); returns
/// it with a description of what it is.
fn third_party_image(name: &str) -> anyhow::Result<(coder_testenv::fixture::Image, &'static str)> {
    Ok(match name {
        "postgres" => {
            println!("building the PostgreSQL image from Debian's packages");
            (postgres_image()?, "PostgreSQL 15 from Debian's packages")
        }
        "workspace" => {
            println!("building the workspace image (workspace-standin, busybox)");
            (
                workspace_image().context(
                    "the workspace image needs target/debug/workspace-standin: \
                     `cargo build -p coder-testenv --bin workspace-standin` (scripts/quickstart.sh does)",
                )?,
                "the workspace stand-in (HTTP on 13337, a shell on 26337)",
            )
        }
        "ingress-nginx-controller" => {
            println!("building the ingress controller image (Debian's nginx, ingress-standin)");
            (
                ingress_controller_image().context(
                    "the ingress controller image needs target/debug/ingress-standin: \
                     `cargo build -p ingress-standin` (scripts/quickstart.sh does)",
                )?,
                "the ingress controller stand-in (Debian's nginx)",
            )
        }
        "ingress-nginx-certgen" => (ingress_certgen_image()?, "the webhook certificate jobs' stand-in"),
        other => bail!("the quick start cannot build an image for {other}"),
    })
}

/// The `coder-install` the quick start runs, with a Docker config of its own (an empty one, so
/// that no credentials of the machine's are used).
struct Tool {
    /// The binary.
    coder_install: PathBuf,
    /// The folder of its `config.json` (`DOCKER_CONFIG`).
    docker_config: PathBuf,
}

impl Tool {
    /// A `coder-install` command with these arguments.
    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(&self.coder_install);
        command.args(arguments).env("DOCKER_CONFIG", &self.docker_config);
        command
    }
}

/// A path as a command-line argument.
fn text(path: &Path) -> String {
    path.display().to_string()
}

/// Step 3: writes the spec (its images upstream), then runs `lock`, `bundle` and `verify` as a
/// connected host would. Returns the bundle's path.
fn lock_bundle_verify(
    tool: &Tool,
    work: &Path,
    upstream: &str,
    repository: &Path,
) -> anyhow::Result<PathBuf> {
    let spec = work.join("coder.yaml");
    std::fs::write(&spec, spec_text(upstream, repository))?;
    let lock = work.join("images.lock");
    let bundle = work.join("coder.bundle");
    std::fs::create_dir_all(&tool.docker_config)?;
    std::fs::write(tool.docker_config.join("config.json"), "{}")?;
    run(&mut tool.command(&[
        "lock",
        "--spec",
        &text(&spec),
        "-o",
        &text(&lock),
        "--insecure-registry",
        upstream,
    ]))?;
    run(&mut tool.command(&[
        "bundle",
        "--spec",
        &text(&spec),
        "--lock",
        &text(&lock),
        "-o",
        &text(&bundle),
        "--force",
        "--cache",
        &text(&work.join("cache")),
        "--insecure-registry",
        upstream,
    ]))?;
    run(&mut tool.command(&["verify", "--allow-unsigned", &text(&bundle)]))?;
    Ok(bundle)
}

/// The site's TLS in `tls_dir`: a private CA and the certificates it signs for the platform's
/// host and the workspaces' wildcard.
fn site_tls(tls_dir: &Path) -> anyhow::Result<SiteTls> {
    std::fs::create_dir_all(tls_dir)?;
    Ok(SiteTls::new(tls_dir, ACCESS_HOST, WORKSPACE_DOMAIN)?)
}

/// Prints what the site's TLS is and the commands a site would make its Secrets with.
fn print_site_tls(tls: &SiteTls) {
    println!(
        "a private CA ({}) signed the platform's certificate ({ACCESS_HOST}) and the workspaces'\n\
         wildcard (*.{WORKSPACE_DOMAIN}); they are the Secrets {ACCESS_TLS_SECRET} and {WORKSPACE_TLS_SECRET}, as a site makes them:\n  \
         kubectl -n {NAMESPACE} create secret tls {ACCESS_TLS_SECRET} --cert {} --key {}\n  \
         kubectl -n {NAMESPACE} create secret tls {WORKSPACE_TLS_SECRET} --cert {} --key {}",
        tls.ca_path().display(),
        tls.access_cert().cert.display(),
        tls.access_cert().key.display(),
        tls.workspace_cert().cert.display(),
        tls.workspace_cert().key.display(),
    );
}

/// What the site installs from: the bundle, the license, the site registry, the cluster, and
/// the loopback port the platform's URLs name.
struct Install<'a> {
    bundle: &'a Path,
    license: &'a Path,
    /// The site registry's repository prefix (`HOST/coder`).
    site_registry: &'a str,
    /// The site registry's `host:port` (plain HTTP).
    site_host: &'a str,
    kubeconfig: &'a str,
    port: u16,
}

/// Step 4's install: `apply --bundle --wait` into the site registry and the cluster, with the
/// access and workspace URLs on the relay's port and the chart's ingress on. When it fails,
/// prints the pods of the namespace and where the node's logs are.
async fn apply_bundle(tool: &Tool, install: &Install<'_>, cluster: &Cluster) -> anyhow::Result<()> {
    println!(
        "apply waits until every workload is Ready (image pulls, PostgreSQL's initdb, migrations, the\n\
         ingress controller's certificate jobs: a few minutes)"
    );
    let port = install.port;
    let sets = [
        format!("accessURL=https://{ACCESS_HOST}:{port}"),
        format!("workspaceBaseURL=https://{WORKSPACE_DOMAIN}:{port}"),
        format!("ingress.host={ACCESS_HOST}"),
        format!("ingress.tlsSecret={ACCESS_TLS_SECRET}"),
        format!("ingress.workspaceTlsSecret={WORKSPACE_TLS_SECRET}"),
    ];
    let mut apply_args: Vec<String> = [
        "apply",
        "--bundle",
        &text(install.bundle),
        "--allow-unsigned",
        "--registry",
        install.site_registry,
        "--insecure-registry",
        install.site_host,
        "--license",
        &text(install.license),
        "--kubeconfig",
        install.kubeconfig,
        "--wait",
        "--timeout",
        APPLY_TIMEOUT,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    for set in &sets {
        apply_args.extend(["--set".to_owned(), set.clone()]);
    }
    let mut apply = tool.command(&[]);
    apply.args(&apply_args);
    if let Err(error) = run(&mut apply) {
        eprintln!(
            "\nthe pods in namespace {NAMESPACE}:\n{}\nthe node's logs: {}",
            cluster.describe_pods(NAMESPACE).await,
            cluster.log_dir().display()
        );
        return Err(error);
    }
    Ok(())
}

/// Step 6's front door: relays the loopback port to the ingress controller's load-balancer
/// address (port 443) and says so.
async fn relay_to_load_balancer(cluster: &Cluster, relay: &LoopbackRelay) -> anyhow::Result<()> {
    let load_balancer = cluster
        .load_balancer_address(NAMESPACE, INGRESS_SERVICE)
        .await
        .context("the ingress controller's load-balancer address")?;
    let front = SocketAddr::from((load_balancer, 443));
    relay.relay_to(front);
    println!(
        "the load balancer's address is {load_balancer} (the ingress controller's Service); this host's\n\
         loopback port {} is relayed to it, so {ACCESS_HOST} and *.{WORKSPACE_DOMAIN} (which browsers\n\
         send to loopback) reach the ingress controller",
        relay.port()
    );
    Ok(())
}

/// Step 6's check: logs in as the admin over HTTPS through the relay, the private CA trusted.
async fn check_login(tls: &SiteTls, access_url: &str, password: &str) -> anyhow::Result<()> {
    // coder.localhost goes to loopback (the relay), on the access URL's port.
    let http = tls.http_client(std::net::IpAddr::from([127, 0, 0, 1]), &[])?;
    println!("logging in as {ADMIN_EMAIL} at {access_url} (HTTPS, the private CA trusted)");
    login(&http, access_url, ADMIN_EMAIL, password).await?;
    println!("the login works (the manager returned a session token through the ingress)");
    Ok(())
}

/// Step 7: runs [`browser_walk`] in a task of its own (so that a failed check, a panic, is
/// reported with where the screenshots are) and says what it did.
async fn walk_in_chromium(
    client: &kube::Client,
    tls: &SiteTls,
    access_url: &str,
    password: &str,
    work: &Path,
) -> anyhow::Result<()> {
    let image = workspace_image_allowed(client).await?;
    let screenshots = work.join("screenshots");
    let walked = tokio::spawn(browser_walk(
        tls.host_resolver_rules(std::net::IpAddr::from([127, 0, 0, 1])),
        tls.chromium_home()?,
        access_url.to_owned(),
        password.to_owned(),
        image,
        screenshots.clone(),
    ))
    .await;
    match walked {
        Ok(Ok(())) => println!(
            "it works: signed in as {ADMIN_EMAIL}, created the workspace \"quickstart\", opened its editor on its own\n\
             origin and ran `echo` in its terminal. Screenshots: {}",
            screenshots.display()
        ),
        Ok(Err(error)) => return Err(error),
        Err(panic) => bail!(
            "the Chromium walk failed: {}; screenshots so far in {}",
            panic_text(panic),
            screenshots.display()
        ),
    }
    Ok(())
}

/// Prints the dashboard's URL, the admin's credentials, the CA and how to trust it in Chromium
/// (or a Chromium home under `tls_dir` that already does).
fn print_how_to_sign_in(access_url: &str, password: &str, tls: &SiteTls, tls_dir: &Path) {
    println!(
        "\nDashboard: {access_url}/\n\
         Admin:     {ADMIN_EMAIL}\n\
         Password:  {password}\n\
         CA:        {ca}   (your browser must trust it: the certificates are the quick start's own)\n\
         In Chromium on this machine, as the user who runs it (not root), trust the CA once:\n  \
         certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n coder-quickstart -i {ca}\n\
         (certutil is in libnss3-tools), then open {access_url}/ — or, with nothing to install, start a\n\
         Chromium whose home already trusts it: HOME={home} chromium {access_url}/",
        ca = tls.ca_path().display(),
        home = tls_dir.join("home").display(),
    );
}

/// Prints the commands a real vendor and site would run for what the quick start did.
fn print_real_world_equivalents(work: &Path) {
    println!(
        "Real-world equivalents: `coder-install lock && coder-install bundle -o coder.bundle --signing-key vendor.pem`\n\
         on a connected host; carry coder.bundle in; `coder-install apply --bundle coder.bundle --public-key vendor.pub\n\
         --registry <your registry> --license <your license>` with your kubeconfig (this demo's bundle is unsigned,\n\
         hence --allow-unsigned above). Work files: {}",
        work.display()
    );
}

/// Prints commands to explore the local world with, then waits for Ctrl-C.
async fn keep_up_until_ctrl_c(tool: &Tool, install: &Install<'_>) -> anyhow::Result<()> {
    let (kubeconfig, site_registry) = (install.kubeconfig, install.site_registry);
    println!(
        "\nThe local world stays up: try\n  {} status --kubeconfig {kubeconfig}\n  KUBECONFIG={kubeconfig} kubectl -n {NAMESPACE} get pods   (if you have kubectl)\n  {} template --bundle {} --registry {site_registry} --license {}\nPress Ctrl-C to stop it (the node and its pods are torn down).",
        tool.coder_install.display(),
        tool.coder_install.display(),
        install.bundle.display(),
        install.license.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The walk in headless Chromium (the names mapped to the relay, the CA trusted through
/// `home`): the admin signs in, creates the workspace "quickstart", opens its editor and runs
/// `echo` in its terminal. Screenshots go to `screenshots`.
async fn browser_walk(
    resolver_rules: String,
    home: PathBuf,
    access_url: String,
    password: String,
    image: String,
    screenshots: PathBuf,
) -> anyhow::Result<()> {
    let options = BrowserOptions::new().arg(resolver_rules).home(home);
    let browser = Browser::start_with(options)
        .await
        .context("starting headless Chromium (chromium and chromium-driver)")?;
    let walk = FrontDoorWalk::new(&browser, &access_url, &screenshots);
    walk.login(ADMIN_EMAIL, &password).await;
    let id = walk.create_workspace("quickstart", &image).await;
    walk.open_editor("quickstart").await;
    walk.terminal(
        &id,
        "echo hello from the quick start",
        "hello from the quick start",
    )
    .await;
    walk.browser().goto(&format!("{access_url}/")).await;
    walk.screenshot("dashboard").await;
    browser.quit().await;
    Ok(())
}

/// What a panicked task said.
fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(error) => error.to_string(),
    }
}

/// The workspace image the platform allows (the site registry's copy, pinned by digest).
async fn workspace_image_allowed(client: &kube::Client) -> anyhow::Result<String> {
    let config = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get("coder-config")
        .await
        .context("the platform's ConfigMap coder-config")?;
    config
        .data
        .unwrap_or_default()
        .get("CODER_ALLOWED_IMAGES")
        .and_then(|images| images.split(',').next().map(str::to_owned))
        .context("coder-config has no CODER_ALLOWED_IMAGES")
}

/// The first admin's password, from the Secret `apply` generated for it (the manager never
/// logs it).
async fn admin_password(client: &kube::Client) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = secrets
        .get("coder-admin-password")
        .await
        .context("reading Secret coder/coder-admin-password (apply creates it)")?;
    let password = secret
        .data
        .and_then(|data| data.get("password").map(|value| value.0.clone()))
        .context("Secret coder/coder-admin-password has no `password` key")?;
    Ok(String::from_utf8(password)?)
}

/// Logs in as `email` at the platform's URL; succeeds once it returns a session token (retried
/// for a minute: kube-proxy and the ingress controller may still be writing their rules).
async fn login(http: &reqwest::Client, platform: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let response = http
                .post(format!("{platform}/auth/basic/login"))
                .header("content-type", "application/json")
                .body(json!({ "email": email, "password": password }).to_string())
                .send()
                .await
                .map_err(|error| error.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|error| error.to_string())?;
            let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match reply["session_token"].as_str() {
                Some(_) if status.is_success() => Ok(()),
                _ => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
            }
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(reason) if started.elapsed() > Duration::from_secs(60) => {
                bail!("logging in as {email} at {platform}/auth/basic/login: {reason}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// The work folder: the one given, or a temporary one removed at the end.
fn tempfile_dir(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok(dir.clone())
        }
        None => {
            let dir = std::env::temp_dir().join(format!("coder-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(dir)
        }
    }
}

/// The default spec's images, with their registries replaced by the upstream stand-in.
fn spec_text(upstream: &str, repository: &Path) -> String {
    let mut text = "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n".to_owned();
    text.push_str(&format!(
        "  - name: coder-service\n    ref: {upstream}/coderenvs/coder-service:1.0.0\n"
    ));
    for (name, path) in THIRD_PARTY {
        text.push_str(&format!("  - name: {name}\n    ref: {upstream}/{path}\n"));
    }
    text.push_str(&format!(
        "charts:\n  - name: coder\n    path: {}\n",
        repository.join("charts/coder").display()
    ));
    text
}

/// The TEST-ONLY license key's id; `coder-install` built with `coder-license/test-keys` trusts it.
const TEST_KEY_ID: &str = "test-only-insecure";

/// The TEST-ONLY signing key, read from the checkout (`crates/license/test-keys/KID.key`: 64 hex
/// digits). It is publicly known: only test builds trust licenses it signs.
fn test_signing_key(repository: &Path) -> anyhow::Result<SigningKey> {
    let path = repository.join(format!("crates/license/test-keys/{TEST_KEY_ID}.key"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the test license key {}", path.display()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("{} does not hold 64 hex digits", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A year-long enterprise license with the air-gap entitlement, signed by the test key.
fn enterprise_license(repository: &Path) -> anyhow::Result<String> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let day = 86_400;
    let claims = Claims {
        version: FORMAT_VERSION,
        license_id: "quickstart".to_owned(),
        account_name: "Quick Start".to_owned(),
        account_id: "quickstart".to_owned(),
        tier: Tier::Enterprise,
        features: Features {
            airgap: true,
            user_limit: 25,
        },
        iat: now,
        nbf: now - day,
        license_expires: now + 365 * day,
        grace_until: now + 395 * day,
    };
    Ok(coder_license::sign(
        &claims,
        TEST_KEY_ID,
        &test_signing_key(repository)?,
    )?)
}

fn section(title: &str) {
    println!("\n=== {title}");
}

/// Prints and runs a command; fails if it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown: Vec<String> = std::iter::once(command.get_program().to_string_lossy().into_owned())
        .chain(command.get_args().map(|arg| arg.to_string_lossy().into_owned()))
        .collect();
    println!("$ {}", shown.join(" "));
    let status = command
        .status()
        .with_context(|| format!("running {}", shown[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", shown.join(" "));
    }
    Ok(())
}
