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
    Lock(Pending),
    /// Mirror every locked image and chart into one offline bundle file (connected host).
    Bundle(Pending),
    /// Re-hash every blob of a bundle and check its signature.
    Verify(Pending),
    /// Show what a bundle holds: images, platforms, charts and sizes.
    Inspect(Pending),
    /// Push a bundle's images and charts into a site registry, without touching a cluster.
    Push(Pending),
    /// Deploy the platform: from a bundle via the site registry (air-gapped) or from upstream.
    Apply(Pending),
    /// Render the platform's manifests to stdout, for GitOps.
    Template(Pending),
    /// Check the cluster and registry an apply would use, and report what must be fixed.
    Preflight(Pending),
    /// Show what is installed in a namespace and whether it is healthy.
    Status(Pending),
    /// Re-apply the previously recorded version's manifests.
    Rollback(Pending),
    /// Remove the platform from a namespace.
    Uninstall(Pending),
    /// Inspect and verify license files (air-gapped installs need an enterprise license).
    License(crate::commands::license::LicenseArgs),
    /// List the endpoints a restricted site must allow, and audit a site's allowlist.
    Allowlist(Pending),
}

/// Arguments of a subcommand whose implementation has not landed yet: accepted as they are, so
/// that every invocation reaches the "not implemented yet" message instead of a usage error.
#[derive(Debug, clap::Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Which issue delivers each subcommand, for the "not implemented yet" message.
    let (name, issue) = match cli.command {
        Command::Lock(_) => ("lock", 3),
        Command::Bundle(_) => ("bundle", 3),
        Command::Verify(_) => ("verify", 3),
        Command::Inspect(_) => ("inspect", 3),
        Command::License(args) => return crate::commands::license::run(&args),
        Command::Push(_) => ("push", 6),
        Command::Apply(_) => ("apply", 6),
        Command::Template(_) => ("template", 6),
        Command::Preflight(_) => ("preflight", 6),
        Command::Status(_) => ("status", 6),
        Command::Rollback(_) => ("rollback", 6),
        Command::Uninstall(_) => ("uninstall", 6),
        Command::Allowlist(_) => ("allowlist", 7),
    };
    anyhow::bail!("`coder-install {name}` is not implemented yet (tracked in issue {issue})")
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
