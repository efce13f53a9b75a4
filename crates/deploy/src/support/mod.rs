//! The support bundle: what a vendor needs to see of a broken (or working) install, in one
//! `.tar.gz`, with every credential taken out, so that a site can send it across the air gap.
//!
//! It reads only what the API server gives (it works while every pod crash-loops): the install
//! record, every ConfigMap (the record's revisions among them), the workloads' readiness,
//! events, pods, each container's log and its previous container's (the last `log_lines`
//! lines, at most 1 MiB each), node conditions, versions, and the license's claims (not its
//! signature). Secrets' data is never written; every value of every Secret of the namespace is
//! read only to be masked wherever it appears ([`redact`]). `manifest.json` lists every file with
//! its size and how many values were masked in it, and what was left out.

pub mod redact;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::record::RecordStore;
use redact::Redactor;

/// The most of one container's log that is kept.
const LOG_BYTES: i64 = 1 << 20;

/// What to collect.
#[derive(Debug, Clone)]
pub struct SupportOptions {
    /// The namespace of the install.
    pub namespace: String,
    /// Lines of each container's log (the last ones).
    pub log_lines: i64,
    /// The `.tar.gz` to write.
    pub output: PathBuf,
}

/// One file of the bundle, as listed in its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct SupportFile {
    /// Its path in the archive.
    pub path: String,
    /// Its size, after masking.
    pub bytes: usize,
    /// How many values were masked in it.
    pub redacted: usize,
}

/// What a support bundle holds.
#[derive(Debug, Clone, Serialize)]
pub struct SupportReport {
    /// The archive written.
    pub output: String,
    /// The namespace.
    pub namespace: String,
    /// Every file in it.
    pub files: Vec<SupportFile>,
    /// Values masked in all.
    pub redacted: usize,
    /// What could not be read (a log of a container that never ran, say), and why.
    pub skipped: Vec<String>,
}

/// Why a support bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// The API server refused or failed a read the bundle cannot do without.
    #[error("reading {what}: {source}")]
    Read {
        /// What.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The archive could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The files of the bundle, before masking.
struct Collected {
    files: BTreeMap<String, Vec<u8>>,
    skipped: Vec<String>,
}

impl Collected {
    fn json(&mut self, path: &str, value: &impl Serialize) {
        let bytes = serde_json::to_vec_pretty(value)
            .unwrap_or_else(|error| format!("not serialisable: {error}").into_bytes());
        self.files.insert(path.to_owned(), bytes);
    }
}

/// Collects the namespace's state, masks every credential, and writes the archive (through a
/// `.partial` file renamed into place).
pub async fn support_bundle(
    cluster: &Cluster,
    options: &SupportOptions,
) -> Result<SupportReport, SupportError> {
    let namespace = options.namespace.as_str();
    let read = |what: String| move |source| SupportError::Read { what, source };
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secrets = secrets.list(&ListParams::default()).await.map_err(read(format!(
        "the Secrets of {namespace} (their values are masked wherever they appear)"
    )))?;
    let redactor = secrets_redactor(&secrets.items);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default())
        .await
        .map_err(read(format!("the pods in {namespace}")))?;
    let mut collected = Collected {
        files: BTreeMap::new(),
        skipped: Vec::new(),
    };
    collected.json(
        "versions.json",
        &json!({
            "coder-install": env!("CARGO_PKG_VERSION"),
            "kubernetes": cluster.version,
            "namespace": namespace,
            "taken_at": jiff::Timestamp::now().to_string(),
        }),
    );
    collect_install(cluster, namespace, &mut collected).await;
    collect_logs(&pods, &listed.items, options.log_lines, &mut collected).await;
    collect_objects(cluster, namespace, listed.items, &mut collected).await;
    collect_license(&secrets.items, &mut collected);
    write_archive(&options.output, namespace, collected, &redactor)
}

/// A redactor that knows every value of every Secret of the namespace.
fn secrets_redactor(secrets: &[Secret]) -> Redactor {
    let mut redactor = Redactor::default();
    for secret in secrets {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let data = secret
            .data
            .iter()
            .flatten()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0)));
        let string_data = secret
            .string_data
            .iter()
            .flatten()
            .map(|(key, value)| (key, value.as_str().into()));
        for (key, value) in data.chain(string_data) {
            redactor.add_known(&value, &format!("secret {name}/{key}"));
        }
    }
    redactor
}

/// The install record and the workloads' readiness, when there is an install.
async fn collect_install(cluster: &Cluster, namespace: &str, collected: &mut Collected) {
    match RecordStore::new(cluster.client.clone(), namespace).load().await {
        Ok(Some(record)) => {
            match crate::wait::check(cluster, &record.objects).await {
                Ok(workloads) => collected.json("status.json", &workloads),
                Err(error) => collected.skipped.push(format!("status.json: {error}")),
            }
            collected.json("install/record.json", &record);
        }
        Ok(None) => collected.skipped.push(format!(
            "install/record.json: nothing is installed in {namespace}"
        )),
        Err(error) => collected.skipped.push(format!("install/record.json: {error}")),
    }
}

