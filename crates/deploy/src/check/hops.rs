//! The hops `check` walks, derived from the port table ([`coder_topology`]): the flows through
//! the load balancer to the dashboard, the manager and the envproxy; the envproxy's flows into a
//! workspace, one hop per workspace port; and PostgreSQL, open from the components the table
//! lets in and closed from everything else a probe pod can stand for. No port is written here:
//! each comes from the table.

use coder_topology::{
    CODE_SERVER_PORT, Component, ENVAGENT_SHELL_PORT, ENVAGENT_SSH_PORT, FLOWS, INGRESS_HTTP_PORT,
    INGRESS_HTTPS_PORT, flows_into,
};
use serde::Serialize;

/// What a hop does, which decides how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HopKind {
    /// A TCP connection to the access URL's address (the ingress controller's load balancer).
    LoadBalancer,
    /// TLS with the access URL's host name, its certificate checked.
    Ingress,
    /// The dashboard's login page through the ingress.
    Dashboard,
    /// The manager through the ingress: the admin signs in.
    Manager,
    /// A throwaway member made by the admin, signed in.
    Member,
    /// A throwaway workspace of the member's, until it runs.
    Workspace,
    /// The envproxy through the ingress, answering by itself.
    Envproxy,
    /// The envproxy into the workspace's editor (code-server).
    Editor,
    /// The envproxy into the workspace's shell: a terminal round trip over the WebSocket.
    Terminal,
    /// The envproxy into the workspace's SSH proxy: bytes there and back.
    SshProxy,
    /// The probe pods ran from the platform image and reach what anyone may reach.
    ProbePods,
    /// PostgreSQL from a component the port table lets in: the manager is ready, and its
    /// readiness is a query.
    PostgresOpen,
    /// PostgreSQL from a pod the port table does not let in: a probe pod with those labels.
    PostgresClosed,
    /// The throwaway account, workspace and probe pods are gone.
    Cleanup,
}

/// Who a hop starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The machine running `check`, as a user's browser is.
    Outside,
    /// A component of the platform (or a probe pod wearing its labels).
    Component(Component),
    /// A pod without the platform's labels.
    Stranger,
}

impl Source {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Outside => "outside",
            Self::Component(component) => component.name(),
            Self::Stranger => "stranger",
        }
    }
}

/// One hop of the walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// Its stable name (`envproxy`, `terminal`, `postgres-from-stranger`).
    pub name: String,
    /// How it is checked.
    pub kind: HopKind,
    /// Where the traffic starts.
    #[serde(serialize_with = "source_name")]
    pub from: Source,
    /// Where it goes.
    pub to: Component,
    /// The destination port, when the hop is one connection of the port table.
    pub port: Option<u16>,
    /// Whether the port table says the connection opens (`false`: it must be refused).
    pub expect_open: bool,
    /// What is checked, in a line.
    pub checks: String,
    /// The hops that must have passed for this one to be tried.
    pub needs: Vec<String>,
}

fn source_name<S: serde::Serializer>(source: &Source, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(source.name())
}

/// The install's shape, as far as the hops depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The access URL is `https://`.
    pub https: bool,
    /// The access URL's explicit port, if it names one.
    pub port: Option<u16>,
    /// PostgreSQL runs in the namespace (not `postgres.host`).
    pub in_cluster_postgres: bool,
}

/// The workspace hop for `port` of the table's envproxy → workspace rows, if `check` has a way
/// to test it.
pub fn workspace_hop_kind(port: u16) -> Option<(HopKind, &'static str)> {
    match port {
        CODE_SERVER_PORT => Some((HopKind::Editor, "editor")),
        ENVAGENT_SHELL_PORT => Some((HopKind::Terminal, "terminal")),
        ENVAGENT_SSH_PORT => Some((HopKind::SshProxy, "ssh-proxy")),
        _ => None,
    }
}

fn hop(
    name: &str,
    kind: HopKind,
    from: Source,
    to: Component,
    port: Option<u16>,
    checks: String,
    needs: &[&str],
) -> Hop {
    Hop {
        name: name.to_owned(),
        kind,
        from,
        to,
        port,
        expect_open: true,
        checks,
        needs: needs.iter().map(|need| (*need).to_owned()).collect(),
    }
}

