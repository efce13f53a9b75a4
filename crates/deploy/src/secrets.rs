//! What `apply` creates beside the chart: the namespace, the Secrets generated once and kept
//! across upgrades (database password, envproxy token, first admin's password), the license
//! Secret and the site
//! registry's pull Secret. The chart only refers to them by name, so `template` output stays
//! free of secret values.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::render::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER_NAME, secret_names};

/// A namespace or Secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The API server refused.
    #[error("{what}: {source}")]
    Api {
        /// Which object.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// The system's random number generator failed.
    #[error("generating {what}: the system's random source failed: {reason}")]
    Random {
        /// Which Secret.
        what: String,
        /// The error.
        reason: String,
    },
}

fn labels(namespace: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGER_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), namespace.to_owned()),
        ("app.kubernetes.io/name".to_owned(), "coder".to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
    ])
}

/// Creates the namespace if it is missing (labelled with its name, which Kubernetes before 1.21
/// does not add and the admission webhook's selector needs). Returns whether it was created.
pub async fn ensure_namespace(
    client: &kube::Client,
    namespace: &str,
    dry_run: bool,
) -> Result<bool, SecretError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let error = |source| SecretError::Api {
        what: format!("namespace {namespace}"),
        source,
    };
    let name_label = "kubernetes.io/metadata.name";
    if let Some(existing) = api.get_opt(namespace).await.map_err(error)? {
        let labelled = existing
            .metadata
            .labels
            .as_ref()
            .is_some_and(|labels| labels.get(name_label).is_some_and(|value| value == namespace));
        if !labelled && !dry_run {
            let patch = json!({ "metadata": { "labels": { name_label: namespace } } });
            api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(error)?;
        }
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let mut namespace_labels = BTreeMap::from([(name_label.to_owned(), namespace.to_owned())]);
    namespace_labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER_NAME.to_owned());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(namespace_labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(source) => Err(error(source)),
    }
}

/// 32 random bytes as URL-safe text.
fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn secret(
    namespace: &str,
    name: &str,
    component: &str,
    kind: &str,
    data: BTreeMap<String, Vec<u8>>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(namespace, component)),
            ..ObjectMeta::default()
        },
        type_: Some(kind.to_owned()),
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key, ByteString(value)))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// What happened to the generated Secrets.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GeneratedSecrets {
    /// Names created by this run.
    pub created: Vec<String>,
    /// Names that already existed and were kept.
    pub kept: Vec<String>,
}

/// Creates each generated Secret unless it exists (an existing one is never changed, so
/// passwords and tokens survive upgrades and re-runs).
pub async fn ensure_generated(
    client: &kube::Client,
    namespace: &str,
    in_cluster_database: bool,
    dry_run: bool,
) -> Result<GeneratedSecrets, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut wanted = vec![
        (secret_names::ENVPROXY_TOKEN, "token", "envproxy"),
        (secret_names::ADMIN_PASSWORD, "password", "manager"),
    ];
    if in_cluster_database {
        wanted.push((secret_names::DATABASE, "password", "postgres"));
    }
    let mut outcome = GeneratedSecrets::default();
    for (name, key, component) in wanted {
        let error = |source| SecretError::Api {
            what: format!("Secret {namespace}/{name}"),
            source,
        };
        if api.get_opt(name).await.map_err(error)?.is_some() {
            outcome.kept.push(name.to_owned());
            continue;
        }
        outcome.created.push(name.to_owned());
        if dry_run {
            continue;
        }
        let value = random_secret().map_err(|random| SecretError::Api {
            what: format!("generating Secret {namespace}/{name}: {random}"),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        })?;
        let object = secret(
            namespace,
            name,
            component,
            "Opaque",
            BTreeMap::from([(key.to_owned(), value.into_bytes())]),
        );
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            // Created by a concurrent run between our check and create: keep theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => return Err(error(source)),
        }
    }
    Ok(outcome)
}

/// Applies a Secret the run owns outright (license, pull credentials): server-side apply, so a
/// re-run with the same content changes nothing.
pub async fn apply_owned_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    kind: &str,
    data: BTreeMap<String, Vec<u8>>,
    dry_run: bool,
) -> Result<crate::objects::Change, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let error = |source| SecretError::Api {
        what: format!("Secret {namespace}/{name}"),
        source,
    };
    let mut object = serde_json::to_value(secret(namespace, name, name, kind, data)).unwrap_or_default();
    object["apiVersion"] = "v1".into();
    object["kind"] = "Secret".into();
    let live = api.get_opt(name).await.map_err(error)?;
    let same = live.as_ref().is_some_and(|live| {
        serde_json::to_value(&live.data).ok() == object.get("data").cloned()
            && live.type_.as_deref() == Some(kind)
    });
    if same {
        return Ok(crate::objects::Change::Unchanged);
    }
    if !dry_run {
        api.patch(
            name,
            &PatchParams::apply(MANAGER_NAME).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(error)?;
    }
    Ok(if live.is_some() {
        crate::objects::Change::Updated
    } else {
        crate::objects::Change::Created
    })
}

/// A `kubernetes.io/dockerconfigjson` payload for one registry.
pub fn docker_config_json(registry: &str, username: &str, password: &str) -> Vec<u8> {
    let auth = crate::record::base64(format!("{username}:{password}").as_bytes());
    json!({ "auths": { registry: { "username": username, "password": password, "auth": auth } } })
        .to_string()
        .into_bytes()
}

/// Deletes the Secrets `apply` made; the database password and the first admin's password
/// (the admin account lives in the database) are kept when `keep_data`.
pub async fn delete_all(
    client: &kube::Client,
    namespace: &str,
    keep_data: bool,
) -> Result<Vec<String>, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for name in [
        secret_names::ENVPROXY_TOKEN,
        secret_names::LICENSE,
        secret_names::REGISTRY_PULL,
        secret_names::DATABASE,
        secret_names::ADMIN_PASSWORD,
    ] {
        if keep_data && [secret_names::DATABASE, secret_names::ADMIN_PASSWORD].contains(&name) {
            continue;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(name.to_owned()),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(SecretError::Api {
                    what: format!("Secret {namespace}/{name}"),
                    source,
                });
            }
        }
    }
    Ok(deleted)
}
