//! `coder-service dashboard`: the web UI (placeholder while it is built).

/// `coder-service dashboard`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {}

/// Runs the dashboard.
pub async fn run(_args: DashboardArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
