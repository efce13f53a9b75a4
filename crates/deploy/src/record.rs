//! The install record: what `coder-install` applied to a namespace, kept in the namespace itself
//! (ConfigMap `coder-install`), with the rendered manifests of recent revisions beside it
//! (ConfigMaps `coder-install-rev-<N>`, gzip) for `rollback`.
//!
//! An apply first records the objects it is about to write as `pending`, and only on success
//! replaces `objects`: so a failed apply never loses track of what it wrote, and the next run
//! (or `uninstall`) prunes both lists.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::objects::ObjectKey;
use crate::release::InstallMode;
use crate::render::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER_NAME};

/// The record ConfigMap's name.
pub const RECORD_NAME: &str = "coder-install";
/// The key of a revision's inputs in its ConfigMap.
const INPUTS_KEY: &str = "inputs.json.gz";
/// Revisions whose manifests are kept for rollback.
pub const KEPT_REVISIONS: u64 = 5;

/// What is installed in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The current revision (1 for the first install); 0 before any succeeded.
    pub revision: u64,
    /// The platform version installed.
    pub version: String,
    /// Connected or air-gapped.
    pub mode: InstallMode,
    /// The site registry (air-gapped) it was pushed to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// Digest of the lock it was installed from.
    pub lock_digest: String,
    /// How the bundle's signature was checked (air-gapped): verified with which key, or not
    /// checked (`--allow-unsigned`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bundle_signature: String,
    /// The tool that applied it.
    pub tool: String,
    /// When it was applied.
    pub applied_at: String,
    /// The objects it consists of.
    pub objects: Vec<ObjectKey>,
    /// Objects an apply in progress (or one that failed) was writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingApply>,
    /// Earlier revisions, newest first.
    #[serde(default)]
    pub history: Vec<RevisionSummary>,
    /// The backup of the database taken before this revision replaced another version
    /// (what `rollback --restore-data` restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRef>,
}

/// An apply that started but has not finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApply {
    /// The revision it would become.
    pub revision: u64,
    /// The version it applies.
    pub version: String,
    /// When it started.
    pub started_at: String,
    /// The objects it writes.
    pub objects: Vec<ObjectKey>,
}

/// One earlier revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionSummary {
    /// Its number.
    pub revision: u64,
    /// Its version.
    pub version: String,
    /// Its lock digest.
    pub lock_digest: String,
    /// When it was applied.
    pub applied_at: String,
    /// The backup taken before it replaced another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRef>,
}

/// Where a backup is, as the install record names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRef {
    /// The file (absolute), on the machine that took it.
    pub path: String,
    /// `sha256:` of its dump (the manifest's).
    pub dump_sha256: String,
    /// The version it was taken from.
    pub version: String,
    /// When it was taken.
    pub taken_at: String,
}

/// The most a stored revision document may decompress to. Real ones are tens of KiB; a
/// ConfigMap holds at most 1 MiB compressed, which gzip can blow up a thousandfold.
pub const MAX_REVISION_BYTES: u64 = 8 << 20;

/// What a revision was rendered from, kept beside its manifests (`inputs.json.gz`) so that
/// `rollback` renders that release again and checks it, rather than applying whatever the stored
/// objects say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionInputs {
    /// The platform version.
    pub version: String,
    /// Connected or air-gapped.
    pub mode: InstallMode,
    /// The site registry (air-gapped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// The lock's text, byte for byte.
    pub lock: String,
    /// `sha256:` of `lock`.
    pub lock_digest: String,
    /// `sha256:` of the chart's files ([`crate::revision::chart_digest`]). `rollback` renders
    /// only the chart built into coder-install, and only when it has this digest: the chart's
    /// bytes are never taken from the namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_digest: String,
    /// The chart's files (path → base64 of the content), as revisions recorded by an older
    /// coder-install carry them; new records leave it empty. Never rendered: only its digest
    /// is compared with the built-in chart's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chart: BTreeMap<String, String>,
    /// The values as rendered (chart defaults, files and `--set` resolved).
    pub values: serde_json::Value,
    /// Logical image name → the reference containers pulled.
    pub images: BTreeMap<String, String>,
    /// How the bundle's signature was checked (see [`InstallRecord::bundle_signature`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bundle_signature: String,
}

