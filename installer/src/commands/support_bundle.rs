//! `coder-install support-bundle`: the install's state, logs and events in one `.tar.gz` for the
//! vendor, every credential taken out.

use std::path::PathBuf;

use crate::args::{OutputFormat, TargetArgs};
use coder_deploy::cluster;
use coder_deploy::support::{SupportOptions, support_bundle};
use coder_progress::human_bytes;

/// `coder-install support-bundle`.
#[derive(Debug, clap::Args)]
pub struct SupportBundleArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where to write the archive (`.tar.gz`).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// Lines of each container's log (and of its previous container's) to keep, the last ones;
    /// at most 1 MiB each whatever the count.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub log_lines: i64,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Collects, masks and writes; says what is inside and what was masked.
pub async fn run(args: SupportBundleArgs) -> anyhow::Result<()> {
    let namespace = args.target.checked_namespace()?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let progress = crate::progress::for_format(args.format);
    progress.step(&format!("support bundle of namespace {namespace}"));
    let report = support_bundle(
        &cluster,
        &SupportOptions {
            namespace,
            log_lines: args.log_lines,
            output: args.out.clone(),
        },
    )
    .await?;
    match args.format {
        OutputFormat::Json => super::print_json(&report),
        OutputFormat::Text => {
            for file in &report.files {
                let masked = match file.redacted {
                    0 => String::new(),
                    count => format!("  ({count} values masked)"),
                };
                println!("{:<60} {:>10}{masked}", file.path, human_bytes(file.bytes as u64));
            }
            for skipped in &report.skipped {
                println!("not included: {skipped}");
            }
            println!(
                "wrote {}: {} files, {} values masked (no Secret data, no license signature); send it to your vendor",
                report.output,
                report.files.len(),
                report.redacted
            );
            Ok(())
        }
    }
}
