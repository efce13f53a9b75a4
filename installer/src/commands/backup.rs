//! `coder-install backup`: the platform's database dumped into one checksummed file, and
//! `coder-install restore`: such a file put back.

use std::path::PathBuf;

use crate::args::{OutputFormat, TargetArgs};
use coder_deploy::backup::archive::VerifiedBackup;
use coder_deploy::backup::restore::{AfterRestore, check_matches, restore};
use coder_deploy::backup::{BackupError, backup, describe_migrations};
use coder_deploy::cluster;
use coder_deploy::objects::ObjectKey;
use coder_deploy::record::RecordStore;
use coder_progress::human_bytes;

/// `coder-install backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The backup file to write (written as FILE.partial, renamed once the dump succeeded).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `coder-install restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The backup file (from `coder-install backup`, or the one `apply` took before an upgrade).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// How long to wait, once the database is back, for the platform's Deployments to be
    /// available again (e.g. 90s, 10m).
    #[arg(long, default_value = "5m", value_parser = coder_units::parse_duration)]
    pub timeout: std::time::Duration,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `backup` ([`coder_deploy::backup::backup`]).
pub async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let namespace = args.target.checked_namespace()?;
    if args.out.is_dir() {
        anyhow::bail!(
            "--out {} is a folder: name the backup file to write (e.g. {}/coder.backup)",
            args.out.display(),
            args.out.display()
        );
    }
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let progress = crate::progress::for_format(args.format);
    progress.step(&format!("back up the database of namespace {namespace}"));
    let report = backup(&cluster, &namespace, &args.out, progress).await?;
    match args.format {
        OutputFormat::Json => super::print_json(&report),
        OutputFormat::Text => {
            let manifest = &report.manifest;
            println!(
                "wrote {} ({}): database {} of {} (revision {}, {} database, migrations {}), dump {} in {:.1}s",
                report.path,
                human_bytes(report.file_bytes),
                manifest.database,
                manifest.version,
                manifest.revision,
                manifest.location,
                describe_migrations(&manifest.migrations),
                manifest.dump_sha256,
                report.seconds
            );
            Ok(())
        }
    }
}

/// Runs `restore`: the file read whole and checked, matched with the installed version, then
/// [`coder_deploy::backup::restore::restore`] under the namespace's lease.
pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let namespace = args.target.checked_namespace()?;
    let progress = crate::progress::for_format(args.format);
    progress.step(&format!("verify {}", args.file.display()));
    let verified = VerifiedBackup::open(&args.file)
        .await
        .map_err(BackupError::from)?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let record = RecordStore::new(cluster.client.clone(), &namespace)
        .load_installed()
        .await?;
    check_matches(&verified, &record.version, None)?;
    progress.step(&format!(
        "restore the database of namespace {namespace} from {} (taken {} from revision {})",
        args.file.display(),
        verified.manifest.taken_at,
        verified.manifest.revision
    ));
    let report =
        coder_deploy::lease::with_lease(cluster.client.clone(), &namespace, false, progress, async {
            restore(
                &cluster,
                &record,
                &namespace,
                &verified,
                AfterRestore::ScaleBack,
                progress,
            )
            .await
            .map_err(coder_deploy::DeployError::from)
        })
        .await?;
    progress.step(&format!(
        "wait up to {}s for {} to be available again",
        args.timeout.as_secs(),
        report
            .scaled
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let keys: Vec<ObjectKey> = report
        .scaled
        .iter()
        .map(|(name, _)| ObjectKey {
            api_version: "apps/v1".to_owned(),
            kind: "Deployment".to_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
        })
        .collect();
    coder_deploy::wait::wait_ready(&cluster, &keys, args.timeout, &|_| {}).await?;
    match args.format {
        OutputFormat::Json => super::print_json(&report),
        OutputFormat::Text => {
            println!(
                "restored database {} of namespace {} from {} ({} of {}, migrations {}) in {:.1}s; \
                 the replaced database is kept as {} until the next restore; {} available again",
                report.database,
                report.namespace,
                report.path,
                human_bytes(report.dump_bytes),
                report.version,
                describe_migrations(&report.migrations),
                report.restore_seconds,
                report.kept_as,
                report
                    .scaled
                    .iter()
                    .map(|(name, replicas)| format!("{name} ({replicas})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
    }
}
