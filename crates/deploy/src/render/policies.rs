//! The NetworkPolicies, derived from the port table in [`coder_topology`]: one policy per
//! listening component, allowing exactly its flows (a default-deny policy covers the rest), and
//! one egress policy for workspaces, which may open only what the table lists for them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::values::Values;
use coder_topology::{
    Component, DNS_PORT, FLOWS, INGRESS_HTTP_PORT, INGRESS_HTTPS_PORT, INGRESS_WEBHOOK_PORT, WORKSPACE_EGRESS,
};

/// One NetworkPolicy, as the template renders it.
#[derive(Debug, Serialize)]
pub struct Policy {
    /// Name suffix (`allow-to-manager`).
    pub name: String,
    /// A comment for the rendered object.
    pub description: String,
    /// The pods it protects.
    pub pod_selector: Value,
    /// Its ingress rules.
    pub rules: Vec<Rule>,
}

/// One ingress rule: from whom, to which ports.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// What the traffic is.
    pub purpose: String,
    /// The source pods' labels; `None`: any source (e.g. an external load balancer).
    pub from_pods: Option<Value>,
    /// Destination ports (TCP).
    pub ports: Vec<u16>,
}

/// The labels that select a component's pods.
fn selector(component: Component) -> Value {
    match component {
        Component::Workspace => json!({ "com.coder.resource": "true" }),
        // The migrations run as the manager pod's init container.
        Component::Migrations => selector(Component::Manager),
        Component::LoadBalancer => {
            json!({ "app.kubernetes.io/name": "coder", "app.kubernetes.io/component": "ingress-nginx" })
        }
        other => json!({ "app.kubernetes.io/name": "coder", "app.kubernetes.io/component": other.name() }),
    }
}

/// The policies for `values` (PostgreSQL's only when it runs in the cluster; the ingress
/// controller's only when it is deployed).
pub fn network_policies(values: &Values) -> Vec<Policy> {
    let mut by_target: BTreeMap<Component, Vec<Rule>> = BTreeMap::new();
    for flow in FLOWS {
        if flow.to == Component::Postgres && !values.postgres.host.is_empty() {
            continue;
        }
        // Through the bundled ingress controller, or from anywhere when the site brings its own.
        let from_pods = match flow.from {
            Component::LoadBalancer if !values.ingress.enable => None,
            source => Some(selector(source)),
        };
        let rules = by_target.entry(flow.to).or_default();
        match rules.iter_mut().find(|rule| rule.from_pods == from_pods) {
            Some(rule) => {
                if !rule.ports.contains(&flow.port) {
                    rule.ports.push(flow.port);
                }
                if !rule.purpose.contains(flow.purpose) {
                    rule.purpose = format!("{}; {}", rule.purpose, flow.purpose);
                }
            }
            None => rules.push(Rule {
                purpose: format!("from {}: {}", flow.from.name(), flow.purpose),
                from_pods,
                ports: vec![flow.port],
            }),
        }
    }
    let mut policies: Vec<Policy> = by_target
        .into_iter()
        .map(|(target, rules)| Policy {
            name: format!("allow-to-{}", target.name()),
            description: format!(
                "Who may reach {} pods (the architecture's port table).",
                target.name()
            ),
            pod_selector: selector(target),
            rules,
        })
        .collect();
    if values.ingress.enable {
        policies.push(Policy {
            name: "allow-to-ingress-nginx".to_owned(),
            description: "The ingress controller: HTTP(S) from anywhere, and its admission webhook from the API server."
                .to_owned(),
            pod_selector: selector(Component::LoadBalancer),
            rules: vec![Rule {
                purpose: format!(
                    "clients through the load balancer ({INGRESS_HTTP_PORT}, {INGRESS_HTTPS_PORT}); \
                     the API server calls the admission webhook ({INGRESS_WEBHOOK_PORT})"
                ),
                from_pods: None,
                ports: vec![INGRESS_HTTP_PORT, INGRESS_HTTPS_PORT, INGRESS_WEBHOOK_PORT],
            }],
        });
    }
    policies
}

/// One egress rule of the workspaces' policy: to whom, on which ports.
#[derive(Debug, Serialize)]
pub struct EgressRule {
    /// What the traffic is.
    pub purpose: String,
    /// The rule as NetworkPolicy writes it: `to` peers (left out: any destination) and `ports`
    /// (left out: every port). Empty lists are left out, as the API server stores them.
    pub spec: Value,
}

impl EgressRule {
    fn new(purpose: String, to: Vec<Value>, ports: Vec<(&'static str, u16)>) -> Self {
        let mut spec = serde_json::Map::new();
        if !ports.is_empty() {
            let ports = ports
                .into_iter()
                .map(|(protocol, port)| json!({ "protocol": protocol, "port": port }))
                .collect();
            spec.insert("ports".to_owned(), Value::Array(ports));
        }
        if !to.is_empty() {
            spec.insert("to".to_owned(), Value::Array(to));
        }
        Self {
            purpose,
            spec: Value::Object(spec),
        }
    }
}

/// The workspaces' egress policy, as the template renders it.
#[derive(Debug, Serialize)]
pub struct EgressPolicy {
    /// The pods it restricts.
    pub pod_selector: Value,
    /// What they may open.
    pub rules: Vec<EgressRule>,
}

/// What workspace pods may open (the port table's `resource` rows towards the load balancer),
/// plus name lookups and the networks the site lists: the `coder-workspace-egress` policy. A
/// workspace cannot reach PostgreSQL, the manager, the Kubernetes API or anything else.
pub fn workspace_egress(values: &Values) -> EgressPolicy {
    let mut rules = vec![EgressRule::new(
        "name lookups (the cluster's DNS, wherever it runs)".to_owned(),
        Vec::new(),
        vec![("UDP", DNS_PORT), ("TCP", DNS_PORT)],
    )];
    // The load balancer is the bundled ingress controller's pods, or, with the site's own
    // ingress or gateway, somewhere this chart cannot name: any address on those ports.
    let to = if values.ingress.enable {
        vec![json!({ "podSelector": { "matchLabels": selector(Component::LoadBalancer) } })]
    } else {
        vec![json!({ "ipBlock": { "cidr": "0.0.0.0/0" } })]
    };
    rules.push(EgressRule::new(
        WORKSPACE_EGRESS
            .iter()
            .map(|flow| flow.purpose)
            .collect::<Vec<_>>()
            .join("; "),
        to,
        WORKSPACE_EGRESS.iter().map(|flow| ("TCP", flow.port)).collect(),
    ));
    let cidrs = &values.network_policies.workspace_egress_cidrs;
    if !cidrs.is_empty() {
        rules.push(EgressRule::new(
            "the site's networks (networkPolicies.workspaceEgressCIDRs), every port".to_owned(),
            cidrs
                .iter()
                .map(|cidr| json!({ "ipBlock": { "cidr": cidr.to_string() } }))
                .collect(),
            Vec::new(),
        ));
    }
    EgressPolicy {
        pod_selector: selector(Component::Workspace),
        rules,
    }
}
