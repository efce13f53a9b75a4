//! Workspaces on Kubernetes: each workspace is a Deployment (one replica, the workspace image),
//! a PersistentVolumeClaim for `/home/coder`, and a Service exposing code-server (13337), the
//! envagent shell (26337) and the envagent SSH proxy (12212). Objects are written with
//! server-side apply as field manager `coder-manager`.
//!
//! [`watch_states`] follows the workspace Deployments and records state transitions in the
//! database: `ON` when the Deployment is available at its current generation, `OFF` when it is
//! scaled to zero.

use std::time::Duration;

use coder_topology::WORKSPACE_PORTS;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::api_types::{Workspace, states};
use crate::workspace_names::{object_name, volume_name};

/// The field manager of every object the manager applies.
pub const FIELD_MANAGER: &str = "coder-manager";
/// Label on every object the manager creates.
pub const RESOURCE_LABEL: &str = "com.coder.resource";
/// Label holding the owning user's id.
pub const OWNER_LABEL: &str = "com.coder.workspace.owner";
/// Label holding the workspace's id.
pub const WORKSPACE_LABEL: &str = "com.coder.workspace.id";
/// How often a state is tried before the watch moves on (one second apart).
const RECORD_ATTEMPTS: u32 = 30;

/// The Kubernetes side of workspaces, in one namespace.
#[derive(Clone)]
pub struct WorkspaceCluster {
    client: kube::Client,
    namespace: String,
    ephemeral_storage_gb: u32,
}

fn labels(workspace: &Workspace) -> Value {
    json!({
        RESOURCE_LABEL: "true",
        OWNER_LABEL: workspace.owner_id,
        WORKSPACE_LABEL: workspace.id,
    })
}

/// The scratch space a workspace asks its node for (its limit is the configured maximum): what
/// the scheduler reserves, small so that workspaces still fit on nodes with modest disks.
const EPHEMERAL_STORAGE_REQUEST: &str = "256Mi";

/// The Deployment of a workspace at `replicas`, allowed `ephemeral_storage_gb` of scratch space.
pub fn deployment_manifest(workspace: &Workspace, replicas: i32, ephemeral_storage_gb: u32) -> Value {
    let memory_mib = (f64::from(workspace.memory_gb) * 1024.0).round() as i64;
    let ports: Vec<Value> = WORKSPACE_PORTS
        .iter()
        .map(|(name, port)| json!({ "name": name, "containerPort": port, "protocol": "TCP" }))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": object_name(&workspace.id), "labels": labels(workspace) },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { WORKSPACE_LABEL: workspace.id } },
            "strategy": { "type": "Recreate" },
            "template": {
                "metadata": { "labels": labels(workspace) },
                "spec": {
                    // A workspace runs its owner's code: no Kubernetes credentials, no added
                    // privileges, the runtime's default seccomp filter, no host namespaces.
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "workspace",
                        "image": workspace.image,
                        "ports": ports,
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "privileged": false,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "resources": {
                            "requests": {
                                "cpu": format!("{}", workspace.cpu_cores),
                                "memory": format!("{memory_mib}Mi"),
                                "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
                            },
                            "limits": {
                                "cpu": format!("{}", workspace.cpu_cores),
                                "memory": format!("{memory_mib}Mi"),
                                "ephemeral-storage": format!("{ephemeral_storage_gb}Gi"),
                            },
                        },
                        "volumeMounts": [{ "name": "home", "mountPath": "/home/coder" }],
                    }],
                    "volumes": [{ "name": "home", "persistentVolumeClaim": { "claimName": volume_name(&workspace.id) } }],
                },
            },
        },
    })
}

fn service_manifest(workspace: &Workspace) -> Value {
    let ports: Vec<Value> = WORKSPACE_PORTS
        .iter()
        .map(|(name, port)| json!({ "name": name, "port": port, "targetPort": port, "protocol": "TCP" }))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": object_name(&workspace.id), "labels": labels(workspace) },
        "spec": { "selector": { WORKSPACE_LABEL: workspace.id }, "ports": ports },
    })
}

fn volume_manifest(workspace: &Workspace) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": volume_name(&workspace.id), "labels": labels(workspace) },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": format!("{}Gi", workspace.disk_gb) } },
        },
    })
}

/// Ignores "not found": deleting what is already gone succeeds.
fn gone_is_fine<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

