//! What the controller's sync loop shares with its servers (healthz, the webhook) and its
//! leader election.

use std::sync::atomic::AtomicBool;

use k8s_openapi::api::networking::v1::Ingress;
use tokio::sync::RwLock;

use crate::model::Snapshot;

/// What the controller shares with its HTTP servers.
#[derive(Debug, Default)]
pub struct Shared {
    /// The latest snapshot of the cluster (none before the first successful listing).
    pub snapshot: RwLock<Option<Snapshot>>,
    /// Set once nginx serves its first config.
    pub serving: AtomicBool,
    /// Whether this replica holds the election Lease.
    pub leading: AtomicBool,
}

/// Whether `ingress` names `class` in `spec.ingressClassName` (the deprecated annotation is not
/// read).
pub fn is_of_class(ingress: &Ingress, class: &str) -> bool {
    ingress
        .spec
        .as_ref()
        .and_then(|spec| spec.ingress_class_name.as_deref())
        == Some(class)
}
