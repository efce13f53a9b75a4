//! `coder-install rollback`: render the previous revision again from its recorded inputs, check
//! it, and apply it.

use std::time::Instant;

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::apply::{ApplyOptions, DeployTarget, deploy_locked};
use coder_deploy::record::RecordStore;
use coder_deploy::revision::rerender;
use coder_deploy::{cluster, lease};

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

/// Runs `rollback`.
pub async fn run(args: RollbackArgs) -> anyhow::Result<()> {
    let reporter = crate::report::for_format(args.format);
    let namespace = args.target.checked_namespace()?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let store = RecordStore::new(cluster.client.clone(), &namespace);
    let record = store.load_installed().await?;
    let previous = record.history.first().ok_or_else(|| {
        anyhow::anyhow!(
            "namespace {namespace} has only revision {}; there is nothing earlier to roll back to",
            record.revision
        )
    })?;
    // The stored objects are not trusted: the release is rendered again from its recorded
    // inputs, and checked (lock, images, kinds, namespace, role bindings).
    let inputs = store.load_inputs(previous.revision).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "the inputs of revision {} are not kept (it was pruned, or recorded by an older coder-install), \
             so it cannot be rendered again; apply that version's bundle (or spec and lock) instead",
            previous.revision
        )
    })?;
    reporter.step(&format!(
            "roll back namespace {namespace} from revision {} ({}) to revision {} ({}), rendered again from its recorded inputs",
            record.revision, record.version, previous.revision, previous.version
        ),
    );
    let manifests = rerender(
        previous.revision,
        &inputs,
        &previous.lock_digest,
        &namespace,
        cluster.pdb_api(),
    )?;
    reporter.line(
        "    note: database migrations are forward-only; the older version runs on the newer schema \
         (migrations only add, so this works across one release)",
    );
    let in_cluster_database = manifests.objects.iter().any(|object| {
        object.get("kind").and_then(|kind| kind.as_str()) == Some("StatefulSet")
            && object.pointer("/metadata/name").and_then(|name| name.as_str()) == Some("coder-postgres")
    });
    let target = DeployTarget {
        version: previous.version.clone(),
        lock_digest: previous.lock_digest.clone(),
        mode: inputs.mode.clone(),
        site: inputs.registry.parse().ok(),
        in_cluster_database,
        inputs: Some(inputs),
    };
    let options = ApplyOptions {
        namespace: namespace.clone(),
        cluster: args.target.cluster(),
        values_files: Vec::new(),
        sets: Vec::new(),
        license: None,
        pull_credentials: None,
        dry_run: args.dry_run,
        diff: args.diff,
        wait: None,
    };
    let report = lease::with_lease(
        cluster.client.clone(),
        &namespace,
        args.dry_run,
        reporter,
        deploy_locked(&cluster, &target, &options, &manifests, Instant::now()),
    )
    .await?;
    super::apply::print_report(&report, args.format)
}
