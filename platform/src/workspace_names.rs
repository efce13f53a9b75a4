//! The names of a workspace's Kubernetes objects: the manager creates them
//! ([`crate::manager::k8s`]) and the envproxy connects to the Service by name.

/// The name of a workspace's Deployment and Service.
pub fn object_name(workspace_id: &str) -> String {
    format!("ws-{workspace_id}")
}

/// The name of a workspace's home volume claim.
pub fn volume_name(workspace_id: &str) -> String {
    format!("ws-{workspace_id}-home")
}
