//! The walk's state and the outside hops: through the access URL to the dashboard, the manager
//! (the admin, then a throwaway member), a throwaway workspace, the envproxy and the
//! workspace's three ports. Each hop returns what it saw, or a [`Failure`] with what to look at.

use std::time::{Duration, Instant};

use coder_topology::WORKSPACE_PORTS;

use super::front_door::FrontDoor;
use super::hops::{Hop, HopKind};
use super::install::{INGRESS_SERVICE, Install, MANAGER_DEPLOYMENT};
use super::probe_pod::ProbeResults;
use super::{CheckOptions, api, diagnose, sessions};
use crate::cluster::Cluster;

/// How long the editor, terminal and SSH hops retry a workspace that has just come up.
const SETTLE: Duration = Duration::from_secs(30);

/// A hop that failed: what was seen and where to look.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What was seen.
    pub detail: String,
    /// Where to look.
    pub look_at: String,
}

/// What a hop gives: what it saw, or its failure.
pub type Outcome = Result<String, Failure>;

/// The throwaway member.
pub struct Member {
    /// Its user id.
    pub id: String,
    /// Its email.
    pub email: String,
    /// Its session token, once signed in.
    pub token: Option<String>,
}

/// Everything the hops share.
pub struct Walk<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) install: Install,
    pub(super) door: FrontDoor,
    pub(super) options: &'a CheckOptions,
    /// This run's id: in the throwaway names and the probe pods' label.
    pub(super) run: String,
    pub(super) admin_token: Option<String>,
    pub(super) member: Option<Member>,
    pub(super) workspace: Option<String>,
    /// What the stranger's and the workspace's probe pods found.
    pub(super) probes: Option<(ProbeResults, ProbeResults)>,
}

/// A random run id (8 hex digits).
pub fn run_id() -> String {
    let mut bytes = [0u8; 4];
    // Without randomness, the time still tells runs apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = jiff::Timestamp::now().as_millisecond().to_le_bytes()[..4]
            .try_into()
            .unwrap_or_default();
    }
    hex::encode(bytes)
}

/// Retries `attempt` until it succeeds or `SETTLE` passes; the last outcome.
async fn settle<F, Fut>(mut attempt: F) -> Result<String, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(seen) => return Ok(seen),
            Err(reason) if started.elapsed() >= SETTLE => return Err(reason),
            Err(_) => tokio::time::sleep(Duration::from_secs(3)).await,
        }
    }
}

