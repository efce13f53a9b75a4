//! The bundle file format, all of it in one place.
//!
//! A bundle is **one uncompressed tar that is itself an OCI image layout**, so `skopeo`, crane
//! and oras read it as `oci-archive:coder.bundle:<original reference>`. Entries, in this order:
//!
//! | path | what |
//! | --- | --- |
//! | `oci-layout` | `{"imageLayoutVersion":"1.0.0"}` |
//! | `index.json` | an OCI index: one descriptor per image and chart, annotated with [`REF_NAME_ANNOTATION`] = the original reference |
//! | `coder-bundle/manifest.json` | the [`BundleManifest`]: what the bundle holds, blob by blob |
//! | `coder-bundle/manifest.json.sig` | optional: the raw 64-byte Ed25519 signature of `manifest.json` |
//! | `coder-bundle/spec.yaml` | the bundle spec it was made from |
//! | `coder-bundle/images.lock` | the lock it was made from |
//! | `blobs/sha256/<hex>` | every manifest, index, config, layer and chart blob, each once, sorted by digest |
//!
//! Directory entries (`blobs/`, `blobs/sha256/`, `coder-bundle/`) precede their files. Every
//! entry has mtime 0, owner 0:0 and mode 0644 (0755 for directories), and the tar ends with the
//! two zero blocks; so the same lock and charts always give the same bytes.
//!
//! Manifests and indexes are stored byte for byte as the registry served them (their digests are
//! unchanged). For a multi-platform index the original index is stored whole, but only the
//! children of the spec's `platforms` are carried; the OCI image-layout spec allows referenced
//! blobs to be absent, and the bundle manifest records which platforms are present.
//!
//! Charts travel as OCI artifacts with Helm's media types ([`HELM_CONFIG_MEDIA_TYPE`],
//! [`HELM_CHART_LAYER_MEDIA_TYPE`]).
//!
//! A **delta bundle** (`bundle --delta-from OLD.bundle`) leaves out the config and layer blobs
//! that the target already has; `manifest.json` then lists them under `delta.omitted`, and its
//! artifacts still name every blob they use. Apply expects the omitted blobs in the site
//! registry already (from the earlier bundle), and `verify` does not count them as missing.
//!
//! **Referrers** (format version 2; spec `signatures: true`): an image's cosign signatures,
//! attestations and SBOMs travel as the image manifests they are, their blobs stored like any
//! other; each artifact lists them under `referrers` ([`Referrer`]), and `index.json`
//! names the tagged ones `<registry>/<repository>:sha256-<hex>.sig` (`.att`, `.sbom`), as cosign
//! tags them. A bundle without referrers is written as format version 1, byte for byte what
//! earlier versions wrote, and they read it.
//!
//! Integrity: `manifest.json` lists every blob's digest and size and the digests of
//! `index.json`, `spec.yaml` and `images.lock`; the signature covers `manifest.json`. Checking
//! the signature and re-hashing every entry therefore checks the whole bundle.
//!
//! A **split bundle** (`bundle --part-size SIZE`, for size-limited media) is the same tar cut
//! into parts at fixed byte offsets: `<name>.part000`, `<name>.part001`, ... ([`part_file_name`]),
//! each [`PartsIndex::part_size`] bytes but the last, which holds the rest. Joined in order
//! (`cat <name>.part* > <name>`) they are the whole bundle, byte for byte. Beside them,
//! `<name>.parts.json` ([`parts_index_file_name`]) is the [`PartsIndex`]: every part's file name,
//! size and SHA-256, so that a missing or damaged part is named. coder-install reads the parts in
//! place, as one file, given the index, any part, or `<name>`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::referrer::Referrer;

