//! The proxies the manager trusts by default: the dashboard and ingress controller pods of its
//! own install, followed through the Kubernetes API (their addresses change with every
//! rollout), instead of whole private ranges, where any pod or host on those networks could
//! name its own rate-limit bucket in `X-Forwarded-For`.
//! A pod is trusted only while it is Running and Ready and not being deleted: the address of a
//! pod that ended (failed, succeeded, evicted) or is terminating may soon be another pod's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// The addresses of the pods a label selector matches, kept current by [`ProxyPods::follow`].
#[derive(Debug, Clone, Default)]
pub struct ProxyPods {
    /// Pod name → its addresses.
    pods: Arc<RwLock<HashMap<String, Vec<IpAddr>>>>,
}

/// Whether a pod may be trusted as a proxy now: Running, Ready and not being deleted. A pod
/// that failed, succeeded or was evicted, or is terminating, may have its address handed to
/// another pod at any time.
fn serving(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    pod.metadata.deletion_timestamp.is_none() && status.phase.as_deref() == Some("Running") && ready
}

/// A pod's name and the addresses to trust for it: none unless it is [`serving`] and has been
/// given one.
fn pod_addresses(pod: &Pod) -> (String, Vec<IpAddr>) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !serving(pod) {
        return (name, Vec::new());
    }
    let status = pod.status.as_ref();
    let listed = status.and_then(|status| status.pod_ips.as_ref());
    let mut addresses: Vec<IpAddr> = listed
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ip.parse().ok())
        .collect();
    if let Some(ip) = status.and_then(|status| status.pod_ip.as_ref())
        && let Ok(ip) = ip.parse()
        && !addresses.contains(&ip)
    {
        addresses.push(ip);
    }
    (name, addresses)
}

impl ProxyPods {
    /// Whether `address` belongs to one of the followed pods.
    pub fn contains(&self, address: &IpAddr) -> bool {
        self.pods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|addresses| addresses.contains(address))
    }

    /// Every followed pod's addresses, sorted.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<IpAddr> = pods.values().flatten().copied().collect();
        all.sort_unstable();
        all
    }

    /// Follows the pods of `pods` that `selector` matches until the process ends (watch
    /// errors are logged and retried with back-off).
    pub async fn follow(self, pods: Api<Pod>, selector: String) {
        let config = watcher::Config::default().labels(&selector);
        let stream = watcher(pods, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut relisted: Option<HashMap<String, Vec<IpAddr>>> = None;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, %selector, "following the trusted proxy pods failed; retrying");
                    continue;
                }
            };
            let mut current = self.pods.write().unwrap_or_else(PoisonError::into_inner);
            match event {
                watcher::Event::Init => relisted = Some(HashMap::new()),
                watcher::Event::InitApply(pod) => {
                    let (name, addresses) = pod_addresses(&pod);
                    relisted.get_or_insert_with(HashMap::new).insert(name, addresses);
                }
                watcher::Event::InitDone => {
                    *current = relisted.take().unwrap_or_default();
                }
                watcher::Event::Apply(pod) => {
                    let (name, addresses) = pod_addresses(&pod);
                    current.insert(name, addresses);
                }
                watcher::Event::Delete(pod) => {
                    current.remove(&pod_addresses(&pod).0);
                }
            }
        }
        tracing::error!(%selector, "following the trusted proxy pods ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod named `name` at 10.1.2.3 in `phase`, Ready as `ready`, being deleted if `deleting`.
    fn pod(name: &str, phase: &str, ready: &str, deleting: bool) -> Pod {
        let mut metadata = serde_json::json!({ "name": name });
        if deleting {
            metadata["deletionTimestamp"] = "2024-05-01T10:00:00Z".into();
        }
        serde_json::from_value(serde_json::json!({
            "metadata": metadata,
            "status": {
                "phase": phase,
                "podIP": "10.1.2.3",
                "podIPs": [{ "ip": "10.1.2.3" }, { "ip": "fd00::3" }],
                "conditions": [
                    { "type": "Ready", "status": ready },
                    { "type": "ContainersReady", "status": ready },
                ],
            },
        }))
        .expect("a pod")
    }

    #[test]
    fn only_running_ready_pods_not_being_deleted_are_trusted() {
        let trusted = pod("dashboard-1", "Running", "True", false);
        let (name, addresses) = pod_addresses(&trusted);
        assert_eq!(name, "dashboard-1");
        assert_eq!(
            addresses,
            [
                IpAddr::from([10, 1, 2, 3]),
                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 3])
            ]
        );

        let mut evicted = pod("evicted", "Failed", "False", false);
        if let Some(status) = evicted.status.as_mut() {
            status.reason = Some("Evicted".to_owned());
        }
        let mut no_conditions = pod("no-conditions", "Running", "True", false);
        if let Some(status) = no_conditions.status.as_mut() {
            status.conditions = None;
        }
        let untrusted = [
            evicted,
            pod("failed", "Failed", "False", false),
            pod("succeeded", "Succeeded", "False", false),
            pod("pending", "Pending", "False", false),
            pod("unknown", "Unknown", "True", false),
            pod("not-ready", "Running", "False", false),
            pod("deleting", "Running", "True", true),
            no_conditions,
        ];
        for pod in untrusted {
            let (name, addresses) = pod_addresses(&pod);
            assert!(addresses.is_empty(), "pod {name} is trusted with {addresses:?}");
        }
    }
}
