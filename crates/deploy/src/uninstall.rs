//! `uninstall`: every object the install record lists, the workspaces the manager made, the kept
//! Secrets and the record itself deleted under the namespace's Lease; with `keep_data`, the
//! database volume and password and the workspaces' home volumes stay for a later apply.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams};
use serde::Serialize;

use coder_progress::Progress;

use crate::cluster::Cluster;
use crate::objects::{ObjectKey, delete_managed};
use crate::record::RecordStore;

/// The manager's label on the workspaces it makes.
const WORKSPACE_SELECTOR: &str = "com.coder.resource=true";
/// The in-cluster database's labels.
const DATABASE_SELECTOR: &str = "app.kubernetes.io/name=coder,app.kubernetes.io/component=postgres";

/// What an uninstall deleted.
#[derive(Debug, Serialize)]
pub struct UninstallReport {
    /// The namespace.
    pub namespace: String,
    /// Each object deleted, as `Kind namespace/name`.
    pub deleted: Vec<String>,
    /// Whether the data was kept.
    pub kept_data: bool,
}

/// Removes the platform from `namespace` (see the module's documentation).
pub async fn run(
    cluster: &Cluster,
    namespace: &str,
    keep_data: bool,
    progress: &dyn Progress,
) -> crate::Result<UninstallReport> {
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let record = store.load_installed().await?;
    let deleted = crate::lease::with_lease(cluster.client.clone(), namespace, false, progress, async {
        let mut deleted = Vec::new();
        let mut keys: Vec<ObjectKey> = record.objects.clone();
        keys.extend(
            record
                .pending
                .iter()
                .flat_map(|pending| pending.objects.iter().cloned()),
        );
        keys.sort();
        keys.dedup();
        progress.step(&format!("delete {} objects", keys.len()));
        // Workloads first, so nothing restarts while its configuration goes.
        keys.sort_by_key(|key| !crate::wait::is_workload(&key.kind));
        for key in &keys {
            if delete_managed(cluster, key, false).await? {
                deleted.push(key.to_string());
            }
        }
        progress.step("delete workspaces");
        deleted.extend(delete_labelled(&cluster.client, namespace, WORKSPACE_SELECTOR, keep_data).await?);
        if !keep_data {
            progress.step("delete the database volume");
            deleted.extend(delete_labelled(&cluster.client, namespace, DATABASE_SELECTOR, false).await?);
        }
        for name in crate::secrets::delete_all(&cluster.client, namespace, keep_data).await? {
            deleted.push(format!("Secret {namespace}/{name}"));
        }
        store.delete_all(&record).await?;
        Ok::<_, crate::DeployError>(deleted)
    })
    .await?;
    Ok(UninstallReport {
        namespace: namespace.to_owned(),
        deleted,
        kept_data: keep_data,
    })
}

/// Deletes Deployments, Services and (unless `keep_volumes`) PersistentVolumeClaims with
/// `selector`.
async fn delete_labelled(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    keep_volumes: bool,
) -> crate::Result<Vec<String>> {
    let params = ListParams::default().labels(selector);
    let mut deleted = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for item in deployments.list(&params).await? {
        let name = item.metadata.name.unwrap_or_default();
        deployments.delete(&name, &DeleteParams::background()).await?;
        deleted.push(format!("Deployment {namespace}/{name}"));
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for item in services.list(&params).await? {
        let name = item.metadata.name.unwrap_or_default();
        services.delete(&name, &DeleteParams::default()).await?;
        deleted.push(format!("Service {namespace}/{name}"));
    }
    if !keep_volumes {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        for item in claims.list(&params).await? {
            let name = item.metadata.name.unwrap_or_default();
            claims.delete(&name, &DeleteParams::default()).await?;
            deleted.push(format!("PersistentVolumeClaim {namespace}/{name}"));
        }
    }
    Ok(deleted)
}
