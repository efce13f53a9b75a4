//! The quick start: brings up a local world with no internet (a registry standing in for the
//! public upstream, a second one as the site registry, a Kubernetes API server, PostgreSQL),
//! builds and pushes the platform image upstream, then runs what a site runs:
//! `lock` → `bundle` → `verify` → `apply --bundle` (with a test enterprise license) →
//! `status`, printing each command as it runs it.
//!
//! Run it through `scripts/quickstart.sh`, which builds what it needs (a `coder-install` that
//! trusts the test license key: a debug build with `coder-license/test-keys`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use coder_license::test_keys::{TEST_KEY_ID, signing_key};
use coder_license::{Claims, FORMAT_VERSION, Features, Tier};
use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{KubeApiServer, Postgres, Registry, RegistryFlavour};

/// Run the whole air-gapped install locally, with nothing but loopback.
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
    /// The platform image's build profile (`dev` is quick; `release` is what ships).
    #[arg(long, default_value = "dev", value_name = "PROFILE")]
    image_profile: String,
}

/// The default spec's third-party images, with the upstream paths they stand in for. No
/// internet here, so small fixture images take their place (labelled as stand-ins).
const STAND_INS: [(&str, &str); 4] = [
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
    let temporary = tempfile_dir(&args)?;
    let work = temporary.as_path();

    section("1. the local world (loopback only)");
    let (upstream, site, cluster, postgres) = tokio::join!(
        Registry::start(RegistryFlavour::Plain),
        Registry::start(RegistryFlavour::Plain),
        KubeApiServer::start(),
        Postgres::start(),
    );
    let (upstream, site, cluster, postgres) = (upstream?, site?, cluster?, postgres?);
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
        cluster.url(),
        cluster.kubeconfig_path().display()
    );
    println!("PostgreSQL on 127.0.0.1:{}", postgres.port());

    section("2. the platform image, built and pushed upstream");
    let platform_image = format!("{}/coderenvs/coder-service:1.0.0", upstream.host());
    run(Command::new("scripts/build-platform-image.sh")
        .args(["--profile", &args.image_profile, "--push", &platform_image])
        .args(["--insecure-registry", &upstream.host()]))?;
    for (index, (name, path)) in STAND_INS.iter().enumerate() {
        let image = ImageBuilder::new()
            .label(
                "org.opencontainers.image.description",
                &format!("quick-start stand-in for {path}"),
            )
            .layer(LayerBuilder::new().random_file(&format!("{name}.bin"), 32 * 1024, index as u64))
            .build()?;
        upstream.push_image(path, &image).await?;
        println!("stand-in {path} pushed upstream");
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
    run(&mut tool(&["verify", &text(&bundle)]))?;

    section("4. inside the air gap: apply the bundle (enterprise license)");
    let license = work.join("coder.license");
    std::fs::write(&license, enterprise_license()?)?;
    let site_registry = format!("{}/coder", site.host());
    let kubeconfig = text(cluster.kubeconfig_path());
    run(&mut tool(&["license", "inspect", &text(&license)]))?;
    run(&mut tool(&[
        "apply",
        "--bundle",
        &text(&bundle),
        "--registry",
        &site_registry,
        "--insecure-registry",
        &site.host(),
        "--license",
        &text(&license),
        "--kubeconfig",
        &kubeconfig,
    ]))?;

    section("5. what is installed");
    println!(
        "(this API server runs no scheduler or kubelets, so no pod starts: status reports every workload as not ready)"
    );
    if run(&mut tool(&["status", "--kubeconfig", &kubeconfig])).is_ok() {
        bail!("status reported healthy workloads on an API server without kubelets; something is off");
    }

    section("done");
    println!(
        "Real-world equivalents: `coder-install lock && coder-install bundle -o coder.bundle` on a connected\n\
         host; carry coder.bundle in; `coder-install apply --bundle coder.bundle --registry <your registry>\n\
         --license <your license>` with your kubeconfig. Work files: {}",
        work.display()
    );
    if !args.exit {
        println!(
            "\nThe local world stays up: try\n  {} status --kubeconfig {kubeconfig}\n  {} template --bundle {} --registry {site_registry}\nPress Ctrl-C to stop it.",
            coder_install.display(),
            coder_install.display(),
            bundle.display()
        );
        tokio::signal::ctrl_c().await?;
    }
    drop((upstream, site, cluster, postgres));
    Ok(())
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
    for (name, path) in STAND_INS {
        text.push_str(&format!("  - name: {name}\n    ref: {upstream}/{path}\n"));
    }
    text.push_str(&format!(
        "charts:\n  - name: coder\n    path: {}\n",
        repository.join("charts/coder").display()
    ));
    text
}

/// A year-long enterprise license with the air-gap entitlement, signed by the test key.
fn enterprise_license() -> anyhow::Result<String> {
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
    Ok(coder_license::sign(&claims, TEST_KEY_ID, &signing_key())?)
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
