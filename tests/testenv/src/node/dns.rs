//! Service DNS, a stand-in for CoreDNS (no image of it exists here): Debian's dnsmasq on the
//! node's address, answering from a hosts file that the node's watcher rewrites from the
//! cluster's Services and Endpoints (`NAME.NAMESPACE.svc.cluster.local`, and for headless
//! Services each ready address, with `HOSTNAME.NAME.NAMESPACE.svc.cluster.local` for
//! StatefulSet pods). Names it does not know under `cluster.local` are answered NXDOMAIN; it
//! forwards nothing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, ListParams};
use nix::sys::signal::Signal;

use super::network::NODE_ADDRESS;
use crate::Result;
use crate::process::ServerProcess;
use crate::tls::write_file;

/// The cluster's DNS domain.
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";

/// dnsmasq serving [`CLUSTER_DOMAIN`] on the node's address, port 53.
pub(crate) struct ServiceDns {
    process: ServerProcess,
    hosts: PathBuf,
    written: String,
}

impl ServiceDns {
    /// Starts dnsmasq with an empty hosts file under `dir`.
    pub(crate) async fn start(dir: &Path) -> Result<Self> {
        let hosts = dir.join("service-hosts");
        write_file(&hosts, b"")?;
        let address = Ipv4Addr::from(NODE_ADDRESS);
        let mut command = Command::new(dnsmasq());
        command
            .arg("--keep-in-foreground")
            .arg("--log-facility=-")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--user=root")
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--listen-address={address}"))
            .arg("--bind-interfaces")
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--local=/{CLUSTER_DOMAIN}/"));
        let mut process =
            ServerProcess::spawn("dnsmasq", command, &dir.join("dnsmasq.log"), Signal::SIGTERM)?;
        let log = dir.join("dnsmasq.log");
        process
            .wait_ready(Duration::from_secs(10), || {
                let log = log.clone();
                async move {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    Ok(text.contains("started"))
                }
            })
            .await?;
        Ok(Self {
            process,
            hosts,
            written: String::new(),
        })
    }

    /// Rewrites the hosts file from the cluster's Services and Endpoints when they changed,
    /// and has dnsmasq read it again.
    pub(crate) async fn sync(&mut self, client: &kube::Client) -> Result<()> {
        let services = Api::<Service>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        let endpoints = Api::<Endpoints>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        let text = hosts_file(&services.items, &endpoints.items);
        if text != self.written {
            write_file(&self.hosts, text.as_bytes())?;
            self.process.signal(Signal::SIGHUP);
            self.written = text;
        }
        Ok(())
    }
}

/// dnsmasq: Debian installs it in /usr/sbin (package dnsmasq-base).
fn dnsmasq() -> PathBuf {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("dnsmasq"))
}

/// `ADDRESS NAME` lines, sorted: cluster IPs of Services, ready addresses of headless ones.
pub(crate) fn hosts_file(services: &[Service], endpoints: &[Endpoints]) -> String {
    let mut lines = BTreeSet::new();
    for service in services {
        let (Some(name), Some(namespace)) = (&service.metadata.name, &service.metadata.namespace) else {
            continue;
        };
        let fqdn = format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}");
        match service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()) {
            Some("None") => {
                let addresses = endpoints
                    .iter()
                    .filter(|e| {
                        e.metadata.name.as_ref() == Some(name)
                            && e.metadata.namespace.as_ref() == Some(namespace)
                    })
                    .flat_map(|e| e.subsets.iter().flatten())
                    .flat_map(|subset| subset.addresses.iter().flatten());
                for address in addresses {
                    lines.insert(format!("{} {fqdn}", address.ip));
                    if let Some(hostname) = &address.hostname {
                        lines.insert(format!("{} {hostname}.{fqdn}", address.ip));
                    }
                }
            }
            Some(ip) if !ip.is_empty() => {
                lines.insert(format!("{ip} {fqdn}"));
            }
            _ => {}
        }
    }
    lines.into_iter().map(|line| line + "\n").collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, ServiceSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("coder".to_owned()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn services_get_their_cluster_ip_and_headless_ones_their_pods() {
        let service = |name: &str, ip: &str| Service {
            metadata: meta(name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.to_owned()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let endpoints = Endpoints {
            metadata: meta("coder-postgres"),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "198.18.0.7".to_owned(),
                    hostname: Some("coder-postgres-0".to_owned()),
                    ..EndpointAddress::default()
                }]),
                ..EndpointSubset::default()
            }]),
        };
        let text = hosts_file(
            &[
                service("coder-manager", "198.19.0.20"),
                service("coder-postgres", "None"),
            ],
            &[endpoints],
        );
        assert_eq!(
            text,
            "198.18.0.7 coder-postgres-0.coder-postgres.coder.svc.cluster.local\n\
             198.18.0.7 coder-postgres.coder.svc.cluster.local\n\
             198.19.0.20 coder-manager.coder.svc.cluster.local\n"
        );
    }
}
