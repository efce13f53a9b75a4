//! What gets installed, whichever way it arrives: the chart, the lock and the image references,
//! from a bundle (air-gapped) or from the spec and lock (connected).

use std::collections::BTreeMap;
use std::path::PathBuf;

use coder_bundle_spec::format::{LOCK_PATH, MANIFEST_PATH};
use coder_bundle_spec::{ChartSource, ImageLock};

use crate::render::{ImageSource, RenderRequest, Values, ValuesLayer, image_map};
use coder_bundle::Inputs;
use coder_bundle::charts::{ChartFiles, embedded_chart, read_bundled_chart, read_chart_dir};
use coder_bundle::read::OpenedBundle;
use coder_mirror::SiteRegistry;
use serde::{Deserialize, Serialize};

/// Why a release could not be loaded from its bundle or its spec and lock.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The bundle is of another product.
    #[error(
        "{} is a bundle of {product:?} {version}, not of {PRODUCT}: coder-install applies {PRODUCT} bundles only",
        bundle.display()
    )]
    OtherProduct {
        /// The bundle file.
        bundle: PathBuf,
        /// The product it holds.
        product: String,
        /// Its version.
        version: String,
    },
    /// The bundle has no lock.
    #[error("{} has no {LOCK_PATH}; it is damaged", bundle.display())]
    NoLock {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// The bundle's lock is not the one its manifest lists.
    #[error(
        "{}: {LOCK_PATH} hashes to {found}, but the bundle manifest lists {listed}; the bundle is damaged \
         or was changed after it was verified",
        bundle.display()
    )]
    LockChanged {
        /// The bundle file.
        bundle: PathBuf,
        /// The lock's digest.
        found: String,
        /// The digest the manifest lists.
        listed: String,
    },
    /// The bundle's lock is not UTF-8 text.
    #[error("{}: {LOCK_PATH} is not UTF-8", bundle.display())]
    LockNotText {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// The bundle carries no chart of the product.
    #[error("{} carries no chart {CHART:?} ({MANIFEST_PATH})", bundle.display())]
    NoBundledChart {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// The spec lists no chart of the product.
    #[error("the spec lists no chart {CHART:?}")]
    NoChartInSpec,
    /// A connected install of a spec whose chart is an OCI reference.
    #[error(
        "chart {CHART} comes from {reference}; connected apply renders local charts only: \
         make a bundle (which pulls it) and apply that, or point the spec at the chart folder"
    )]
    OciChartConnected {
        /// The chart's reference.
        reference: String,
    },
    /// A `--values` file could not be read.
    #[error("reading values file {}", file.display())]
    ValuesFileUnreadable {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The product whose bundles this tool applies.
pub const PRODUCT: &str = "coder";
/// The chart that holds the platform.
pub const CHART: &str = "coder";

/// Where the release comes from.
pub enum ReleaseSource {
    /// An offline bundle, whose images are (or will be) in the site registry.
    Bundle {
        /// The bundle file.
        path: PathBuf,
        /// Where its images are pushed.
        site: SiteRegistry,
    },
    /// Connected: the spec and lock; images pulled from their original registries.
    Connected(Box<Inputs>),
}

/// How the platform's images reach the cluster; recorded as `connected` or `air-gapped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallMode {
    /// Pulled from their original registries by the lock's digests.
    #[default]
    #[serde(rename = "connected")]
    Connected,
    /// From an offline bundle, through the site registry.
    #[serde(rename = "air-gapped")]
    AirGapped,
}

impl InstallMode {
    /// `connected` or `air-gapped`, as records, reports and the output spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::AirGapped => "air-gapped",
        }
    }
}

impl std::fmt::Display for InstallMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release ready to render.
pub struct Release {
    /// The product version (the spec's).
    pub version: String,
    /// The chart's files.
    pub chart: ChartFiles,
    /// The lock.
    pub lock: ImageLock,
    /// The lock's text, byte for byte (recorded for rollback).
    pub lock_text: String,
    /// `sha256:` of the lock's text.
    pub lock_digest: String,
    /// Logical image name → pinned reference for containers.
    pub images: BTreeMap<String, String>,
    /// Connected or air-gapped.
    pub mode: InstallMode,
    /// The site registry, in air-gapped mode.
    pub site: Option<SiteRegistry>,
    /// How the bundle's signature was checked (`verified with key …`, or not checked with
    /// `--allow-unsigned`); empty in connected mode. Recorded in the install record.
    pub signature: String,
    /// The license that passed the license step, written to the manager's Secret; `None`:
    /// the Secret is left as it is.
    pub license: Option<Vec<u8>>,
    /// The backup `apply` took before this release replaced another version, recorded with
    /// the revision (what `rollback --restore-data` restores).
    pub backup: Option<crate::backup::BackupRef>,
}

impl Release {
    /// Loads the release from its source (a bundle opened here, unverified: `preflight`; what
    /// uses a bundle verifies it first and loads it from the `VerifiedBundle`).
    pub fn load(source: &ReleaseSource) -> crate::Result<Self> {
        match source {
            ReleaseSource::Bundle { path, site } => Self::from_opened(&OpenedBundle::open(path, None)?, site),
            ReleaseSource::Connected(inputs) => Self::from_inputs(inputs),
        }
    }