impl WorkspaceCluster {
    /// Workspaces in `namespace`, through `client`, each allowed `ephemeral_storage_gb` of
    /// scratch space on its node.
    pub fn new(client: kube::Client, namespace: impl Into<String>, ephemeral_storage_gb: u32) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            ephemeral_storage_gb,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies the home volume, the Service and the Deployment at `replicas`.
    pub async fn apply(&self, workspace: &Workspace, replicas: i32) -> Result<Deployment, kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<PersistentVolumeClaim>()
            .patch(
                &volume_name(&workspace.id),
                &params,
                &Patch::Apply(volume_manifest(workspace)),
            )
            .await?;
        self.api::<Service>()
            .patch(
                &object_name(&workspace.id),
                &params,
                &Patch::Apply(service_manifest(workspace)),
            )
            .await?;
        self.scale(workspace, replicas).await
    }

    /// Applies the Deployment at `replicas` (0 stops the workspace, 1 starts it) and returns
    /// it as the API server stored it.
    pub async fn scale(&self, workspace: &Workspace, replicas: i32) -> Result<Deployment, kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<Deployment>()
            .patch(
                &object_name(&workspace.id),
                &params,
                &Patch::Apply(deployment_manifest(
                    workspace,
                    replicas,
                    self.ephemeral_storage_gb,
                )),
            )
            .await
    }

    /// Replaces the Deployment (a fresh container from the image); the home volume stays.
    pub async fn rebuild(&self, workspace: &Workspace) -> Result<Deployment, kube::Error> {
        gone_is_fine(
            self.api::<Deployment>()
                .delete(&object_name(&workspace.id), &DeleteParams::default())
                .await,
        )?;
        self.scale(workspace, 1).await
    }

    /// Deletes the Deployment, the Service and the home volume.
    pub async fn delete(&self, workspace_id: &str) -> Result<(), kube::Error> {
        let params = DeleteParams::default();
        gone_is_fine(
            self.api::<Deployment>()
                .delete(&object_name(workspace_id), &params)
                .await,
        )?;
        gone_is_fine(
            self.api::<Service>()
                .delete(&object_name(workspace_id), &params)
                .await,
        )?;
        gone_is_fine(
            self.api::<PersistentVolumeClaim>()
                .delete(&volume_name(workspace_id), &params)
                .await,
        )
    }

    /// Follows the workspace Deployments until the process ends, recording state transitions.
    /// Watch errors are logged and retried with back-off.
    pub async fn watch_states(self, pool: PgPool) {
        let config = watcher::Config::default().labels(&format!("{RESOURCE_LABEL}=true"));
        let stream = watcher(self.api::<Deployment>(), config)
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(deployment) => record_state(&pool, &deployment).await,
                Err(error) => tracing::warn!(%error, "workspace watch failed; retrying"),
            }
        }
        tracing::error!("workspace watch ended");
    }
}

/// The state a Deployment shows, if it settles one: `OFF` at zero replicas, `ON` when available
/// at its current generation; `None` while it is on its way.
pub fn observed_state(deployment: &Deployment) -> Option<&'static str> {
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    if replicas == 0 {
        return Some(states::OFF);
    }
    let status = deployment.status.as_ref()?;
    let generation = deployment.metadata.generation.unwrap_or(0);
    let current = status.observed_generation.unwrap_or(0) >= generation;
    let available = status.available_replicas.unwrap_or(0) >= replicas;
    (current && available).then_some(states::ON)
}

async fn record_state(pool: &PgPool, deployment: &Deployment) {
    let Some(id) = deployment
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(WORKSPACE_LABEL))
    else {
        return;
    };
    let Some(observed) = observed_state(deployment) else {
        return;
    };
    // The watch does not replay an event, so a database outage is waited out (bounded).
    for attempt in 1..=RECORD_ATTEMPTS {
        let result =
            sqlx::query("UPDATE workspaces SET state = $2, updated_at = now() WHERE id = $1 AND state <> $2")
                .bind(id)
                .bind(observed)
                .execute(pool)
                .await;
        match result {
            Ok(done) => {
                if done.rows_affected() > 0 {
                    tracing::info!(workspace = %id, state = observed, "workspace state changed");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(workspace = %id, %error, attempt, "recording a workspace state failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::error!(workspace = %id, state = observed, "gave up recording a workspace state");
}
