//! The image lock (`images.lock`): every image and OCI chart of the spec pinned by digest.
//!
//! `coder-install lock` writes it; `bundle` and connected-mode `apply` read only the lock, never a
//! moving tag. A lock that no longer matches its spec is refused with the advice to re-run `lock`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::referrer::Referrer;
use crate::{BundleSpec, ImageReference, SpecError};

/// The lock format version this crate reads and writes.
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// The comment written at the top of every lock file.
const HEADER: &str = "# images.lock: every image of the bundle spec pinned by digest.\n# Written by `coder-install lock`; do not edit by hand.\n";

/// A resolved spec: tags turned into digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageLock {
    /// The lock format version ([`LOCK_FORMAT_VERSION`]).
    pub version: u32,
    /// The spec this lock was made from.
    pub spec: LockedSpec,
    /// When the tags were resolved; bundles made from this lock carry this time, so that the
    /// same lock always gives the same bundle bytes.
    #[schemars(with = "String")]
    pub locked_at: jiff::Timestamp,
    /// One entry per spec image, in spec order.
    pub images: Vec<LockedArtifact>,
    /// One entry per OCI chart of the spec (local chart folders need no lock).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<LockedArtifact>,
}

/// Which spec a lock belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedSpec {
    /// The spec's `name`.
    pub name: String,
    /// The spec's `version`.
    pub version: String,
    /// The spec's `signatures`: whether the images' signatures, attestations and SBOMs were
    /// looked for (a lock made without them cannot serve a spec that asks for them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signatures: bool,
}

/// One image (or OCI chart) pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedArtifact {
    /// The logical name from the spec.
    pub name: String,
    /// The reference as written in the spec.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Digest of the top-level manifest or index.
    pub digest: String,
    /// Media type of the top-level manifest or index.
    pub media_type: String,
    /// Size in bytes of the top-level manifest or index.
    pub size: u64,
    /// For an index: its children, one per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<LockedPlatform>,
    /// The signatures, attestations and SBOMs found for the artifact's digest and its carried
    /// platforms' digests (only when the spec asks `signatures: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// One platform's manifest inside a locked index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedPlatform {
    /// `os/architecture[/variant]`.
    pub platform: String,
    /// The child manifest's digest.
    pub digest: String,
    /// The child manifest's media type.
    pub media_type: String,
    /// The child manifest's size in bytes.
    pub size: u64,
}

impl LockedArtifact {
    /// The parsed spec reference (an OCI chart's `oci://` scheme removed).
    pub fn image_reference(&self) -> Result<ImageReference, SpecError> {
        ImageReference::parse(self.reference.strip_prefix("oci://").unwrap_or(&self.reference))
    }
}