/// The newest bundle format version this crate reads and writes: 2 added `referrers`.
pub const BUNDLE_FORMAT_VERSION: u32 = 2;
/// The format version of a bundle that carries no referrers: such a bundle is a version 1
/// bundle, and coder-install versions that read only version 1 read it.
pub const BUNDLE_FORMAT_VERSION_WITHOUT_REFERRERS: u32 = 1;
/// Path of the OCI layout marker.
pub const OCI_LAYOUT_PATH: &str = "oci-layout";
/// Contents of the OCI layout marker.
pub const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
/// Path of the OCI index.
pub const INDEX_PATH: &str = "index.json";
/// The folder of coder-install's own files.
pub const BUNDLE_DIR: &str = "coder-bundle/";
/// Path of the bundle manifest.
pub const MANIFEST_PATH: &str = "coder-bundle/manifest.json";
/// Path of the detached signature of the bundle manifest.
pub const SIGNATURE_PATH: &str = "coder-bundle/manifest.json.sig";
/// Path of the spec the bundle was made from.
pub const SPEC_PATH: &str = "coder-bundle/spec.yaml";
/// Path of the lock the bundle was made from.
pub const LOCK_PATH: &str = "coder-bundle/images.lock";
/// The folder of content-addressed blobs.
pub const BLOBS_DIR: &str = "blobs/sha256/";

/// The annotation that names an image in `index.json` (its original reference).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Media type of an OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of a Docker manifest list.
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of a Docker schema 2 manifest.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media types of the obsolete Docker schema 1 manifests, which are refused.
pub const DOCKER_SCHEMA1_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Media type of a Helm chart's config blob.
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// Media type of a Helm chart's content layer.
pub const HELM_CHART_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// Every manifest media type a bundle can hold, in the order registries are asked for them.
pub const ACCEPTED_MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_LIST_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
];

/// Whether `media_type` is a multi-platform index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX_MEDIA_TYPE || media_type == DOCKER_MANIFEST_LIST_MEDIA_TYPE
}

/// Path of a blob inside the bundle: `blobs/sha256/<hex>`.
pub fn blob_path(digest: &str) -> String {
    format!("{BLOBS_DIR}{}", digest.trim_start_matches("sha256:"))
}

/// What a bundle holds: `coder-bundle/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// [`BUNDLE_FORMAT_VERSION`] at the time of writing.
    pub format_version: u32,
    /// The tool that wrote it, e.g. `coder-install 0.1.0`.
    pub tool: String,
    /// When the bundle's content was fixed: the lock's `locked_at`.
    #[schemars(with = "String")]
    pub created: jiff::Timestamp,
    /// The spec's product name.
    pub name: String,
    /// The spec's release version.
    pub version: String,
    /// The platforms carried for multi-platform images (empty: all).
    pub platforms: Vec<String>,
    /// Digest of `index.json`.
    pub index_digest: String,
    /// Digest of `coder-bundle/spec.yaml`.
    pub spec_digest: String,
    /// Digest of `coder-bundle/images.lock`.
    pub lock_digest: String,
    /// The images, in spec order.
    pub images: Vec<BundledArtifact>,
    /// The charts, in spec order.
    pub charts: Vec<BundledArtifact>,
    /// Every blob, once, sorted by digest.
    pub blobs: Vec<BlobRecord>,
    /// Sum of the sizes of `blobs`.
    pub total_size: u64,
    /// Present in a delta bundle: what it leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaBase>,
}

/// What a delta bundle leaves out, because the target already has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaBase {
    /// Where the list of present blobs came from (a bundle's name and version, or a file).
    pub base: String,
    /// The blobs left out, sorted by digest.
    pub omitted: Vec<BlobRecord>,
}

/// One image or chart inside a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundledArtifact {
    /// Logical name from the spec.
    pub name: String,
    /// The original reference (also the `index.json` annotation).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Digest of the top-level manifest or index.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The platforms carried: `os/arch` and the child manifest's digest (empty for a single manifest).
    pub platforms: Vec<BundledPlatform>,
    /// Every blob this artifact uses (manifests, configs, layers), sorted by digest.
    pub blobs: Vec<String>,
    /// Sum of the sizes of `blobs`.
    pub size: u64,
    /// Its signatures, attestations and SBOMs (format version 2), in lock order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// One carried platform of a multi-platform image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundledPlatform {
    /// `os/architecture[/variant]`.
    pub platform: String,
    /// The platform's manifest digest.
    pub digest: String,
}