impl Walk<'_> {
    /// Runs `hop`.
    pub async fn hop(&mut self, hop: &Hop) -> Outcome {
        match hop.kind {
            HopKind::LoadBalancer => self.load_balancer().await,
            HopKind::Ingress => self.ingress().await,
            HopKind::Dashboard => self.dashboard().await,
            HopKind::Manager => self.manager().await,
            HopKind::Member => self.new_member().await,
            HopKind::Workspace => self.new_workspace().await,
            HopKind::Envproxy => self.envproxy().await,
            HopKind::Editor | HopKind::Terminal | HopKind::SshProxy => self.workspace_port(hop).await,
            HopKind::ProbePods => self.probe_pods().await,
            HopKind::PostgresOpen => self.postgres_open().await,
            HopKind::PostgresClosed => self.postgres_closed(hop),
            HopKind::Cleanup => self.clean_up().await,
        }
    }

    fn failure(detail: String, look_at: String) -> Failure {
        Failure { detail, look_at }
    }

    /// A hop that failed as `seen`, with where to look: the `deployment` of `component`.
    async fn deployment_failure(&self, seen: String, deployment: &str, component: &str) -> Outcome {
        let look_at =
            diagnose::deployment(self.cluster, &self.install.namespace, deployment, component).await;
        Err(Self::failure(seen, look_at))
    }

    /// Where to look when the front door itself does not answer.
    async fn front_door_look_at(&self) -> String {
        let namespace = &self.install.namespace;
        match &self.install.ingress {
            None => format!(
                "the site's own ingress or gateway for {} (ingress.enable is false)",
                self.install.host()
            ),
            Some(ingress) if ingress.load_balancer.is_none() && self.options.resolve.is_none() => format!(
                "the ingress controller's Service has no load-balancer address: kubectl -n {namespace} get svc {INGRESS_SERVICE} (or pass --resolve HOST:ADDR)"
            ),
            Some(_) => {
                diagnose::deployment(self.cluster, namespace, INGRESS_SERVICE, "ingress controller").await
            }
        }
    }

    async fn load_balancer(&mut self) -> Outcome {
        match self.door.tcp().await {
            Ok(_) => Ok(format!("{} accepted", self.door.target())),
            Err(reason) => {
                let mut look_at = self.front_door_look_at().await;
                let port = self.door.port();
                let served = [
                    coder_topology::INGRESS_HTTP_PORT,
                    coder_topology::INGRESS_HTTPS_PORT,
                ];
                if self.install.ingress.is_some() && self.options.resolve.is_none() && !served.contains(&port)
                {
                    look_at = format!(
                        "the access URL names port {port}, which the load balancer does not serve (it serves {} and {}): \
                         if the URL reaches the platform through a relay or another front, pass --resolve HOST:ADDR; else {look_at}",
                        served[0], served[1]
                    );
                }
                Err(Self::failure(reason, look_at))
            }
        }
    }

    async fn ingress(&mut self) -> Outcome {
        match self.door.stream().await {
            Ok(_) => Ok(format!("{}'s certificate is trusted", self.install.host())),
            Err(reason) if reason.contains("certificate") || reason.contains("Certificate") => {
                let look_at = format!(
                    "the access URL's certificate: pass --ca FILE with the site's CA if it is private; the TLS Secret the Ingress names: kubectl -n {} get ingress coder -o yaml",
                    self.install.namespace
                );
                Err(Self::failure(reason, look_at))
            }
            Err(reason) => Err(Self::failure(reason, self.front_door_look_at().await)),
        }
    }

    async fn dashboard(&mut self) -> Outcome {
        let seen = match api::get(&self.door, "/login", None).await {
            Ok((status, body)) if status.is_success() && body.contains("<form") => {
                return Ok(format!("GET /login answered {status} with the login form"));
            }
            Ok((status, body)) => format!(
                "GET /login answered {status}: {}",
                body.chars().take(200).collect::<String>().trim()
            ),
            Err(reason) => reason,
        };
        self.deployment_failure(seen, "coder-dashboard", "dashboard")
            .await
    }

    async fn manager(&mut self) -> Outcome {
        let namespace = self.install.namespace.clone();
        let Some(password) = self
            .options
            .admin_password
            .clone()
            .or_else(|| self.install.admin_password.clone())
        else {
            return Err(Self::failure(
                "no admin password: the Secret coder-admin-password is missing".to_owned(),
                "pass the admin's password with --admin-password-stdin".to_owned(),
            ));
        };
        match api::login(&self.door, &self.install.admin_email, &password).await {
            Ok(token) => {
                self.admin_token = Some(token);
                Ok(format!(
                    "{} signed in (the session is kept in PostgreSQL)",
                    self.install.admin_email
                ))
            }
            Err(reason) if reason.contains("401") => Err(Self::failure(
                reason,
                format!(
                    "the admin's password in Secret {namespace}/coder-admin-password no longer works (changed since the install?): pass --admin-password-stdin"
                ),
            )),
            Err(reason) => {
                self.deployment_failure(reason, MANAGER_DEPLOYMENT, "manager")
                    .await
            }
        }
    }

    async fn new_member(&mut self) -> Outcome {
        let admin = self.admin_token.clone().unwrap_or_default();
        let email = format!("coder-check-{}@coder-check.invalid", self.run);
        let password = format!("Check-{}-{}!", self.run, run_id());
        let look_at = format!(
            "the manager's log: kubectl -n {} logs deploy/{MANAGER_DEPLOYMENT}",
            self.install.namespace
        );
        let id = api::create_member(&self.door, &admin, &email, &password)
            .await
            .map_err(|reason| Self::failure(reason, look_at.clone()))?;
        let member = self.member.insert(Member {
            id,
            email,
            token: None,
        });
        let token = api::login(&self.door, &member.email, &password)
            .await
            .map_err(|reason| Self::failure(reason, look_at))?;
        member.token = Some(token);
        Ok(format!("{} made and signed in", member.email))
    }

    fn member_token(&self) -> String {
        self.member
            .as_ref()
            .and_then(|member| member.token.clone())
            .unwrap_or_default()
    }

    async fn new_workspace(&mut self) -> Outcome {
        let token = self.member_token();
        let namespace = self.install.namespace.clone();
        let name = format!("coder-check-{}", self.run);
        let id = api::create_workspace(&self.door, &token, &name, &self.install.workspace_image)
            .await
            .map_err(|reason| {
                Self::failure(
                    reason,
                    format!("the manager's log: kubectl -n {namespace} logs deploy/{MANAGER_DEPLOYMENT}"),
                )
            })?;
        self.workspace = Some(id.clone());
        let started = Instant::now();
        api::wait_running(&self.door, &token, &id, self.options.workspace_timeout)
            .await
            .map_err(|reason| {
                let look_at = format!("the workspace's pod: kubectl -n {namespace} get pods -l com.coder.workspace.id={id}; kubectl -n {namespace} describe deploy ws-{id}");
                Self::failure(reason, look_at)
            })?;
        Ok(format!(
            "workspace {name} ({id}) of {} runs after {} s",
            self.install.workspace_image,
            started.elapsed().as_secs()
        ))
    }

    async fn envproxy(&mut self) -> Outcome {
        let path = "/proxy/coder-install-check";
        let answer = api::get(&self.door, path, None).await;
        let own = |body: &str| {
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|body| body["error"]["code"] == "not_found")
        };
        let seen = match answer {
            Ok((status, body)) if status == reqwest::StatusCode::NOT_FOUND && own(&body) => {
                return Ok(format!("GET {path} answered the envproxy's own 404"));
            }
            Ok((status, body)) => format!(
                "GET {path} answered {status}, not the envproxy's own 404: {}",
                body.chars().take(200).collect::<String>().trim()
            ),
            Err(reason) => reason,
        };
        self.deployment_failure(seen, "coder-envproxy", "envproxy").await
    }

    async fn workspace_port(&mut self, hop: &Hop) -> Outcome {
        let id = self.workspace.clone().unwrap_or_default();
        let token = self.member_token();
        let port = hop.port.unwrap_or_default();
        let (door, kind, run) = (&self.door, hop.kind, self.run.as_str());
        let (id, token) = (id.as_str(), token.as_str());
        let seen = settle(|| async move {
            match kind {
                HopKind::Editor => {
                    let path = format!("/proxy/workspaces/{id}/ide/");
                    match api::get(door, &path, Some(token)).await? {
                        (status, _) if status.is_success() => Ok(format!("GET {path} answered {status}")),
                        (status, body) => Err(format!(
                            "GET {path} answered {status}: {}",
                            body.chars().take(200).collect::<String>().trim()
                        )),
                    }
                }
                HopKind::Terminal => {
                    let mut socket = door
                        .websocket(&format!("/proxy/workspaces/{id}/terminal"), token)
                        .await?;
                    sessions::terminal_round_trip(&mut socket, &format!("coder-check-{run}")).await
                }
                _ => {
                    let mut socket = door
                        .websocket(&format!("/proxy/workspaces/{id}/ssh"), token)
                        .await?;
                    sessions::ssh_bytes(&mut socket).await
                }
            }
        })
        .await;
        let name = WORKSPACE_PORTS
            .iter()
            .find(|(_, own)| *own == port)
            .map(|(name, _)| *name)
            .unwrap_or_default();
        match seen {
            Ok(seen) => Ok(seen),
            Err(reason) => Err(Self::failure(
                reason,
                diagnose::workspace_port(self.cluster, &self.install.namespace, id, port, name).await,
            )),
        }
    }
}
