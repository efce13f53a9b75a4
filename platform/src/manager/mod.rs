//! `coder-service manager`: the platform's central authority. It authenticates users, issues
//! session tokens and API keys, and serves the workspace API, running each workspace as a
//! Deployment, a Service and a home volume in the cluster.
//!
//! Layout: [`config`] (its configuration), [`state`] (what handlers share), [`api`] (routes, extractors and
//! thin handlers), [`service`] (what the API does, with authorization; sessions in
//! [`service::sessions`]), [`actor`] (who is calling), [`credentials`] (password and token
//! primitives), [`k8s`] (workspace objects and the state watch), [`model`] (objects and field
//! rules), [`error`] (the JSON error body), [`pagination`] (the list endpoints' pages),
//! [`ratelimit`], [`metrics`] and [`proxy_pods`].

pub mod actor;
pub mod api;
pub mod config;
pub mod credentials;
pub mod error;
pub mod k8s;
pub mod metrics;
pub mod model;
pub mod pagination;
pub mod proxy_pods;
pub mod ratelimit;
pub mod service;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{ManagerConfig, WorkspaceQuota};
use error::ApiError;
use k8s::WorkspaceCluster;
use metrics::Metrics;
use proxy_pods::ProxyPods;
use ratelimit::RateLimiter;
pub use state::AppState;

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be configured or migrated.
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    /// The schema is behind this manager and `--migrate` was not given.
    #[error("the database schema is not current: run `coder-service migrate` first, or pass --migrate")]
    MigrationsPending,
    /// The first admin account could not be created.
    #[error("creating the first admin account: {0}")]
    Bootstrap(#[source] ApiError),
    /// The admin password file could not be read.
    #[error("reading the admin password file {path}: {source}")]
    AdminPasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The envproxy token file is unreadable or empty.
    #[error("envproxy token file {path}: {reason}")]
    EnvproxyTokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The listener could not be bound or served.
    #[error("serving on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No Kubernetes client could be configured.
    #[error("configuring the Kubernetes client: {0}")]
    Kubernetes(#[source] kube::Error),
}

/// Installs the license file the chart mounts, when it was issued after the license in force
/// (see [`service::license::install_at_start`]). Never
/// stops the start: a missing file is no license (the Secret is optional: the free tier), and a
/// file that does not verify is logged and left out, so the manager runs on the stored license
/// (or the free tier) and says why, instead of crash-looping.
async fn install_mounted_license(pool: &sqlx::PgPool, path: &std::path::Path) {
    let token = match std::fs::read_to_string(path) {
        Ok(token) => token,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(
                path = %path.display(),
                "no license file: running with the stored license, or the free tier"
            );
            return;
        }
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the license file; running without it");
            return;
        }
    };
    match service::license::install_at_start(pool, &token).await {
        Ok(service::license::MountedLicense::AlreadyInstalled) => {
            tracing::info!(path = %path.display(), "the mounted license is the license in force");
        }
        Ok(service::license::MountedLicense::Installed) => {
            tracing::info!(path = %path.display(), "installed the mounted license");
        }
        Ok(service::license::MountedLicense::OlderThanInstalled { mounted, installed }) => {
            tracing::info!(
                path = %path.display(),
                mounted_license = %mounted.0,
                mounted_issued = %coder_license::time::format_unix_time(mounted.1),
                installed_license = %installed.0,
                installed_issued = %coder_license::time::format_unix_time(installed.1),
                "the mounted license is older than the license in force (an upload); keeping the newer one"
            );
        }
        Err(error) => {
            tracing::error!(
                path = %path.display(),
                %error,
                "the mounted license was not installed; running with the stored license, or the free tier"
            );
        }
    }
}

/// Says at start-up whether an air-gapped manager has a license that allows it, or that it runs
/// read-only and why (it keeps running: an admin can sign in and upload one).
async fn log_airgap_license(pool: &sqlx::PgPool) {
    match service::license::airgap_restriction(pool).await {
        Ok(None) => tracing::info!("air-gapped mode: the license in force allows it"),
        Ok(Some(restriction)) => tracing::error!(
            kind = restriction.kind,
            "air-gapped mode without a license that allows it: {}",
            restriction.message()
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot read the license in force; checked again at each change")
        }
    }
}

/// A started manager: database migrated (if asked), first admin present, state watch and
/// session purge running.
pub struct Manager {
    state: AppState,
    watch: Option<AbortOnDrop>,
    purge: AbortOnDrop,
    follow_proxies: Option<AbortOnDrop>,
}

