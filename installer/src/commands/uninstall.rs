//! `coder-install uninstall`: remove the platform from a namespace.

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::cluster;

/// `coder-install uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep the data: the database volume and password, and workspaces' home volumes. A later
    /// apply into the same namespace picks them up again.
    #[arg(long)]
    pub keep_data: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `uninstall`.
pub async fn run(args: UninstallArgs) -> anyhow::Result<()> {
    let progress = crate::progress::for_format(args.format);
    let namespace = args.target.checked_namespace()?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let report = coder_deploy::uninstall::run(&cluster, &namespace, args.keep_data, progress).await?;
    if args.format == OutputFormat::Json {
        return super::print_json(&report);
    }
    for line in &report.deleted {
        println!("deleted  {line}");
    }
    println!(
        "uninstalled from namespace {}{}",
        report.namespace,
        if report.kept_data {
            " (data kept: the database volume and password, workspace home volumes)"
        } else {
            ""
        }
    );
    Ok(())
}
