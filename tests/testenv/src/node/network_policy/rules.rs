//! From the cluster's NetworkPolicies, Pods and Namespaces to the stand-in's iptables chains:
//! pure functions, no iptables.
//!
//! Per pod that a policy of a type selects, one chain of that type (`CODER-NETPOL-I-<hash>` for
//! ingress, `CODER-NETPOL-E-<hash>` for egress) holds one `RETURN` rule per allowed kind of
//! traffic (peer address or block, protocol, ports), and ends in `DROP`. The entry chains jump
//! there by the pod's address after letting replies through: [`FORWARD_CHAIN`] (pod to pod, by
//! source for egress and by destination for ingress) and [`INPUT_CHAIN`] (pod to node, egress).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::selector::{Labels, selects};
use crate::node::cidr::Ipv4Cidr;

/// What every chain of the stand-in is named by.
pub(crate) const CHAIN_PREFIX: &str = "CODER-NETPOL-";
/// The chain FORWARD jumps to: traffic between pods on the bridge.
pub(crate) const FORWARD_CHAIN: &str = "CODER-NETPOL-FORWARD";
/// The chain INPUT jumps to for what comes in from the bridge: pods to the node.
pub(crate) const INPUT_CHAIN: &str = "CODER-NETPOL-INPUT";
/// The label every namespace has from Kubernetes 1.21 on, its value the namespace's name; 1.20
/// does not set it, so the stand-in adds it to what selectors see.
pub(crate) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A transport protocol a NetworkPolicy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol of a policy port or container port: TCP when unset, `None` when unknown.
    pub(crate) fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Its name for iptables' `-p` and `-m`.
    fn iptables_name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// A container port with a name (what a policy's named port refers to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPort {
    /// The port's name.
    pub(crate) name: String,
    /// The container port.
    pub(crate) port: u16,
    /// Its protocol.
    pub(crate) protocol: Protocol,
}

/// What policies know of a pod: where it is, its labels, its named ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodEndpoint {
    /// The pod's namespace.
    pub(crate) namespace: String,
    /// The pod's name.
    pub(crate) name: String,
    /// The pod's address.
    pub(crate) ip: Ipv4Addr,
    /// The pod's labels.
    pub(crate) labels: Labels,
    /// The named ports of its containers.
    pub(crate) ports: Vec<NamedPort>,
}

impl PodEndpoint {
    /// The pod as policies see it; `None` for a pod that has no pod-network address (not
    /// started yet, finished, or on the host's network, which policies do not cover).
    pub(crate) fn from_pod(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let ip = status.pod_ip.as_deref()?.parse().ok()?;
        let ports = spec
            .containers
            .iter()
            .flat_map(|container| container.ports.iter().flatten())
            .filter_map(|port| {
                Some(NamedPort {
                    name: port.name.clone()?,
                    port: u16::try_from(port.container_port).ok()?,
                    protocol: Protocol::parse(port.protocol.as_deref())?,
                })
            })
            .collect();
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            ip,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ports,
        })
    }

    /// The number of this pod's port named `name` for `protocol`.
    fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|port| port.name == name && port.protocol == protocol)
            .map(|port| port.port)
    }
}

/// A namespace's name and the labels selectors see: its own plus
/// [`NAMESPACE_NAME_LABEL`]` = <name>`.
pub(crate) fn namespace_labels(namespace: &Namespace) -> Option<(String, Labels)> {
    let name = namespace.metadata.name.clone()?;
    let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
    Some((name, labels))
}

/// Everything the rules are made from.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterState {
    /// The pods with a pod-network address.
    pub(crate) pods: Vec<PodEndpoint>,
    /// Every namespace's labels (see [`namespace_labels`]), by name.
    pub(crate) namespaces: BTreeMap<String, Labels>,
    /// Every NetworkPolicy.
    pub(crate) policies: Vec<NetworkPolicy>,
}

