//! The quick start: brings up a local world with no internet and runs what a site runs in it.
//!
//! The world, all on loopback: a registry standing in for the public upstream, a second one as
//! the site registry, and a real single-node Kubernetes cluster ([`Cluster`]: API server,
//! containerd, kubelet, kube-proxy, scheduler, controller-manager; it needs root). The platform
//! image is built (trusting the test license key) and pushed upstream with the third-party
//! images; then `lock` → `bundle` → `verify` → `apply --bundle --wait` (with a test enterprise
//! license) → `status`, printing each command as it runs it. The platform's pods really run:
//! the quick start logs in as the first admin through the manager's Service and prints the
//! dashboard's URL and the admin's credentials.
//!
//! What stands in, because there is no internet and no image for it here: the cluster's
//! service DNS (dnsmasq fed by the harness) and volumes (a hostPath provisioner in the
//! harness); the PostgreSQL and workspace images, built from Debian's packages
//! (`coder_testenv::dependency_images`); the ingress controller (no image of it exists here:
//! two small never-run stand-ins fill its places in the bundle, ingress is disabled, and the
//! platform is reached through its Services via kube-proxy).
//!
//! Run it through `scripts/quickstart.sh` (as root), which builds what it needs: the
//! Kubernetes programs, a `coder-install` that trusts the test license key (a debug build with
//! `coder-license/test-keys`), and the `workspace-standin` program the workspace image holds.
//!
//! The quick start itself does not link the test key (no `test-keys` feature here: through
//! feature unification that would make every binary built at the root trust it, and make
//! `cargo build --release` at the root fail). It reads the TEST-ONLY private key from
//! `license/test-keys/` in the checkout at run time to sign its license.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use coder_license::{Claims, FORMAT_VERSION, Features, SigningKey, Tier};
use coder_testenv::dependency_images::{postgres_image, workspace_image};
use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{Cluster, Registry, RegistryFlavour};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::Api;
use serde_json::{Value, json};
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
    if !repository.join("charts/coder/Chart.yaml").exists() {
        bail!("run the quick start from the repository's root (scripts/quickstart.sh does)");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the quick start runs a real Kubernetes node (network bridge, iptables, mounts, containers), \
             which needs root: run `sudo scripts/quickstart.sh`"
        );
    }
    let temporary = tempfile_dir(&args)?;
    let work = temporary.as_path();

    section("1. the local world (loopback only)");
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
         (iptables), kube-scheduler, kube-controller-manager; the platform's own image.\n\
         Stands in: service DNS (dnsmasq fed by the harness, not CoreDNS); volumes (a hostPath\n\
         provisioner in the harness); the PostgreSQL and workspace images (built from Debian's\n\
         packages); the ingress controller (no image of it here: ingress is disabled and the\n\
         platform is reached through its Services). Node logs: {}",
        cluster.log_dir().display()
    );

    section("2. the images, built and pushed upstream");
    let platform_image = format!("{}/coderenvs/coder-service:1.0.0", upstream.host());
    println!(
        "building the platform image (trusting the test license key); this may take several minutes\n\
         on a cold machine"
    );
    run(Command::new("scripts/build-platform-image.sh")
        .args(["--profile", "dev", "--test-keys", "--push", &platform_image])
        .args(["--insecure-registry", &upstream.host()]))?;
    for (index, (name, path)) in THIRD_PARTY.iter().enumerate() {
        let (image, what) = match *name {
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
                    "the workspace stand-in (HTTP on 13337)",
                )
            }
            // Never run: the ingress controller is disabled.
            _ => (
                ImageBuilder::new()
                    .label(
                        "org.opencontainers.image.description",
                        &format!("quick-start stand-in for {path}, never run"),
                    )
                    .layer(LayerBuilder::new().random_file(&format!("{name}.bin"), 32 * 1024, index as u64))
                    .build()?,
                "a small stand-in, never run",
            ),
        };
        upstream.push_image(path, &image).await?;
        println!("{path} pushed upstream: {what}");
    }

    section("3. on the connected host: lock, bundle, verify");
    let spec = work.join("coder.yaml");
    std::fs::write(&spec, spec_text(&upstream.host(), &repository))?;
    let lock = work.join("images.lock");
    let bundle = work.join("coder.bundle");
    let coder_install = repository.join(&args.coder_install);
    let tool = |arguments: &[&str]| {
        let mut command = Command::new(&coder_install);
        command.args(arguments).env("DOCKER_CONFIG", work.join("docker"));
        command
    };
    std::fs::create_dir_all(work.join("docker"))?;
    std::fs::write(work.join("docker/config.json"), "{}")?;
    let text = |path: &Path| path.display().to_string();
    run(&mut tool(&[
        "lock",
        "--spec",
        &text(&spec),
        "-o",
        &text(&lock),
        "--insecure-registry",
        &upstream.host(),
    ]))?;
    run(&mut tool(&[
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
        &upstream.host(),
    ]))?;
    run(&mut tool(&["verify", "--allow-unsigned", &text(&bundle)]))?;

    section("4. inside the air gap: apply the bundle (enterprise license) and wait for it to run");
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
    run(&mut tool(&["license", "inspect", &text(&license)]))?;
    println!(
        "apply waits until every workload is Ready (image pulls, PostgreSQL's initdb, migrations: a few minutes)"
    );
    let applied = run(&mut tool(&[
        "apply",
        "--bundle",
        &text(&bundle),
        "--allow-unsigned",
        "--registry",
        &site_registry,
        "--insecure-registry",
        &site.host(),
        "--license",
        &text(&license),
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "ingress.enable=false",
        "--wait",
        "--timeout",
        APPLY_TIMEOUT,
    ]));
    if let Err(error) = applied {
        eprintln!(
            "\nthe pods in namespace {NAMESPACE}:\n{}\nthe node's logs: {}",
            cluster.describe_pods(NAMESPACE).await,
            cluster.log_dir().display()
        );
        return Err(error);
    }

    section("5. what is installed");
    run(&mut tool(&["status", "--kubeconfig", &kubeconfig]))?;

    section("6. the platform, through its Services");
    let client = cluster.api().client().await?;
    let manager = service_url(&client, "coder-manager").await?;
    let dashboard = service_url(&client, "coder-dashboard").await?;
    let password = admin_password(&client).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    println!("logging in as {ADMIN_EMAIL} through {manager}");
    login(&http, &manager, ADMIN_EMAIL, &password).await?;
    println!("the login works (the manager returned a session token)");
    println!(
        "\nDashboard: {dashboard}/   (reachable from this host through kube-proxy)\n\
         Manager:   {manager}/\n\
         Admin:     {ADMIN_EMAIL}\n\
         Password:  {password}"
    );

    section("done");
    println!(
        "Real-world equivalents: `coder-install lock && coder-install bundle -o coder.bundle --signing-key vendor.pem`\n\
         on a connected host; carry coder.bundle in; `coder-install apply --bundle coder.bundle --public-key vendor.pub\n\
         --registry <your registry> --license <your license>` with your kubeconfig (this demo's bundle is unsigned,\n\
         hence --allow-unsigned above). Work files: {}",
        work.display()
    );
    if !args.exit {
        println!(
            "\nThe local world stays up: try\n  {} status --kubeconfig {kubeconfig}\n  KUBECONFIG={kubeconfig} kubectl -n {NAMESPACE} get pods   (if you have kubectl)\n  {} template --bundle {} --registry {site_registry} --license {}\nPress Ctrl-C to stop it (the node and its pods are torn down).",
            coder_install.display(),
            coder_install.display(),
            bundle.display(),
            license.display()
        );
        tokio::signal::ctrl_c().await?;
    }
    println!("stopping the local world");
    drop(client);
    drop((upstream, site, cluster));
    Ok(())
}

