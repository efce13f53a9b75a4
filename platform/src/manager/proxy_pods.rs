//! The proxies the manager trusts by default: the dashboard and ingress controller pods of its
//! own install, followed through the Kubernetes API (their addresses change with every
//! rollout), instead of whole private ranges, where any pod or host on those networks could
//! name its own rate-limit bucket in `X-Forwarded-For`.

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

/// A pod's name and addresses (none until it has been given one).
fn pod_addresses(pod: &Pod) -> (String, Vec<IpAddr>) {
    let name = pod.metadata.name.clone().unwrap_or_default();
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