impl ImageLock {
    /// Parses a lock; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<Self, SpecError> {
        let lock: Self = serde_saphyr::from_str(text).map_err(|error| SpecError::Yaml {
            source_name: source.to_owned(),
            message: error.to_string(),
        })?;
        if lock.version != LOCK_FORMAT_VERSION {
            return Err(SpecError::Invalid {
                what: format!("lock {source}"),
                reason: format!(
                    "format version {} is not supported (this coder-install reads version {LOCK_FORMAT_VERSION}); re-run `coder-install lock`",
                    lock.version
                ),
            });
        }
        for artifact in lock.images.iter().chain(&lock.charts) {
            let invalid = |reason| SpecError::Invalid {
                what: format!("lock entry {}", artifact.name),
                reason,
            };
            crate::reference::validate_digest(&artifact.digest).map_err(invalid)?;
            for referrer in &artifact.referrers {
                referrer.check().map_err(invalid)?;
            }
        }
        Ok(lock)
    }

    /// Serialises the lock as YAML, with its header comment.
    pub fn to_yaml(&self) -> Result<String, SpecError> {
        let body = serde_saphyr::to_string(self).map_err(|error| SpecError::Yaml {
            source_name: "lock".to_owned(),
            message: error.to_string(),
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Checks that this lock pins exactly the spec's images and OCI charts, under the same names
    /// and references; every difference is listed.
    pub fn check_matches(&self, spec: &BundleSpec) -> Result<(), SpecError> {
        let mut differences = Vec::new();
        if self.spec.name != spec.name || self.spec.version != spec.version {
            differences.push(format!(
                "the lock is for {} {}, the spec is {} {}",
                self.spec.name, self.spec.version, spec.name, spec.version
            ));
        }
        if self.spec.signatures != spec.signatures {
            differences.push(if spec.signatures {
                "the spec asks for signatures (`signatures: true`) but the lock was made without them"
                    .to_owned()
            } else {
                "the lock records signatures but the spec no longer asks for them".to_owned()
            });
        }
        let wanted_images: Vec<(&str, &str)> = spec
            .images
            .iter()
            .map(|image| (image.name.as_str(), image.reference.as_str()))
            .collect();
        let wanted_charts: Vec<(&str, &str)> = spec
            .charts
            .iter()
            .filter_map(|chart| {
                chart
                    .reference
                    .as_deref()
                    .map(|reference| (chart.name.as_str(), reference))
            })
            .collect();
        compare("image", &wanted_images, &self.images, &mut differences);
        compare("chart", &wanted_charts, &self.charts, &mut differences);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(SpecError::LockOutdated { differences })
        }
    }

    /// The locked entry for image `name`.
    pub fn image(&self, name: &str) -> Option<&LockedArtifact> {
        self.images.iter().find(|image| image.name == name)
    }
}

fn compare(kind: &str, wanted: &[(&str, &str)], locked: &[LockedArtifact], differences: &mut Vec<String>) {
    for (name, reference) in wanted {
        match locked.iter().find(|entry| entry.name == *name) {
            None => differences.push(format!("{kind} {name} ({reference}) is not in the lock")),
            Some(entry) if entry.reference != *reference => differences.push(format!(
                "{kind} {name} is {reference} in the spec but {} in the lock",
                entry.reference
            )),
            Some(_) => {}
        }
    }
    for entry in locked {
        if !wanted.iter().any(|(name, _)| *name == entry.name) {
            differences.push(format!(
                "{kind} {} is in the lock but no longer in the spec",
                entry.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BundleSpec {
        BundleSpec::from_yaml(
            "name: coder\nversion: 1.0.0\nimages:\n  - name: postgres\n    ref: postgres:13\n  - name: app\n    ref: r.example.com/app:1\n",
            "spec",
        )
        .expect("spec")
    }

    fn artifact(name: &str, reference: &str) -> LockedArtifact {
        LockedArtifact {
            name: name.to_owned(),
            reference: reference.to_owned(),
            digest: format!("sha256:{}", "0".repeat(64)),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            size: 10,
            platforms: Vec::new(),
            referrers: Vec::new(),
        }
    }

    fn lock(images: Vec<LockedArtifact>) -> ImageLock {
        ImageLock {
            version: LOCK_FORMAT_VERSION,
            spec: LockedSpec {
                name: "coder".to_owned(),
                version: "1.0.0".to_owned(),
                signatures: false,
            },
            locked_at: jiff::Timestamp::UNIX_EPOCH,
            images,
            charts: Vec::new(),
        }
    }

    #[test]
    fn a_matching_lock_round_trips_through_yaml() {
        let lock = lock(vec![
            artifact("postgres", "postgres:13"),
            artifact("app", "r.example.com/app:1"),
        ]);
        lock.check_matches(&spec()).expect("matches");
        let text = lock.to_yaml().expect("yaml");
        assert!(text.starts_with("# images.lock"));
        assert_eq!(ImageLock::from_yaml(&text, "lock").expect("parse"), lock);
    }

    #[test]
    fn signatures_must_match_the_spec_and_referrer_tags_must_be_cosigns() {
        let mut signed = spec();
        signed.signatures = true;
        let mut lock = lock(vec![
            artifact("postgres", "postgres:13"),
            artifact("app", "r.example.com/app:1"),
        ]);
        let error = lock.check_matches(&signed).expect_err("outdated").to_string();
        assert!(error.contains("`signatures: true`"), "{error}");
        lock.spec.signatures = true;
        lock.check_matches(&signed).expect("matches");

        let subject = lock.images[0].digest.clone();
        lock.images[0].referrers.push(Referrer {
            subject: subject.clone(),
            kind: crate::referrer::ReferrerKind::Signature,
            tag: crate::referrer::tag_for(&subject, crate::referrer::ReferrerKind::Signature),
            artifact_type: None,
            digest: format!("sha256:{}", "1".repeat(64)),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            size: 300,
            blobs: Vec::new(),
        });
        let text = lock.to_yaml().expect("yaml");
        assert!(
            text.contains("signatures: true") && text.contains(".sig"),
            "{text}"
        );
        assert_eq!(ImageLock::from_yaml(&text, "lock").expect("parse"), lock);
        let moved = text.replace(".sig", ".att");
        let error = ImageLock::from_yaml(&moved, "lock")
            .expect_err("bad tag")
            .to_string();
        assert!(error.contains("not cosign's tag"), "{error}");
    }

    #[test]
    fn every_difference_from_the_spec_is_listed() {
        let lock = lock(vec![
            artifact("postgres", "postgres:14"),
            artifact("old", "old:1"),
        ]);
        let error = lock.check_matches(&spec()).expect_err("outdated").to_string();
        for expected in [
            "postgres is postgres:13 in the spec but postgres:14",
            "app (r.example.com/app:1) is not in the lock",
            "old is in the lock but no longer",
            "coder-install lock",
        ] {
            assert!(error.contains(expected), "expected {expected:?} in: {error}");
        }
    }
}
