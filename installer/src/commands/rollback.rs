//! `coder-install rollback`: render the previous revision again from its recorded inputs, check
//! it, and apply it.

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::cluster;
use coder_deploy::rollback::{RestoreData, RollbackOptions};

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
    /// Also put the database back as it was before the revision rolled back from: the backup
    /// `apply` took then (named in the install record) is read whole and checked, the platform
    /// is scaled down, the database restored, and the older release applied.
    #[arg(long)]
    pub restore_data: bool,
    /// With --restore-data: the backup file, when it is not where the record says (its dump
    /// must still be the recorded one).
    #[arg(long, value_name = "FILE", requires = "restore_data")]
    pub backup: Option<std::path::PathBuf>,
    /// Wait until every workload is ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = coder_units::parse_duration, requires = "wait")]
    pub timeout: std::time::Duration,
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
        restore_data: args.restore_data.then(|| RestoreData {
            file: args.backup.clone(),
        }),
        wait: args.wait.then_some(args.timeout),
    };
    let cluster = cluster::connect(&options.cluster).await?;
    let report =
        coder_deploy::rollback::run(&cluster, &options, crate::progress::for_format(args.format)).await?;
    super::apply::print_report(&report, args.format)
}
