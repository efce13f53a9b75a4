//! The manager's configuration (what [`crate::cli::manager`] makes of its flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::db::DbConfig;
use crate::forwarded::TrustedProxies;
use crate::manager::error::{ApiError, ApiResult};

/// How the manager runs: its flags' values (see `coder-service manager --help` for each).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The database (the flag group `migrate` shares).
    pub db: DbConfig,
    /// The address the HTTP API listens on.
    pub listen: SocketAddr,
    /// The namespace workspaces are created in.
    pub namespace: String,
    /// The URL users reach the platform at.
    pub access_url: Option<String>,
    /// The first admin account's email address.
    pub admin_email: String,
    /// The file holding the first admin's password.
    pub admin_password_file: Option<PathBuf>,
    /// The license file installed at start-up when newer than the license in force.
    pub license_file: Option<PathBuf>,
    /// The install is air-gapped (the license must allow it, else read-only).
    pub airgapped: bool,
    /// The file holding the envproxy's token.
    pub envproxy_token_file: Option<PathBuf>,
    /// Workspace images users may choose (`prefix*` allowed; empty: any).
    pub allowed_images: Vec<String>,
    /// The scratch space one workspace may use on its node, in GB.
    pub workspace_ephemeral_storage_gb: u32,
    /// Apply pending database migrations before serving.
    pub migrate: bool,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a session token lives.
    pub session_ttl: Duration,
    /// Login attempts allowed in a burst, per account and per client address.
    pub login_burst: u32,
    /// Login attempts regained per minute, per account and per client address.
    pub login_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// A label selector of pods that are trusted proxies too (empty: none).
    pub trusted_proxy_pods: String,
    /// What one user's workspaces may hold in all.
    pub workspace_quota: WorkspaceQuota,
}

/// What one user's workspaces may hold in all (admins' too): a member cannot take the
/// cluster for themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkspaceQuota {
    /// Workspaces per user.
    pub workspaces: i64,
    /// CPU cores of one user's workspaces together.
    pub cpu_cores: f64,
    /// Memory (GB) of one user's workspaces together.
    pub memory_gb: f64,
    /// Home volume space (GB) of one user's workspaces together.
    pub disk_gb: i64,
}

impl Default for WorkspaceQuota {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl WorkspaceQuota {
    /// The defaults (the chart's too).
    pub const DEFAULT: Self = Self {
        workspaces: 10,
        cpu_cores: 16.0,
        memory_gb: 64.0,
        disk_gb: 500,
    };

    /// Checks one more workspace against the quota: `existing` workspaces, and the totals
    /// they would come to with it.
    pub fn check(&self, existing: i64, cpu_cores: f64, memory_gb: f64, disk_gb: i64) -> ApiResult<()> {
        let exceeded = |what: String| {
            Err(ApiError::Conflict {
                code: "workspace_quota",
                message: format!("{what}: delete or shrink a workspace, or ask an admin to raise the quota"),
            })
        };
        if existing >= self.workspaces {
            return exceeded(format!(
                "you already have {existing} workspaces, the most allowed per user"
            ));
        }
        // A little slack for the sum of f32 values.
        if cpu_cores > self.cpu_cores + 1e-3 {
            return exceeded(format!(
                "your workspaces would use {cpu_cores:.1} CPU cores, over the {} allowed per user",
                self.cpu_cores
            ));
        }
        if memory_gb > self.memory_gb + 1e-3 {
            return exceeded(format!(
                "your workspaces would use {memory_gb:.2} GB of memory, over the {} allowed per user",
                self.memory_gb
            ));
        }
        if disk_gb > self.disk_gb {
            return exceeded(format!(
                "your workspaces would use {disk_gb} GB of disk, over the {} allowed per user",
                self.disk_gb
            ));
        }
        Ok(())
    }
}

impl ManagerConfig {
    /// Whether users may create workspaces from `image`.
    pub fn image_allowed(&self, image: &str) -> bool {
        self.allowed_images.is_empty()
            || self
                .allowed_images
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => image == allowed,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_images_match_exactly_or_by_prefix() {
        let mut args = ManagerConfig::from(crate::cli::ManagerArgs::for_database(
            "postgres://localhost/coder",
        ));
        assert!(args.image_allowed("anything"));
        args.allowed_images = vec![
            "codercom/enterprise-base:ubuntu".into(),
            "registry.local/ws/*".into(),
        ];
        assert!(args.image_allowed("codercom/enterprise-base:ubuntu"));
        assert!(args.image_allowed("registry.local/ws/go:1.22"));
        assert!(!args.image_allowed("codercom/enterprise-base:ubuntu-evil"));
        assert!(!args.image_allowed("registry.local/other"));
    }
}