/// Which traffic of a pod a policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// What the pod receives.
    Ingress,
    /// What the pod sends.
    Egress,
}

/// One kind of traffic a pod's policies allow: from (ingress) or to (egress) `peer` (any when
/// `None`), of `protocol` (any when `None`) on destination ports `ports` (first and last; any
/// when `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Allow {
    /// The other side's address block.
    pub(crate) peer: Option<Ipv4Cidr>,
    /// The protocol.
    pub(crate) protocol: Option<Protocol>,
    /// The destination port range.
    pub(crate) ports: Option<(u16, u16)>,
}

/// Whether `policy` governs `direction`: its `policyTypes`, or when unset (the API server sets
/// them, but a policy read from elsewhere may lack them) ingress always and egress when it has
/// egress rules.
pub(crate) fn governs(policy: &NetworkPolicy, direction: Direction) -> bool {
    let spec = policy.spec.as_ref();
    match spec.and_then(|spec| spec.policy_types.as_ref()) {
        Some(types) => types.iter().any(|kind| {
            kind == match direction {
                Direction::Ingress => "Ingress",
                Direction::Egress => "Egress",
            }
        }),
        None => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec
                .and_then(|spec| spec.egress.as_ref())
                .is_some_and(|rules| !rules.is_empty()),
        },
    }
}

/// What `pod` may receive or send: the union of the rules of every policy of its namespace that
/// selects it and governs `direction`; `None` when there is none (the pod is open that way).
pub(crate) fn allowed(
    state: &ClusterState,
    pod: &PodEndpoint,
    direction: Direction,
) -> Option<BTreeSet<Allow>> {
    let mut selected = false;
    let mut allows = BTreeSet::new();
    for policy in &state.policies {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = policy.spec.as_ref() else {
            continue;
        };
        let selects_pod = spec
            .pod_selector
            .as_ref()
            .is_none_or(|selector| selects(selector, &pod.labels));
        if namespace != pod.namespace || !selects_pod || !governs(policy, direction) {
            continue;
        }
        selected = true;
        let rules: Vec<RuleParts<'_>> = match direction {
            Direction::Ingress => spec
                .ingress
                .iter()
                .flatten()
                .map(|rule| (rule.from.as_ref(), rule.ports.as_ref()))
                .collect(),
            Direction::Egress => spec
                .egress
                .iter()
                .flatten()
                .map(|rule| (rule.to.as_ref(), rule.ports.as_ref()))
                .collect(),
        };
        for (peers, ports) in rules {
            let targets = rule_targets(state, namespace, peers);
            for spec in port_specs(ports) {
                for target in &targets {
                    allows.extend(expand(state, pod, direction, target, &spec));
                }
            }
        }
    }
    selected.then_some(allows)
}

/// A rule's peers (`from` or `to`) and its ports.
type RuleParts<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

/// The other side of a rule: anyone, an address block, or a pod.
#[derive(Debug, Clone)]
enum Target<'a> {
    Any,
    Block(Ipv4Cidr),
    Pod(&'a PodEndpoint),
}

/// A rule's peers as targets: anyone when it lists none.
fn rule_targets<'a>(
    state: &'a ClusterState,
    policy_namespace: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
) -> Vec<Target<'a>> {
    match peers {
        Some(peers) if !peers.is_empty() => peers
            .iter()
            .flat_map(|peer| peer_targets(state, policy_namespace, peer))
            .collect(),
        _ => vec![Target::Any],
    }
}

