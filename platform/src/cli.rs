//! The `coder-service` command line.

use clap::{Parser, Subcommand};

use crate::db::{self, DbArgs};
use crate::manager::{self, ManagerArgs};

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
    Envproxy(Pending),
    /// The web dashboard (port 3000).
    Dashboard(Pending),
    /// Apply the database migrations, then exit. Replicas running it at once take turns.
    Migrate(MigrateArgs),
}

/// `coder-service migrate`'s flags.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of a component whose implementation has not landed yet.
#[derive(Debug, clap::Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.component {
        Component::Manager(args) => manager::run(*args).await,
        Component::Migrate(args) => {
            let pool = args.db.pool()?;
            db::migrate(&pool).await?;
            tracing::info!(
                migrations = db::MIGRATOR.iter().count(),
                "database schema is current"
            );
            pool.close().await;
            Ok(())
        }
        Component::Envproxy(_) => {
            anyhow::bail!("`coder-service envproxy` is not implemented yet (tracked in issue 8)")
        }
        Component::Dashboard(_) => {
            anyhow::bail!("`coder-service dashboard` is not implemented yet (tracked in issue 8)")
        }
    }
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
