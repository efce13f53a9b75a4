//! The bundle spec (`coder.yaml`): which images and charts make up a release.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ImageReference, SpecError};

/// A release's contents: images by reference and charts by path or OCI reference.
///
/// ```yaml
/// name: coder
/// version: 1.0.0
/// platforms: [linux/amd64]
/// signatures: true   # optional: carry cosign signatures, attestations and SBOMs
/// images:
///   - name: postgres
///     ref: docker.io/library/postgres:13
/// charts:
///   - name: coder
///     path: charts/coder
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    /// The product's name; bundles of another product are refused by `apply`.
    pub name: String,
    /// The release version.
    pub version: String,
    /// Which children of multi-platform indexes to carry (`os/arch[/variant]`); empty: all.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub platforms: Vec<Platform>,
    /// The container images, each pinned by tag or digest.
    pub images: Vec<ImageSpec>,
    /// The charts: local folders, or OCI references pulled like images.
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
    /// Carry each image's signatures, attestations and SBOMs with it: cosign's
    /// `sha256-<digest>.sig` / `.att` / `.sbom` tags, and the OCI referrers API where the
    /// registry has it. `lock` records them, `bundle` carries them, `push` restores them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signatures: bool,
}

/// One image of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Logical name; charts refer to the image by it. A DNS-1123 label.
    pub name: String,
    /// The upstream reference, with a tag or digest (e.g. `docker.io/library/postgres:13`).
    #[serde(rename = "ref")]
    pub reference: String,
}

/// One chart of the spec: exactly one of `path` and `ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// The chart's name. A DNS-1123 label.
    pub name: String,
    /// A local chart folder, relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An OCI chart reference (`oci://registry/repo:tag`), locked and pulled like an image.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource<'a> {
    /// A local folder, relative to the spec.
    Path(&'a str),
    /// An OCI artifact.
    Oci(ImageReference),
}

impl ChartSpec {
    /// Where this chart comes from (the spec has been validated, so exactly one is set).
    pub fn source(&self) -> Result<ChartSource<'_>, SpecError> {
        match (&self.path, &self.reference) {
            (Some(path), None) => Ok(ChartSource::Path(path)),
            (None, Some(reference)) => {
                let without_scheme = reference
                    .strip_prefix("oci://")
                    .ok_or_else(|| SpecError::Invalid {
                        what: format!("chart {}", self.name),
                        reason: format!("ref {reference:?} must start with oci://"),
                    })?;
                Ok(ChartSource::Oci(ImageReference::parse(without_scheme)?))
            }
            _ => Err(SpecError::Invalid {
                what: format!("chart {}", self.name),
                reason: "set exactly one of `path` (a local folder) and `ref` (oci://…)".to_owned(),
            }),
        }
    }
}

/// An image platform, `os/architecture[/variant]` (e.g. `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `v8`; only compared when the spec names one.
    pub variant: Option<String>,
}

impl Platform {
    /// Whether an index entry's platform is this one (a variant is only compared when set here).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self.variant.as_deref().is_none_or(|v| Some(v) == variant)
    }

    /// Whether a bundle whose spec asks for `platforms` carries an index entry of this platform
    /// (`os`, `architecture`, `variant`): every platform when the spec names none.
    pub fn is_carried(platforms: &[Platform], os: &str, architecture: &str, variant: Option<&str>) -> bool {
        platforms.is_empty()
            || platforms
                .iter()
                .any(|platform| platform.matches(os, architecture, variant))
    }
}

