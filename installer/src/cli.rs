//! The `coder-install` command line: every subcommand, its help text, and dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Install the Coder platform on Kubernetes, connected or air-gapped.
///
/// Connected sites deploy straight from the public registries. Air-gapped sites build one
/// offline bundle on a connected host (`lock`, `bundle`), carry it across, and deploy it with
/// `apply --bundle`, which pushes every image into the site's own registry first.
#[derive(Debug, Parser)]
#[command(name = "coder-install", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `coder-install`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve every image of the bundle spec to a digest and write images.lock.
    Lock(LockArgs),
    /// Mirror every locked image and chart into one offline bundle file (connected host).
    ///
    /// The bundle is one tar that is an OCI image layout (`skopeo copy
    /// oci-archive:coder.bundle:<ref> ...` reads it). It is laid out first, then every blob is
    /// streamed straight into its place, verified, many at once; a killed run resumes from the
    /// journal beside `<FILE>.partial`. The cache keeps finished bundles, so a re-bundle of an
    /// unchanged lock is near-free and a new version copies the blobs it shares locally.
    Bundle(BundleArgs),
    /// Re-hash every blob of a bundle and check its signature; exits non-zero on any problem.
    Verify(VerifyArgs),
    /// Show what a bundle holds: images, platforms, charts and sizes.
    Inspect(InspectArgs),
    /// Push a bundle's images and charts into a site registry, without touching a cluster.
    Push(crate::commands::push::PushArgs),
    /// Deploy the platform: from a bundle via the site registry (air-gapped) or from upstream.
    ///
    /// In order: verify the bundle, check the license (offline), preflight, push the images,
    /// render the chart, server-side apply every object (pruning what the previous revision had
    /// and this one does not), and with --wait, wait for readiness. A second run with the same
    /// inputs changes nothing.
    Apply(Box<crate::commands::apply::ApplyArgs>),
    /// Render the platform's manifests to stdout, for GitOps.
    Template(crate::commands::template::TemplateArgs),
    /// Check the cluster and registry an apply would use, and report what must be fixed.
    Preflight(crate::commands::preflight::PreflightArgs),
    /// Show what is installed in a namespace and whether it is healthy.
    Status(crate::commands::status::StatusArgs),
    /// Re-apply the previously recorded version's manifests (database migrations are forward-only).
    Rollback(crate::commands::rollback::RollbackArgs),
    /// Remove the platform from a namespace.
    Uninstall(crate::commands::uninstall::UninstallArgs),
    /// Inspect and verify license files (air-gapped installs need an enterprise license).
    License(crate::commands::license::LicenseArgs),
    /// List the endpoints a restricted site must allow, and audit a site's allowlist.
    Allowlist(crate::commands::allowlist::AllowlistArgs),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document on stdout, for scripts; progress is not shown.
    Json,
}

/// Where the spec and lock come from.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// The bundle spec (YAML). Default: the spec built into this coder-install.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The image lock. Default: `images.lock` beside `--spec`, or the built-in lock.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
}

/// How to reach registries.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Reach this registry (`host[:port]`) over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for registries, beside the system's. Repeatable.
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
}

/// How many blobs move at once: the same flag, default and limits for `bundle` (downloads),
/// `push` and `apply` (uploads).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ConcurrencyArgs {
    /// Blobs downloaded or pushed at once (1 to 256).
    #[arg(long = "concurrency", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub value: u16,
}

impl ConcurrencyArgs {
    /// As a count of tasks.
    pub fn get(self) -> usize {
        usize::from(self.value)
    }
}

/// `coder-install lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The bundle spec (YAML). Default: the built-in spec.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Where to write the lock.
    #[arg(short = 'o', long = "out", value_name = "FILE", default_value = "images.lock")]
    pub out: PathBuf,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `coder-install bundle`.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// The bundle file to write.
    #[arg(
        short = 'o',
        long = "out",
        value_name = "FILE",
        default_value = "coder.bundle"
    )]
    pub out: PathBuf,
    /// Overwrite the bundle file if it exists.
    #[arg(long)]
    pub force: bool,
    /// The cache of manifests, charts and earlier bundles (which share disk with their outputs
    /// by hard links). Default: ~/.cache/coder-install/blob-cache.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Blobs downloaded at once.
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    /// Make a delta bundle: leave out the layers an earlier bundle (already applied at the target) carried.
    #[arg(long, value_name = "OLD_BUNDLE", conflicts_with = "have_list")]
    pub delta_from: Option<PathBuf>,
    /// Make a delta bundle: leave out the layers in this list (one sha256 digest a line), e.g.
    /// what the target registry already holds.
    #[arg(long, value_name = "FILE")]
    pub have_list: Option<PathBuf>,
    /// Sign the bundle with this Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `coder-install verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signature_check").required(true).args(["public_key", "allow_unsigned"])))]
pub struct VerifyArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Require a valid signature by this Ed25519 public key (SPKI PEM). One of this and
    /// --allow-unsigned is required.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Check the bundle's contents without its signature (an unsigned bundle, or no vendor key
    /// at hand); the output says the signature was not checked.
    #[arg(long, conflicts_with = "public_key")]
    pub allow_unsigned: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `coder-install inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lock(args) => crate::commands::lock::run(args).await,
        Command::Bundle(args) => crate::commands::bundle::run(args).await,
        Command::Verify(args) => crate::commands::verify::run(args).await,
        Command::Inspect(args) => crate::commands::inspect::run(args),
        Command::License(args) => crate::commands::license::run(&args),
        Command::Push(args) => crate::commands::push::run(args).await,
        Command::Apply(args) => crate::commands::apply::run(*args).await,
        Command::Template(args) => crate::commands::template::run(&args),
        Command::Preflight(args) => crate::commands::preflight::run(args).await,
        Command::Status(args) => crate::commands::status::run(args).await,
        Command::Rollback(args) => crate::commands::rollback::run(args).await,
        Command::Uninstall(args) => crate::commands::uninstall::run(args).await,
        Command::Allowlist(args) => crate::commands::allowlist::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
