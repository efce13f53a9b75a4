//! The platform's network topology: its components, the ports they listen on, and which
//! component talks to which. It is the port table of the product's architecture notes as
//! data, and the single source for both the NetworkPolicies `apply` renders and the in-cluster
//! flows `allowlist generate` documents.

use serde::Serialize;

/// A component of the installed platform, as its pods are labelled
/// (`app.kubernetes.io/component`), or a source outside the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The central authority: authentication, sessions, workspace API (`cemanager` in the table).
    Manager,
    /// The WebSocket proxy to workspaces' editors and terminals.
    Envproxy,
    /// The web dashboard.
    Dashboard,
    /// PostgreSQL.
    Postgres,
    /// The database migrations Job (runs `coder-service migrate`).
    Migrations,
    /// A workspace pod (`resource` in the table), labelled `com.coder.resource=true`.
    Workspace,
    /// Traffic from outside the namespace through the load balancer or ingress controller.
    LoadBalancer,
}

impl Component {
    /// The name used in labels, policies and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Envproxy => "envproxy",
            Self::Dashboard => "dashboard",
            Self::Postgres => "postgres",
            Self::Migrations => "migrations",
            Self::Workspace => "workspace",
            Self::LoadBalancer => "loadbalancer",
        }
    }
}

/// One allowed connection: `from` opens TCP connections to `to` on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Who connects.
    pub from: Component,
    /// Who listens.
    pub to: Component,
    /// The destination port (TCP).
    pub port: u16,
    /// What the connection carries.
    pub purpose: &'static str,
}

/// The manager's HTTP API.
pub const MANAGER_PORT: u16 = 8080;
/// The envproxy's HTTP and WebSocket port.
pub const ENVPROXY_PORT: u16 = 8080;
/// The dashboard's HTTP port.
pub const DASHBOARD_PORT: u16 = 3000;
/// PostgreSQL.
pub const POSTGRES_PORT: u16 = 5432;
/// code-server, the editor inside a workspace.
pub const CODE_SERVER_PORT: u16 = 13337;
/// The workspace agent's shell sessions.
pub const ENVAGENT_SHELL_PORT: u16 = 26337;
/// The workspace agent's SSH proxy.
pub const ENVAGENT_SSH_PORT: u16 = 12212;

/// The ingress controller's HTTP port (container and Service).
pub const INGRESS_HTTP_PORT: u16 = 80;
/// The ingress controller's HTTPS port (container and Service).
pub const INGRESS_HTTPS_PORT: u16 = 443;
/// The ingress controller's admission webhook, as its container listens.
pub const INGRESS_WEBHOOK_PORT: u16 = 8443;
/// The admission webhook's Service port, the one the API server calls.
pub const INGRESS_WEBHOOK_SERVICE_PORT: u16 = 443;
/// The ingress controller's health and metrics endpoint (probes only).
pub const INGRESS_HEALTH_PORT: u16 = 10254;

/// Every port of the platform by role: what the chart's templates see as `ports` (they write
/// no port number themselves), and what the manager gives workspace pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ports {
    /// [`MANAGER_PORT`].
    pub manager: u16,
    /// [`ENVPROXY_PORT`].
    pub envproxy: u16,
    /// [`DASHBOARD_PORT`].
    pub dashboard: u16,
    /// [`POSTGRES_PORT`].
    pub postgres: u16,
    /// [`CODE_SERVER_PORT`].
    pub code_server: u16,
    /// [`ENVAGENT_SHELL_PORT`].
    pub envagent_shell: u16,
    /// [`ENVAGENT_SSH_PORT`].
    pub envagent_ssh: u16,
    /// [`INGRESS_HTTP_PORT`].
    pub ingress_http: u16,
    /// [`INGRESS_HTTPS_PORT`].
    pub ingress_https: u16,
    /// [`INGRESS_WEBHOOK_PORT`].
    pub ingress_webhook: u16,
    /// [`INGRESS_WEBHOOK_SERVICE_PORT`].
    pub ingress_webhook_service: u16,
    /// [`INGRESS_HEALTH_PORT`].
    pub ingress_health: u16,
}

/// The platform's ports.
pub const PORTS: Ports = Ports {
    manager: MANAGER_PORT,
    envproxy: ENVPROXY_PORT,
    dashboard: DASHBOARD_PORT,
    postgres: POSTGRES_PORT,
    code_server: CODE_SERVER_PORT,
    envagent_shell: ENVAGENT_SHELL_PORT,
    envagent_ssh: ENVAGENT_SSH_PORT,
    ingress_http: INGRESS_HTTP_PORT,
    ingress_https: INGRESS_HTTPS_PORT,
    ingress_webhook: INGRESS_WEBHOOK_PORT,
    ingress_webhook_service: INGRESS_WEBHOOK_SERVICE_PORT,
    ingress_health: INGRESS_HEALTH_PORT,
};

