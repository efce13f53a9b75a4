//! The `coder-service` command line.

use clap::{Parser, Subcommand};

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
    Manager(Pending),
    /// The WebSocket proxy to workspaces' editors and terminals (port 8080).
    Envproxy(Pending),
    /// The web dashboard (port 3000).
    Dashboard(Pending),
    /// Apply the database migrations, then exit.
    Migrate(Pending),
}

/// Arguments of a component whose implementation has not landed yet.
#[derive(Debug, clap::Args)]
pub struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let (name, issue) = match cli.component {
        Component::Manager(_) => ("manager", 5),
        Component::Migrate(_) => ("migrate", 5),
        Component::Envproxy(_) => ("envproxy", 8),
        Component::Dashboard(_) => ("dashboard", 8),
    };
    anyhow::bail!("`coder-service {name}` is not implemented yet (tracked in issue {issue})")
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