/// The port of the table's flow from the load balancer into `to`.
fn through_the_ingress(to: Component) -> Option<u16> {
    FLOWS
        .iter()
        .find(|flow| flow.from == Component::LoadBalancer && flow.to == to)
        .map(|flow| flow.port)
}

/// The outside hops up to the envproxy: load balancer, ingress, dashboard, manager, the
/// throwaway member and workspace, the envproxy.
fn outside_hops(layout: &Layout) -> Vec<Hop> {
    let default_port = if layout.https {
        INGRESS_HTTPS_PORT
    } else {
        INGRESS_HTTP_PORT
    };
    let front_port = layout.port.unwrap_or(default_port);
    let front = |name: &str, kind: HopKind, checks: String, needs: &[&str]| {
        hop(
            name,
            kind,
            Source::Outside,
            Component::LoadBalancer,
            Some(front_port),
            checks,
            needs,
        )
    };
    let behind = |name: &str, kind: HopKind, to: Component, what: &str, needs: &[&str]| {
        let port = through_the_ingress(to);
        let shown = port.map(|port| format!(" (:{port})")).unwrap_or_default();
        let checks = format!("{what} through the ingress to the {}{shown}", to.name());
        hop(name, kind, Source::Outside, to, port, checks, needs)
    };
    let workspace = hop(
        "workspace",
        HopKind::Workspace,
        Source::Component(Component::Manager),
        Component::Workspace,
        None,
        "a throwaway workspace of the member's is created and runs".to_owned(),
        &["member"],
    );
    vec![
        front(
            "load-balancer",
            HopKind::LoadBalancer,
            format!("a TCP connection to the access URL's address on {front_port}"),
            &[],
        ),
        front(
            "ingress",
            HopKind::Ingress,
            "TLS with the access URL's host name, its certificate trusted".to_owned(),
            &["load-balancer"],
        ),
        behind(
            "dashboard",
            HopKind::Dashboard,
            Component::Dashboard,
            "the login page",
            &["ingress"],
        ),
        behind(
            "manager",
            HopKind::Manager,
            Component::Manager,
            "the admin signs in",
            &["ingress"],
        ),
        behind(
            "member",
            HopKind::Member,
            Component::Manager,
            "a throwaway member made by the admin signs in",
            &["manager"],
        ),
        workspace,
        behind(
            "envproxy",
            HopKind::Envproxy,
            Component::Envproxy,
            "an answer of its own",
            &["ingress"],
        ),
    ]
}

/// One hop per port of the table's envproxy → workspace rows.
fn workspace_hops() -> Vec<Hop> {
    flows_into(Component::Workspace)
        .filter_map(|flow| {
            let (kind, name) = workspace_hop_kind(flow.port)?;
            Some(hop(
                name,
                kind,
                Source::Component(flow.from),
                flow.to,
                Some(flow.port),
                format!("{} ({}) through the envproxy", flow.purpose, flow.port),
                &["workspace", "envproxy"],
            ))
        })
        .collect()
}

/// PostgreSQL: open from the components the table lets in (the manager; the migrations run in
/// its pod), closed from a stranger and from a workspace.
fn postgres_hops() -> Vec<Hop> {
    let postgres = Component::Postgres;
    let port = flows_into(postgres).map(|flow| flow.port).next();
    let allowed: Vec<Component> = flows_into(postgres).map(|flow| flow.from).collect();
    let mut hops = vec![hop(
        "probe-pods",
        HopKind::ProbePods,
        Source::Stranger,
        Component::LoadBalancer,
        None,
        "probe pods from the platform image run and reach the ingress controller, as anyone may".to_owned(),
        &[],
    )];
    if allowed.contains(&Component::Manager) {
        hops.push(hop(
            "postgres-from-manager",
            HopKind::PostgresOpen,
            Source::Component(Component::Manager),
            postgres,
            port,
            "the manager is ready, and its readiness (/readyz) queries PostgreSQL".to_owned(),
            &[],
        ));
    }
    for source in [Source::Stranger, Source::Component(Component::Workspace)] {
        if let Source::Component(component) = source
            && allowed.contains(&component)
        {
            continue;
        }
        let mut closed = hop(
            &format!("postgres-from-{}", source.name()),
            HopKind::PostgresClosed,
            source,
            postgres,
            port,
            format!("PostgreSQL refuses a probe pod labelled as a {}", source.name()),
            &["probe-pods"],
        );
        closed.expect_open = false;
        hops.push(closed);
    }
    hops
}