/// The ports a workspace pod listens on, by the name its Service and container give them.
pub const WORKSPACE_PORTS: [(&str, u16); 3] = [
    ("code-server", CODE_SERVER_PORT),
    ("envagent", ENVAGENT_SHELL_PORT),
    ("envagent-ssh", ENVAGENT_SSH_PORT),
];

/// Every connection the platform needs inside the cluster; everything else is denied.
pub const FLOWS: &[Flow] = &[
    Flow {
        from: Component::LoadBalancer,
        to: Component::Manager,
        port: MANAGER_PORT,
        purpose: "API and authentication (/api/, /auth/) through the ingress",
    },
    Flow {
        from: Component::Envproxy,
        to: Component::Manager,
        port: MANAGER_PORT,
        purpose: "envproxy authenticates users and looks up workspaces",
    },
    Flow {
        from: Component::Dashboard,
        to: Component::Manager,
        port: MANAGER_PORT,
        purpose: "dashboard calls the manager API",
    },
    Flow {
        from: Component::LoadBalancer,
        to: Component::Envproxy,
        port: ENVPROXY_PORT,
        purpose: "workspace editor and terminal sessions (/proxy/) through the ingress",
    },
    Flow {
        from: Component::LoadBalancer,
        to: Component::Dashboard,
        port: DASHBOARD_PORT,
        purpose: "the web dashboard (/) through the ingress",
    },
    Flow {
        from: Component::Envproxy,
        to: Component::Workspace,
        port: CODE_SERVER_PORT,
        purpose: "code-server (the editor)",
    },
    Flow {
        from: Component::Envproxy,
        to: Component::Workspace,
        port: ENVAGENT_SHELL_PORT,
        purpose: "envagent shell sessions",
    },
    Flow {
        from: Component::Envproxy,
        to: Component::Workspace,
        port: ENVAGENT_SSH_PORT,
        purpose: "envagent SSH proxy",
    },
    Flow {
        from: Component::Manager,
        to: Component::Postgres,
        port: POSTGRES_PORT,
        purpose: "session tokens, users and workspace state",
    },
    Flow {
        from: Component::Migrations,
        to: Component::Postgres,
        port: POSTGRES_PORT,
        purpose: "versioned schema migrations",
    },
];

/// What a workspace pod may open (the `resource` rows of the port table whose destination is
/// the load balancer): the platform at its access URL, through the ingress controller. Every
/// other connection a workspace opens is refused by its egress policy, except name lookups
/// ([`DNS_PORT`]) and the networks a site lists (`networkPolicies.workspaceEgressCIDRs`).
pub const WORKSPACE_EGRESS: &[Flow] = &[
    Flow {
        from: Component::Workspace,
        to: Component::LoadBalancer,
        port: INGRESS_HTTP_PORT,
        purpose: "the platform at its access URL (plain HTTP, redirected to HTTPS when TLS is on)",
    },
    Flow {
        from: Component::Workspace,
        to: Component::LoadBalancer,
        port: INGRESS_HTTPS_PORT,
        purpose: "the platform at its access URL (HTTPS): git over HTTPS, the API, the CLI",
    },
];

/// Name lookups (UDP and TCP), which every pod needs wherever the cluster's DNS runs.
pub const DNS_PORT: u16 = 53;

/// The flows into `to`, in table order.
pub fn flows_into(to: Component) -> impl Iterator<Item = &'static Flow> {
    FLOWS.iter().filter(move |flow| flow.to == to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_accept_only_envproxy_on_the_three_workspace_ports() {
        let mut ports: Vec<(Component, u16)> = flows_into(Component::Workspace)
            .map(|flow| (flow.from, flow.port))
            .collect();
        ports.sort();
        assert_eq!(
            ports,
            [
                (Component::Envproxy, ENVAGENT_SSH_PORT),
                (Component::Envproxy, CODE_SERVER_PORT),
                (Component::Envproxy, ENVAGENT_SHELL_PORT),
            ]
        );
    }

    #[test]
    fn postgres_accepts_only_the_manager_and_migrations() {
        let sources: Vec<Component> = flows_into(Component::Postgres).map(|flow| flow.from).collect();
        assert_eq!(sources, [Component::Manager, Component::Migrations]);
        assert!(FLOWS.iter().all(|flow| flow.to != Component::LoadBalancer));
    }

    #[test]
    fn workspaces_open_only_the_load_balancer_s_ports() {
        let ports: Vec<(Component, Component, u16)> = WORKSPACE_EGRESS
            .iter()
            .map(|flow| (flow.from, flow.to, flow.port))
            .collect();
        assert_eq!(
            ports,
            [
                (Component::Workspace, Component::LoadBalancer, INGRESS_HTTP_PORT),
                (Component::Workspace, Component::LoadBalancer, INGRESS_HTTPS_PORT),
            ]
        );
    }
}