/// Pods (listed by the caller), ConfigMaps, events and nodes.
async fn collect_objects(cluster: &Cluster, namespace: &str, pods: Vec<Pod>, collected: &mut Collected) {
    let client = &cluster.client;
    for mut pod in pods {
        // Which client wrote which field: noise for a reader, and long.
        pod.metadata.managed_fields = None;
        let name = pod.metadata.name.clone().unwrap_or_default();
        collected.json(&format!("pods/{name}.json"), &pod);
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match config_maps.list(&ListParams::default()).await {
        Ok(listed) => {
            for mut config_map in listed {
                config_map.metadata.managed_fields = None;
                let name = config_map.metadata.name.clone().unwrap_or_default();
                collected.json(&format!("configmaps/{name}.json"), &config_map);
            }
        }
        Err(error) => collected.skipped.push(format!("configmaps: {error}")),
    }
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    match events.list(&ListParams::default()).await {
        Ok(listed) => collected.json("events.json", &listed.items),
        Err(error) => collected.skipped.push(format!("events.json: {error}")),
    }
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(listed) => {
            let summary: Vec<Value> = listed
                .into_iter()
                .map(|node| {
                    let status = node.status.unwrap_or_default();
                    json!({
                        "name": node.metadata.name,
                        "conditions": status.conditions,
                        "node_info": status.node_info,
                        "capacity": status.capacity,
                        "allocatable": status.allocatable,
                    })
                })
                .collect();
            collected.json("nodes.json", &summary);
        }
        Err(error) => collected
            .skipped
            .push(format!("nodes.json (cluster-wide, may be forbidden): {error}")),
    }
}

/// Each container's log and its previous container's, bounded, for `listed`, read through `pods`.
async fn collect_logs(pods: &Api<Pod>, listed: &[Pod], lines: i64, collected: &mut Collected) {
    for pod in listed {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let containers = pod
            .spec
            .iter()
            .flat_map(|spec| spec.init_containers.iter().flatten().chain(&spec.containers))
            .map(|container| container.name.clone());
        for container in containers {
            for previous in [false, true] {
                let params = LogParams {
                    container: Some(container.clone()),
                    previous,
                    tail_lines: Some(lines),
                    limit_bytes: Some(LOG_BYTES),
                    timestamps: true,
                    ..LogParams::default()
                };
                let file = format!(
                    "logs/{name}/{container}{}.log",
                    if previous { ".previous" } else { "" }
                );
                match pods.logs(&name, &params).await {
                    Ok(log) => {
                        collected.files.insert(file, log.into_bytes());
                    }
                    // No previous container: nothing to include.
                    Err(kube::Error::Api(status))
                        if previous && status.code == 400 && status.message.contains("not found") => {}
                    // A container that never started, say: said, not fatal.
                    Err(error) => collected.skipped.push(format!("{file}: {}", short(&error))),
                }
            }
        }
    }
}

/// The license's claims (its middle part), never the token or its signature, from the
/// namespace's Secrets (listed by the caller).
fn collect_license(secrets: &[Secret], collected: &mut Collected) {
    let Some(secret) = secrets
        .iter()
        .find(|secret| secret.metadata.name.as_deref() == Some(crate::render::secret_names::LICENSE))
    else {
        return collected
            .skipped
            .push("license.json: no license Secret".to_owned());
    };
    let token = secret
        .data
        .iter()
        .flatten()
        .map(|(_, value)| value)
        .next()
        .map(|value| String::from_utf8_lossy(&value.0).trim().to_owned())
        .unwrap_or_default();
    let claims = token.split('.').nth(1).and_then(|payload| {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    });
    match claims {
        Some(claims) => collected.json(
            "license.json",
            &json!({ "claims": claims, "signature": "not included" }),
        ),
        None => collected
            .skipped
            .push("license.json: the license Secret holds no readable license".to_owned()),
    }
}

/// The first line of an API error (log reads answer whole HTML-ish bodies sometimes).
fn short(error: &kube::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// Masks every file, lists them in `manifest.json`, and writes the archive.
fn write_archive(
    output: &Path,
    namespace: &str,
    collected: Collected,
    redactor: &Redactor,
) -> Result<SupportReport, SupportError> {
    let failed = |source| SupportError::Write {
        path: output.to_owned(),
        source,
    };
    let partial = coder_bundle::write::partial_path(output);
    let written = write_partial(&partial, namespace, collected, redactor).map_err(failed);
    let report = match written {
        Ok(report) => report,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    coder_registry::blob_io::rename_durably(&partial, output).map_err(failed)?;
    Ok(SupportReport {
        output: output.display().to_string(),
        ..report
    })
}

/// The archive, written to `partial`.
fn write_partial(
    partial: &Path,
    namespace: &str,
    collected: Collected,
    redactor: &Redactor,
) -> std::io::Result<SupportReport> {
    let file = coder_registry::blob_io::create_fresh(partial)?;
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::default(),
    ));
    let mut files = Vec::new();
    let mut total = 0;
    for (path, bytes) in collected.files {
        let (text, redacted) = redactor.redact(&String::from_utf8_lossy(&bytes));
        total += redacted;
        append(&mut archive, &path, text.as_bytes())?;
        files.push(SupportFile {
            path,
            bytes: text.len(),
            redacted,
        });
    }
    let report = SupportReport {
        output: partial.display().to_string(),
        namespace: namespace.to_owned(),
        files,
        redacted: total,
        skipped: collected.skipped,
    };
    let manifest = json!({
        "files": report.files,
        "redacted": report.redacted,
        "skipped": report.skipped,
        "not_included": [
            "the data of every Secret (each of its values is masked wherever it appears)",
            "the license's signature",
            "preflight (it needs the release's inputs: run `coder-install preflight` beside this)",
        ],
    });
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    append(&mut archive, "manifest.json", &manifest)?;
    let mut file = archive.into_inner()?.finish()?;
    file.flush()?;
    file.sync_all()?;
    Ok(report)
}

fn append<W: Write>(archive: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    archive.append_data(&mut header, format!("support/{path}"), bytes)
}