/// One peer's targets: the blocks an `ipBlock` leaves after its `except`s (none if a block is
/// not IPv4: this cluster has no IPv6), or the pods a `podSelector` picks in the policy's
/// namespace, a `namespaceSelector` in the namespaces it picks, or both together.
fn peer_targets<'a>(
    state: &'a ClusterState,
    policy_namespace: &str,
    peer: &NetworkPolicyPeer,
) -> Vec<Target<'a>> {
    if let Some(block) = &peer.ip_block {
        let Ok(cidr) = block.cidr.parse::<Ipv4Cidr>() else {
            return Vec::new();
        };
        let excepts: Vec<Ipv4Cidr> = block
            .except
            .iter()
            .flatten()
            .filter_map(|except| except.parse().ok())
            .collect();
        return cidr.subtract(&excepts).into_iter().map(Target::Block).collect();
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Vec::new();
    }
    state
        .pods
        .iter()
        .filter(|pod| match &peer.namespace_selector {
            None => pod.namespace == policy_namespace,
            Some(selector) => state
                .namespaces
                .get(&pod.namespace)
                .is_some_and(|labels| selects(selector, labels)),
        })
        .filter(|pod| {
            peer.pod_selector
                .as_ref()
                .is_none_or(|selector| selects(selector, &pod.labels))
        })
        .map(Target::Pod)
        .collect()
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortSpec {
    /// A protocol (any when `None`) and a port range (any when `None`).
    Numbers {
        protocol: Option<Protocol>,
        range: Option<(u16, u16)>,
    },
    /// A container port's name, resolved on the receiving pod.
    Named { protocol: Protocol, name: String },
}

/// A rule's ports: every port of every protocol when it lists none. An entry with an unknown
/// protocol or an impossible port matches nothing. `endPort` makes a range (the 1.20 API server
/// does not know the field and drops it; a newer one keeps it).
fn port_specs(ports: Option<&Vec<NetworkPolicyPort>>) -> Vec<PortSpec> {
    let Some(ports) = ports.filter(|ports| !ports.is_empty()) else {
        return vec![PortSpec::Numbers {
            protocol: None,
            range: None,
        }];
    };
    ports
        .iter()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            Some(match &port.port {
                None => PortSpec::Numbers {
                    protocol: Some(protocol),
                    range: None,
                },
                Some(IntOrString::Int(number)) => {
                    let first = u16::try_from(*number).ok().filter(|port| *port > 0)?;
                    let last = match port.end_port {
                        None => first,
                        Some(end) => u16::try_from(end).ok().filter(|end| *end >= first)?,
                    };
                    PortSpec::Numbers {
                        protocol: Some(protocol),
                        range: Some((first, last)),
                    }
                }
                Some(IntOrString::String(name)) => PortSpec::Named {
                    protocol,
                    name: name.clone(),
                },
            })
        })
        .collect()
}

/// The allowed traffic of one target and one port entry, for `pod`'s `direction`. A named port
/// is looked up on the pod that receives: `pod` itself for ingress, each destination pod for
/// egress (so a named port reaches only pods, whatever the peer).
fn expand(
    state: &ClusterState,
    pod: &PodEndpoint,
    direction: Direction,
    target: &Target<'_>,
    spec: &PortSpec,
) -> Vec<Allow> {
    let peer = match target {
        Target::Any => None,
        Target::Block(block) => Some(*block),
        Target::Pod(other) => Some(Ipv4Cidr::host(other.ip)),
    };
    match spec {
        PortSpec::Numbers { protocol, range } => vec![Allow {
            peer,
            protocol: *protocol,
            ports: *range,
        }],
        PortSpec::Named { protocol, name } => {
            let receivers: Vec<&PodEndpoint> = match (direction, target) {
                (Direction::Ingress, _) => vec![pod],
                (Direction::Egress, Target::Pod(other)) => vec![*other],
                (Direction::Egress, Target::Any) => state.pods.iter().collect(),
                (Direction::Egress, Target::Block(block)) => state
                    .pods
                    .iter()
                    .filter(|other| block.contains(other.ip))
                    .collect(),
            };
            receivers
                .into_iter()
                .filter_map(|receiver| {
                    let number = receiver.named_port(name, *protocol)?;
                    let peer = match direction {
                        Direction::Ingress => peer,
                        Direction::Egress => Some(Ipv4Cidr::host(receiver.ip)),
                    };
                    Some(Allow {
                        peer,
                        protocol: Some(*protocol),
                        ports: Some((number, number)),
                    })
                })
                .collect()
        }
    }
}

