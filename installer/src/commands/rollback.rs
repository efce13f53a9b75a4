//! `coder-install rollback`: render the previous revision again from its recorded inputs, check
//! it, and apply it.

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::cluster;
use coder_deploy::rollback::RollbackOptions;

/// `coder-install rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show a diff of every object that would change.
    #[arg(long)]
    pub diff: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `rollback` ([`coder_deploy::rollback::run`]) and prints its report as apply does.
pub async fn run(args: RollbackArgs) -> anyhow::Result<()> {
    let options = RollbackOptions {
        namespace: args.target.checked_namespace()?,
        cluster: args.target.cluster(),
        dry_run: args.dry_run,
        diff: args.diff,
    };
    let cluster = cluster::connect(&options.cluster).await?;
    let report =
        coder_deploy::rollback::run(&cluster, &options, crate::progress::for_format(args.format)).await?;
    super::apply::print_report(&report, args.format)
}
