//! The platform's PostgreSQL database: connection settings and the embedded, versioned
//! migrations in `platform/migrations/`.
//!
//! [`migrate`] is safe to run from several replicas at once: sqlx's Postgres migrator holds a
//! session-level advisory lock (`pg_advisory_lock`, keyed by the database name) for the whole
//! run, so a second runner waits and then finds nothing left to do. Each migration runs in its
//! own transaction (none of ours opts out with `-- no-transaction`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The migrations of `platform/migrations/`, embedded at build time.
#[cfg(not(feature = "test-schema-2"))]
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// TEST ONLY (feature `test-schema-2`): the migrations of `platform/migrations/` and then the one
/// of `tests/schema-2/`, for a test release whose schema differs.
#[cfg(feature = "test-schema-2")]
pub static MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    static RELEASED: Migrator = sqlx::migrate!("./migrations");
    static SCHEMA_2: Migrator = sqlx::migrate!("./tests/schema-2");
    Migrator::with_migrations(RELEASED.iter().chain(SCHEMA_2.iter()).cloned().collect())
});

/// Why the database could not be configured, reached or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection URL does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The password file could not be read.
    #[error("reading the PostgreSQL password file {path}: {source}")]
    PasswordFile {
        /// The file named by `--pg-password-file`.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Applying the migrations failed.
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
}

/// How to reach PostgreSQL (what [`crate::cli::DbArgs`], the flag group `manager` and `migrate`
/// share, makes).
#[derive(Clone)]
pub struct DbConfig {
    /// The connection URL (it may hold a password: never printed).
    pub url: String,
    /// A file whose content (trimmed) overrides the URL's password.
    pub password_file: Option<PathBuf>,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
    /// The most connections the pool opens.
    pub max_connections: u32,
}

impl std::fmt::Debug for DbConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &"<redacted>")
            .field("password_file", &self.password_file)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DbConfig {
    /// Settings for a URL, with the defaults of the flags.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            acquire_timeout: Duration::from_secs(5),
            max_connections: 10,
        }
    }

    /// The connection options: the URL, with the password file's content as password if given.
    pub fn connect_options(&self) -> Result<PgConnectOptions, DbError> {
        let mut options = PgConnectOptions::from_str(&self.url).map_err(DbError::InvalidUrl)?;
        if let Some(path) = &self.password_file {
            let password = std::fs::read_to_string(path).map_err(|source| DbError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            options = options.password(password.trim());
        }
        Ok(options.application_name("coder-service"))
    }

    /// A pool that connects lazily: the process starts (and answers 503) while the database
    /// is down, and recovers on its own when it comes back.
    pub fn pool(&self) -> Result<PgPool, DbError> {
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(self.connect_options()?))
    }
}

/// Waits until the database answers a query, trying every second for up to `timeout`, and
/// logging why it is not reachable yet (at most every 5 seconds). A freshly installed database
/// is not there yet when its clients start (its first start initialises the data), and the
/// migration step should wait for it rather than crash and be restarted with back-off.
pub async fn wait_until_reachable(pool: &PgPool, timeout: Duration) -> Result<(), DbError> {
    let started = std::time::Instant::now();
    let mut last_report: Option<std::time::Instant> = None;
    loop {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(error) if started.elapsed() >= timeout => return Err(DbError::Query(error)),
            Err(error) => {
                if last_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                    tracing::info!(%error, waited_secs = started.elapsed().as_secs(), "waiting for the database");
                    last_report = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Applies every pending migration, waiting for any other replica that is migrating.
///
/// Migrations a newer release applied and this one does not know are left alone (a rollback
/// runs the older release on the newer schema: migrations only add), where sqlx would refuse.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// Whether every embedded migration has been applied successfully (what `/readyz` checks).
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .all(|migration| applied.binary_search(&migration.version).is_ok()))
}