/// One blob of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlobRecord {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl BundleManifest {
    /// Parses `manifest.json`, refusing a format newer than this tool understands.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::SpecError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = serde_json::from_slice(bytes).map_err(|error| crate::SpecError::Json {
            what: MANIFEST_PATH,
            message: error.to_string(),
        })?;
        if version.format_version > BUNDLE_FORMAT_VERSION {
            return Err(crate::SpecError::Invalid {
                what: "bundle".to_owned(),
                reason: format!(
                    "it uses bundle format {} but this coder-install reads up to {BUNDLE_FORMAT_VERSION}; use a newer coder-install",
                    version.format_version
                ),
            });
        }
        serde_json::from_slice(bytes).map_err(|error| crate::SpecError::Json {
            what: MANIFEST_PATH,
            message: error.to_string(),
        })
    }

    /// The blob record of `digest`, if the bundle holds it.
    pub fn blob(&self, digest: &str) -> Option<&BlobRecord> {
        self.blobs
            .binary_search_by(|record| record.digest.as_str().cmp(digest))
            .ok()
            .map(|index| &self.blobs[index])
    }
}

/// What the index of a split bundle says it is ([`PartsIndex::kind`]).
pub const PARTS_INDEX_KIND: &str = "coder-install split bundle";
/// The newest split-bundle index format this crate reads and writes.
pub const PARTS_INDEX_FORMAT: u32 = 1;

/// The index of a split bundle: `<name>.parts.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartsIndex {
    /// Always [`PARTS_INDEX_KIND`].
    pub kind: String,
    /// [`PARTS_INDEX_FORMAT`] at the time of writing.
    pub format: u32,
    /// The size of the whole bundle: the sum of the parts' sizes.
    pub bundle_size: u64,
    /// The size of every part but the last.
    pub part_size: u64,
    /// The parts, in order.
    pub parts: Vec<PartRecord>,
}

/// One part of a split bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// Its file name, in the index's folder.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of its bytes.
    pub sha256: String,
}

impl PartsIndex {
    /// Parses `<name>.parts.json` and checks that it describes a well-formed split: a known
    /// format, parts named as [`part_file_name`] names them (plain file names, in order), every
    /// part but the last of `part_size` bytes, and sizes that add up to `bundle_size`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::SpecError> {
        let invalid = |reason: String| crate::SpecError::Invalid {
            what: "split bundle index".to_owned(),
            reason,
        };
        let index: Self = serde_json::from_slice(bytes).map_err(|error| crate::SpecError::Json {
            what: "split bundle index",
            message: error.to_string(),
        })?;
        if index.kind != PARTS_INDEX_KIND {
            return Err(invalid(format!(
                "its kind is {:?}, not {PARTS_INDEX_KIND:?}",
                index.kind
            )));
        }
        if index.format > PARTS_INDEX_FORMAT {
            return Err(invalid(format!(
                "it uses split format {} but this coder-install reads up to {PARTS_INDEX_FORMAT}; use a newer coder-install",
                index.format
            )));
        }
        let Some(base) = index
            .parts
            .first()
            .and_then(|part| part.file.strip_suffix(".part000"))
        else {
            return Err(invalid("it lists no part000".to_owned()));
        };
        let last = index.parts.len() - 1;
        for (number, part) in index.parts.iter().enumerate() {
            if part.file != part_file_name(base, number) || part.file.contains('/') {
                return Err(invalid(format!(
                    "part {number} is named {:?}, not {:?}",
                    part.file,
                    part_file_name(base, number)
                )));
            }
            let size_ok = match number == last {
                true => part.size > 0 && part.size <= index.part_size,
                false => part.size == index.part_size,
            };
            if !size_ok {
                return Err(invalid(format!(
                    "{} has {} bytes; every part but the last has {} and the last at most that",
                    part.file, part.size, index.part_size
                )));
            }
            crate::validate_digest(&part.sha256)
                .map_err(|reason| invalid(format!("{}: {reason}", part.file)))?;
        }
        let sum = index
            .parts
            .iter()
            .try_fold(0u64, |sum, part| sum.checked_add(part.size));
        if sum != Some(index.bundle_size) {
            let sum = sum.map_or("more than 2^64".to_owned(), |sum| sum.to_string());
            return Err(invalid(format!(
                "its parts add up to {sum} bytes, but it says the bundle has {}",
                index.bundle_size
            )));
        }
        Ok(index)
    }
}

