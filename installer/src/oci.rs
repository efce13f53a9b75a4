//! The parts of OCI / Docker manifests and indexes that the installer reads. Unknown fields are
//! ignored here on purpose: the bytes are always kept and copied as the registry served them.

use serde::Deserialize;

/// An OCI index or Docker manifest list.
#[derive(Debug, Deserialize)]
pub struct IndexDocument {
    /// The children.
    pub manifests: Vec<IndexEntry>,
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
    pub fn to_platform(&self) -> bundle_spec::Platform {
        bundle_spec::Platform {
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
