//! NetworkPolicy enforcement, a stand-in for a CNI policy engine such as Calico or Cilium (the
//! CNI bridge plugin has none): the node's watcher turns the cluster's `networking.k8s.io/v1`
//! NetworkPolicies, Pods and Namespaces into iptables chains of its own (`CODER-NETPOL-*`,
//! filter table) whenever they change, replaced in one `iptables-restore --noflush`
//! transaction. With `net.bridge.bridge-nf-call-iptables=1` iptables sees bridged pod-to-pod
//! traffic, after kube-proxy's DNAT: rules see the real pod address and container port, also
//! for traffic sent to a Service or a load-balancer address.
//!
//! What is enforced, with the standard semantics:
//! - `policyTypes`, and their defaults when unset (Ingress always, Egress when there are egress
//!   rules); a pod selected by no policy of a type is open that way; what several policies
//!   allow adds up;
//! - `podSelector` (`matchLabels`, `matchExpressions` with `In`, `NotIn`, `Exists`,
//!   `DoesNotExist`; empty selects every pod of the namespace);
//! - `from` / `to` peers: `podSelector`, `namespaceSelector`, both together, `ipBlock` with
//!   `except`; no peers means anyone. Namespaces carry `kubernetes.io/metadata.name: <name>`
//!   for selectors, as from Kubernetes 1.21 on (1.20 does not set it);
//! - `ports`: a number, a named port (looked up on the receiving pod's containers), `protocol`
//!   TCP (default), UDP or SCTP, `endPort` ranges (which the 1.20 API server drops: only a newer
//!   server keeps them); no ports means every port;
//! - replies of allowed connections pass (conntrack `ESTABLISHED,RELATED`, checked first);
//!   connections open when a policy changes keep going, new ones follow the new rules;
//! - where: pod to pod on the bridge (FORWARD: egress of the sender, then ingress of the
//!   receiver) and pod to node (INPUT from the bridge: the sender's egress), so a pod whose
//!   egress policies do not allow the node's address cannot reach the Kubernetes API nor the DNS
//!   stand-in (policies usually allow port 53 to anyone, as the chart's do);
//! - denied packets are dropped by a `DROP` that ends each pod's chain, its comment naming the
//!   pod and direction; the watcher's log (`watcher.log` in the node's log directory) counts
//!   what each dropped since its last pass. The last applied rules are in
//!   `network-policy.rules` there.
//!
//! What is not:
//! - traffic from the node itself to pods is not policed (kubelet probes, the API server calling
//!   webhooks, tests on the host): Calico and Cilium allow host to local pod by default too;
//! - pods on the host's network are neither policed nor matched by selectors; IPv6 blocks match
//!   nothing (the cluster is IPv4 only); dropped packets are counted, not logged one by one;
//! - an ingress `ipBlock` sees pod addresses as they are (there is no masquerading here), which
//!   is what Calico does too; traffic from outside the machine does not exist here.
//!
//! [`super::Cluster::set_network_policy_enforcement`] turns enforcement off and on at run time
//! (on from the start): off, the entry chains are empty and every packet passes.

mod rules;
mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};

use self::rules::{CHAIN_PREFIX, ClusterState, FORWARD_CHAIN, INPUT_CHAIN, PodEndpoint, namespace_labels};
use super::network::{self, BRIDGE};
use crate::tls::write_file;
use crate::{Error, Result, io_context};

/// The comment on the stand-in's jumps from the built-in chains.
const JUMP_COMMENT: &str = "coder-testenv: NetworkPolicy stand-in";

/// Keeps the stand-in's chains in step with the cluster; dropping it removes them.
pub(crate) struct NetworkPolicyEnforcer {
    /// The restore input last applied, to apply only what changed.
    applied: String,
    /// The chains that exist now.
    chains: BTreeSet<String>,
    /// Where the last applied rules are written for people to read.
    rules_path: PathBuf,
    /// The watcher's log, where dropped packets are counted.
    log_path: PathBuf,
    /// Each pod chain's `DROP` count when last read, by the rule's comment.
    drops: BTreeMap<String, u64>,
}

