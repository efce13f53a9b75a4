//! Load balancers, a stand-in for a cloud's load balancer or MetalLB (neither exists on a bare
//! node): every Service of type LoadBalancer without an address gets one from
//! [`LOAD_BALANCER_CIDR`], written into its status (`status.loadBalancer.ingress[0].ip`), and
//! kube-proxy (iptables) then answers that address on the node, like MetalLB's layer-2 mode
//! with one node.
//!
//! What it does:
//! - allocates the lowest free address of the range, or the Service's `spec.loadBalancerIP` when
//!   that is in the range and free; an address stays the Service's while the Service exists and
//!   is free again once it is deleted (the allocation is read back from the Services' statuses,
//!   so there is no other record);
//! - a Service that stops being a LoadBalancer loses its address (its status is cleared);
//! - two Services claiming one address: the older keeps it, the other gets a new one;
//! - the range is routed to the harness's bridge ([`super::network`]): the host and pods reach
//!   the addresses, and they never leave the machine.
//!
//! What it does not: no ARP or BGP announcement (nothing outside the machine could use them),
//! no `loadBalancerSourceRanges` beyond what kube-proxy itself does, no hostname ingress, IPv4
//! only. `externalTrafficPolicy: Local` is kube-proxy's: with one node, every endpoint is local.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::cidr::Ipv4Cidr;
use super::network::LOAD_BALANCER_CIDR;
use crate::{Error, Result};

/// A status change the stand-in makes to one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusChange {
    /// The Service's namespace.
    pub(crate) namespace: String,
    /// The Service's name.
    pub(crate) name: String,
    /// The address to write, or `None` to clear the load-balancer status.
    pub(crate) address: Option<Ipv4Addr>,
}

/// Keeps the load-balancer addresses of the cluster's Services in step.
pub(crate) struct LoadBalancerAllocator {
    range: Ipv4Cidr,
}

impl LoadBalancerAllocator {
    /// An allocator for [`LOAD_BALANCER_CIDR`].
    pub(crate) fn new() -> Result<Self> {
        let range = LOAD_BALANCER_CIDR
            .parse()
            .map_err(|error| Error::Node(format!("the load-balancer range: {error}")))?;
        Ok(Self { range })
    }

