//! The `coder-install` command line: every subcommand, its help text, and dispatch.

use clap::{Parser, Subcommand};

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
    Lock(crate::commands::lock::LockArgs),
    /// Mirror every locked image and chart into one offline bundle file (connected host).
    ///
    /// The bundle is one tar that is an OCI image layout (`skopeo copy
    /// oci-archive:coder.bundle:<ref> ...` reads it). It is laid out first, then every blob is
    /// streamed straight into its place, verified, many at once; a killed run resumes from the
    /// journal beside `<FILE>.partial`. The cache keeps finished bundles, so a re-bundle of an
    /// unchanged lock is near-free and a new version copies the blobs it shares locally.
    Bundle(crate::commands::bundle::BundleArgs),
    /// Re-hash every blob of a bundle and check its signature; exits non-zero on any problem.
    Verify(crate::commands::verify::VerifyArgs),
    /// Show what a bundle holds: images, platforms, charts and sizes.
    Inspect(crate::commands::inspect::InspectArgs),
    /// Push a bundle's images and charts into a site registry, without touching a cluster.
    Push(crate::commands::push::PushArgs),
    /// Serve a bundle as a read-only OCI registry, for a site without a registry.
    ///
    /// The bundle is verified first (as `verify`), then its images and charts are served
    /// straight from the file (nothing is extracted) over the OCI distribution pull API, under
    /// `PREFIX/<original repository path>` with their original tags, as `push` would place them.
    /// Pushes are refused (405 UNSUPPORTED). Keep it running for as long as the platform runs:
    /// the cluster's nodes pull from it whenever a pod starts. Deploy from it with
    /// `apply --bundle FILE --registry HOST:PORT/PREFIX --no-push`. Stops on Ctrl-C or SIGTERM.
    Serve(crate::commands::serve::ServeArgs),
    /// Write what the cluster's nodes need to pull from the site registry (or `serve`).
    ///
    /// containerd's registry host configuration (its `config_path` layout, one `hosts.toml` per
    /// registry host): the site registry with its CA, and mirrors for the upstream registries the
    /// images came from, so that an image named by its upstream reference is pulled from the
    /// site registry under its prefix, never from upstream. Copy `DIR/certs.d/.` to every node's
    /// `/etc/containerd/certs.d/`; `DIR/README.md` says how.
    NodeConfig(crate::commands::node_config::NodeConfigArgs),
    /// Write the have-list of what the site registry already holds, for `bundle --have-list`.
    ///
    /// Every tag of the repositories the spec's images and charts go to (under the prefix) is
    /// read, and the digests of its manifests, configs and layers written one a line, after a
    /// header saying which registry and when. On the connected side, `bundle --have-list FILE`
    /// then leaves those blobs out: the update carries only what the site lacks, and `push` or
    /// `apply` checks that every blob left out is at the site before anything is sent.
    Inventory(crate::commands::inventory::InventoryArgs),
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
    /// Test the installed platform as its users use it, hop by hop; exits non-zero on any failure.
    ///
    /// From outside the cluster, through the access URL (its host sent to the ingress
    /// controller's load-balancer address, or to --resolve's): the load balancer, TLS at the
    /// ingress, the dashboard, the manager (the admin signs in with the install's password Secret
    /// and makes a throwaway member), a throwaway workspace, the envproxy, and through it the
    /// workspace's editor (13337), a terminal round trip (26337) and the SSH proxy (12212). From
    /// inside, two short-lived probe pods from the platform image: PostgreSQL must refuse a pod
    /// labelled as a stranger and one labelled as a workspace, and the manager must reach it.
    /// Each hop is reported pass or FAIL with what to look at; a hop whose prerequisite failed is
    /// skipped. The throwaway member, workspace and probe pods are deleted at the end whatever
    /// happened, and the check fails if anything is left.
    Check(crate::commands::check::CheckArgs),
    /// Collect what a vendor needs to diagnose an install into one .tar.gz, credentials removed.
    ///
    /// The install record and its revisions, every ConfigMap, the workloads' readiness, events,
    /// pods, each container's log and its previous container's (bounded), node conditions,
    /// versions and the license's claims. Secrets' data is never included: every value of every
    /// Secret of the namespace is masked wherever it appears, and so is whatever looks like a
    /// password, token, cookie or private key. Works while the platform is broken: it needs only
    /// the API server. `manifest.json` in the archive lists every file and what was masked.
    SupportBundle(crate::commands::support_bundle::SupportBundleArgs),
    /// Write a backup of the platform's database into one checksummed file.
    ///
    /// `pg_dump` runs in the database's pod (or, for an external database, on this machine with
    /// its PostgreSQL client programs) and streams into the file, with the release it was taken
    /// from and the migrations it has.
    Backup(crate::commands::backup::BackupArgs),
    /// Put a backup's database back, the platform scaled down meanwhile.
    ///
    /// The file is read whole and checked and must be of the installed version; the manager,
    /// envproxy and dashboard are scaled down, the dump restored beside the live database and
    /// swapped in (the replaced one is kept until the next restore), and the platform scaled back.
    Restore(crate::commands::backup::RestoreArgs),
    /// Re-apply the previously recorded version's manifests (with --restore-data, its database too).
    ///
    /// The database comes from the backup `apply` took before the upgrade being undone.
    Rollback(crate::commands::rollback::RollbackArgs),
    /// Remove the platform from a namespace.
    Uninstall(crate::commands::uninstall::UninstallArgs),
    /// Inspect and verify license files (air-gapped installs need an enterprise license).
    License(crate::commands::license::LicenseArgs),
    /// List the endpoints a restricted site must allow, and audit a site's allowlist.
    Allowlist(crate::commands::allowlist::AllowlistArgs),
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
        Command::Serve(args) => crate::commands::serve::run(args).await,
        Command::NodeConfig(args) => crate::commands::node_config::run(&args),
        Command::Inventory(args) => crate::commands::inventory::run(args).await,
        Command::Apply(args) => crate::commands::apply::run(*args).await,
        Command::Template(args) => crate::commands::template::run(&args).await,
        Command::Preflight(args) => crate::commands::preflight::run(args).await,
        Command::Status(args) => crate::commands::status::run(args).await,
        Command::Check(args) => crate::commands::check::run(args).await,
        Command::SupportBundle(args) => crate::commands::support_bundle::run(args).await,
        Command::Backup(args) => crate::commands::backup::run_backup(args).await,
        Command::Restore(args) => crate::commands::backup::run_restore(args).await,
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