impl RevisionInputs {
    /// The chart's files of an older record, decoded (for their digest only).
    pub fn chart_files(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.chart
            .iter()
            .map(|(path, encoded)| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map(|bytes| (path.clone(), bytes))
                    .map_err(|error| format!("chart file {path} is not base64: {error}"))
            })
            .collect()
    }
}

/// Gunzips `compressed`, refusing output beyond `limit` bytes without producing it.
pub fn gunzip_bounded(compressed: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|error| error.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!(
            "it decompresses to more than {} MiB, far beyond any real revision",
            limit >> 20
        ));
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(bytes)?;
    gzip.finish()
}

/// Reads and writes the record of one namespace.
pub struct RecordStore {
    api: Api<ConfigMap>,
    namespace: String,
}

/// The record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The API server refused.
    #[error("install record in namespace {namespace}: {source}")]
    Api {
        /// The namespace.
        namespace: String,
        /// The error.
        source: kube::Error,
    },
    /// The namespace has no install record: nothing is installed there.
    #[error("nothing is installed in namespace {namespace} (no coder-install record)")]
    NothingInstalled {
        /// The namespace.
        namespace: String,
    },
    /// It does not parse.
    #[error(
        "install record ConfigMap {namespace}/{RECORD_NAME} is damaged ({reason}); \
         inspect it with kubectl, fix or delete it, and re-run"
    )]
    Damaged {
        /// The namespace.
        namespace: String,
        /// What is wrong.
        reason: String,
    },
}

fn labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGER_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), namespace.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "install-record".to_owned(),
        ),
    ])
}

fn revision_name(revision: u64) -> String {
    format!("{RECORD_NAME}-rev-{revision}")
}

