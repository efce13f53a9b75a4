//! `coder-service migrate`: waits for the database, applies the versioned migrations of
//! `migrations/` ([`crate::db::migrate`]: replicas running it at once take turns under an
//! advisory lock), then exits.

use std::time::Duration;

use crate::db::{self, DbConfig, DbError};

/// Applies the migrations to the database `db` names, waiting up to `wait` for it to answer
/// (a new install's database initialises itself while the migration step starts).
pub async fn run(db: &DbConfig, wait: Duration) -> Result<(), DbError> {
    let pool = db.pool()?;
    db::wait_until_reachable(&pool, wait).await?;
    db::migrate(&pool).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        "database schema is current"
    );
    pool.close().await;
    Ok(())
}