/// A background task that ends when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Manager {
    /// Connects, migrates when `config.migrate`, creates the first admin if there is none, and
    /// starts the workspace state watch when a Kubernetes client is given.
    pub async fn start(config: ManagerConfig, kube: Option<kube::Client>) -> Result<Self, StartError> {
        let pool = open_database(&config).await?;
        ensure_first_admin(&pool, &config).await?;
        if config.allowed_images.is_empty() {
            tracing::warn!(
                "CODER_ALLOWED_IMAGES is empty: users may create workspaces from any image their nodes can \
                 pull; list the workspace images (the chart sets the release's own, plus workspaces.allowedImages)"
            );
        }
        if let Some(path) = &config.license_file {
            install_mounted_license(&pool, path).await;
        }
        if config.airgapped {
            log_airgap_license(&pool).await;
        }
        let envproxy_token = match &config.envproxy_token_file {
            Some(path) => Some(read_envproxy_token(path)?),
            None => None,
        };
        let dummy_hash = dummy_password_hash().await?;
        let proxy_pods = ProxyPods::default();
        let follow_proxies = match (&kube, config.trusted_proxy_pods.trim()) {
            (Some(client), selector) if !selector.is_empty() => {
                let pods = kube::Api::namespaced(client.clone(), &config.namespace);
                let follow = proxy_pods.clone().follow(pods, selector.to_owned());
                Some(AbortOnDrop(tokio::spawn(follow)))
            }
            _ => None,
        };
        let cluster = kube.map(|client| {
            WorkspaceCluster::new(
                client,
                config.namespace.clone(),
                config.workspace_ephemeral_storage_gb,
            )
        });
        let watch = cluster
            .clone()
            .map(|cluster| AbortOnDrop(tokio::spawn(cluster.watch_states(pool.clone()))));
        let purge = AbortOnDrop(tokio::spawn(service::sessions::purge_dead_sessions_forever(
            pool.clone(),
        )));
        let state = AppState {
            pool,
            limiter: Arc::new(RateLimiter::new(config.login_burst, config.login_per_minute)),
            config: Arc::new(config),
            cluster,
            metrics: Arc::new(Metrics::default()),
            dummy_hash: dummy_hash.into(),
            envproxy_token,
            proxy_pods,
        };
        Ok(Self {
            state,
            watch,
            purge,
            follow_proxies,
        })
    }

    /// The shared state (its pool, configuration, ...).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops the background tasks.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| StartError::Serve { addr, source });
        drop(self.watch);
        drop(self.purge);
        drop(self.follow_proxies);
        self.state.pool.close().await;
        served
    }
}

/// Connects, and migrates when `config.migrate`; otherwise refuses a schema that is behind.
async fn open_database(config: &ManagerConfig) -> Result<sqlx::PgPool, StartError> {
    let pool = config.db.pool()?;
    if config.migrate {
        crate::db::migrate(&pool).await?;
    } else if !crate::db::migrations_current(&pool)
        .await
        .map_err(crate::db::DbError::from)?
    {
        return Err(StartError::MigrationsPending);
    }
    Ok(pool)
}

/// Creates the first admin from the admin password file while there is none, or says in the log
/// how to, when there is no file.
async fn ensure_first_admin(pool: &sqlx::PgPool, config: &ManagerConfig) -> Result<(), StartError> {
    let admin_password = match &config.admin_password_file {
        Some(path) => read_admin_password(path)?,
        None => None,
    };
    match admin_password {
        Some(password) => {
            let created = service::users::bootstrap_admin(pool, &config.admin_email, &password)
                .await
                .map_err(StartError::Bootstrap)?;
            if created {
                tracing::info!(
                    email = %config.admin_email,
                    "created the first admin account with the password from the admin password file"
                );
            }
        }
        // Never a generated password: it would have to be shown somewhere, and logs are
        // read by more people than admins should be.
        None if !service::users::admin_exists(pool)
            .await
            .map_err(StartError::Bootstrap)? =>
        {
            tracing::warn!(
                email = %config.admin_email,
                "there is no admin account yet and no admin password file to create one from: \
                 set CODER_ADMIN_PASSWORD_FILE to a file holding the first admin's password \
                 (coder-install apply creates the Secret coder-admin-password for it) and restart"
            );
        }
        None => {}
    }
    Ok(())
}

/// An argon2id hash of a random password, verified against when a login names an unknown email.
async fn dummy_password_hash() -> Result<String, StartError> {
    let dummy = hex::encode(credentials::random_bytes::<16>().map_err(StartError::Bootstrap)?);
    credentials::blocking(move || credentials::hash_password(&dummy))
        .await
        .and_then(|hash| hash)
        .map_err(StartError::Bootstrap)
}

/// Reads the first admin's password file (trimmed). A missing or empty file is no password
/// (the chart mounts the Secret as optional, so a `template` install without it still starts).
fn read_admin_password(path: &std::path::Path) -> Result<Option<String>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|password| !password.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::AdminPasswordFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads the envproxy token file (trimmed; it must not be empty).
fn read_envproxy_token(path: &std::path::Path) -> Result<Arc<str>, StartError> {
    let error = |reason: String| StartError::EnvproxyTokenFile {
        path: path.to_owned(),
        reason,
    };
    let token = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(error("the file is empty".to_owned()));
    }
    Ok(token.into())
}

/// Runs the manager until SIGINT or SIGTERM.
pub async fn run(config: ManagerConfig) -> Result<(), StartError> {
    let kube = kube::Client::try_default()
        .await
        .map_err(StartError::Kubernetes)?;
    let listen = config.listen;
    let manager = Manager::start(config, Some(kube)).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Serve { addr: listen, source })?;
    tracing::info!(%listen, "manager listening");
    manager.serve(listener, crate::shutdown::signal()).await
}