impl NetworkPolicyEnforcer {
    /// Removes what a killed run left, makes the (empty) entry chains and jumps to them first
    /// from FORWARD and from INPUT for packets from the bridge.
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        remove_leftovers();
        let mut enforcer = Self {
            applied: String::new(),
            chains: BTreeSet::new(),
            rules_path: dir.join("network-policy.rules"),
            log_path: dir.join("watcher.log"),
            drops: BTreeMap::new(),
        };
        enforcer.apply(&rules::chains(&ClusterState::default(), true))?;
        ensure_jumps_first()?;
        Ok(enforcer)
    }

    /// One pass: reads the policies, pods and namespaces, and replaces the chains if the rules
    /// they make changed (with `enforce` off: empty entry chains). Puts the jumps back in first
    /// place if something (kube-proxy, the kubelet) inserted rules above them.
    pub(crate) async fn sync(&mut self, client: &kube::Client, enforce: bool) -> Result<()> {
        let state = if enforce {
            let params = ListParams::default();
            let policies = Api::<NetworkPolicy>::all(client.clone()).list(&params).await?;
            let pods = Api::<Pod>::all(client.clone()).list(&params).await?;
            let namespaces = Api::<Namespace>::all(client.clone()).list(&params).await?;
            ClusterState {
                pods: pods.items.iter().filter_map(PodEndpoint::from_pod).collect(),
                namespaces: namespaces.items.iter().filter_map(namespace_labels).collect(),
                policies: policies.items,
            }
        } else {
            ClusterState::default()
        };
        self.apply(&rules::chains(&state, enforce))?;
        ensure_jumps_first()?;
        self.log_drops();
        Ok(())
    }

    /// Appends to the watcher's log how many packets each pod chain dropped since the last
    /// pass (`iptables-save -c`; a rebuilt chain counts from zero again).
    fn log_drops(&mut self) {
        let Ok(output) = Command::new("iptables-save")
            .args(["-c", "-t", "filter"])
            .output()
        else {
            return;
        };
        let counts = drop_counts(&String::from_utf8_lossy(&output.stdout));
        let mut lines = String::new();
        for (comment, packets) in &counts {
            let before = self.drops.get(comment).copied().unwrap_or(0);
            let new = if *packets >= before {
                packets - before
            } else {
                *packets
            };
            if new > 0 {
                lines.push_str(&format!(
                    "NetworkPolicy stand-in dropped {new} packet(s): {comment}\n"
                ));
            }
        }
        self.drops = counts;
        if !lines.is_empty()
            && let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
        {
            let _ = file.write_all(lines.as_bytes());
        }
    }

    /// Replaces the chains with `chains` (one transaction) unless they are what is applied.
    fn apply(&mut self, chains: &[rules::Chain]) -> Result<()> {
        let names: BTreeSet<String> = chains.iter().map(|chain| chain.name.clone()).collect();
        let stale: Vec<String> = self.chains.difference(&names).cloned().collect();
        let wanted = rules::restore_input(chains, &[]);
        if wanted == self.applied && stale.is_empty() {
            return Ok(());
        }
        iptables_restore(&rules::restore_input(chains, &stale))?;
        write_file(&self.rules_path, wanted.as_bytes())?;
        self.chains = names;
        self.applied = wanted;
        Ok(())
    }
}

impl Drop for NetworkPolicyEnforcer {
    fn drop(&mut self) {
        remove_leftovers();
    }
}

/// The jumps into the stand-in's entry chains, as iptables arguments after the built-in chain.
fn jumps() -> [(&'static str, Vec<String>); 2] {
    let owned = |parts: &[&str]| parts.iter().map(|part| (*part).to_owned()).collect::<Vec<_>>();
    [
        (
            "FORWARD",
            owned(&["-m", "comment", "--comment", JUMP_COMMENT, "-j", FORWARD_CHAIN]),
        ),
        (
            "INPUT",
            owned(&[
                "-i",
                BRIDGE,
                "-m",
                "comment",
                "--comment",
                JUMP_COMMENT,
                "-j",
                INPUT_CHAIN,
            ]),
        ),
    ]
}

/// Makes each jump the first rule of its built-in chain (deleting it where it is, if elsewhere),
/// so that no other accepting rule decides before the policies do.
fn ensure_jumps_first() -> Result<()> {
    for (builtin, jump) in jumps() {
        let target = format!("-j {}", jump.last().map_or("", String::as_str));
        let first = Command::new("iptables")
            .args(["-w", "-t", "filter", "-S", builtin, "1"])
            .output()
            .map_err(io_context("running iptables (install iptables)"))?;
        if String::from_utf8_lossy(&first.stdout)
            .trim_end()
            .ends_with(&target)
        {
            continue;
        }
        let mut delete = vec!["-w".to_owned(), "-D".to_owned(), builtin.to_owned()];
        delete.extend(jump.iter().cloned());
        while run_iptables(&delete).is_ok() {}
        let mut insert = vec![
            "-w".to_owned(),
            "-I".to_owned(),
            builtin.to_owned(),
            "1".to_owned(),
        ];
        insert.extend(jump);
        run_iptables(&insert)?;
    }
    Ok(())
}

/// The packet counts of the stand-in's `DROP` rules in `iptables-save -c` output, by the
/// rules' comments (which name the pod and the direction).
fn drop_counts(saved: &str) -> BTreeMap<String, u64> {
    saved
        .lines()
        .filter(|line| line.contains(&format!(" -A {CHAIN_PREFIX}")) && line.ends_with(" -j DROP"))
        .filter_map(|line| {
            let packets = line.strip_prefix('[')?.split(':').next()?.parse().ok()?;
            let comment = line.split("--comment \"").nth(1)?.split('"').next()?;
            Some((comment.to_owned(), packets))
        })
        .collect()
}

/// Removes the stand-in's chains and every rule that jumps to them, whatever run made them.
pub(crate) fn remove_leftovers() {
    network::remove_chains_named(CHAIN_PREFIX, &["filter"]);
}

fn run_iptables(args: &[String]) -> Result<()> {
    let arguments: Vec<&str> = args.iter().map(String::as_str).collect();
    network::run("iptables", &arguments)
}

/// Applies `text` with `iptables-restore --noflush`: only the chains it names change.
fn iptables_restore(text: &str) -> Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_context("running iptables-restore (install iptables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(io_context("writing the NetworkPolicy rules to iptables-restore"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(io_context("waiting for iptables-restore"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Node(format!(
            "iptables-restore of the NetworkPolicy rules failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counts_are_read_from_the_stand_ins_drop_rules_only() {
        let saved = "*filter\n\
            :CODER-NETPOL-I-0123456789ab - [0:0]\n\
            [3:180] -A CODER-NETPOL-I-0123456789ab -s 198.18.0.11/32 -p tcp -m tcp --dport 8080 -j RETURN\n\
            [7:420] -A CODER-NETPOL-I-0123456789ab -m comment --comment \"shop/web: ingress no NetworkPolicy allows\" -j DROP\n\
            [9:540] -A KUBE-FIREWALL -m comment --comment \"kubernetes firewall\" -j DROP\n\
            COMMIT\n";
        let counts = drop_counts(saved);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("shop/web: ingress no NetworkPolicy allows".to_owned(), 7)]
        );
    }
}
