//! The parts of OCI / Docker manifests and indexes that the installer reads. Unknown fields are
//! ignored here on purpose: the bytes are always kept and copied as the registry served them.

use serde::Deserialize;

/// The sum of blob sizes as documents claim them, saturating at `u64::MAX`: a manifest can claim
/// any size, and a sum that overflowed would panic (debug) or wrap to a wrong total (release).
pub fn total_size(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes.into_iter().fold(0, u64::saturating_add)
}

/// The `mediaType` a manifest or index names in its own JSON, if any.
pub fn media_type_of(document: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeOnly>(document).ok()?.media_type
}

/// An OCI 1.1 manifest's artifact type: its `artifactType`, else its config's media type (as
/// the referrers API reports it).
pub fn artifact_type_of(manifest: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ConfigType {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    #[derive(Deserialize)]
    struct ArtifactType {
        #[serde(rename = "artifactType", default)]
        artifact_type: Option<String>,
        #[serde(default)]
        config: Option<ConfigType>,
    }
    let document: ArtifactType = serde_json::from_slice(manifest).ok()?;
    document
        .artifact_type
        .or_else(|| document.config.and_then(|config| config.media_type))
}

/// An OCI index or Docker manifest list.
#[derive(Debug, Deserialize)]
pub struct IndexDocument {
    /// The children.
    pub manifests: Vec<IndexEntry>,
}

impl IndexDocument {
    /// The first of `wanted` that no child of this index provides (a variant is only compared
    /// when the wanted platform names one).
    pub fn first_missing<'a>(
        &self,
        wanted: &'a [coder_bundle_spec::Platform],
    ) -> Option<&'a coder_bundle_spec::Platform> {
        wanted.iter().find(|platform| {
            !self.manifests.iter().any(|entry| {
                entry
                    .platform
                    .as_ref()
                    .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
            })
        })
    }
}

/// One child of an index.
#[derive(Debug, Deserialize)]
pub struct IndexEntry {
    /// The child's media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The child's digest.
    pub digest: String,
    /// The child's size.
    pub size: u64,
    /// The child's platform (absent for attestations and other artifacts).
    #[serde(default)]
    pub platform: Option<IndexPlatform>,
    /// The artifact's type (OCI 1.1), as a referrers answer lists it.
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
}

/// The platform of an index entry.
#[derive(Debug, Deserialize)]
pub struct IndexPlatform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `v8`.
    #[serde(default)]
    pub variant: Option<String>,
}

impl IndexPlatform {
    /// As a spec platform.
    pub fn to_platform(&self) -> coder_bundle_spec::Platform {
        coder_bundle_spec::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// An image manifest (or an artifact manifest such as a Helm chart).
#[derive(Debug, Deserialize)]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A content descriptor.
#[derive(Debug, Deserialize)]
pub struct Descriptor {
    /// The blob's digest.
    pub digest: String,
    /// The blob's size.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_sizes_add_up_without_overflow() {
        assert_eq!(total_size([1, 2, 3]), 6);
        assert_eq!(total_size([1 << 63, 1 << 63, 5]), u64::MAX);
        assert_eq!(total_size([]), 0);
    }

    #[test]
    fn first_missing_names_a_platform_the_index_lacks() {
        let index: IndexDocument = serde_json::from_str(
            r#"{"manifests":[
                {"mediaType":"m","digest":"d1","size":1,"platform":{"os":"linux","architecture":"amd64"}},
                {"mediaType":"m","digest":"d2","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
                {"mediaType":"m","digest":"d3","size":1}
            ]}"#,
        )
        .expect("index");
        let platforms = |names: &[&str]| -> Vec<coder_bundle_spec::Platform> {
            names.iter().map(|name| name.parse().expect("platform")).collect()
        };
        assert_eq!(
            index.first_missing(&platforms(&["linux/amd64", "linux/arm64"])),
            None
        );
        assert_eq!(index.first_missing(&platforms(&["linux/arm64/v8"])), None);
        let wanted = platforms(&["linux/amd64", "linux/arm64/v7"]);
        assert_eq!(index.first_missing(&wanted), Some(&wanted[1]));
    }
}