    /// The release of an opened bundle (refused when the file changed since it was opened).
    pub fn from_opened(bundle: &OpenedBundle, site: &SiteRegistry) -> crate::Result<Self> {
        bundle.check_unchanged()?;
        let (reader, manifest, path) = (bundle.reader(), bundle.manifest(), bundle.path());
        if manifest.name != PRODUCT {
            return Err(ReleaseError::OtherProduct {
                bundle: path.to_owned(),
                product: manifest.name.clone(),
                version: manifest.version.clone(),
            }
            .into());
        }
        let lock_bytes = reader
            .read_document(LOCK_PATH)?
            .ok_or_else(|| ReleaseError::NoLock {
                bundle: path.to_owned(),
            })?;
        let lock_digest = coder_registry::sha256_digest(&lock_bytes);
        if lock_digest != manifest.lock_digest {
            return Err(ReleaseError::LockChanged {
                bundle: path.to_owned(),
                found: lock_digest,
                listed: manifest.lock_digest.clone(),
            }
            .into());
        }
        let lock_text = String::from_utf8(lock_bytes).map_err(|_| ReleaseError::LockNotText {
            bundle: path.to_owned(),
        })?;
        let lock = ImageLock::from_yaml(&lock_text, &format!("{}:{LOCK_PATH}", path.display()))?;
        let artifact = manifest
            .charts
            .iter()
            .find(|chart| chart.name == CHART)
            .ok_or_else(|| ReleaseError::NoBundledChart {
                bundle: path.to_owned(),
            })?;
        let chart = read_bundled_chart(reader, artifact)?;
        let images = image_map(&lock, &ImageSource::Site(site.clone()))?;
        Ok(Self {
            version: manifest.version.clone(),
            chart,
            lock_digest: manifest.lock_digest.clone(),
            lock_text,
            lock,
            images,
            mode: InstallMode::AirGapped,
            site: Some(site.clone()),
            signature: String::new(),
            license: None,
            backup: None,
        })
    }

    fn from_inputs(inputs: &Inputs) -> crate::Result<Self> {
        inputs.lock.check_matches(&inputs.spec)?;
        let chart_spec = inputs
            .spec
            .charts
            .iter()
            .find(|chart| chart.name == CHART)
            .ok_or(ReleaseError::NoChartInSpec)?;
        let chart = match (chart_spec.source()?, &inputs.spec_dir) {
            (ChartSource::Path(path), Some(dir)) => read_chart_dir(&dir.join(path))?,
            (ChartSource::Path(_), None) => embedded_chart(CHART)?,
            (ChartSource::Oci(reference), _) => {
                return Err(ReleaseError::OciChartConnected {
                    reference: reference.to_string(),
                }
                .into());
            }
        };
        let images = image_map(&inputs.lock, &ImageSource::Upstream)?;
        Ok(Self {
            version: inputs.spec.version.clone(),
            chart,
            lock: inputs.lock.clone(),
            lock_digest: coder_registry::sha256_digest(inputs.lock_text.as_bytes()),
            lock_text: inputs.lock_text.clone(),
            images,
            mode: InstallMode::Connected,
            site: None,
            signature: String::new(),
            license: None,
            backup: None,
        })
    }

    /// Points images at what a push actually stored: where the registry refused a partial
    /// multi-platform index, containers pull the carried platform's manifest instead.
    pub fn use_pushed(&mut self, report: &coder_mirror::MirrorReport) -> crate::Result<()> {
        let Some(site) = &self.site else {
            return Ok(());
        };
        for artifact in &report.artifacts {
            if artifact.pull_digest != artifact.digest
                && let Some(image) = self.images.get_mut(&artifact.name)
            {
                let reference = coder_bundle_spec::ImageReference::parse(&artifact.reference)?;
                *image = site.pinned(&reference, &artifact.pull_digest);
            }
        }
        Ok(())
    }

    /// Resolves the values for this release's chart.
    pub fn values(
        &self,
        files: &[PathBuf],
        sets: &[String],
        extra_pull_secret: Option<&str>,
    ) -> crate::Result<Values> {
        let defaults = crate::render::chart_defaults(&self.chart)?;
        let mut layers = Vec::new();
        for file in files {
            let text =
                std::fs::read_to_string(file).map_err(|source| ReleaseError::ValuesFileUnreadable {
                    file: file.clone(),
                    source,
                })?;
            layers.push(ValuesLayer {
                source_name: file.display().to_string(),
                text,
            });
        }
        let mut values = crate::render::values::resolve(&defaults, &layers, sets)?;
        if let Some(secret) = extra_pull_secret
            && !values.image_pull_secrets.iter().any(|name| name == secret)
        {
            values.image_pull_secrets.push(secret.to_owned());
        }
        Ok(values)
    }

    /// The render request for `values` in `namespace`.
    pub fn request<'a>(
        &'a self,
        values: &'a Values,
        namespace: &'a str,
        pdb_api: crate::render::PdbApi,
    ) -> RenderRequest<'a> {
        RenderRequest {
            chart: &self.chart,
            values,
            namespace,
            images: &self.images,
            pdb_api,
            airgapped: self.site.is_some(),
        }
    }
}
