//! `coder-install apply`: the whole pipeline ([`coder_deploy::apply::run`]) from the command line.

use std::time::Duration;

use crate::args::OutputFormat;
use crate::args::{RegistryLoginArgs, ReleaseArgs, TargetArgs, ValuesArgs};
use coder_deploy::apply::{ApplyOptions, ApplyReport, ApplyRequest};
use coder_deploy::objects::Change;
use coder_deploy::release::ReleaseSource;
use coder_units::parse_duration;

/// `coder-install apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Which release.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The license file. Required with --bundle (air-gapped installs need an enterprise license
    /// with the air-gap entitlement); optional in connected mode (none: free tier).
    #[arg(long, value_name = "FILE")]
    pub license: Option<std::path::PathBuf>,
    /// Whose signatures the bundle and its images must carry.
    #[command(flatten)]
    pub trust: crate::args::BundleTrustArgs,
    /// Chart values.
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Site registry access.
    #[command(flatten)]
    pub login: RegistryLoginArgs,
    /// A site registry that already holds the bundle (`coder-install serve`).
    #[command(flatten)]
    pub no_push: crate::args::NoPushArgs,
    /// Run every check, render, and the server's dry run of every object; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show a diff of every object that would change.
    #[arg(long)]
    pub diff: bool,
    /// Wait until every workload is ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
    /// Blobs pushed at once.
    #[command(flatten)]
    pub concurrency: crate::args::ConcurrencyArgs,
    /// Whole blobs or chunks (the push step).
    #[command(flatten)]
    pub chunks: crate::args::ChunkArgs,
    /// Do not back up the database before changing the installed version.
    #[arg(long)]
    pub no_backup: bool,
    /// Where the backup taken before a version change is written (made if missing); the
    /// install record names the file, for `rollback --restore-data`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "coder-backups",
        conflicts_with = "no_backup"
    )]
    pub backup_dir: std::path::PathBuf,
    /// Print the wall time of each step (verify, license, preflight, push, backup, render,
    /// server-side apply, wait) after the report. `--output json` always has them, under
    /// `timings`.
    #[arg(long)]
    pub timings: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `apply`: gathers the inputs (reading the registry password from stdin when asked), then
/// the pipeline ([`coder_deploy::apply::run`]), and prints its report.
pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let progress = crate::progress::for_format(args.format);
    let source = args.release.source()?;
    let site = match &source {
        ReleaseSource::Bundle { site, .. } => Some(site),
        ReleaseSource::Connected(_) => None,
    };
    let (mut registry, pull_credentials) = args.login.resolve(site)?;
    args.chunks.apply_to(&mut registry);
    let request = ApplyRequest {
        signature: args.trust.signature_policy(),
        image_signatures: args.trust.image_policy(),
        license: args.license.clone(),
        registry,
        concurrency: args.concurrency.get(),
        no_push: args.no_push.no_push,
        backup_folder: (!args.no_backup).then(|| args.backup_dir.clone()),
        options: ApplyOptions {
            namespace: args.target.checked_namespace()?,
            cluster: args.target.cluster(),
            values_files: args.values.files.clone(),
            sets: args.values.sets.clone(),
            pull_credentials,
            dry_run: args.dry_run,
            diff: args.diff,
            wait: args.wait.then_some(args.timeout),
        },
        source,
    };
    let report = coder_deploy::apply::run(request, progress).await?;
    print_report(&report, args.format)?;
    if args.timings && args.format == OutputFormat::Text {
        print_timings(&report.timings);
    }
    Ok(())
}

/// The `--timings` table: each step, its seconds and its share of the whole, then the share the
/// tool itself took (every step but the wait for the workloads).
fn print_timings(timings: &coder_deploy::apply::Timings) {
    let total = timings.total_seconds.max(f64::EPSILON);
    println!("timings:");
    for step in &timings.steps {
        println!(
            "  {:<18} {:>8.2} s  {:>5.1}%",
            step.step,
            step.seconds,
            100.0 * step.seconds / total
        );
    }
    println!("  {:<18} {:>8.2} s", "total", timings.total_seconds);
    if timings.seconds(coder_deploy::apply::WAIT).is_some() {
        let own = timings.own_seconds();
        println!(
            "  this tool's own steps (all but the wait): {own:.2} s, {:.1}% of the apply",
            100.0 * own / total
        );
    }
}

/// Prints an apply (or rollback) report.
pub(crate) fn print_report(report: &ApplyReport, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return super::print_json(report);
    }
    for applied in &report.objects {
        if let Some(diff) = &applied.diff {
            print!("{diff}");
        }
    }
    for applied in report
        .objects
        .iter()
        .filter(|applied| applied.change != Change::Unchanged)
    {
        let verb = match (applied.change, report.dry_run) {
            (Change::Created, false) => "created",
            (Change::Created, true) => "would create",
            (Change::Updated, false) => "updated",
            (Change::Updated, true) => "would update",
            (Change::Replaced, false) => "replaced",
            (Change::Replaced, true) => "would replace",
            (Change::Unchanged, _) => "unchanged",
        };
        println!("{verb:>14}  {}", applied.key);
    }
    for key in &report.pruned {
        println!(
            "{:>14}  {key}",
            if report.dry_run { "would prune" } else { "pruned" }
        );
    }
    let changed = report.changed();
    let summary = if changed == 0 && report.pruned.is_empty() {
        "no changes".to_owned()
    } else {
        format!("{changed} changed, {} pruned", report.pruned.len())
    };
    println!(
        "{} {} ({}) in namespace {}: {} objects, {summary}{}; revision {}",
        coder_deploy::release::PRODUCT,
        report.version,
        report.mode,
        report.namespace,
        report.objects.len(),
        if report.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        },
        report.revision
    );
    if let Some(backup) = &report.backup {
        println!(
            "The database of {} was backed up first, to {} (rollback --restore-data puts it back).",
            backup.version, backup.path
        );
    }
    let admin_secret = coder_deploy::render::secret_names::ADMIN_PASSWORD;
    if !report.dry_run && report.secrets.created.iter().any(|name| name == admin_secret) {
        println!(
            "The first admin's password was generated into Secret {namespace}/{admin_secret} (kept \
             across upgrades; never logged). Read it once, sign in and change it:\n  \
             kubectl -n {namespace} get secret {admin_secret} -o jsonpath='{{.data.password}}' | base64 -d",
            namespace = report.namespace
        );
    }
    Ok(())
}
