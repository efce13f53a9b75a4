//! Putting a backup back: checked before anything is touched, restored beside the live database,
//! swapped in only once complete.
//!
//! 1. The file is read whole and its dump checked against its manifest
//!    ([`super::archive::VerifiedBackup::open`]), and its version matched with the release that
//!    will run on it (the installed one, or for `rollback --restore-data` the one rolled back to).
//! 2. The platform's Deployments that use the database (manager, envproxy, dashboard) are scaled
//!    to zero and their pods waited for.
//! 3. The dump goes into a new database `<name>_restoring` (`pg_restore`, one transaction), whose
//!    migrations must be the manifest's.
//! 4. One transaction renames the live database to `<name>_before_restore` (kept, in case; the
//!    next restore drops it) and `<name>_restoring` to `<name>`.
//! 5. The Deployments are scaled back (a rollback applies its release instead).
//!
//! A failure before step 4 drops `<name>_restoring` and scales the platform back: the live data
//! is as it was.

use std::time::{Duration, Instant};

use coder_progress::{Progress, human_bytes};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::Serialize;

use super::archive::VerifiedBackup;
use super::database::{Database, quote_identifier, quote_literal};
use super::{BackupError, database_of, describe_migrations, migrations};
use crate::cluster::Cluster;
use crate::record::{InstallRecord, RecordStore};

/// The Deployments that use the database, scaled down while it is replaced.
pub const DATABASE_CLIENTS: [&str; 3] = ["coder-manager", "coder-envproxy", "coder-dashboard"];
/// The field manager of the scale changes (not apply's: its fields stay its own).
const SCALE_MANAGER: &str = "coder-install-restore";
/// How long the scaled-down pods may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(180);

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup file.
    pub path: String,
    /// The namespace.
    pub namespace: String,
    /// The version the backup was taken from.
    pub version: String,
    /// When it was taken.
    pub taken_at: String,
    /// The database restored.
    pub database: String,
    /// The migrations the restored database has.
    pub migrations: Vec<i64>,
    /// The dump's size.
    pub dump_bytes: u64,
    /// Seconds `pg_restore` took.
    pub restore_seconds: f64,
    /// The replaced database, kept until the next restore.
    pub kept_as: String,
    /// The Deployments scaled down and their replicas before.
    pub scaled: Vec<(String, i32)>,
}

/// Whether the platform is scaled back up after the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRestore {
    /// Scale the Deployments back to their replicas (`restore`).
    ScaleBack,
    /// Leave them at zero: the caller applies a release next (`rollback --restore-data`).
    LeaveDown,
}

/// Checks that `backup` may be restored where `version` will run: the same version, and
/// (when given) the digest the install record names.
pub fn check_matches(
    backup: &VerifiedBackup,
    version: &str,
    recorded_sha256: Option<&str>,
) -> Result<(), BackupError> {
    let manifest = &backup.manifest;
    let mismatch = |problem: String| BackupError::Mismatch {
        path: backup.path.clone(),
        problem,
    };
    if manifest.version != version {
        return Err(mismatch(format!(
            "it was taken from version {} (revision {} of namespace {}, {}), and version {version} would run on it: \
             a database goes back only under the release whose schema it has (to go back to {} with its data: \
             `coder-install rollback --restore-data`)",
            manifest.version, manifest.revision, manifest.namespace, manifest.taken_at, manifest.version
        )));
    }
    if let Some(recorded) = recorded_sha256.filter(|recorded| *recorded != manifest.dump_sha256) {
        return Err(mismatch(format!(
            "the install record names a backup whose dump is {recorded}; this file's is {}",
            manifest.dump_sha256
        )));
    }
    Ok(())
}

/// Restores `backup` (verified and matched by the caller) into the install in `namespace`
/// whose record is `record`.
pub async fn restore(
    cluster: &Cluster,
    record: &InstallRecord,
    namespace: &str,
    backup: &VerifiedBackup,
    after: AfterRestore,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let database = database_of(cluster, &store, record).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    progress.line(&format!(
        "    scale down {} while the database is replaced",
        DATABASE_CLIENTS.join(", ")
    ));
    let scaled = scale_down(&deployments, namespace).await?;
    let restored = async {
        wait_stopped(cluster, namespace).await?;
        replace(&database, backup, progress).await
    }
    .await;
    if restored.is_err() || after == AfterRestore::ScaleBack {
        let back = scale_back(&deployments, &scaled).await;
        if let (Ok(_), Err(error)) = (&restored, back) {
            return Err(error);
        }
    }
    let (migrations, restore_seconds, kept_as) = restored?;
    Ok(RestoreReport {
        path: backup.path.display().to_string(),
        namespace: namespace.to_owned(),
        version: backup.manifest.version.clone(),
        taken_at: backup.manifest.taken_at.clone(),
        database: database.name.clone(),
        migrations,
        dump_bytes: backup.manifest.dump_bytes,
        restore_seconds,
        kept_as,
        scaled,
    })
}

