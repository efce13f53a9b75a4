//! `rollback`: the previous revision rendered again from its recorded inputs, checked, and
//! deployed under the namespace's Lease like an apply.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coder_progress::Progress;

use crate::apply::{ApplyOptions, ApplyReport, ReleaseRecord, write_release};
use crate::backup::archive::VerifiedBackup;
use crate::backup::restore::{AfterRestore, check_matches, restore};
use crate::cluster::{Cluster, ClusterOptions};
use crate::objects::{ObjectKey, api_for, refused};
use crate::record::RecordStore;
use crate::record::{InstallRecord, RevisionSummary};
use crate::render::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER_NAME};
use crate::revision::{RevisionRefused, rerender};

/// How to roll back.
pub struct RollbackOptions {
    /// The namespace.
    pub namespace: String,
    /// The cluster.
    pub cluster: ClusterOptions,
    /// Change nothing; say what would change.
    pub dry_run: bool,
    /// Show a diff of every object that would change.
    pub diff: bool,
    /// Restore the database from the backup taken before the revision rolled back from.
    pub restore_data: Option<RestoreData>,
    /// Wait for readiness, up to this long.
    pub wait: Option<Duration>,
}

/// `--restore-data`: which backup.
#[derive(Debug, Clone, Default)]
pub struct RestoreData {
    /// The file, when it is not where the install record says (it was taken on another
    /// machine); its dump must still be the recorded one.
    pub file: Option<PathBuf>,
}

/// Rolls the namespace back to the revision before the installed one. The stored objects are not
/// trusted: the release is rendered again from the chart built into coder-install (only when it
/// is the chart the revision records by digest) with its recorded values and images, and checked
/// (lock, images, kinds, namespace, role bindings, and RBAC and cluster-scoped objects against
/// what the built-in chart renders); see [`crate::revision`].
pub async fn run(
    cluster: &Cluster,
    options: &RollbackOptions,
    progress: &dyn Progress,
) -> crate::Result<ApplyReport> {
    let namespace = options.namespace.as_str();
    let (record, previous, inputs) =
        previous_revision(&RecordStore::new(cluster.client.clone(), namespace)).await?;
    let previous = &previous;
    progress.step(&format!(
        "roll back namespace {namespace} from revision {} ({}) to revision {} ({}), rendered again from its recorded inputs",
        record.revision, record.version, previous.revision, previous.version
    ));
    let backup = match &options.restore_data {
        Some(restore_data) => {
            Some(checked_backup(namespace, &record, previous, restore_data, progress).await?)
        }
        None => None,
    };
    let manifests = rerender(
        previous.revision,
        &inputs,
        &previous.lock_digest,
        namespace,
        cluster.pdb_api(),
    )?;
    refuse_others_cluster_objects(cluster, &manifests.objects, namespace, previous.revision).await?;
    if backup.is_none() {
        progress.line(
            "    note: database migrations are forward-only; the older version runs on the newer schema \
             (migrations only add, and the manager skips the ones it does not know; a manager built \
             before migration 0002 refuses them and does not start): --restore-data puts back the \
             database as it was before the upgrade",
        );
    }
    let target = release_record(previous, inputs, &manifests)?;
    let apply_options = ApplyOptions {
        namespace: namespace.to_owned(),
        cluster: options.cluster.clone(),
        values_files: Vec::new(),
        sets: Vec::new(),
        pull_credentials: None,
        dry_run: options.dry_run,
        diff: options.diff,
        wait: options.wait,
    };
    let report = crate::lease::with_lease(
        cluster.client.clone(),
        namespace,
        options.dry_run,
        progress,
        async {
            if let (Some(backup), false) = (&backup, options.dry_run) {
                progress.step(&format!(
                    "restore the database of {} from {}",
                    previous.version,
                    backup.path.display()
                ));
                restore(
                    cluster,
                    &record,
                    namespace,
                    backup,
                    AfterRestore::LeaveDown,
                    progress,
                )
                .await?;
            }
            write_release(cluster, &target, &apply_options, &manifests, Instant::now()).await
        },
    )
    .await?;
    crate::apply::wait(cluster, &report, &apply_options, progress).await?;
    Ok(report)
}