impl RecordStore {
    /// The store for `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    /// The namespace it reads and writes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api_error(&self, source: kube::Error) -> RecordError {
        RecordError::Api {
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// The record of what is installed, or [`RecordError::NothingInstalled`].
    pub async fn load_installed(&self) -> Result<InstallRecord, RecordError> {
        self.load().await?.ok_or_else(|| RecordError::NothingInstalled {
            namespace: self.namespace.clone(),
        })
    }

    /// The record, if the namespace has one.
    pub async fn load(&self) -> Result<Option<InstallRecord>, RecordError> {
        let Some(map) = self
            .api
            .get_opt(RECORD_NAME)
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(None);
        };
        let text = map
            .data
            .as_ref()
            .and_then(|data| data.get("record.json"))
            .ok_or_else(|| RecordError::Damaged {
                namespace: self.namespace.clone(),
                reason: "it has no record.json".to_owned(),
            })?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|error| RecordError::Damaged {
                namespace: self.namespace.clone(),
                reason: error.to_string(),
            })
    }

    /// Writes the record (server-side apply of the whole ConfigMap).
    pub async fn save(&self, record: &InstallRecord) -> Result<(), RecordError> {
        let text = serde_json::to_string_pretty(record).map_err(|error| RecordError::Damaged {
            namespace: self.namespace.clone(),
            reason: error.to_string(),
        })?;
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(RECORD_NAME.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels(&self.namespace)),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("record.json".to_owned(), text)])),
            ..ConfigMap::default()
        };
        self.apply_config_map(RECORD_NAME, &map).await
    }

    async fn apply_config_map(&self, name: &str, map: &ConfigMap) -> Result<(), RecordError> {
        let mut value = serde_json::to_value(map).map_err(|error| RecordError::Damaged {
            namespace: self.namespace.clone(),
            reason: error.to_string(),
        })?;
        value["apiVersion"] = "v1".into();
        value["kind"] = "ConfigMap".into();
        self.api
            .patch(
                name,
                &PatchParams::apply(MANAGER_NAME).force(),
                &Patch::Apply(&value),
            )
            .await
            .map_err(|e| self.api_error(e))?;
        Ok(())
    }

    /// Stores a revision's rendered manifests (YAML) and, when known, the inputs it was
    /// rendered from, gzip-compressed.
    pub async fn save_manifests(
        &self,
        revision: u64,
        yaml: &str,
        inputs: Option<&RevisionInputs>,
    ) -> Result<(), RecordError> {
        let damaged = |reason: String| RecordError::Damaged {
            namespace: self.namespace.clone(),
            reason,
        };
        let mut data = BTreeMap::from([(
            "manifests.yaml.gz".to_owned(),
            ByteString(gzip(yaml.as_bytes()).map_err(|error| damaged(error.to_string()))?),
        )]);
        if let Some(inputs) = inputs {
            let json = serde_json::to_vec(inputs).map_err(|error| damaged(error.to_string()))?;
            data.insert(
                INPUTS_KEY.to_owned(),
                ByteString(gzip(&json).map_err(|error| damaged(error.to_string()))?),
            );
        }
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(revision_name(revision)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels(&self.namespace)),
                ..ObjectMeta::default()
            },
            binary_data: Some(data),
            ..ConfigMap::default()
        };
        match self.api.create(&PostParams::default(), &map).await {
            Ok(_) => Ok(()),
            // A failed earlier attempt at the same revision left it: replace it.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.apply_config_map(&revision_name(revision), &map).await
            }
            Err(error) => Err(self.api_error(error)),
        }
    }

    /// The inputs a revision was rendered from, if kept (revisions recorded by an older
    /// coder-install have none). Decompression is bounded by [`MAX_REVISION_BYTES`].
    pub async fn load_inputs(&self, revision: u64) -> Result<Option<RevisionInputs>, RecordError> {
        let Some(map) = self
            .api
            .get_opt(&revision_name(revision))
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(None);
        };
        let Some(compressed) = map.binary_data.as_ref().and_then(|data| data.get(INPUTS_KEY)) else {
            return Ok(None);
        };
        let damaged = |reason: String| RecordError::Damaged {
            namespace: self.namespace.clone(),
            reason: format!("{} {INPUTS_KEY}: {reason}", revision_name(revision)),
        };
        let json = gunzip_bounded(&compressed.0, MAX_REVISION_BYTES).map_err(damaged)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|error| damaged(error.to_string()))
    }

    /// Deletes revision manifests older than the kept window.
    pub async fn prune_revisions(&self, current: u64) -> Result<(), RecordError> {
        for revision in 1..current.saturating_sub(KEPT_REVISIONS - 1) {
            self.delete_if_present(&revision_name(revision)).await?;
        }
        Ok(())
    }

    /// Deletes the ConfigMap `name`; one that is already gone is not an error.
    async fn delete_if_present(&self, name: &str) -> Result<(), RecordError> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(self.api_error(error)),
        }
    }

    /// Deletes the record and every kept revision.
    pub async fn delete_all(&self, record: &InstallRecord) -> Result<(), RecordError> {
        for revision in (1..=record.revision)
            .rev()
            .chain(record.pending.iter().map(|p| p.revision))
        {
            self.delete_if_present(&revision_name(revision)).await?;
        }
        self.delete_if_present(RECORD_NAME).await
    }
}

/// Base64 helper for Secret data.
pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompression_is_bounded() {
        let bomb = gzip(&vec![0u8; 64 << 20]).expect("gzip");
        assert!(bomb.len() < 1 << 20, "a 64 MiB bomb fits a ConfigMap");
        let error = gunzip_bounded(&bomb, MAX_REVISION_BYTES).expect_err("refused");
        assert!(error.contains("more than 8 MiB"), "{error}");
        let small = gzip(b"kind: ConfigMap").expect("gzip");
        assert_eq!(
            gunzip_bounded(&small, MAX_REVISION_BYTES).expect("fits"),
            b"kind: ConfigMap"
        );
    }
}