/// Every hop for an install of `layout`, in the order they are walked: the outside hops up to the
/// envproxy, the inside hops, the workspace's ports through the envproxy, the cleanup last.
pub fn plan(layout: &Layout) -> Vec<Hop> {
    let mut hops = outside_hops(layout);
    if !layout.https {
        hops.retain(|hop| hop.kind != HopKind::Ingress);
        for hop in &mut hops {
            for need in &mut hop.needs {
                if need == "ingress" {
                    *need = "load-balancer".to_owned();
                }
            }
        }
    }
    // The inside hops before the workspace's ports: the workspace has run for a few seconds when
    // they are tried, as when a person opens it (a network plugin that programs a new pod's
    // policies a moment after it starts would otherwise let the first connections through).
    if layout.in_cluster_postgres {
        hops.extend(postgres_hops());
    }
    hops.extend(workspace_hops());
    hops.push(hop(
        "cleanup",
        HopKind::Cleanup,
        Source::Outside,
        Component::Manager,
        None,
        "the throwaway member, workspace and probe pods are gone".to_owned(),
        &[],
    ));
    hops
}

#[cfg(test)]
mod tests {
    use coder_topology::{ENVPROXY_PORT, POSTGRES_PORT, WORKSPACE_PORTS};

    use super::*;

    const HTTPS: Layout = Layout {
        https: true,
        port: None,
        in_cluster_postgres: true,
    };

    fn find<'a>(hops: &'a [Hop], name: &str) -> &'a Hop {
        hops.iter()
            .find(|hop| hop.name == name)
            .unwrap_or_else(|| panic!("no hop {name}"))
    }

    #[test]
    fn every_workspace_port_of_the_table_has_a_hop_through_the_envproxy() {
        let hops = plan(&HTTPS);
        for (_, port) in WORKSPACE_PORTS {
            let (_, name) = workspace_hop_kind(port).expect("a way to test the port");
            let hop = find(&hops, name);
            assert_eq!(hop.port, Some(port));
            assert_eq!(hop.from, Source::Component(Component::Envproxy));
            assert_eq!(hop.to, Component::Workspace);
            assert_eq!(hop.needs, ["workspace", "envproxy"]);
        }
        assert_eq!(find(&hops, "terminal").port, Some(ENVAGENT_SHELL_PORT));
    }

    #[test]
    fn the_front_door_hops_take_their_ports_from_the_table() {
        let hops = plan(&HTTPS);
        assert_eq!(find(&hops, "load-balancer").port, Some(INGRESS_HTTPS_PORT));
        assert_eq!(find(&hops, "envproxy").port, Some(ENVPROXY_PORT));
        assert_eq!(
            find(&hops, "dashboard").port,
            through_the_ingress(Component::Dashboard)
        );
        assert_eq!(find(&hops, "cleanup").name, hops.last().expect("hops").name);
    }

    #[test]
    fn postgres_is_open_from_the_manager_only() {
        let hops = plan(&HTTPS);
        let open = find(&hops, "postgres-from-manager");
        assert!(open.expect_open);
        assert_eq!(open.port, Some(POSTGRES_PORT));
        for name in ["postgres-from-stranger", "postgres-from-workspace"] {
            let closed = find(&hops, name);
            assert!(!closed.expect_open, "{name}");
            assert_eq!(closed.needs, ["probe-pods"]);
        }
        let external = plan(&Layout {
            in_cluster_postgres: false,
            ..HTTPS
        });
        assert!(external.iter().all(|hop| hop.to != Component::Postgres));
    }

    #[test]
    fn plain_http_has_no_tls_hop_and_uses_port_80() {
        let hops = plan(&Layout {
            https: false,
            ..HTTPS
        });
        assert!(hops.iter().all(|hop| hop.kind != HopKind::Ingress));
        assert_eq!(find(&hops, "load-balancer").port, Some(INGRESS_HTTP_PORT));
        assert_eq!(find(&hops, "dashboard").needs, ["load-balancer"]);
    }

    #[test]
    fn every_need_names_an_earlier_hop() {
        let hops = plan(&HTTPS);
        for (index, hop) in hops.iter().enumerate() {
            for need in &hop.needs {
                assert!(
                    hops[..index].iter().any(|earlier| &earlier.name == need),
                    "{} needs {need}",
                    hop.name
                );
            }
        }
    }
}