/// The file name of part `number` (from 0) of the split bundle `base`: `<base>.part000`, ...
/// (more digits past 999).
pub fn part_file_name(base: &str, number: usize) -> String {
    format!("{base}.part{number:03}")
}

/// The split bundle and part number that `name` is the file name of, as [`part_file_name`]
/// writes it (`<base>.part007`: `(base, 7)`); `None` for any other name.
pub fn parse_part_file_name(name: &str) -> Option<(&str, usize)> {
    let (base, digits) = name.rsplit_once(".part")?;
    let number = digits
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| digits.parse::<usize>().ok())
        .flatten()?;
    (!base.is_empty() && part_file_name(base, number) == name).then_some((base, number))
}

/// The file name of the index of the split bundle `base`: `<base>.parts.json`.
pub fn parts_index_file_name(base: &str) -> String {
    format!("{base}.parts.json")
}

#[cfg(test)]
mod split_tests {
    use super::*;

    fn index(sizes: &[u64], part_size: u64) -> PartsIndex {
        PartsIndex {
            kind: PARTS_INDEX_KIND.to_owned(),
            format: PARTS_INDEX_FORMAT,
            bundle_size: sizes.iter().sum(),
            part_size,
            parts: sizes
                .iter()
                .enumerate()
                .map(|(number, size)| PartRecord {
                    file: part_file_name("coder.bundle", number),
                    size: *size,
                    sha256: format!("sha256:{}", "a".repeat(64)),
                })
                .collect(),
        }
    }

    fn parse(index: &PartsIndex) -> Result<PartsIndex, crate::SpecError> {
        PartsIndex::from_json(&serde_json::to_vec(index).expect("json"))
    }

    #[test]
    fn a_well_formed_index_reads_back() {
        let written = index(&[10, 10, 3], 10);
        assert_eq!(parse(&written).expect("parse"), written);
        assert_eq!(part_file_name("x", 1234), "x.part1234");
        assert_eq!(parse_part_file_name("x.y.part1234"), Some(("x.y", 1234)));
        assert_eq!(parse_part_file_name("x.part007"), Some(("x", 7)));
        for other in [
            "x.part7",
            "x.part0007",
            "x.part+07",
            "x.part",
            ".part000",
            "x.parts.json",
        ] {
            assert_eq!(parse_part_file_name(other), None, "{other}");
        }
        assert_eq!(parts_index_file_name("x"), "x.parts.json");
    }

    #[test]
    fn a_malformed_index_is_refused_with_its_reason() {
        let mut uneven = index(&[10, 9, 3], 10);
        let mut renamed = index(&[10, 3], 10);
        renamed.parts[1].file = "../etc.part001".to_owned();
        let mut wrong_total = index(&[10, 3], 10);
        wrong_total.bundle_size = 14;
        let mut newer = index(&[10, 3], 10);
        newer.format = PARTS_INDEX_FORMAT + 1;
        let mut empty = index(&[], 10);
        let huge = u64::MAX / 2 + 1;
        let mut overflowing = index(&[huge, 1], huge);
        overflowing.parts[1].size = huge;
        for (bad, reason) in [
            (&mut uneven, "has 9 bytes"),
            (&mut renamed, "not \"coder.bundle.part001\""),
            (&mut wrong_total, "add up to 13 bytes"),
            (&mut newer, "use a newer coder-install"),
            (&mut empty, "no part000"),
            (&mut overflowing, "add up to more than 2^64 bytes"),
        ] {
            let error = parse(bad).expect_err(reason).to_string();
            assert!(error.contains(reason), "{error}");
        }
    }
}
