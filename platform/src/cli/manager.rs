//! `coder-service manager`'s flags and environment variables, and the [`ManagerConfig`] they
//! make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::DbArgs;
use crate::forwarded::TrustedProxies;
use crate::manager::{ManagerConfig, WorkspaceQuota};

/// `coder-service manager`'s flags; every flag can also be set through the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ManagerArgs {
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
    /// The address the HTTP API listens on.
    #[arg(long, env = "CODER_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], coder_topology::MANAGER_PORT)))]
    pub listen: SocketAddr,
    /// The Kubernetes namespace workspaces are created in.
    #[arg(long, env = "CODER_NAMESPACE", default_value = "coder")]
    pub namespace: String,
    /// The URL users reach the platform at (reported by `GET /api`).
    #[arg(long, env = "CODER_ACCESS_URL")]
    pub access_url: Option<String>,
    /// The first admin account's email address.
    #[arg(long, env = "CODER_ADMIN_EMAIL", default_value = "admin@coder.local")]
    pub admin_email: String,
    /// A file holding the first admin's password (the Secret `coder-install apply` creates),
    /// used only while no admin exists. Without it (or with the file missing) no admin is
    /// created: a password is never generated, so it can never be logged.
    #[arg(long, env = "CODER_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// A license file (the Secret `coder-install apply` creates), installed at start-up when it
    /// was issued (`iat`) after the license in force, or none is in force: a newer license an
    /// admin uploaded is never replaced by the Secret's at a restart. It never stops the start: a
    /// missing file is no license (the free tier, or the license stored before), one that does
    /// not verify (expired, altered, ...) is logged and left out.
    #[arg(long, env = "CODER_LICENSE_FILE")]
    pub license_file: Option<PathBuf>,
    /// The install is air-gapped (the chart sets it for installs from a bundle, whose images come
    /// from a site registry). Air-gapped use needs an enterprise license with the air-gap
    /// feature: without one in force the platform is read-only (sign-in and reading work; every
    /// other change answers 403 `airgap_license_required`) until an admin uploads one.
    #[arg(long, env = "CODER_AIRGAPPED", default_value_t = false)]
    pub airgapped: bool,
    /// A file holding the envproxy's token (the Secret `coder-install apply` generates). The
    /// envproxy presents it in the `Coder-Envproxy-Token` header to look workspaces up
    /// (`/api/private/envproxy/...`); without the file those routes answer 503.
    #[arg(long, env = "CODER_ENVPROXY_TOKEN_FILE")]
    pub envproxy_token_file: Option<PathBuf>,
    /// Workspace images users may choose, comma separated; an entry ending in `*` allows every
    /// image starting with what precedes it. Empty: any image is allowed.
    #[arg(long = "allowed-images", env = "CODER_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Vec<String>,
    /// The scratch space one workspace may use on its node (its container's writable layer and
    /// logs; the home volume is not counted), in GB: the kubelet evicts a workspace beyond it,
    /// so that no workspace fills a node's disk.
    #[arg(
        long = "workspace-ephemeral-storage-gb",
        env = "CODER_WORKSPACE_EPHEMERAL_STORAGE_GB",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub workspace_ephemeral_storage_gb: u32,
    /// Apply pending database migrations before serving (as `coder-service migrate` does).
    #[arg(long, env = "CODER_MIGRATE", default_value_t = false)]
    pub migrate: bool,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "CODER_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// How long a session token from `POST /auth/basic/login` stays valid, in hours.
    #[arg(long, env = "CODER_SESSION_TTL_HOURS", default_value_t = 24)]
    pub session_ttl_hours: u32,
    /// Login attempts allowed in a burst, per account and per client address.
    #[arg(long, env = "CODER_LOGIN_BURST", default_value_t = 10)]
    pub login_burst: u32,
    /// Login attempts regained per minute, per account and per client address.
    #[arg(long, env = "CODER_LOGIN_PER_MINUTE", default_value_t = 6)]
    pub login_per_minute: u32,
    /// Proxies (addresses and CIDR networks, comma separated) whose `X-Forwarded-For` names the
    /// client for the per-address login limit: the ingress controller and the dashboard. Others'
    /// `X-Forwarded-For` is ignored. Empty: every peer is the client.
    #[arg(long, env = "CODER_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// A label selector of pods in `--namespace` that are trusted proxies too, followed through
    /// the Kubernetes API as they come and go (the chart selects its dashboard and ingress
    /// controller pods); a pod counts only while it is Running and Ready and not being deleted.
    /// Empty: none.
    #[arg(long, env = "CODER_TRUSTED_PROXY_PODS", default_value = "")]
    pub trusted_proxy_pods: String,
    /// What one user's workspaces may hold in all.
    #[command(flatten)]
    pub workspace_quota: WorkspaceQuotaArgs,
}