/// `http://CLUSTER-IP:PORT` of a Service in the platform's namespace, reached from this host
/// through kube-proxy.
async fn service_url(client: &kube::Client, name: &str) -> anyhow::Result<String> {
    let service = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get(name)
        .await
        .with_context(|| format!("the Service {NAMESPACE}/{name}"))?;
    let spec = service
        .spec
        .with_context(|| format!("the Service {name} has no spec"))?;
    let port = spec
        .ports
        .and_then(|ports| ports.first().map(|port| port.port))
        .with_context(|| format!("the Service {name} has no port"))?;
    let ip = spec
        .cluster_ip
        .with_context(|| format!("the Service {name} has no cluster IP"))?;
    Ok(format!("http://{ip}:{port}"))
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

/// Logs in as `email` through the manager; succeeds once it returns a session token (retried
/// for a minute: kube-proxy may still be writing the Service's rules).
async fn login(http: &reqwest::Client, manager: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let response = http
                .post(format!("{manager}/auth/basic/login"))
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
                bail!("logging in as {email} at {manager}/auth/basic/login: {reason}")
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

/// The TEST-ONLY signing key, read from the checkout (`license/test-keys/KID.key`: 64 hex
/// digits). It is publicly known: only test builds trust licenses it signs.
fn test_signing_key(repository: &Path) -> anyhow::Result<SigningKey> {
    let path = repository.join(format!("license/test-keys/{TEST_KEY_ID}.key"));
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