/// Steps 3 and 4: the dump restored beside the live database, checked, swapped in. Its
/// migrations, the seconds `pg_restore` took, and the name the replaced database is kept under.
async fn replace(
    database: &Database,
    backup: &VerifiedBackup,
    progress: &dyn Progress,
) -> Result<(Vec<i64>, f64, String), BackupError> {
    let live = database.name.as_str();
    let restoring = format!("{live}_restoring");
    let kept = format!("{live}_before_restore");
    let maintenance = "postgres";
    let drop_restoring = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(&restoring)
    );
    database.query(maintenance, &drop_restoring).await?;
    database
        .query(
            maintenance,
            &format!("CREATE DATABASE {}", quote_identifier(&restoring)),
        )
        .await?;
    let (found, seconds) = match restore_into(database, &restoring, backup, progress).await {
        Ok(done) => done,
        Err(error) => {
            let _ = database.query(maintenance, &drop_restoring).await;
            return Err(error);
        }
    };
    progress.line(&format!(
        "    restored in {seconds:.1}s (migrations {}); swap it in, keep the replaced one as {kept}",
        describe_migrations(&found)
    ));
    database
        .query(
            maintenance,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(&kept)),
        )
        .await?;
    // Sessions still open on the live database (none should be: its clients are stopped) are
    // ended, then both renames run in one transaction.
    database
        .query(
            maintenance,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid(); \
                 ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}",
                quote_literal(live),
                quote_identifier(live),
                quote_identifier(&kept),
                quote_identifier(&restoring),
                quote_identifier(live)
            ),
        )
        .await?;
    Ok((found, seconds, kept))
}

/// Step 3: the dump restored into the empty database `restoring`, whose migrations must then be
/// the manifest's; the migrations and the seconds `pg_restore` took.
async fn restore_into(
    database: &Database,
    restoring: &str,
    backup: &VerifiedBackup,
    progress: &dyn Progress,
) -> Result<(Vec<i64>, f64), BackupError> {
    progress.line(&format!(
        "    pg_restore of {} into database {restoring}",
        human_bytes(backup.manifest.dump_bytes)
    ));
    let started = Instant::now();
    let mut dump = backup.dump().await?;
    database
        .restore(restoring, &mut dump, backup.manifest.dump_bytes)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let found = migrations(database, restoring).await?;
    if found != backup.manifest.migrations {
        return Err(BackupError::Mismatch {
            path: backup.path.clone(),
            problem: format!(
                "the restored database has migrations {}, the backup's manifest says {}",
                describe_migrations(&found),
                describe_migrations(&backup.manifest.migrations)
            ),
        });
    }
    Ok((found, seconds))
}

/// Scales each of [`DATABASE_CLIENTS`] that exists to zero; their names and replicas before.
async fn scale_down(
    deployments: &Api<Deployment>,
    namespace: &str,
) -> Result<Vec<(String, i32)>, BackupError> {
    let mut scaled = Vec::new();
    for name in DATABASE_CLIENTS {
        let Some(deployment) = deployments
            .get_opt(name)
            .await
            .map_err(|source| BackupError::Scale {
                what: format!("reading Deployment {namespace}/{name}"),
                source,
            })?
        else {
            continue;
        };
        let replicas = deployment.spec.and_then(|spec| spec.replicas).unwrap_or(1);
        set_replicas(deployments, name, 0).await?;
        scaled.push((name.to_owned(), replicas));
    }
    Ok(scaled)
}

/// Scales each Deployment back to its replicas.
async fn scale_back(deployments: &Api<Deployment>, scaled: &[(String, i32)]) -> Result<(), BackupError> {
    for (name, replicas) in scaled {
        set_replicas(deployments, name, *replicas).await?;
    }
    Ok(())
}

async fn set_replicas(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), BackupError> {
    deployments
        .patch_scale(
            name,
            &PatchParams {
                field_manager: Some(SCALE_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .map(drop)
        .map_err(|source| BackupError::Scale {
            what: format!("scaling Deployment {name} to {replicas}"),
            source,
        })
}

/// Waits until no pod of the scaled-down components is left.
async fn wait_stopped(cluster: &Cluster, namespace: &str) -> Result<(), BackupError> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = "app.kubernetes.io/name=coder,app.kubernetes.io/component in (manager,envproxy,dashboard)";
    let started = Instant::now();
    loop {
        let left = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|source| BackupError::Scale {
                what: format!("listing the platform's pods in {namespace}"),
                source,
            })?;
        let names: Vec<String> = left
            .items
            .into_iter()
            .filter_map(|pod| pod.metadata.name)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        if started.elapsed() > STOP_TIMEOUT {
            return Err(BackupError::PodsStillRunning {
                seconds: STOP_TIMEOUT.as_secs(),
                pods: names.join(", "),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