/// An iptables chain of the stand-in and its rules (each as `iptables-restore` takes it after
/// `-A CHAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The chain's name.
    pub(crate) name: String,
    /// Its rules, in order.
    pub(crate) rules: Vec<String>,
}

/// Every chain of the stand-in for `state`: the two entry chains first, then one chain per pod
/// and governed direction. With `enforce` off, the entry chains are empty (nothing is policed).
pub(crate) fn chains(state: &ClusterState, enforce: bool) -> Vec<Chain> {
    let replies = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_owned();
    let mut forward = Chain {
        name: FORWARD_CHAIN.to_owned(),
        rules: Vec::new(),
    };
    let mut input = Chain {
        name: INPUT_CHAIN.to_owned(),
        rules: Vec::new(),
    };
    let mut pod_chains = Vec::new();
    if enforce {
        forward.rules.push(replies.clone());
        input.rules.push(replies);
        let mut pods: Vec<&PodEndpoint> = state.pods.iter().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for pod in pods {
            let who = format!("{}/{}", pod.namespace, pod.name);
            if let Some(allows) = allowed(state, pod, Direction::Egress) {
                let chain = pod_chain(pod, Direction::Egress, &allows);
                let jump = format!(
                    "-s {}/32 -m comment --comment \"egress of {who}\" -j {}",
                    pod.ip, chain.name
                );
                forward.rules.push(jump.clone());
                input.rules.push(jump);
                pod_chains.push(chain);
            }
            if let Some(allows) = allowed(state, pod, Direction::Ingress) {
                let chain = pod_chain(pod, Direction::Ingress, &allows);
                forward.rules.push(format!(
                    "-d {}/32 -m comment --comment \"ingress of {who}\" -j {}",
                    pod.ip, chain.name
                ));
                pod_chains.push(chain);
            }
        }
    }
    let mut all = vec![forward, input];
    all.extend(pod_chains);
    all
}

/// The chain of `pod`'s allowed traffic one way: a `RETURN` per allowed kind, then `DROP`.
fn pod_chain(pod: &PodEndpoint, direction: Direction, allows: &BTreeSet<Allow>) -> Chain {
    let (letter, peer_flag, way) = match direction {
        Direction::Ingress => ("I", "-s", "ingress"),
        Direction::Egress => ("E", "-d", "egress"),
    };
    let digest = Sha256::digest(format!("{}/{}", pod.namespace, pod.name).as_bytes());
    let name = format!("{CHAIN_PREFIX}{letter}-{}", &hex::encode(digest)[..12]);
    let mut rules: Vec<String> = allows
        .iter()
        .map(|allow| {
            let mut parts = Vec::new();
            if let Some(peer) = allow.peer {
                parts.push(format!("{peer_flag} {peer}"));
            }
            if let Some(protocol) = allow.protocol {
                let protocol = protocol.iptables_name();
                parts.push(format!("-p {protocol} -m {protocol}"));
                match allow.ports {
                    Some((first, last)) if first == last => parts.push(format!("--dport {first}")),
                    Some((first, last)) => parts.push(format!("--dport {first}:{last}")),
                    None => {}
                }
            }
            parts.push("-j RETURN".to_owned());
            parts.join(" ")
        })
        .collect();
    rules.push(format!(
        "-m comment --comment \"{}/{}: {way} no NetworkPolicy allows\" -j DROP",
        pod.namespace, pod.name
    ));
    Chain { name, rules }
}

