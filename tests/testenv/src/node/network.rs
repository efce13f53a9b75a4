//! The pod network on the host: a bridge the harness makes, the kernel switches the node needs,
//! and a firewall rule that keeps pods inside the test world.
//!
//! Addresses come from 198.18.0.0/15 (reserved for network tests), never from a private range:
//! pods in [`POD_CIDR`] on the bridge [`BRIDGE`] at [`NODE_ADDRESS`], Services in
//! [`SERVICE_CIDR`], load balancers in [`LOAD_BALANCER_CIDR`]. There is no masquerading: pods
//! reach the node's address (the API server and the DNS stand-in listen there) and each other,
//! nothing else.

use std::path::Path;
use std::process::Command;

use crate::{Error, Result, io_context};

/// The bridge pods are attached to (made by the harness; the CNI bridge plugin reuses it).
pub const BRIDGE: &str = "coder-br0";
/// The node's address on the bridge: the pods' gateway, where the API server, the kubelet and
/// the DNS stand-in listen.
pub const NODE_ADDRESS: [u8; 4] = [198, 18, 0, 1];
/// The pods' addresses.
pub const POD_CIDR: &str = "198.18.0.0/24";
/// The Services' cluster IPs.
pub const SERVICE_CIDR: &str = "198.19.0.0/24";
/// The addresses the load-balancer stand-in gives LoadBalancer Services
/// (`status.loadBalancer.ingress[].ip`); routed to the bridge, so they never leave the machine.
pub const LOAD_BALANCER_CIDR: &str = "198.18.1.0/24";

/// Kernel switches the node needs, with the values they had before, put back on drop.
const SYSCTLS: [(&str, &str); 2] = [
    // Service traffic between pods on the bridge passes kube-proxy's iptables rules.
    ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"),
    // Pod to Service to pod is routed through the node.
    ("/proc/sys/net/ipv4/ip_forward", "1"),
];

/// The iptables rule (filter table, FORWARD chain) that drops what pods send anywhere but the
/// bridge: with forwarding on, a pod could otherwise send packets out of the host's interfaces.
fn forward_guard_rule() -> Vec<String> {
    [
        "FORWARD",
        "-i",
        BRIDGE,
        "!",
        "-o",
        BRIDGE,
        "-m",
        "comment",
        "--comment",
        "coder-testenv: pods reach nothing outside the test world",
        "-j",
        "DROP",
    ]
    .iter()
    .map(|part| (*part).to_owned())
    .collect()
}

/// The bridge, routes, switches and rule; dropping it removes them and restores the switches.
pub(crate) struct PodNetwork {
    restore: Vec<(&'static str, String)>,
}

impl PodNetwork {
    /// Sets it all up, first removing what a run that was killed may have left.
    pub(crate) fn create() -> Result<Self> {
        remove_leftovers();
        let mut restore = Vec::new();
        for (path, value) in SYSCTLS {
            let old = std::fs::read_to_string(path).map_err(io_context(format!(
                "reading {path} (the node needs the br_netfilter module and IPv4 forwarding)"
            )))?;
            std::fs::write(path, value).map_err(io_context(format!("setting {path} to {value}")))?;
            restore.push((path, old.trim().to_owned()));
        }
        let network = Self { restore };
        let [a, b, c, d] = NODE_ADDRESS;
        let prefix = POD_CIDR.split_once('/').map_or("24", |(_, prefix)| prefix);
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{a}.{b}.{c}.{d}/{prefix}"), "dev", BRIDGE],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        // Cluster IPs are reached through the bridge, never through the host's default route.
        run("ip", &["route", "add", SERVICE_CIDR, "dev", BRIDGE])?;
        // So are load-balancer addresses (kube-proxy answers them on the node, from the host
        // too); one that no Service holds goes nowhere beyond the bridge.
        run("ip", &["route", "add", LOAD_BALANCER_CIDR, "dev", BRIDGE])?;
        let mut insert = vec!["-w".to_owned(), "-I".to_owned()];
        insert.extend(forward_guard_rule());
        run_owned("iptables", &insert)?;
        Ok(network)
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        remove_leftovers();
        for (path, value) in &self.restore {
            let _ = std::fs::write(path, value);
        }
    }
}

/// Removes the kubelet's and kube-proxy's iptables chains (`KUBE-*`, in the filter and nat
/// tables) and the rules that jump to them: kube-proxy's `--cleanup` leaves the kubelet's.
pub(crate) fn remove_kube_chains() {
    remove_chains_named("KUBE-", &["filter", "nat", "mangle"]);
}

/// Removes the iptables chains whose names start with `prefix` from `tables`, and the rules of
/// other chains that jump to them.
pub(crate) fn remove_chains_named(prefix: &str, tables: &[&str]) {
    let jump = format!(" -j {prefix}");
    for table in tables {
        let Ok(output) = Command::new("iptables").args(["-w", "-t", table, "-S"]).output() else {
            continue;
        };
        let rules = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut chains = Vec::new();
        for rule in rules.lines() {
            let words: Vec<&str> = rule.split_whitespace().collect();
            match words.as_slice() {
                ["-N", chain] if chain.starts_with(prefix) => chains.push((*chain).to_owned()),
                ["-A", chain, ..] if !chain.starts_with(prefix) && rule.contains(&jump) => {
                    // The rule as iptables printed it, quoting and all, with -A turned into -D.
                    let delete = format!("iptables -w -t {table} -D{}", &rule[2..]);
                    let _ = run("sh", &["-c", &delete]);
                }
                _ => {}
            }
        }
        for chain in &chains {
            let _ = run("iptables", &["-w", "-t", table, "-F", chain]);
        }
        for chain in &chains {
            let _ = run("iptables", &["-w", "-t", table, "-X", chain]);
        }
    }
}

/// Removes the bridge (and with it its routes) and the forward rule, whichever exist.
fn remove_leftovers() {
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        let _ = run("ip", &["link", "del", BRIDGE]);
    }
    let mut delete = vec!["-w".to_owned(), "-D".to_owned()];
    delete.extend(forward_guard_rule());
    while run_owned("iptables", &delete).is_ok() {}
}

/// Runs a network command, failing with its output.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    run_owned(program, &args)
}

fn run_owned(program: &str, args: &[String]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(io_context(format!(
            "running {program} (install iproute2 and iptables)"
        )))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Node(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
