//! The `coder-service` command line: the subcommands here, each component's flags in its own
//! module ([`manager`], [`envproxy`], [`dashboard`]), which also makes the component's
//! configuration from them (`ManagerConfig`, `EnvproxyConfig`, `DashboardConfig`): the components
//! never see clap's structs.

pub mod dashboard;
mod db;
pub mod envproxy;
pub mod manager;

use clap::{Parser, Subcommand};

pub use self::dashboard::DashboardArgs;
pub use self::db::DbArgs;
pub use self::envproxy::EnvproxyArgs;
pub use self::manager::{ManagerArgs, WorkspaceQuotaArgs};
use crate::db::DbError;
use crate::migrate;

/// Run one component of the Coder platform.
#[derive(Debug, Parser)]
#[command(name = "coder-service", version, propagate_version = true)]
pub struct Cli {
    /// Which component to run.
    #[command(subcommand)]
    pub component: Component,
}

/// The platform's components.
#[derive(Debug, Subcommand)]
pub enum Component {
    /// The central authority: authentication, session tokens and the workspace API (port 8080).
    Manager(Box<ManagerArgs>),
    /// The WebSocket proxy to workspaces' editors and terminals (port 8080).
    Envproxy(Box<EnvproxyArgs>),
    /// The web dashboard (port 3000).
    Dashboard(Box<DashboardArgs>),
    /// Apply the database migrations, then exit. Replicas running it at once take turns.
    Migrate(MigrateArgs),
    /// Try a TCP connection to each HOST:PORT once and print one JSON line per target, then
    /// exit (`coder-install check` runs it in a short-lived probe pod).
    Probe(ProbeArgs),
}

/// `coder-service probe`'s flags.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// How long each connection may take before it counts as closed (a dropped packet).
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub timeout_secs: u64,
    /// The targets, `HOST:PORT` each.
    #[arg(value_name = "HOST:PORT", required = true)]
    pub targets: Vec<String>,
}

/// `coder-service migrate`'s flags.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
    /// How long to wait for the database to answer before giving up (a new install's database
    /// initialises itself while the migration step starts).
    #[arg(
        long,
        env = "CODER_PG_WAIT_SECS",
        default_value_t = 180,
        value_name = "SECONDS"
    )]
    pub wait_secs: u64,
}

/// Why a component could not start (or, for `migrate`, finish).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manager's.
    #[error(transparent)]
    Manager(#[from] crate::manager::StartError),
    /// The envproxy's.
    #[error(transparent)]
    Envproxy(#[from] crate::envproxy::StartError),
    /// The dashboard's.
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::StartError),
    /// The migration's.
    #[error(transparent)]
    Migrate(#[from] DbError),
    /// The probe's (its output could not be written).
    #[error("probe output: {0}")]
    Probe(#[from] serde_json::Error),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), RunError> {
    match cli.component {
        Component::Manager(args) => crate::manager::run((*args).into()).await?,
        Component::Migrate(args) => {
            migrate::run(&args.db.into(), std::time::Duration::from_secs(args.wait_secs)).await?
        }
        Component::Envproxy(args) => crate::envproxy::run((*args).into()).await?,
        Component::Probe(args) => {
            crate::probe::run(&args.targets, std::time::Duration::from_secs(args.timeout_secs)).await?
        }
        Component::Dashboard(args) => {
            let config = (*args).try_into().map_err(crate::dashboard::StartError::from)?;
            crate::dashboard::run(config).await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
