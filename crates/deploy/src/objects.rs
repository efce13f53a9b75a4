//! Applying rendered objects with server-side apply (field manager `coder-install`): each is
//! first applied as a dry run and compared with the live object, so an unchanged object is never
//! written (its resourceVersion does not move) and `--diff` shows exactly what would change.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::render::MANAGER_NAME;

/// An object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a rendered object (`namespace` is filled in for namespaced kinds by the caller).
    pub fn of(object: &Value) -> Self {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            api_version: text("/apiVersion"),
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// What applying one object did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It already matched.
    Unchanged,
    /// It was deleted and created again (an immutable field changed, e.g. a Job's template).
    Replaced,
}

/// The outcome for one object.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Which object.
    pub key: ObjectKey,
    /// What happened.
    pub change: Change,
    /// A unified diff of live → desired (only when asked for and something changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Why an object could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The server does not serve the kind.
    #[error("{key}: the API server does not serve {} {}; is the cluster too old, or an API disabled?", .key.api_version, .key.kind)]
    UnknownKind {
        /// The object.
        key: Box<ObjectKey>,
    },
    /// The server refused the request.
    #[error("{key}: {verb} refused: {message}{hint}")]
    Refused {
        /// The object.
        key: Box<ObjectKey>,
        /// What was attempted.
        verb: &'static str,
        /// The server's message.
        message: String,
        /// What to do, when known.
        hint: String,
    },
}

pub(crate) fn refused(key: &ObjectKey, verb: &'static str, error: kube::Error) -> ApplyError {
    let hint = match &error {
        kube::Error::Api(status) if status.code == 403 => format!(
            " (the credentials may not {verb} {}; grant it with RBAC or use an account that may)",
            key.kind
        ),
        _ => String::new(),
    };
    let message = match &error {
        kube::Error::Api(status) => status.message.clone(),
        other => crate::cluster::chain(other),
    };
    ApplyError::Refused {
        key: Box::new(key.clone()),
        verb,
        message,
        hint,
    }
}

/// An API handle for `key`'s kind, namespaced when the kind is.
pub fn api_for(cluster: &Cluster, key: &ObjectKey) -> Result<(Api<DynamicObject>, ApiResource), ApplyError> {
    let (resource, namespaced) =
        cluster
            .resolve(&key.api_version, &key.kind)
            .ok_or_else(|| ApplyError::UnknownKind {
                key: Box::new(key.clone()),
            })?;
    let api = if namespaced {
        Api::namespaced_with(cluster.client.clone(), &key.namespace, &resource)
    } else {
        Api::all_with(cluster.client.clone(), &resource)
    };
    Ok((api, resource))
}

/// The fields compared and shown: server-managed bookkeeping stripped.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
            "selfLink",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

fn to_yaml(object: &Value) -> String {
    serde_saphyr::to_string(object).unwrap_or_else(|_| object.to_string())
}

/// A unified diff of two objects' YAML.
pub fn diff(key: &ObjectKey, live: Option<&Value>, desired: &Value) -> String {
    let old = live.map(|live| to_yaml(&comparable(live))).unwrap_or_default();
    let new = to_yaml(&comparable(desired));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live {key}"), &format!("desired {key}"))
        .to_string()
}

/// Applies one object: dry run, compare with live, and (unless `dry_run`) apply for real when
/// it differs. A change the server refuses as immutable on a Job is applied by replacing it.
pub async fn apply_object(
    cluster: &Cluster,
    object: &Value,
    dry_run: bool,
    want_diff: bool,
) -> Result<Applied, ApplyError> {
    let key = ObjectKey::of(object);
    let (api, _) = api_for(cluster, &key)?;
    let live = api
        .get_opt(&key.name)
        .await
        .map_err(|error| refused(&key, "get", error))?
        .map(|live| serde_json::to_value(live).unwrap_or(Value::Null));
    let dry_params = PatchParams::apply(MANAGER_NAME).force().dry_run();
    let predicted = match api.patch(&key.name, &dry_params, &Patch::Apply(object)).await {
        Ok(predicted) => serde_json::to_value(predicted).unwrap_or(Value::Null),
        Err(kube::Error::Api(status)) if is_immutable(&status) && key.kind == "Job" => {
            return replace(&api, &key, object, live.as_ref(), dry_run, want_diff).await;
        }
        Err(error) => return Err(refused(&key, "apply", error)),
    };
    let change = match &live {
        None => Change::Created,
        Some(live) if comparable(live) == comparable(&predicted) => Change::Unchanged,
        Some(_) => Change::Updated,
    };
    let diff = (want_diff && change != Change::Unchanged).then(|| diff(&key, live.as_ref(), &predicted));
    if change != Change::Unchanged && !dry_run {
        api.patch(
            &key.name,
            &PatchParams::apply(MANAGER_NAME).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|error| refused(&key, "apply", error))?;
    }
    Ok(Applied { key, change, diff })
}

fn is_immutable(status: &kube::core::Status) -> bool {
    status.code == 422 && status.message.contains("immutable")
}

/// Deletes and recreates an object whose change touches immutable fields.
async fn replace(
    api: &Api<DynamicObject>,
    key: &ObjectKey,
    object: &Value,
    live: Option<&Value>,
    dry_run: bool,
    want_diff: bool,
) -> Result<Applied, ApplyError> {
    let diff = want_diff.then(|| diff(key, live, object));
    if !dry_run {
        delete_and_wait(api, key).await?;
        api.patch(
            &key.name,
            &PatchParams::apply(MANAGER_NAME).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|error| refused(key, "apply", error))?;
    }
    Ok(Applied {
        key: key.clone(),
        change: Change::Replaced,
        diff,
    })
}

/// Deletes an object (foreground, so its pods go with it) and waits until it is gone.
pub async fn delete_and_wait(api: &Api<DynamicObject>, key: &ObjectKey) -> Result<(), ApplyError> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&key.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(error) => return Err(refused(key, "delete", error)),
    }
    for _ in 0..300 {
        match api.get_opt(&key.name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(error) => return Err(refused(key, "get", error)),
        }
    }
    Err(ApplyError::Refused {
        key: Box::new(key.clone()),
        verb: "delete",
        message: "it is still there after 30 s (a finalizer may hold it)".to_owned(),
        hint: String::new(),
    })
}

/// Deletes an object if it exists and carries `coder-install`'s managed-by label.
pub async fn delete_managed(cluster: &Cluster, key: &ObjectKey, dry_run: bool) -> Result<bool, ApplyError> {
    let (api, _) = match api_for(cluster, key) {
        Ok(found) => found,
        // A kind the server no longer serves has nothing left to delete.
        Err(ApplyError::UnknownKind { .. }) => return Ok(false),
        Err(error) => return Err(error),
    };
    let Some(live) = api
        .get_opt(&key.name)
        .await
        .map_err(|error| refused(key, "get", error))?
    else {
        return Ok(false);
    };
    let managed = live
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(crate::render::MANAGED_BY_LABEL))
        .is_some_and(|value| value == MANAGER_NAME);
    if !managed {
        return Ok(false);
    }
    if !dry_run {
        delete_and_wait(&api, key).await?;
    }
    Ok(true)
}
