//! What to look at when a hop fails: the Deployment behind it when it has no available replica,
//! and for a workspace port, whether any NetworkPolicy of the namespace still lets the envproxy
//! in on it (the port table's rule).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use crate::cluster::Cluster;

/// Where to look for Deployment `name` (`what` for people): its replicas when none is
/// available, else its log.
pub async fn deployment(cluster: &Cluster, namespace: &str, name: &str, what: &str) -> String {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(deployment)) => {
            let wanted = deployment.spec.and_then(|spec| spec.replicas).unwrap_or(1);
            let available = deployment
                .status
                .and_then(|status| status.available_replicas)
                .unwrap_or(0);
            if available < 1 {
                format!(
                    "the {what} Deployment has {available} available replicas (of {wanted}): kubectl -n {namespace} get deploy {name}; kubectl -n {namespace} describe deploy {name}"
                )
            } else {
                format!("the {what}'s log: kubectl -n {namespace} logs deploy/{name}")
            }
        }
        Ok(None) => format!("the {what} Deployment {name} is missing: re-run coder-install apply"),
        Err(error) => format!(
            "the {what} Deployment {name} could not be read ({error}): kubectl -n {namespace} get deploy {name}"
        ),
    }
}

/// Whether `selector` (a label selector as JSON; only `matchLabels` is read) selects `labels`.
fn selects(selector: &Value, labels: &BTreeMap<&str, &str>) -> bool {
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| {
            labels
                .get(key.as_str())
                .is_some_and(|own| Some(*own) == value.as_str())
        })
        && selector["matchExpressions"].as_array().is_none_or(Vec::is_empty)
}

/// Whether an ingress rule lets a pod with `source` labels in on `port` (named `port_name`).
fn rule_allows(rule: &Value, source: &BTreeMap<&str, &str>, port: u16, port_name: &str) -> bool {
    let ports = rule["ports"].as_array().filter(|ports| !ports.is_empty());
    let port_ok = ports.is_none_or(|ports| {
        ports.iter().any(|entry| {
            entry["port"].as_u64() == Some(u64::from(port))
                || entry["port"].as_str() == Some(port_name)
                || entry.get("port").is_none()
        })
    });
    let peers = rule["from"].as_array().filter(|peers| !peers.is_empty());
    let peer_ok = peers.is_none_or(|peers| {
        peers.iter().any(|peer| {
            peer.get("ipBlock").is_some()
                || (peer.get("namespaceSelector").is_none() && selects(&peer["podSelector"], source))
        })
    });
    port_ok && peer_ok
}

/// For NetworkPolicies `policies` (JSON): when some select pods labelled `target` for ingress
/// and none of them lets `source` in on `port`, the names of those that select them.
pub fn blocking_policies(
    policies: &[Value],
    target: &BTreeMap<&str, &str>,
    source: &BTreeMap<&str, &str>,
    port: u16,
    port_name: &str,
) -> Option<Vec<String>> {
    let selecting: Vec<&Value> = policies
        .iter()
        .filter(|policy| selects(&policy["spec"]["podSelector"], target))
        .filter(|policy| {
            let types = policy["spec"]["policyTypes"].as_array();
            types.is_none_or(|types| types.iter().any(|kind| kind == "Ingress"))
        })
        .collect();
    let allowed = selecting.iter().any(|policy| {
        policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule_allows(rule, source, port, port_name))
    });
    (!selecting.is_empty() && !allowed).then(|| {
        selecting
            .iter()
            .map(|policy| policy["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    })
}

/// Where to look when the envproxy could not reach workspace `id` on `port` (`port_name`).
pub async fn workspace_port(
    cluster: &Cluster,
    namespace: &str,
    id: &str,
    port: u16,
    port_name: &str,
) -> String {
    let pods = format!("the workspace's pod: kubectl -n {namespace} get pods -l com.coder.workspace.id={id}");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), namespace);
    let Ok(listed) = api.list(&ListParams::default()).await else {
        return format!("the NetworkPolicies: kubectl -n {namespace} get networkpolicy; {pods}");
    };
    let policies: Vec<Value> = listed
        .items
        .iter()
        .filter_map(|policy| serde_json::to_value(policy).ok())
        .collect();
    let target = BTreeMap::from([("com.coder.resource", "true"), ("com.coder.workspace.id", id)]);
    let envproxy = BTreeMap::from([
        ("app.kubernetes.io/name", "coder"),
        ("app.kubernetes.io/component", "envproxy"),
    ]);
    match blocking_policies(&policies, &target, &envproxy, port, port_name) {
        Some(names) => format!(
            "no NetworkPolicy lets the envproxy into workspace pods on {port} ({port_name}); the policies selecting them: kubectl -n {namespace} get networkpolicy {} -o yaml (coder-install apply restores the chart's)",
            names.join(" ")
        ),
        None => format!("{pods}; the envproxy's log: kubectl -n {namespace} logs deploy/coder-envproxy"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policies(workspace_ports: &[u16]) -> Vec<Value> {
        let ports: Vec<Value> = workspace_ports
            .iter()
            .map(|port| json!({"protocol": "TCP", "port": port}))
            .collect();
        vec![
            json!({"metadata": {"name": "coder-default-deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            json!({"metadata": {"name": "coder-allow-to-workspace"}, "spec": {
                "podSelector": {"matchLabels": {"com.coder.resource": "true"}}, "policyTypes": ["Ingress"],
                "ingress": [{"ports": ports, "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "coder", "app.kubernetes.io/component": "envproxy"}}}]}]
            }}),
            json!({"metadata": {"name": "coder-allow-to-postgres"}, "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "postgres"}},
                "ingress": [{"ports": [{"port": 5432}]}]
            }}),
        ]
    }

    #[test]
    fn a_port_missing_from_the_workspace_policy_names_the_policies_in_the_way() {
        let target = BTreeMap::from([("com.coder.resource", "true"), ("com.coder.workspace.id", "w1")]);
        let envproxy = BTreeMap::from([
            ("app.kubernetes.io/name", "coder"),
            ("app.kubernetes.io/component", "envproxy"),
        ]);
        let stranger = BTreeMap::from([("app", "x")]);
        let chart = policies(&[13337, 26337, 12212]);
        assert_eq!(
            blocking_policies(&chart, &target, &envproxy, 26337, "envagent"),
            None
        );
        assert_eq!(
            blocking_policies(&chart, &target, &stranger, 26337, "envagent"),
            Some(vec![
                "coder-default-deny".to_owned(),
                "coder-allow-to-workspace".to_owned()
            ])
        );
        let edited = policies(&[13337, 12212]);
        assert_eq!(
            blocking_policies(&edited, &target, &envproxy, 26337, "envagent"),
            Some(vec![
                "coder-default-deny".to_owned(),
                "coder-allow-to-workspace".to_owned()
            ])
        );
        assert_eq!(
            blocking_policies(&edited, &target, &envproxy, 13337, "code-server"),
            None
        );
        assert_eq!(
            blocking_policies(&[], &target, &envproxy, 26337, "envagent"),
            None,
            "no policy: open"
        );
    }
}
