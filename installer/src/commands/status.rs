//! `coder-install status`: what is installed in a namespace and whether it is healthy.

use serde::Serialize;

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::cluster;
use coder_deploy::record::{InstallRecord, RecordStore};
use coder_deploy::wait::{Readiness, check};

/// `coder-install status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Serialize)]
struct Status {
    namespace: String,
    record: InstallRecord,
    workloads: Vec<Readiness>,
    healthy: bool,
}

/// Runs `status`; exits non-zero when nothing is installed or it is not healthy.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let namespace = args.target.checked_namespace()?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let record = RecordStore::new(cluster.client.clone(), &namespace)
        .load_installed()
        .await?;
    let workloads = check(&cluster, &record.objects).await?;
    let healthy = workloads.iter().all(|state| state.ready) && record.pending.is_none();
    let status = Status {
        namespace,
        record,
        workloads,
        healthy,
    };
    if args.format == OutputFormat::Json {
        super::print_json(&status)?;
        if !status.healthy {
            anyhow::bail!("not healthy");
        }
        return Ok(());
    }
    let record = &status.record;
    println!(
        "{} {} ({}) in namespace {}: revision {}, applied {} by {}",
        coder_deploy::release::PRODUCT,
        record.version,
        record.mode,
        status.namespace,
        record.revision,
        record.applied_at,
        record.tool
    );
    if !record.registry.is_empty() {
        println!("images from {}", record.registry);
    }
    println!("lock {}; {} objects", record.lock_digest, record.objects.len());
    if let Some(backup) = &record.backup {
        println!(
            "backed up before this revision: {} ({}, taken {}; rollback --restore-data restores it)",
            backup.path, backup.version, backup.taken_at
        );
    }
    if let Some(pending) = &record.pending {
        println!(
            "UNFINISHED: an apply of {} (revision {}) started {} did not finish; re-run apply",
            pending.version, pending.revision, pending.started_at
        );
    }
    for state in &status.workloads {
        println!(
            "{:>9}  {}  {}",
            if state.ready { "ready" } else { "NOT READY" },
            state.key,
            state.detail
        );
    }
    for earlier in &record.history {
        println!(
            "earlier: revision {} ({}), applied {}",
            earlier.revision, earlier.version, earlier.applied_at
        );
    }
    if !status.healthy {
        anyhow::bail!(
            "not healthy: {} of {} workloads not ready",
            status.workloads.iter().filter(|state| !state.ready).count(),
            status.workloads.len()
        );
    }
    println!("healthy");
    Ok(())
}