    /// One pass: every LoadBalancer Service without an address gets one, and Services that are
    /// no longer LoadBalancers give theirs back.
    pub(crate) async fn sync(&self, client: &kube::Client) -> Result<()> {
        let services = Api::<Service>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        for change in plan(&services.items, self.range) {
            let api: Api<Service> = Api::namespaced(client.clone(), &change.namespace);
            let ingress = match change.address {
                Some(address) => json!([{ "ip": address.to_string() }]),
                None => json!(null),
            };
            let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
            match api
                .patch_status(&change.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                // Deleted since the list: its address is free anyway.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// The status changes that give every LoadBalancer Service an address of `range` and take
/// `range`'s addresses from the other Services. Addresses outside `range` are someone else's
/// and left alone. Services are taken oldest first, so an address two claim stays with the
/// older.
pub(crate) fn plan(services: &[Service], range: Ipv4Cidr) -> Vec<StatusChange> {
    let mut ordered: Vec<&Service> = services.iter().collect();
    ordered.sort_by_key(|service| {
        (
            service.metadata.creation_timestamp.clone().map(|time| time.0),
            service.metadata.namespace.clone(),
            service.metadata.name.clone(),
        )
    });
    let mut taken = BTreeSet::new();
    let mut needing = Vec::new();
    let mut changes = Vec::new();
    for service in ordered {
        let (Some(namespace), Some(name)) = (&service.metadata.namespace, &service.metadata.name) else {
            continue;
        };
        let spec = service.spec.as_ref();
        let is_load_balancer = spec.and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer");
        let addresses: Vec<Ipv4Addr> = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|balancer| balancer.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
            .collect();
        let ours: Vec<Ipv4Addr> = addresses
            .iter()
            .copied()
            .filter(|address| range.contains(*address))
            .collect();
        let change = |address| StatusChange {
            namespace: namespace.clone(),
            name: name.clone(),
            address,
        };
        if !is_load_balancer {
            if !ours.is_empty() {
                changes.push(change(None));
            }
            continue;
        }
        match ours.first() {
            Some(address) if !taken.contains(address) => {
                taken.insert(*address);
            }
            Some(_) => needing.push((service, change(None))),
            None if addresses.is_empty() => needing.push((service, change(None))),
            // Someone else's address.
            None => {}
        }
    }
    for (service, mut change) in needing {
        let requested = service
            .spec
            .as_ref()
            .and_then(|spec| spec.load_balancer_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| range.usable_hosts().any(|host| host == *ip) && !taken.contains(ip));
        let address = requested.or_else(|| range.usable_hosts().find(|host| !taken.contains(host)));
        if let Some(address) = address {
            taken.insert(address);
            change.address = Some(address);
            changes.push(change);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    use super::*;

    fn range() -> Ipv4Cidr {
        LOAD_BALANCER_CIDR.parse().expect("the range")
    }

    fn service(name: &str, age_seconds: i64, kind: &str, address: Option<&str>) -> Service {
        let created = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 - age_seconds).expect("a time");
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("coder".to_owned()),
                creation_timestamp: Some(Time(created)),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(kind.to_owned()),
                ..ServiceSpec::default()
            }),
            status: address.map(|ip| ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some(ip.to_owned()),
                        ..LoadBalancerIngress::default()
                    }]),
                }),
                ..ServiceStatus::default()
            }),
        }
    }

    fn set(name: &str, address: [u8; 4]) -> StatusChange {
        StatusChange {
            namespace: "coder".to_owned(),
            name: name.to_owned(),
            address: Some(Ipv4Addr::from(address)),
        }
    }

    #[test]
    fn new_load_balancers_get_the_lowest_free_addresses_and_kept_ones_stay() {
        let services = [
            service("kept", 30, "LoadBalancer", Some("198.18.1.1")),
            service("new", 20, "LoadBalancer", None),
            service("cluster-ip", 10, "ClusterIP", None),
            service("newer", 5, "LoadBalancer", None),
        ];
        assert_eq!(
            plan(&services, range()),
            [set("new", [198, 18, 1, 2]), set("newer", [198, 18, 1, 3])]
        );
        // Once written, nothing changes: addresses are stable.
        let written = [
            service("kept", 30, "LoadBalancer", Some("198.18.1.1")),
            service("new", 20, "LoadBalancer", Some("198.18.1.2")),
            service("newer", 5, "LoadBalancer", Some("198.18.1.3")),
        ];
        assert_eq!(plan(&written, range()), []);
        // A deleted Service's address is free again.
        let after_delete = [
            service("new", 20, "LoadBalancer", Some("198.18.1.2")),
            service("newest", 1, "LoadBalancer", None),
        ];
        assert_eq!(plan(&after_delete, range()), [set("newest", [198, 18, 1, 1])]);
    }

    #[test]
    fn duplicates_requests_and_type_changes() {
        let mut requested = service("requested", 1, "LoadBalancer", None);
        if let Some(spec) = requested.spec.as_mut() {
            spec.load_balancer_ip = Some("198.18.1.77".to_owned());
        }
        let services = [
            service("older", 30, "LoadBalancer", Some("198.18.1.9")),
            service("copy", 20, "LoadBalancer", Some("198.18.1.9")),
            service("no-longer", 10, "NodePort", Some("198.18.1.4")),
            service("elsewhere", 5, "LoadBalancer", Some("198.51.100.1")),
            requested,
        ];
        assert_eq!(
            plan(&services, range()),
            [
                StatusChange {
                    namespace: "coder".to_owned(),
                    name: "no-longer".to_owned(),
                    address: None,
                },
                set("copy", [198, 18, 1, 1]),
                set("requested", [198, 18, 1, 77]),
            ]
        );
    }
}
