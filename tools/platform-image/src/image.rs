//! The platform image: what its one layer holds and what its config says.
//!
//! Layer (every entry owned by root unless said, mtime = the source date epoch):
//!
//! | path | what |
//! | --- | --- |
//! | `/usr/local/bin/coder-service` | the binary, `0755` (the entrypoint) |
//! | `/etc/passwd`, `/etc/group` | `root` and `nonroot` (65532:65532, home `/home/nonroot`) |
//! | `/home/nonroot` | `0700`, owned by 65532:65532; the working directory |
//! | `/etc/ssl/certs/ca-certificates.crt` | the CA bundle (the build machine's by default) |
//! | `/etc/nsswitch.conf` | `hosts: files dns`, for name lookups without a libc package |
//! | `/tmp` | `1777` |
//! | shared libraries, loader | only for a dynamically linked binary: what `ldd` lists |
//!
//! Config: user `65532:65532`, entrypoint the binary, `PATH` and `SSL_CERT_FILE`, exposed ports
//! 8080 (manager, envproxy) and 3000 (dashboard), the OCI labels, `created` = the epoch.
//!
//! JSON is written from structs with a fixed field order and sorted maps, so the bytes (and the
//! digests) do not depend on serde_json's features.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Error;
use crate::elf::{self, Linkage};
use crate::layer::{Layer, LayerBuilder, Owner, sha256_digest};

/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "/usr/local/bin/coder-service";
/// Where the CA bundle lives in the image (and what `SSL_CERT_FILE` names).
pub const CA_CERTIFICATES_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The user and group the platform runs as.
pub const USER: &str = "65532:65532";
/// The non-root user's home and the image's working directory.
pub const HOME: &str = "/home/nonroot";
/// Ports the platform's components listen on: 8080 (manager, envproxy), 3000 (dashboard).
pub const EXPOSED_PORTS: [&str; 2] = ["3000/tcp", "8080/tcp"];
/// `PATH` inside the image.
pub const PATH_ENV: &str = "PATH=/usr/local/bin:/usr/bin:/bin";

/// OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const NONROOT: Owner = Owner {
    uid: 65532,
    gid: 65532,
};

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";
const NSSWITCH: &str = "hosts: files dns\n";

/// Everything an image is made from: the same inputs give the same digest.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    /// The `coder-service` executable's bytes.
    pub binary: Vec<u8>,
    /// Where it was read from (for messages and `ldd`).
    pub binary_path: PathBuf,
    /// The CA bundle (PEM).
    pub ca_certificates: Vec<u8>,
    /// `org.opencontainers.image.version`.
    pub version: String,
    /// `org.opencontainers.image.revision` (the git commit), if known.
    pub revision: Option<String>,
    /// `org.opencontainers.image.source` (the repository URL), if known.
    pub source: Option<String>,
    /// Every mtime and the config's `created`, Unix seconds.
    pub source_date_epoch: i64,
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type of the descriptor pointing at it.
    pub media_type: &'static str,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: sha256_digest(&data),
            data,
        }
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type,
            digest: self.digest.clone(),
            size: self.data.len() as u64,
        }
    }
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest; its digest is the image's.
    pub manifest: Blob,
    /// The image config.
    pub config: Blob,
    /// The one layer.
    pub layer: Blob,
    /// Size of the uncompressed layer tar.
    pub uncompressed_layer_size: u64,
    /// `amd64` or `arm64`.
    pub architecture: &'static str,
    /// How the binary is linked.
    pub linkage: Linkage,
    /// The shared libraries copied in (empty for a static binary).
    pub shared_libraries: Vec<PathBuf>,
    /// The layer's paths, in order.
    pub paths: Vec<String>,
}

impl Image {
    /// The image digest (the manifest's).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
struct Config {
    created: String,
    architecture: &'static str,
    os: &'static str,
    config: ContainerConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    user: &'static str,
    exposed_ports: BTreeMap<&'static str, Empty>,
    env: Vec<String>,
    entrypoint: Vec<&'static str>,
    working_dir: &'static str,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: String,
    created_by: String,
}

/// Builds the image from `inputs`. For a dynamically linked binary, the shared libraries and
/// the loader `ldd` reports on this machine are copied in at the same paths.
pub fn build(inputs: &ImageInputs) -> Result<Image, Error> {
    let executable = elf::inspect(&inputs.binary, &inputs.binary_path)?;
    let created = jiff::Timestamp::from_second(inputs.source_date_epoch)
        .map_err(|error| Error::Input(format!("source date epoch {}: {error}", inputs.source_date_epoch)))?
        .to_string();
    let mtime = u64::try_from(inputs.source_date_epoch)
        .map_err(|_| Error::Input("the source date epoch must not be before 1970".to_owned()))?;

    let mut layer = base_layer(inputs)?;
    let shared_libraries = add_shared_libraries(&mut layer, &executable.linkage, &inputs.binary_path)?;
    let paths = layer.paths();
    let Layer {
        compressed,
        diff_id,
        uncompressed_size,
        ..
    } = layer.build(mtime)?;
    let layer = Blob::new(LAYER_MEDIA_TYPE, compressed);

    let config = image_config(inputs, created, executable.architecture, diff_id);
    let config = Blob::new(CONFIG_MEDIA_TYPE, to_json(&config)?);
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: config.descriptor(),
        layers: vec![layer.descriptor()],
    };
    let manifest = Blob::new(MANIFEST_MEDIA_TYPE, to_json(&manifest)?);
    Ok(Image {
        manifest,
        config,
        layer,
        uncompressed_layer_size: uncompressed_size,
        architecture: executable.architecture,
        linkage: executable.linkage,
        shared_libraries,
        paths,
    })
}

