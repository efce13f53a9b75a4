//! The `coder-service` command line.

use clap::{Parser, Subcommand};

use crate::dashboard::{self, DashboardArgs};
use crate::db::{DbArgs, DbError};
use crate::envproxy::{self, EnvproxyArgs};
use crate::manager::{self, ManagerArgs};
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
    Manager(#[from] manager::StartError),
    /// The envproxy's.
    #[error(transparent)]
    Envproxy(#[from] envproxy::StartError),
    /// The dashboard's.
    #[error(transparent)]
    Dashboard(#[from] dashboard::StartError),
    /// The migration's.
    #[error(transparent)]
    Migrate(#[from] DbError),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), RunError> {
    match cli.component {
        Component::Manager(args) => manager::run(*args).await?,
        Component::Migrate(args) => {
            migrate::run(&args.db, std::time::Duration::from_secs(args.wait_secs)).await?
        }
        Component::Envproxy(args) => envproxy::run(*args).await?,
        Component::Dashboard(args) => dashboard::run(*args).await?,
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