/// What one user's workspaces may hold in all (admins' too): a member cannot take the
/// cluster for themselves.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct WorkspaceQuotaArgs {
    /// Workspaces per user.
    #[arg(long = "max-workspaces-per-user", env = "CODER_MAX_WORKSPACES_PER_USER", default_value_t = WorkspaceQuota::DEFAULT.workspaces)]
    pub workspaces: i64,
    /// CPU cores of one user's workspaces together.
    #[arg(long = "max-cpu-cores-per-user", env = "CODER_MAX_CPU_CORES_PER_USER", default_value_t = WorkspaceQuota::DEFAULT.cpu_cores)]
    pub cpu_cores: f64,
    /// Memory (GB) of one user's workspaces together.
    #[arg(long = "max-memory-gb-per-user", env = "CODER_MAX_MEMORY_GB_PER_USER", default_value_t = WorkspaceQuota::DEFAULT.memory_gb)]
    pub memory_gb: f64,
    /// Home volume space (GB) of one user's workspaces together.
    #[arg(long = "max-disk-gb-per-user", env = "CODER_MAX_DISK_GB_PER_USER", default_value_t = WorkspaceQuota::DEFAULT.disk_gb)]
    pub disk_gb: i64,
}

impl From<WorkspaceQuota> for WorkspaceQuotaArgs {
    fn from(quota: WorkspaceQuota) -> Self {
        Self {
            workspaces: quota.workspaces,
            cpu_cores: quota.cpu_cores,
            memory_gb: quota.memory_gb,
            disk_gb: quota.disk_gb,
        }
    }
}

impl From<WorkspaceQuotaArgs> for WorkspaceQuota {
    fn from(args: WorkspaceQuotaArgs) -> Self {
        Self {
            workspaces: args.workspaces,
            cpu_cores: args.cpu_cores,
            memory_gb: args.memory_gb,
            disk_gb: args.disk_gb,
        }
    }
}

impl ManagerArgs {
    /// Settings with every default, for a database URL (what tests and benchmarks start from).
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            db: DbArgs::from_url(url),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            namespace: "coder".to_owned(),
            access_url: None,
            admin_email: "admin@coder.local".to_owned(),
            admin_password_file: None,
            license_file: None,
            airgapped: false,
            envproxy_token_file: None,
            allowed_images: Vec::new(),
            workspace_ephemeral_storage_gb: 10,
            migrate: true,
            body_limit: 64 * 1024,
            session_ttl_hours: 24,
            login_burst: 10,
            login_per_minute: 6,
            trusted_proxies: TrustedProxies::default(),
            trusted_proxy_pods: String::new(),
            workspace_quota: WorkspaceQuota::DEFAULT.into(),
        }
    }
}

impl From<ManagerArgs> for ManagerConfig {
    fn from(args: ManagerArgs) -> Self {
        Self {
            db: args.db.into(),
            listen: args.listen,
            namespace: args.namespace,
            access_url: args.access_url,
            admin_email: args.admin_email,
            admin_password_file: args.admin_password_file,
            license_file: args.license_file,
            airgapped: args.airgapped,
            envproxy_token_file: args.envproxy_token_file,
            allowed_images: args.allowed_images,
            workspace_ephemeral_storage_gb: args.workspace_ephemeral_storage_gb,
            migrate: args.migrate,
            body_limit: args.body_limit,
            session_ttl: Duration::from_secs(u64::from(args.session_ttl_hours) * 3600),
            login_burst: args.login_burst,
            login_per_minute: args.login_per_minute,
            trusted_proxies: args.trusted_proxies,
            trusted_proxy_pods: args.trusted_proxy_pods,
            workspace_quota: args.workspace_quota.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_read_from_the_variable_the_chart_sets() {
        use clap::Args as _;
        let command = ManagerArgs::augment_args(clap::Command::new("manager"));
        let airgapped = command
            .get_arguments()
            .find(|arg| arg.get_id() == "airgapped")
            .expect("the --airgapped flag");
        assert_eq!(airgapped.get_env(), Some(std::ffi::OsStr::new("CODER_AIRGAPPED")));
        let chart = include_str!("../../../charts/coder/templates/30-manager.yaml");
        assert!(
            chart.contains("{name: CODER_AIRGAPPED, value: \"{{ airgapped }}\"}"),
            "the chart must set CODER_AIRGAPPED"
        );
    }
}