impl FromStr for Platform {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid_part =
            |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, architecture] | [os, architecture, _] if parts.iter().all(valid_part) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*architecture).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(SpecError::Invalid {
                what: format!("platform {text:?}"),
                reason: "write it as os/architecture[/variant], e.g. linux/amd64".to_owned(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl BundleSpec {
    /// Parses and validates a spec; `source` (a path, or "built-in") names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<Self, SpecError> {
        let spec: Self = serde_saphyr::from_str(text).map_err(|error| SpecError::Yaml {
            source_name: source.to_owned(),
            message: error.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Serialises the spec as YAML.
    pub fn to_yaml(&self) -> Result<String, SpecError> {
        serde_saphyr::to_string(self).map_err(|error| SpecError::Yaml {
            source_name: "spec".to_owned(),
            message: error.to_string(),
        })
    }

    /// Checks names, references and charts; every rule names the offending entry.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.is_empty() || self.version.is_empty() {
            return Err(SpecError::Invalid {
                what: "spec".to_owned(),
                reason: "`name` and `version` must not be empty".to_owned(),
            });
        }
        let mut platforms = HashSet::new();
        for platform in &self.platforms {
            if !platforms.insert(platform) {
                return Err(SpecError::Duplicate {
                    kind: "platform",
                    name: platform.to_string(),
                });
            }
        }
        let mut names = HashSet::new();
        for image in &self.images {
            check_label("image", &image.name)?;
            if !names.insert(image.name.as_str()) {
                return Err(SpecError::Duplicate {
                    kind: "image",
                    name: image.name.clone(),
                });
            }
            ImageReference::parse(&image.reference)?;
        }
        let mut chart_names = HashSet::new();
        for chart in &self.charts {
            check_label("chart", &chart.name)?;
            if !chart_names.insert(chart.name.as_str()) {
                return Err(SpecError::Duplicate {
                    kind: "chart",
                    name: chart.name.clone(),
                });
            }
            chart.source()?;
        }
        Ok(())
    }

    /// The images with their parsed references, in spec order.
    pub fn image_references(&self) -> Result<Vec<(&str, ImageReference)>, SpecError> {
        self.images
            .iter()
            .map(|image| Ok((image.name.as_str(), ImageReference::parse(&image.reference)?)))
            .collect()
    }

    /// The JSON Schema of the spec format, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(BundleSpec)).unwrap_or_default()
    }
}

/// Names are DNS-1123 labels, so they can name Kubernetes objects and values keys.
fn check_label(kind: &'static str, name: &str) -> Result<(), SpecError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            what: format!("{kind} name {name:?}"),
            reason: "use lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters)"
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n  - name: postgres\n    ref: docker.io/library/postgres:13\ncharts:\n  - name: coder\n    path: charts/coder\n";

    #[test]
    fn the_example_parses_and_round_trips() {
        let spec = BundleSpec::from_yaml(EXAMPLE, "example").expect("valid");
        assert_eq!(
            spec.platforms,
            vec!["linux/amd64".parse::<Platform>().expect("platform")]
        );
        let again = BundleSpec::from_yaml(&spec.to_yaml().expect("yaml"), "again").expect("valid");
        assert_eq!(again, spec);
    }

    #[test]
    fn bad_specs_are_refused_with_what_is_wrong() {
        let cases = [
            (
                EXAMPLE.replace("version: 1.0.0", "version: 1.0.0\ncolour: blue"),
                "colour",
            ),
            (
                EXAMPLE.replace("postgres:13", "postgres"),
                "neither a tag nor a digest",
            ),
            (
                EXAMPLE.replace("name: coder\n    path", "name: Bad_Name\n    path"),
                "DNS-1123",
            ),
            (
                EXAMPLE.replace("images:\n", "images:\n  - name: postgres\n    ref: postgres:14\n"),
                "duplicate image",
            ),
            (EXAMPLE.replace("[linux/amd64]", "[linux]"), "os/architecture"),
            (
                EXAMPLE.replace("path: charts/coder", "path: a\n    ref: oci://r.example.com/c:1"),
                "exactly one",
            ),
            (EXAMPLE.replace("images:\n  -", "images:\n -\n  -"), "spec"),
        ];
        for (text, expected) in cases {
            let error = BundleSpec::from_yaml(&text, "spec").expect_err(&text).to_string();
            assert!(error.contains(expected), "expected {expected:?} in: {error}");
        }
    }

    #[test]
    fn yaml_errors_carry_a_line_and_column() {
        let error = BundleSpec::from_yaml("name: coder\nversion: [1\n", "coder.yaml")
            .expect_err("bad")
            .to_string();
        assert!(error.contains("coder.yaml"), "{error}");
        assert!(error.contains("line 2") || error.contains(":2:"), "{error}");
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    /// The committed schema file is generated from the types; regenerate it with
    /// `UPDATE_SCHEMA=1 cargo test -p coder-bundle-spec` when the types change.
    #[test]
    fn the_committed_json_schema_matches_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("coder.schema.json");
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&BundleSpec::json_schema()).expect("schema JSON")
        );
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).expect("write schema");
        }
        let committed = std::fs::read_to_string(&path).expect("read crates/bundle-spec/coder.schema.json");
        assert_eq!(
            committed, generated,
            "coder.schema.json is stale: run UPDATE_SCHEMA=1 cargo test -p coder-bundle-spec"
        );
    }
}