/// The layer's files but the shared libraries: the binary, the user and group files,
/// `nsswitch.conf`, the CA certificates, and the home, root and `/tmp` folders.
fn base_layer(inputs: &ImageInputs) -> Result<LayerBuilder, Error> {
    let mut layer = LayerBuilder::new();
    layer
        .file(BINARY_PATH, inputs.binary.clone(), 0o755, Owner::ROOT)?
        .file("etc/passwd", PASSWD.as_bytes().to_vec(), 0o644, Owner::ROOT)?
        .file("etc/group", GROUP.as_bytes().to_vec(), 0o644, Owner::ROOT)?
        .file(
            "etc/nsswitch.conf",
            NSSWITCH.as_bytes().to_vec(),
            0o644,
            Owner::ROOT,
        )?
        .file(
            CA_CERTIFICATES_PATH,
            inputs.ca_certificates.clone(),
            0o644,
            Owner::ROOT,
        )?
        .directory("root", 0o700, Owner::ROOT)?
        .directory(HOME, 0o700, NONROOT)?
        .directory("tmp", 0o1777, Owner::ROOT)?;
    Ok(layer)
}

/// For a dynamically linked binary, copies the shared libraries `ldd` reports and the loader
/// into the layer at their paths; returns them (none for a static binary).
fn add_shared_libraries(
    layer: &mut LayerBuilder,
    linkage: &Linkage,
    binary_path: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let Linkage::Dynamic { interpreter } = linkage else {
        return Ok(Vec::new());
    };
    let mut shared_libraries = elf::shared_libraries(binary_path)?;
    if !shared_libraries
        .iter()
        .any(|library| library.as_os_str() == interpreter.as_str())
    {
        shared_libraries.push(PathBuf::from(interpreter));
    }
    for library in &shared_libraries {
        let contents = std::fs::read(library).map_err(|source| Error::Io {
            what: format!("reading shared library {}", library.display()),
            source,
        })?;
        layer.file(&library.to_string_lossy(), contents, 0o755, Owner::ROOT)?;
    }
    Ok(shared_libraries)
}

/// The image's config: created at `created` for `architecture`, the binary the entrypoint,
/// run as the non-root user in its home, the exposed ports, the OCI labels, one layer.
fn image_config(
    inputs: &ImageInputs,
    created: String,
    architecture: &'static str,
    diff_id: String,
) -> Config {
    Config {
        created: created.clone(),
        architecture,
        os: "linux",
        config: ContainerConfig {
            user: USER,
            exposed_ports: EXPOSED_PORTS.iter().map(|port| (*port, Empty {})).collect(),
            env: vec![
                PATH_ENV.to_owned(),
                format!("SSL_CERT_FILE={CA_CERTIFICATES_PATH}"),
            ],
            entrypoint: vec![BINARY_PATH],
            working_dir: HOME,
            labels: labels(inputs),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created,
            created_by: format!("platform-image build (coder-service {})", inputs.version),
        }],
    }
}

/// The OCI labels: title, version, description, and the revision and source when given.
fn labels(inputs: &ImageInputs) -> BTreeMap<&'static str, String> {
    let mut labels = BTreeMap::from([
        ("org.opencontainers.image.title", "coder-service".to_owned()),
        ("org.opencontainers.image.version", inputs.version.clone()),
        (
            "org.opencontainers.image.description",
            "Coder platform services: manager, envproxy, dashboard, migrate".to_owned(),
        ),
    ]);
    if let Some(revision) = &inputs.revision {
        labels.insert("org.opencontainers.image.revision", revision.clone());
    }
    if let Some(source) = &inputs.source {
        labels.insert("org.opencontainers.image.source", source.clone());
    }
    labels
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|error| Error::Input(format!("serialising JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Result<ImageInputs, Error> {
        // Any host executable will do for the structure; /bin/sh is dynamic, which also covers
        // the copied libraries.
        let binary_path = PathBuf::from("/bin/sh");
        let binary = std::fs::read(&binary_path).map_err(|source| Error::Io {
            what: "reading /bin/sh".to_owned(),
            source,
        })?;
        Ok(ImageInputs {
            binary,
            binary_path,
            ca_certificates: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            version: "1.2.3".to_owned(),
            revision: Some("abc".to_owned()),
            source: None,
            source_date_epoch: 1_700_000_000,
        })
    }

    #[test]
    fn the_config_says_who_runs_what() -> Result<(), Error> {
        let image = build(&inputs()?)?;
        let config: serde_json::Value =
            serde_json::from_slice(&image.config.data).map_err(|error| Error::Input(error.to_string()))?;
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0], BINARY_PATH);
        assert_eq!(config["config"]["WorkingDir"], HOME);
        assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
        assert!(config["config"]["ExposedPorts"]["3000/tcp"].is_object());
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            "1.2.3"
        );
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            "abc"
        );
        assert!(config["config"]["Labels"]["org.opencontainers.image.source"].is_null());
        assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1));
        assert!(matches!(image.linkage, Linkage::Dynamic { .. }));
        assert!(!image.shared_libraries.is_empty());
        assert!(image.paths.iter().any(|path| path.contains("libc.so")));
        Ok(())
    }

    #[test]
    fn only_a_change_of_input_changes_the_digest() -> Result<(), Error> {
        let inputs = inputs()?;
        let first = build(&inputs)?;
        assert_eq!(first.digest(), build(&inputs)?.digest());
        let later = ImageInputs {
            source_date_epoch: inputs.source_date_epoch + 1,
            ..inputs.clone()
        };
        assert_ne!(first.digest(), build(&later)?.digest());
        let other_version = ImageInputs {
            version: "1.2.4".to_owned(),
            ..inputs
        };
        assert_ne!(first.digest(), build(&other_version)?.digest());
        Ok(())
    }
}