/// The `iptables-restore --noflush` input that replaces the stand-in's chains with `chains` in
/// one transaction, deleting the chains of `stale` (earlier chains no longer made). Declaring a
/// chain empties it, so nothing of the earlier rules survives; other chains are untouched.
pub(crate) fn restore_input(chains: &[Chain], stale: &[String]) -> String {
    let mut text = String::from("*filter\n");
    for name in chains.iter().map(|chain| &chain.name).chain(stale) {
        text.push_str(&format!(":{name} - [0:0]\n"));
    }
    for chain in chains {
        for rule in &chain.rules {
            text.push_str(&format!("-A {} {rule}\n", chain.name));
        }
    }
    for name in stale {
        text.push_str(&format!("-X {name}\n"));
    }
    text.push_str("COMMIT\n");
    text
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};
    use serde_json::json;

    use super::*;

    fn pod(namespace: &str, name: &str, ip: [u8; 4], labels: &[(&str, &str)]) -> PodEndpoint {
        PodEndpoint {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ip: Ipv4Addr::from(ip),
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ports: Vec::new(),
        }
    }

    fn policy(namespace: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": namespace },
            "spec": spec,
        }))
        .expect("a NetworkPolicy")
    }

    /// The web pod (198.18.0.10, `app=web`, port `http` = 8080) in `shop`, a client in `shop`
    /// and one in `other` (labelled `team=blue`), and `policies`.
    fn state(policies: Vec<NetworkPolicy>) -> ClusterState {
        let mut web = pod("shop", "web", [198, 18, 0, 10], &[("app", "web")]);
        web.ports.push(NamedPort {
            name: "http".to_owned(),
            port: 8080,
            protocol: Protocol::Tcp,
        });
        let namespaces = [
            ("shop", Namespace::default(), vec![]),
            ("other", Namespace::default(), vec![("team", "blue")]),
        ]
        .into_iter()
        .filter_map(|(name, mut namespace, labels)| {
            namespace.metadata.name = Some(name.to_owned());
            namespace.metadata.labels = Some(
                labels
                    .into_iter()
                    .map(|(key, value): (&str, &str)| (key.to_owned(), value.to_owned()))
                    .collect(),
            );
            namespace_labels(&namespace)
        })
        .collect();
        ClusterState {
            pods: vec![
                web,
                pod("shop", "client", [198, 18, 0, 11], &[("app", "client")]),
                pod("other", "client", [198, 18, 0, 12], &[("app", "client")]),
            ],
            namespaces,
            policies,
        }
    }

    fn allow(peer: Option<&str>, protocol: Option<Protocol>, ports: Option<(u16, u16)>) -> Allow {
        Allow {
            peer: peer.map(|peer| peer.parse().expect("a block")),
            protocol,
            ports,
        }
    }

    fn allowed_of(state: &ClusterState, index: usize, direction: Direction) -> Option<Vec<Allow>> {
        allowed(state, &state.pods[index], direction).map(|allows| allows.into_iter().collect())
    }

    #[test]
    fn a_default_deny_isolates_only_the_selected_pods_and_only_for_its_types() {
        let state = state(vec![policy(
            "shop",
            json!({ "podSelector": { "matchLabels": { "app": "web" } } }),
        )]);
        assert_eq!(allowed_of(&state, 0, Direction::Ingress), Some(vec![]));
        assert_eq!(
            allowed_of(&state, 0, Direction::Egress),
            None,
            "no egress rules: egress open"
        );
        assert_eq!(
            allowed_of(&state, 1, Direction::Ingress),
            None,
            "selected by nothing: open"
        );
        let state_with_egress = self::state(vec![policy(
            "shop",
            json!({ "podSelector": {}, "egress": [{ "ports": [{ "port": 53, "protocol": "UDP" }] }] }),
        )]);
        assert_eq!(
            allowed_of(&state_with_egress, 1, Direction::Egress),
            Some(vec![allow(None, Some(Protocol::Udp), Some((53, 53)))]),
            "egress rules make an Egress policy when policyTypes is unset"
        );
        assert_eq!(
            allowed_of(&state_with_egress, 1, Direction::Ingress),
            Some(vec![])
        );
        assert_eq!(
            allowed_of(&state_with_egress, 2, Direction::Egress),
            None,
            "another namespace"
        );
    }

    #[test]
    fn peers_pod_and_namespace_selectors_alone_and_together() {
        let from = |peer: serde_json::Value| {
            let state = state(vec![policy(
                "shop",
                json!({ "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{ "from": [peer] }] }),
            )]);
            allowed_of(&state, 0, Direction::Ingress).expect("isolated")
        };
        let shop_client = allow(Some("198.18.0.11/32"), None, None);
        let other_client = allow(Some("198.18.0.12/32"), None, None);
        assert_eq!(
            from(json!({ "podSelector": { "matchLabels": { "app": "client" } } })),
            std::slice::from_ref(&shop_client)
        );
        assert_eq!(
            from(json!({ "namespaceSelector": { "matchLabels": { "team": "blue" } } })),
            std::slice::from_ref(&other_client)
        );
        assert_eq!(
            from(json!({ "namespaceSelector": { "matchLabels": { NAMESPACE_NAME_LABEL: "other" } } })),
            std::slice::from_ref(&other_client),
            "the namespace's name is a label, as from 1.21 on"
        );
        assert_eq!(
            from(json!({ "namespaceSelector": {}, "podSelector": { "matchLabels": { "app": "client" } } })),
            [shop_client.clone(), other_client.clone()]
        );
        assert_eq!(
            from(json!({
                "namespaceSelector": { "matchExpressions": [{ "key": "team", "operator": "NotIn", "values": ["blue"] }] },
                "podSelector": { "matchLabels": { "app": "client" } },
            })),
            [shop_client]
        );
        assert_eq!(from(json!({ "ipBlock": { "cidr": "fd00::/8" } })), []);
    }

    #[test]
    fn ip_blocks_with_except_and_port_forms() {
        let state = state(vec![
            policy(
                "shop",
                json!({
                    "podSelector": { "matchLabels": { "app": "web" } },
                    "ingress": [{
                        "from": [{ "ipBlock": { "cidr": "198.18.0.0/30", "except": ["198.18.0.1/32"] } }],
                        "ports": [
                            { "port": "http" },
                            { "port": "missing" },
                            { "port": 9000, "endPort": 9010, "protocol": "TCP" },
                            { "protocol": "SCTP" },
                        ],
                    }],
                }),
            ),
            policy(
                "shop",
                json!({ "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{ "ports": [{ "port": 53, "protocol": "UDP" }] }] }),
            ),
        ]);
        let mut expected = Vec::new();
        for block in ["198.18.0.0/32", "198.18.0.2/31"] {
            expected.push(allow(Some(block), Some(Protocol::Tcp), Some((8080, 8080))));
            expected.push(allow(Some(block), Some(Protocol::Tcp), Some((9000, 9010))));
            expected.push(allow(Some(block), Some(Protocol::Sctp), None));
        }
        expected.push(allow(None, Some(Protocol::Udp), Some((53, 53))));
        expected.sort();
        assert_eq!(
            allowed_of(&state, 0, Direction::Ingress),
            Some(expected),
            "the union of both policies"
        );
    }

    #[test]
    fn egress_named_ports_are_the_destination_pods_ports() {
        let state = state(vec![policy(
            "shop",
            json!({
                "podSelector": { "matchLabels": { "app": "client" } },
                "policyTypes": ["Egress"],
                "egress": [{ "ports": [{ "port": "http" }] }],
            }),
        )]);
        assert_eq!(
            allowed_of(&state, 1, Direction::Egress),
            Some(vec![allow(
                Some("198.18.0.10/32"),
                Some(Protocol::Tcp),
                Some((8080, 8080))
            )])
        );
        assert_eq!(
            allowed_of(&state, 1, Direction::Ingress),
            None,
            "policyTypes says Egress only"
        );
    }

    #[test]
    fn chains_jump_by_pod_address_and_end_in_drop() {
        let state = state(vec![
            policy(
                "shop",
                json!({
                    "podSelector": { "matchLabels": { "app": "web" } },
                    "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "app": "client" } } }], "ports": [{ "port": 8080 }] }],
                }),
            ),
            policy(
                "other",
                json!({ "podSelector": {}, "policyTypes": ["Egress"], "egress": [{ "to": [{ "ipBlock": { "cidr": "198.18.0.1/32" } }], "ports": [{ "port": 53, "protocol": "UDP" }] }] }),
            ),
        ]);
        let chains = chains(&state, true);
        let names: Vec<&str> = chains.iter().map(|chain| chain.name.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        let (egress, ingress) = (names[2], names[3]);
        assert!(
            egress.starts_with("CODER-NETPOL-E-") && egress.len() <= 28,
            "{egress}"
        );
        assert!(
            ingress.starts_with("CODER-NETPOL-I-") && ingress.len() <= 28,
            "{ingress}"
        );
        assert_eq!(
            chains[0].rules,
            [
                "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_owned(),
                format!("-s 198.18.0.12/32 -m comment --comment \"egress of other/client\" -j {egress}"),
                format!("-d 198.18.0.10/32 -m comment --comment \"ingress of shop/web\" -j {ingress}"),
            ]
        );
        assert_eq!(
            chains[1].rules,
            [
                "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_owned(),
                format!("-s 198.18.0.12/32 -m comment --comment \"egress of other/client\" -j {egress}"),
            ]
        );
        assert_eq!(
            chains[2].rules,
            [
                "-d 198.18.0.1/32 -p udp -m udp --dport 53 -j RETURN",
                "-m comment --comment \"other/client: egress no NetworkPolicy allows\" -j DROP",
            ]
        );
        assert_eq!(
            chains[3].rules,
            [
                "-s 198.18.0.11/32 -p tcp -m tcp --dport 8080 -j RETURN",
                "-m comment --comment \"shop/web: ingress no NetworkPolicy allows\" -j DROP",
            ]
        );
        let off = self::chains(&state, false);
        assert_eq!(off.len(), 2);
        assert!(
            off.iter().all(|chain| chain.rules.is_empty()),
            "enforcement off: empty entry chains"
        );

        let text = restore_input(&off, &[egress.to_owned()]);
        assert_eq!(
            text,
            format!(
                "*filter\n:CODER-NETPOL-FORWARD - [0:0]\n:CODER-NETPOL-INPUT - [0:0]\n:{egress} - [0:0]\n-X {egress}\nCOMMIT\n"
            )
        );
    }

    #[test]
    fn pods_without_a_pod_network_address_are_left_out() {
        let running = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".to_owned()),
                namespace: Some("shop".to_owned()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".to_owned(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("http".to_owned()),
                            container_port: 8080,
                            ..ContainerPort::default()
                        },
                        ContainerPort {
                            container_port: 9090,
                            ..ContainerPort::default()
                        },
                    ]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".to_owned()),
                pod_ip: Some("198.18.0.10".to_owned()),
                ..PodStatus::default()
            }),
        };
        let endpoint = PodEndpoint::from_pod(&running).expect("a running pod");
        assert_eq!(endpoint.ip, Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(
            endpoint.ports,
            [NamedPort {
                name: "http".to_owned(),
                port: 8080,
                protocol: Protocol::Tcp
            }]
        );
        let mut finished = running.clone();
        if let Some(status) = finished.status.as_mut() {
            status.phase = Some("Succeeded".to_owned());
        }
        assert_eq!(PodEndpoint::from_pod(&finished), None);
        let mut host = running.clone();
        if let Some(spec) = host.spec.as_mut() {
            spec.host_network = Some(true);
        }
        assert_eq!(PodEndpoint::from_pod(&host), None);
        let mut pending = running;
        if let Some(status) = pending.status.as_mut() {
            status.pod_ip = None;
        }
        assert_eq!(PodEndpoint::from_pod(&pending), None);
    }
}
