//! The database flags `manager` and `migrate` share, and the [`DbConfig`] they make.

use std::path::PathBuf;
use std::time::Duration;

use crate::db::DbConfig;

/// How to reach PostgreSQL: flags and environment shared by `manager` and `migrate`.
#[derive(Clone, clap::Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL, e.g. `postgres://coder@postgres:5432/coder?sslmode=disable`.
    #[arg(long, env = "CODER_PG_URL")]
    pub pg_url: String,
    /// A file holding the database password (e.g. a mounted Secret); it overrides any password
    /// in the URL. Surrounding white space is trimmed.
    #[arg(long, env = "CODER_PG_PASSWORD_FILE")]
    pub pg_password_file: Option<PathBuf>,
    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "CODER_PG_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    pub pg_acquire_timeout_secs: u64,
    /// The most connections the pool opens.
    #[arg(long, env = "CODER_PG_MAX_CONNECTIONS", default_value_t = 10)]
    pub pg_max_connections: u32,
}

impl std::fmt::Debug for DbArgs {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbArgs")
            .field("pg_url", &"<redacted>")
            .field("pg_password_file", &self.pg_password_file)
            .field("pg_acquire_timeout_secs", &self.pg_acquire_timeout_secs)
            .field("pg_max_connections", &self.pg_max_connections)
            .finish()
    }
}

impl DbArgs {
    /// The flags for a URL, every other one at its default.
    pub fn from_url(url: impl Into<String>) -> Self {
        DbConfig::from_url(url).into()
    }
}

impl From<DbConfig> for DbArgs {
    fn from(config: DbConfig) -> Self {
        Self {
            pg_url: config.url,
            pg_password_file: config.password_file,
            pg_acquire_timeout_secs: config.acquire_timeout.as_secs(),
            pg_max_connections: config.max_connections,
        }
    }
}

impl From<DbArgs> for DbConfig {
    fn from(args: DbArgs) -> Self {
        Self {
            url: args.pg_url,
            password_file: args.pg_password_file,
            acquire_timeout: Duration::from_secs(args.pg_acquire_timeout_secs),
            max_connections: args.pg_max_connections,
        }
    }
}