/// The installed record, the revision before it, and that revision's recorded inputs.
async fn previous_revision(
    store: &RecordStore,
) -> crate::Result<(InstallRecord, RevisionSummary, crate::record::RevisionInputs)> {
    let record = store.load_installed().await?;
    let previous =
        record
            .history
            .first()
            .cloned()
            .ok_or_else(|| crate::DeployError::NothingToRollBackTo {
                namespace: store.namespace().to_owned(),
                revision: record.revision,
            })?;
    let inputs = store
        .load_inputs(previous.revision)
        .await?
        .ok_or(crate::DeployError::InputsNotKept {
            revision: previous.revision,
        })?;
    Ok((record, previous, inputs))
}

/// What the rollback records: the previous revision's identity and inputs, recorded again as new
/// records are (the chart by its digest alone, checked by the caller to be the built-in chart's).
fn release_record(
    previous: &RevisionSummary,
    mut inputs: crate::record::RevisionInputs,
    manifests: &crate::render::Manifests,
) -> crate::Result<ReleaseRecord> {
    inputs.chart_digest =
        crate::revision::chart_digest(&coder_bundle::charts::embedded_chart(crate::release::CHART)?);
    inputs.chart.clear();
    let in_cluster_database = manifests.objects.iter().any(|object| {
        object.get("kind").and_then(|kind| kind.as_str()) == Some("StatefulSet")
            && object.pointer("/metadata/name").and_then(|name| name.as_str()) == Some("coder-postgres")
    });
    Ok(ReleaseRecord {
        version: previous.version.clone(),
        lock_digest: previous.lock_digest.clone(),
        mode: inputs.mode,
        site: inputs.registry.parse().ok(),
        in_cluster_database,
        inputs: Some(inputs),
        license: None,
        backup: None,
    })
}

/// The backup `--restore-data` restores: the one the install record names for the revision
/// rolled back from (or the file given, whose dump must be the recorded one), read whole and
/// checked, and taken from the version rolled back to.
async fn checked_backup(
    namespace: &str,
    record: &InstallRecord,
    previous: &RevisionSummary,
    restore_data: &RestoreData,
    progress: &dyn Progress,
) -> crate::Result<VerifiedBackup> {
    let reference = record
        .backup
        .as_ref()
        .ok_or_else(|| crate::DeployError::NoBackupRecorded {
            namespace: namespace.to_owned(),
            revision: record.revision,
            version: previous.version.clone(),
        })?;
    let path = restore_data
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(&reference.path));
    progress.step(&format!(
        "verify the backup taken before revision {} ({}, {})",
        record.revision,
        path.display(),
        reference.taken_at
    ));
    let backup = VerifiedBackup::open(&path)
        .await
        .map_err(crate::backup::BackupError::from)?;
    check_matches(&backup, &previous.version, Some(&reference.dump_sha256))?;
    Ok(backup)
}

/// Refuses a rollback that would write over a cluster-scoped object this install does not own:
/// one that exists without this namespace's [`INSTANCE_LABEL`] and coder-install's
/// [`MANAGED_BY_LABEL`]. The names of cluster-scoped objects come from recorded values (the
/// IngressClass's), which anyone who may edit the namespace's ConfigMaps can change, so a
/// rollback must not take over another install's or another controller's object.
async fn refuse_others_cluster_objects(
    cluster: &Cluster,
    objects: &[serde_json::Value],
    namespace: &str,
    revision: u64,
) -> crate::Result<()> {
    let mut problems = Vec::new();
    for object in objects
        .iter()
        .filter(|object| object.pointer("/metadata/namespace").is_none())
    {
        let key = ObjectKey::of(object);
        let (api, _) = api_for(cluster, &key)?;
        let Some(live) = api
            .get_opt(&key.name)
            .await
            .map_err(|error| refused(&key, "read", error))?
        else {
            continue;
        };
        let label = |name: &str| {
            live.metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(name))
                .map(String::as_str)
        };
        if label(INSTANCE_LABEL) != Some(namespace) || label(MANAGED_BY_LABEL) != Some(MANAGER_NAME) {
            problems.push(format!(
                "{} {} exists and is not this install's (labels {INSTANCE_LABEL}={:?}, {MANAGED_BY_LABEL}={:?}): \
                 a rollback does not take over a cluster-wide object the recorded values name",
                key.kind,
                key.name,
                label(INSTANCE_LABEL).unwrap_or_default(),
                label(MANAGED_BY_LABEL).unwrap_or_default()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RevisionRefused { revision, problems }.into())
    }
}
