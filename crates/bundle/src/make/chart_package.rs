//! Local chart folders packaged as OCI artifacts with Helm's media types, deterministically.

use std::collections::BTreeSet;
use std::io::Write;

use coder_bundle_spec::format::{
    BundledArtifact, HELM_CHART_LAYER_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};
use coder_registry::sha256_digest;
use flate2::{Compression, GzBuilder};

use crate::charts::{ChartError, ChartFiles};
use crate::make::cache::BlobCache;
use crate::make::plan::BundlePlan;

/// Packages a chart as `helm package` lays it out (`<name>/…` in a gzip tar), wraps it in an OCI
/// manifest with Helm's media types, stores the three blobs in the cache and adds them to `plan`.
pub fn package_chart(
    name: &str,
    files: &ChartFiles,
    cache: &BlobCache,
    plan: &mut BundlePlan,
) -> crate::Result<BundledArtifact> {
    let chart_yaml = files
        .iter()
        .find(|(path, _)| path == "Chart.yaml")
        .ok_or_else(|| ChartError::NoChartYaml {
            chart: name.to_owned(),
        })?;
    let metadata: serde_json::Value =
        serde_saphyr_value(&chart_yaml.1).map_err(|error| ChartError::BadChartYaml {
            chart: name.to_owned(),
            reason: error.to_string(),
        })?;
    let version = metadata
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    if version.is_empty() {
        return Err(ChartError::NoVersion {
            chart: name.to_owned(),
        }
        .into());
    }

    let mut tar = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(contents.len() as u64);
        tar.append_data(&mut header, format!("{name}/{path}"), contents.as_slice())?;
    }
    let mut gzip = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gzip.write_all(&tar.into_inner()?)?;
    let content = gzip.finish()?;

    let config = serde_json::to_vec(&metadata)?;
    let (content_digest, config_digest) = (sha256_digest(&content), sha256_digest(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": HELM_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": HELM_CHART_LAYER_MEDIA_TYPE, "digest": content_digest, "size": content.len() }],
    }))?;
    let manifest_digest = sha256_digest(&manifest);

    let mut blobs = BTreeSet::new();
    for (digest, bytes) in [
        (&manifest_digest, &manifest),
        (&config_digest, &config),
        (&content_digest, &content),
    ] {
        cache.insert(digest, bytes)?;
        plan.add_blob(digest, bytes.len() as u64, None)?;
        blobs.insert(digest.clone());
    }
    Ok(BundledArtifact {
        name: name.to_owned(),
        reference: format!("charts/{name}:{version}"),
        digest: manifest_digest,
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        platforms: Vec::new(),
        size: (manifest.len() + config.len() + content.len()) as u64,
        blobs: blobs.into_iter().collect(),
        referrers: Vec::new(),
    })
}

/// Chart.yaml as JSON (Helm's config blob is the chart metadata in JSON).
fn serde_saphyr_value(bytes: &[u8]) -> crate::Result<serde_json::Value> {
    let text = std::str::from_utf8(bytes)?;
    Ok(serde_saphyr::from_str(text)?)
}
