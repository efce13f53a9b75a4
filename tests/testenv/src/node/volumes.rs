//! Volumes, a stand-in for a storage provisioner (none exists on a bare node): each pending
//! claim without a storage class gets a hostPath PersistentVolume under the node's directory,
//! pre-bound to it; a provisioned volume whose claim was deleted (`Released`) is deleted with
//! its directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::{Error, Result, io_context};

/// The label on every volume this provisioner made.
const PROVISIONED_LABEL: &str = "coder-testenv/provisioned";

/// Provisions hostPath volumes under one directory.
pub(crate) struct VolumeProvisioner {
    root: PathBuf,
}

impl VolumeProvisioner {
    /// Volumes go under `root`.
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// One pass: a volume for every pending claim, and released volumes deleted.
    pub(crate) async fn sync(&self, client: &kube::Client) -> Result<()> {
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        let claims = Api::<PersistentVolumeClaim>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        for claim in &claims.items {
            let pending = claim.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Pending");
            let spec = claim.spec.as_ref();
            let unbound = spec
                .and_then(|spec| spec.volume_name.as_deref())
                .is_none_or(str::is_empty);
            let no_class = spec
                .and_then(|spec| spec.storage_class_name.as_deref())
                .is_none_or(str::is_empty);
            if pending && unbound && no_class {
                self.provision(&volumes, claim).await?;
            }
        }
        let provisioned = volumes
            .list(&ListParams::default().labels(&format!("{PROVISIONED_LABEL}=true")))
            .await?;
        for volume in provisioned.items {
            let released =
                volume.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Released");
            if let (true, Some(name)) = (released, volume.metadata.name.as_deref()) {
                if let Some(path) = volume.spec.as_ref().and_then(|spec| spec.host_path.as_ref()) {
                    let _ = std::fs::remove_dir_all(&path.path);
                }
                match volumes.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }

    async fn provision(&self, volumes: &Api<PersistentVolume>, claim: &PersistentVolumeClaim) -> Result<()> {
        let (Some(name), Some(namespace), Some(uid)) = (
            claim.metadata.name.as_deref(),
            claim.metadata.namespace.as_deref(),
            claim.metadata.uid.as_deref(),
        ) else {
            return Ok(());
        };
        let short_uid: String = uid.chars().take(8).collect();
        let volume_name = format!("testenv-{namespace}-{name}-{short_uid}");
        let directory = self.root.join(&volume_name);
        std::fs::create_dir_all(&directory)
            .map_err(io_context(format!("creating {}", directory.display())))?;
        // Any user a pod runs as may write there (a hostPath volume is not chowned to fsGroup).
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777))
            .map_err(io_context(format!("opening up {}", directory.display())))?;
        let spec = claim.spec.clone().unwrap_or_default();
        let requests: BTreeMap<_, _> = spec
            .resources
            .and_then(|resources| resources.requests)
            .unwrap_or_default();
        let storage = requests
            .get("storage")
            .map_or_else(|| "1Gi".to_owned(), |quantity| quantity.0.clone());
        let volume: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": { "name": volume_name, "labels": { PROVISIONED_LABEL: "true" } },
            "spec": {
                "capacity": { "storage": storage },
                "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": { "path": directory, "type": "Directory" },
                "claimRef": { "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": name, "uid": uid },
            },
        }))
        .map_err(|error| Error::Node(format!("a volume for claim {namespace}/{name}: {error}")))?;
        match volumes.create(&PostParams::default(), &volume).await {
            Ok(_) => Ok(()),
            // Made on an earlier pass; the controller has not bound it yet.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
