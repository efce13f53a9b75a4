//! The NetworkPolicies, derived from the port table in [`coder_topology`]: one policy per
//! listening component, allowing exactly its flows (a default-deny policy covers the rest).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::values::Values;
use coder_topology::{Component, FLOWS, INGRESS_HTTP_PORT, INGRESS_HTTPS_PORT, INGRESS_WEBHOOK_PORT};

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
