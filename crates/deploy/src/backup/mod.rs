//! Backups of the platform's data, and putting them back.
//!
//! - [`backup`]: `pg_dump` of the platform's database (in its pod, or against an external
//!   server) streamed into one checksummed file ([`archive`]) with the install record's identity
//!   and the database's migrations;
//! - [`restore`](restore::restore): the file verified and matched to the release, the platform
//!   scaled down, the dump restored into a new database beside the live one, its migrations
//!   checked, and the two swapped by renaming (the replaced one is kept until the next restore);
//! - `apply` takes a backup before it upgrades to another version ([`backup_before_upgrade`])
//!   and records it; `rollback --restore-data` restores that one.

pub mod archive;
pub mod database;
pub mod restore;

use std::path::{Path, PathBuf};
use std::time::Instant;

use coder_progress::{Progress, human_bytes};
use serde::Serialize;

use crate::cluster::Cluster;
pub use crate::record::BackupRef;
use crate::record::{InstallRecord, RecordStore};
use archive::{BackupManifest, FORMAT, PartialBackup};
use database::Database;

/// The query for the migrations a database has (sqlx's table).
const MIGRATIONS_QUERY: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup file.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// The database.
    #[error(transparent)]
    Database(#[from] database::DatabaseError),
    /// The install record.
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    /// The install's revision keeps no inputs (it was recorded by an older coder-install).
    #[error("revision {revision} of namespace {namespace} keeps no recorded values: apply it again first")]
    NoInputs {
        /// The namespace.
        namespace: String,
        /// The revision.
        revision: u64,
    },
    /// The file belongs to another release, or does not match the record.
    #[error("{path} does not match: {problem}; nothing was changed")]
    Mismatch {
        /// The backup file.
        path: PathBuf,
        /// How.
        problem: String,
    },
    /// The database's migrations could not be read.
    #[error("the database's migrations ({database}): unexpected answer {answer:?}")]
    Migrations {
        /// Which database.
        database: String,
        /// What `psql` printed.
        answer: String,
    },
    /// Scaling the platform down or up failed.
    #[error("{what}: {source}")]
    Scale {
        /// What.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The platform's pods did not stop in time.
    #[error("the platform's pods did not stop within {seconds}s ({pods}); nothing was restored")]
    PodsStillRunning {
        /// How long was waited.
        seconds: u64,
        /// The pods still there.
        pods: String,
    },
    /// The backup folder could not be made.
    #[error("creating the backup folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The file (absolute).
    pub path: String,
    /// Its manifest.
    pub manifest: BackupManifest,
    /// The whole file's size.
    pub file_bytes: u64,
    /// Seconds from the dump's start to the file's commit.
    pub seconds: f64,
}

impl BackupReport {
    /// How the install record names it.
    pub fn reference(&self) -> BackupRef {
        BackupRef {
            path: self.path.clone(),
            dump_sha256: self.manifest.dump_sha256.clone(),
            version: self.manifest.version.clone(),
            taken_at: self.manifest.taken_at.clone(),
        }
    }
}

/// Backs up the database of the install in `namespace` into `output`: its migrations read,
/// then `pg_dump` streamed into the file, which exists only once the dump succeeded and was
/// written whole.
pub async fn backup(
    cluster: &Cluster,
    namespace: &str,
    output: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let record = store.load_installed().await?;
    backup_of(cluster, &store, &record, output, progress).await
}

/// [`backup`] of the install whose record (read by the caller) is `record`.
async fn backup_of(
    cluster: &Cluster,
    store: &RecordStore,
    record: &InstallRecord,
    output: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let namespace = store.namespace();
    let database = database_of(cluster, store, record).await?;
    let migrations = migrations(&database, &database.name).await?;
    progress.line(&format!(
        "    pg_dump of database {} ({}, migrations {}) into {}",
        database.name,
        database.location_name(),
        describe_migrations(&migrations),
        output.display()
    ));
    let started = Instant::now();
    let mut dump = database.dump().await?;
    let taken_at = jiff::Timestamp::now().to_string();
    let make_manifest = |written: &archive::WrittenBackup| BackupManifest {
        format: FORMAT,
        taken_at,
        namespace: namespace.to_owned(),
        revision: record.revision,
        version: record.version.clone(),
        location: database.location_name().to_owned(),
        database: database.name.clone(),
        migrations,
        dump_bytes: written.dump_bytes,
        dump_sha256: written.dump_sha256.clone(),
        tool: concat!("coder-install ", env!("CARGO_PKG_VERSION")).to_owned(),
    };
    let written = PartialBackup::write(output, &mut dump.stdout, make_manifest).await;
    let finished = dump.finish().await;
    let (partial, written, manifest) = written?;
    finished?;
    partial.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    progress.line(&format!(
        "    {} dumped in {seconds:.1}s, {}",
        human_bytes(written.dump_bytes),
        manifest.dump_sha256
    ));
    let path = std::path::absolute(output).unwrap_or_else(|_| output.to_owned());
    Ok(BackupReport {
        path: path.display().to_string(),
        manifest,
        file_bytes: written.file_bytes,
        seconds,
    })
}

/// When `apply` of `version` upgrades (or downgrades) the install in `namespace`: a backup into
/// `folder` (made if missing), named after the namespace, the revision, its version and the
/// time. `None` when there is nothing to back up (no install yet, or the same version).
pub async fn backup_before_upgrade(
    cluster: &Cluster,
    namespace: &str,
    version: &str,
    folder: &Path,
    progress: &dyn Progress,
) -> Result<Option<BackupReport>, BackupError> {
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let Some(record) = store.load().await?.filter(|record| record.revision > 0) else {
        return Ok(None);
    };
    if record.version == version {
        return Ok(None);
    }
    progress.step(&format!(
        "back up the database before going from {} to {version} (--no-backup skips this)",
        record.version
    ));
    std::fs::create_dir_all(folder).map_err(|source| BackupError::Folder {
        path: folder.to_owned(),
        source,
    })?;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let name = format!(
        "{namespace}-r{}-{}-{stamp}.coder-backup",
        record.revision,
        record.version.replace(['/', ' '], "_")
    );
    backup_of(cluster, &store, &record, &folder.join(name), progress)
        .await
        .map(Some)
}

/// The database of `record`'s revision, from its recorded values.
async fn database_of(
    cluster: &Cluster,
    store: &RecordStore,
    record: &InstallRecord,
) -> Result<Database, BackupError> {
    let inputs = store
        .load_inputs(record.revision)
        .await?
        .ok_or_else(|| BackupError::NoInputs {
            namespace: store.namespace().to_owned(),
            revision: record.revision,
        })?;
    Ok(Database::of_install(&cluster.client, store.namespace(), &inputs.values).await?)
}

/// The migrations applied to `name` (versions, ascending; none when the table is missing).
async fn migrations(database: &Database, name: &str) -> Result<Vec<i64>, BackupError> {
    let sql = format!(
        "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN '' ELSE \
         (SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM ({MIGRATIONS_QUERY}) AS applied) END"
    );
    let answer = database.query(name, &sql).await?;
    parse_migrations(answer.trim()).ok_or_else(|| BackupError::Migrations {
        database: name.to_owned(),
        answer,
    })
}

/// `1,2,3` → `[1, 2, 3]`; empty → `[]`.
fn parse_migrations(text: &str) -> Option<Vec<i64>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|version| version.trim().parse().ok())
        .collect()
}

/// `1, 2, 3`, or `none`: migrations as messages list them.
pub fn describe_migrations(versions: &[i64]) -> String {
    if versions.is_empty() {
        return "none".to_owned();
    }
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_parse_from_psqls_answer() {
        assert_eq!(parse_migrations("1,2,20250101"), Some(vec![1, 2, 20250101]));
        assert_eq!(parse_migrations(""), Some(Vec::new()));
        assert_eq!(parse_migrations("1,x"), None);
        assert_eq!(describe_migrations(&[1, 2]), "1, 2");
        assert_eq!(describe_migrations(&[]), "none");
    }
}
