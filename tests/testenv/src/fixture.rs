//! Small but real OCI images for tests: gzip tar layers, image configs, manifests and multi-arch
//! indexes, in OCI or Docker schema2 media types, pushed to a test registry.
//!
//! Everything is deterministic: the same builder calls give the same bytes and so the same
//! digests (fixed mtimes and owners in the tars, no timestamps in configs, gzip without a time).
//!
//! ```no_run
//! # async fn example(registry: &coder_testenv::Registry) -> coder_testenv::Result<()> {
//! use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
//! let image = ImageBuilder::new()
//!     .layer(LayerBuilder::new().file("etc/motd", b"hello\n", 0o644))
//!     .build()?;
//! let digest = registry.push_image("team/app:1.0", &image).await?;
//! # Ok(()) }
//! ```

use std::io::Write;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Error, Registry, Result, binaries, io_context};

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTypes {
    /// OCI image spec media types.
    Oci,
    /// Docker image manifest v2 schema 2 media types (what `docker push` writes).
    DockerSchema2,
}

impl MediaTypes {
    /// The media type of an image manifest.
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.manifest.v1+json",
            MediaTypes::DockerSchema2 => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The media type of a multi-platform index (Docker: manifest list).
    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.index.v1+json",
            MediaTypes::DockerSchema2 => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }

    /// The media type of an image config.
    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.config.v1+json",
            MediaTypes::DockerSchema2 => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// The media type of a gzip-compressed tar layer.
    pub fn gzip_layer(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
            MediaTypes::DockerSchema2 => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// A content-addressed blob: its bytes, digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The media type its descriptor carries.
    pub media_type: String,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Blob {
    /// Wraps `data`, computing its digest.
    pub fn new(media_type: &str, data: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&data),
            data,
        }
    }

    /// The OCI descriptor (`mediaType`, `digest`, `size`) that points at this blob.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The owner of an entry: `(uid, gid)`, root unless set.
type Owner = (u64, u64);

/// One entry of a layer's tar.
#[derive(Debug, Clone)]
enum Entry {
    Directory {
        path: String,
        mode: u32,
        owner: Owner,
    },
    File {
        path: String,
        contents: Vec<u8>,
        mode: u32,
        owner: Owner,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Directory { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// A Linux capability a file can carry ([`LayerBuilder::file_capabilities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// `CAP_NET_BIND_SERVICE`: bind ports below 1024.
    NetBindService,
}

impl Capability {
    /// The capability's number (`linux/capability.h`).
    fn number(self) -> u32 {
        match self {
            Capability::NetBindService => 10,
        }
    }
}

/// The PAX record key under which containerd (like GNU tar and Docker) restores an extended
/// attribute on unpack: `SCHILY.xattr.<name>`.
const CAPABILITY_XATTR_RECORD: &str = "SCHILY.xattr.security.capability";

/// The `security.capability` value granting `capabilities` permitted and effective (`+ep`):
/// a `vfs_cap_data` of revision 2 (`VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE`, then the
/// permitted and inheritable words of the low and high 32 capabilities, little-endian).
fn capability_xattr(capabilities: &[Capability]) -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
    let mut permitted = [0u32; 2];
    for capability in capabilities {
        let number = capability.number();
        permitted[(number / 32) as usize] |= 1 << (number % 32);
    }
    let words = [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        permitted[0],
        0,
        permitted[1],
        0,
    ];
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

/// One PAX extended-header record: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut length = rest + 1;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Builds one layer: a tar of files and directories, gzip-compressed.
///
/// Parent directories are added automatically, before their children, as image builders do.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
    /// File capabilities by path, written as a PAX header before the file's entry.
    capabilities: Vec<(String, Vec<Capability>)>,
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file at `path` (relative, e.g. `etc/motd`) with the given permission bits.
    pub fn file(self, path: &str, contents: &[u8], mode: u32) -> Self {
        self.file_owned_by(path, contents, mode, 0, 0)
    }

    /// Adds a regular file owned by `uid:gid`.
    pub fn file_owned_by(mut self, path: &str, contents: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        self.add_parents(path);
        self.entries.push(Entry::File {
            path: path.to_owned(),
            contents: contents.to_vec(),
            mode,
            owner: (uid, gid),
        });
        self
    }

    /// Adds a directory at `path` (e.g. `tmp` with mode `0o1777`), owned by root.
    ///
    /// A directory that is already in the layer (also one added as a parent) takes the new mode
    /// in place, so it still comes before its children.
    pub fn directory(self, path: &str, mode: u32) -> Self {
        self.directory_owned_by(path, mode, 0, 0)
    }

    /// Adds a directory owned by `uid:gid`, like [`LayerBuilder::directory`].
    pub fn directory_owned_by(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.add_parents(&path);
        let existing = self.entries.iter_mut().find_map(|entry| match entry {
            Entry::Directory {
                path: existing,
                mode,
                owner,
            } if *existing == path => Some((mode, owner)),
            _ => None,
        });
        match existing {
            Some((existing_mode, existing_owner)) => {
                *existing_mode = mode;
                *existing_owner = (uid, gid);
            }
            None => self.entries.push(Entry::Directory {
                path,
                mode,
                owner: (uid, gid),
            }),
        }
        self
    }

    /// Adds a symbolic link at `path` pointing at `target` (absolute or relative, as written).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.add_parents(path);
        self.entries.push(Entry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    /// Gives the file at `path` (added before or after) the file capabilities `capabilities`,
    /// permitted and effective (`setcap cap_net_bind_service=+ep`): a PAX record
    /// `SCHILY.xattr.security.capability`, which containerd restores as the file's
    /// `security.capability` attribute on unpack.
    ///
    /// An unprivileged process keeps such a capability across `execve` only if its bounding set
    /// has it, and under `no_new_privs` (`allowPrivilegeEscalation: false`) only if it already
    /// held it: that is how ingress-nginx binds ports 80 and 443 as uid 101, every program of
    /// its exec chain carrying the capability.
    pub fn file_capabilities(mut self, path: &str, capabilities: &[Capability]) -> Self {
        self.capabilities.retain(|(existing, _)| existing != path);
        self.capabilities.push((path.to_owned(), capabilities.to_vec()));
        self
    }

    /// Whether the layer already has an entry at `path` (a directory's path ends with `/`).
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|entry| entry.path() == path)
    }

    /// Adds `size` bytes of deterministic, incompressible data (a function of `seed`): layers of
    /// realistic size for benchmarks, distinct per seed so that they do not share blobs by accident.
    pub fn random_file(self, path: &str, size: usize, seed: u64) -> Self {
        self.file(path, &pseudo_random_bytes(size, seed), 0o644)
    }

    /// Adds a copy of the host file `host_path` at `path`, keeping it executable.
    pub fn host_executable(self, path: &str, host_path: &Path) -> Result<Self> {
        let contents =
            std::fs::read(host_path).map_err(io_context(format!("reading {}", host_path.display())))?;
        Ok(self.file(path, &contents, 0o755))
    }

    /// Adds a copy of the host file `host_path` (symbolic links followed) at `path`, keeping its
    /// permission bits; the owner is root.
    pub fn host_file(self, path: &str, host_path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let context = || format!("reading {}", host_path.display());
        let mode = std::fs::metadata(host_path)
            .map_err(io_context(context()))?
            .permissions()
            .mode();
        let contents = std::fs::read(host_path).map_err(io_context(context()))?;
        Ok(self.file(path, &contents, mode & 0o7777))
    }

    fn add_parents(&mut self, path: &str) {
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            parent.push_str(component);
            parent.push('/');
            let exists = self
                .entries
                .iter()
                .any(|entry| matches!(entry, Entry::Directory { path, .. } if *path == parent));
            if !exists {
                self.entries.push(Entry::Directory {
                    path: parent.clone(),
                    mode: 0o755,
                    owner: (0, 0),
                });
            }
        }
    }

    /// The uncompressed tar (its sha256 is the layer's `diff_id`) and the gzip of it.
    fn build(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            let (path, contents): (&str, &[u8]) = match entry {
                Entry::Directory { path, mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(owner.0);
                    header.set_gid(owner.1);
                    (path, &[])
                }
                Entry::File {
                    path,
                    contents,
                    mode,
                    owner,
                } => {
                    if let Some((_, capabilities)) =
                        self.capabilities.iter().find(|(capable, _)| capable == path)
                    {
                        let records = pax_record(CAPABILITY_XATTR_RECORD, &capability_xattr(capabilities));
                        let mut pax = tar::Header::new_ustar();
                        pax.set_entry_type(tar::EntryType::XHeader);
                        pax.set_mtime(0);
                        pax.set_mode(0o644);
                        pax.set_size(records.len() as u64);
                        tar.append_data(&mut pax, "PaxHeaders/capability", records.as_slice())
                            .map_err(io_context(format!(
                                "adding the capabilities of {path} to a layer"
                            )))?;
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(owner.0);
                    header.set_gid(owner.1);
                    (path, contents)
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                        .map_err(io_context(format!("adding the link {path} to a layer")))?;
                    continue;
                }
            };
            header.set_size(contents.len() as u64);
            tar.append_data(&mut header, path, contents)
                .map_err(io_context(format!("adding {path} to a layer")))?;
        }
        let tar = tar.into_inner().map_err(io_context("finishing a layer tar"))?;
        let mut gzip = GzBuilder::new().mtime(0).write(Vec::new(), Compression::fast());
        gzip.write_all(&tar).map_err(io_context("compressing a layer"))?;
        let gzip = gzip.finish().map_err(io_context("compressing a layer"))?;
        Ok((tar, gzip))
    }
}

/// An image's platform, as index entries and configs record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
}

impl Platform {
    /// `linux/<architecture>`.
    pub fn linux(architecture: &str) -> Self {
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
        }
    }
}

/// Builds a single-platform image.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    media_types: MediaTypes,
    platform: Platform,
    layers: Vec<LayerBuilder>,
    entrypoint: Vec<String>,
    labels: Vec<(String, String)>,
    /// Optional config fields (`Env`, `User`, `Cmd`, ...), only written when set.
    runtime: Runtime,
}

/// The optional parts of an image's run-time config: each is left out of the config when unset,
/// so images that do not use them keep their digests.
#[derive(Debug, Clone, Default)]
struct Runtime {
    env: Vec<(String, String)>,
    user: Option<String>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    exposed_ports: Vec<String>,
    stop_signal: Option<String>,
}

/// The `Env` an image has unless [`ImageBuilder::env`] changes it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// A `linux/amd64` OCI image with no layers yet.
    pub fn new() -> Self {
        Self {
            media_types: MediaTypes::Oci,
            platform: Platform::linux("amd64"),
            layers: Vec::new(),
            entrypoint: Vec::new(),
            labels: Vec::new(),
            runtime: Runtime::default(),
        }
    }

    /// An image whose one layer holds a real static executable, `/bin/busybox` (from Debian's
    /// `busybox-static`), with entrypoint `/bin/busybox`: a runnable image for tests that check
    /// images survive the trip intact.
    pub fn busybox() -> Result<Self> {
        let layer = LayerBuilder::new().host_executable("bin/busybox", &binaries::busybox_static()?)?;
        Ok(Self::new().layer(layer).entrypoint(["/bin/busybox"]))
    }

    /// Uses the given media-type family (OCI by default).
    pub fn media_types(mut self, media_types: MediaTypes) -> Self {
        self.media_types = media_types;
        self
    }

    /// Sets the platform (`linux/amd64` by default).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Appends a layer.
    pub fn layer(mut self, layer: LayerBuilder) -> Self {
        self.layers.push(layer);
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<const N: usize>(mut self, entrypoint: [&str; N]) -> Self {
        self.entrypoint = entrypoint.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    /// Adds a config label (also a cheap way to make otherwise equal images distinct).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets an environment variable of the config's `Env` (replacing an earlier value, also the
    /// default `PATH`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.runtime.env.retain(|(existing, _)| existing != key);
        self.runtime.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the user the image runs as (`uid`, `uid:gid` or a name).
    pub fn user(mut self, user: &str) -> Self {
        self.runtime.user = Some(user.to_owned());
        self
    }

    /// Sets the default arguments (`Cmd`) that follow the entrypoint.
    pub fn cmd<const N: usize>(mut self, cmd: [&str; N]) -> Self {
        self.runtime.cmd = Some(cmd.iter().map(|arg| (*arg).to_owned()).collect());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.runtime.working_dir = Some(dir.to_owned());
        self
    }

    /// Declares a TCP port the image listens on (`ExposedPorts`).
    pub fn expose_tcp(mut self, port: u16) -> Self {
        let port = format!("{port}/tcp");
        if !self.runtime.exposed_ports.contains(&port) {
            self.runtime.exposed_ports.push(port);
        }
        self
    }

    /// Sets the signal that stops a container of the image (e.g. `SIGINT`).
    pub fn stop_signal(mut self, signal: &str) -> Self {
        self.runtime.stop_signal = Some(signal.to_owned());
        self
    }

    /// Builds the layers, config and manifest.
    pub fn build(&self) -> Result<Image> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &self.layers {
            let (tar, gzip) = layer.build()?;
            diff_ids.push(sha256_digest(&tar));
            layers.push(Blob::new(self.media_types.gzip_layer(), gzip));
        }
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
            .collect();
        let mut runtime_config = json!({
            "Entrypoint": self.entrypoint,
            "Env": [format!("PATH={DEFAULT_PATH}")],
            "Labels": labels,
        });
        self.runtime.write(&mut runtime_config);
        let config = json!({
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": runtime_config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": [{ "created_by": "coder-testenv fixture" }],
        });
        let config = Blob::new(self.media_types.config(), to_json(&config)?);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": self.media_types.manifest(),
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(self.media_types.manifest(), to_json(&manifest)?);
        Ok(Image {
            manifest,
            config,
            layers,
            platform: self.platform.clone(),
        })
    }
}

impl Runtime {
    /// Writes the fields that are set into the config's `config` object.
    fn write(&self, config: &mut Value) {
        if !self.env.is_empty() {
            let mut env = vec![format!("PATH={DEFAULT_PATH}")];
            if self.env.iter().any(|(key, _)| key == "PATH") {
                env.clear();
            }
            env.extend(self.env.iter().map(|(key, value)| format!("{key}={value}")));
            config["Env"] = json!(env);
        }
        if let Some(user) = &self.user {
            config["User"] = json!(user);
        }
        if let Some(cmd) = &self.cmd {
            config["Cmd"] = json!(cmd);
        }
        if let Some(dir) = &self.working_dir {
            config["WorkingDir"] = json!(dir);
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|port| (port.clone(), json!({})))
                .collect();
            config["ExposedPorts"] = Value::Object(ports);
        }
        if let Some(signal) = &self.stop_signal {
            config["StopSignal"] = json!(signal);
        }
    }
}

/// A built single-platform image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest; its digest is the image's digest.
    pub manifest: Blob,
    /// The image config.
    pub config: Blob,
    /// The compressed layers, in order.
    pub layers: Vec<Blob>,
    /// The platform the config declares.
    pub platform: Platform,
}

impl Image {
    /// The manifest digest.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
}

/// A built multi-platform index and its child images.
#[derive(Debug, Clone)]
pub struct Index {
    /// The index document; its digest is the reference's digest.
    pub index: Blob,
    /// The child images, in index order.
    pub images: Vec<Image>,
}

impl Index {
    /// Builds an index over `images` (each with its own platform), e.g. `linux/amd64` and `linux/arm64`.
    pub fn new(media_types: MediaTypes, images: Vec<Image>) -> Result<Self> {
        let manifests: Vec<Value> = images
            .iter()
            .map(|image| {
                let mut descriptor = image.manifest.descriptor();
                descriptor["platform"] =
                    json!({ "architecture": image.platform.architecture, "os": image.platform.os });
                descriptor
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": media_types.index(), "manifests": manifests });
        Ok(Self {
            index: Blob::new(media_types.index(), to_json(&index)?),
            images,
        })
    }

    /// The index digest.
    pub fn digest(&self) -> &str {
        &self.index.digest
    }
}

fn to_json(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|error| Error::InvalidArgument(format!("serialising fixture JSON: {error}")))
}

/// Pushes an image's blobs, then its manifest under `reference`; returns the manifest digest.
pub async fn push_image(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    image: &Image,
) -> Result<String> {
    authenticate(client, auth, reference).await?;
    for blob in image.layers.iter().chain([&image.config]) {
        push_blob(client, reference, blob).await?;
    }
    push_manifest(client, reference, &image.manifest).await?;
    Ok(image.digest().to_owned())
}

/// Pushes every child image by digest, then the index under `reference`; returns the index digest.
pub async fn push_index(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    index: &Index,
) -> Result<String> {
    authenticate(client, auth, reference).await?;
    for image in &index.images {
        let by_digest = reference.clone_with_digest(image.digest().to_owned());
        for blob in image.layers.iter().chain([&image.config]) {
            push_blob(client, &by_digest, blob).await?;
        }
        push_manifest(client, &by_digest, &image.manifest).await?;
    }
    push_manifest(client, reference, &index.index).await?;
    Ok(index.digest().to_owned())
}

async fn authenticate(client: &Client, auth: &RegistryAuth, reference: &Reference) -> Result<()> {
    client
        .auth(reference, auth, RegistryOperation::Push)
        .await
        .map(drop)
        .map_err(|source| Error::Registry {
            reference: reference.whole(),
            source,
        })
}

async fn push_blob(client: &Client, reference: &Reference, blob: &Blob) -> Result<()> {
    client
        .push_blob(reference, blob.data.clone(), &blob.digest)
        .await
        .map(drop)
        .map_err(|source| Error::Registry {
            reference: format!("{} (blob {})", reference.whole(), blob.digest),
            source,
        })
}

async fn push_manifest(client: &Client, reference: &Reference, manifest: &Blob) -> Result<()> {
    let content_type = reqwest::header::HeaderValue::from_str(&manifest.media_type)
        .map_err(|error| Error::InvalidArgument(format!("media type {:?}: {error}", manifest.media_type)))?;
    client
        .push_manifest_raw(reference, manifest.data.clone(), content_type)
        .await
        .map(drop)
        .map_err(|source| Error::Registry {
            reference: reference.whole(),
            source,
        })
}

impl Registry {
    /// Pushes `image` to `repository_and_tag` (e.g. `team/app:1.0`) on this registry.
    pub async fn push_image(&self, repository_and_tag: &str, image: &Image) -> Result<String> {
        push_image(
            &self.oci_client(),
            &self.auth(),
            &self.reference(repository_and_tag),
            image,
        )
        .await
    }

    /// Pushes `index` and its children to `repository_and_tag` on this registry.
    pub async fn push_index(&self, repository_and_tag: &str, index: &Index) -> Result<String> {
        push_index(
            &self.oci_client(),
            &self.auth(),
            &self.reference(repository_and_tag),
            index,
        )
        .await
    }
}

/// `size` bytes of xorshift64* output from `seed`: fast, deterministic and incompressible.
fn pseudo_random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_builder_gives_the_same_digests() {
        let builder = ImageBuilder::new()
            .layer(
                LayerBuilder::new()
                    .file("a/b/c.txt", b"c", 0o600)
                    .random_file("data", 4096, 7),
            )
            .entrypoint(["/a/b/c.txt"]);
        let (first, second) = (builder.build().expect("build"), builder.build().expect("build"));
        assert_eq!(first.digest(), second.digest());
        assert_eq!(first.layers[0].data, second.layers[0].data);
        let other = builder.clone().label("variant", "2").build().expect("build");
        assert_ne!(first.digest(), other.digest());
    }

    #[test]
    fn parent_directories_come_before_their_files() {
        let (tar, _) = LayerBuilder::new()
            .file("a/b/c.txt", b"c", 0o600)
            .file("a/d.txt", b"d", 0o600)
            .build()
            .expect("layer");
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|entry| entry.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(paths, ["a/", "a/b/", "a/b/c.txt", "a/d.txt"]);
    }

    #[test]
    fn an_image_without_run_time_options_has_the_config_it_always_had() {
        let image = ImageBuilder::new()
            .layer(LayerBuilder::new().file("a/b", b"b", 0o644))
            .entrypoint(["/a/b"])
            .label("k", "v")
            .build()
            .expect("build");
        let config = String::from_utf8(image.config.data).expect("UTF-8");
        let expected = concat!(
            r#"{"architecture":"amd64","config":{"Entrypoint":["/a/b"],"#,
            r#""Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Labels":{"k":"v"}},"#,
            r#""history":[{"created_by":"coder-testenv fixture"}],"os":"linux","rootfs":{"diff_ids":["#,
        );
        assert!(config.starts_with(expected), "{config}");
    }

    #[test]
    fn run_time_options_go_into_the_config() {
        let image = ImageBuilder::new()
            .env("PGDATA", "/data")
            .user("999:999")
            .cmd(["postgres"])
            .working_dir("/home")
            .expose_tcp(5432)
            .expose_tcp(5432)
            .stop_signal("SIGINT")
            .build()
            .expect("build");
        let config: Value = serde_json::from_slice(&image.config.data).expect("JSON");
        let config = &config["config"];
        assert_eq!(
            config["Env"],
            json!([format!("PATH={DEFAULT_PATH}"), "PGDATA=/data"])
        );
        assert_eq!(config["User"], "999:999");
        assert_eq!(config["Cmd"], json!(["postgres"]));
        assert_eq!(config["WorkingDir"], "/home");
        assert_eq!(config["ExposedPorts"], json!({ "5432/tcp": {} }));
        assert_eq!(config["StopSignal"], "SIGINT");
        let path_replaced = ImageBuilder::new().env("PATH", "/bin").build().expect("build");
        let config: Value = serde_json::from_slice(&path_replaced.config.data).expect("JSON");
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin"]));
    }

    #[test]
    fn directories_links_and_owners_are_written_as_asked() {
        let (tar, _) = LayerBuilder::new()
            .file("tmp/x", b"x", 0o600)
            .directory("tmp", 0o1777)
            .directory_owned_by("var/data", 0o700, 999, 998)
            .file_owned_by("var/data/f", b"f", 0o640, 999, 998)
            .symlink("bin/sh", "/bin/busybox")
            .build()
            .expect("layer");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64, u64, Option<String>)> = archive
            .entries()
            .expect("entries")
            .map(|entry| {
                let entry = entry.expect("entry");
                let header = entry.header();
                (
                    entry.path().expect("path").display().to_string(),
                    header.mode().expect("mode"),
                    header.uid().expect("uid"),
                    header.gid().expect("gid"),
                    entry
                        .link_name()
                        .expect("link")
                        .map(|link| link.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("tmp/".to_owned(), 0o1777, 0, 0, None),
                ("tmp/x".to_owned(), 0o600, 0, 0, None),
                ("var/".to_owned(), 0o755, 0, 0, None),
                ("var/data/".to_owned(), 0o700, 999, 998, None),
                ("var/data/f".to_owned(), 0o640, 999, 998, None),
                ("bin/".to_owned(), 0o755, 0, 0, None),
                ("bin/sh".to_owned(), 0o777, 0, 0, Some("/bin/busybox".to_owned())),
            ]
        );
    }

    #[test]
    fn file_capabilities_are_a_pax_xattr_record_before_the_file() {
        assert_eq!(pax_record("k", b"v").as_slice(), b"6 k=v\n");
        assert_eq!(pax_record("key", &[b'x'; 3]).len(), 11);
        // 99 bytes and two digits make 101: a length that crosses to three digits counts itself.
        let long = pax_record("k", &[b'x'; 95]);
        assert_eq!(long.len(), 102);
        assert!(long.starts_with(b"102 k="));
        let (tar, _) = LayerBuilder::new()
            .file("usr/sbin/nginx", b"elf", 0o755)
            .file_capabilities("usr/sbin/nginx", &[Capability::NetBindService])
            .file("usr/sbin/other", b"elf", 0o755)
            .build()
            .expect("layer");
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut found = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let xattrs: Vec<(String, Vec<u8>)> = entry
                .pax_extensions()
                .expect("pax")
                .into_iter()
                .flatten()
                .map(|extension| {
                    let extension = extension.expect("extension");
                    (
                        extension.key().expect("key").to_owned(),
                        extension.value_bytes().to_vec(),
                    )
                })
                .collect();
            found.push((path, xattrs));
        }
        let nginx = found
            .iter()
            .find(|(path, _)| path == "usr/sbin/nginx")
            .expect("nginx");
        // VFS_CAP_REVISION_2 | effective, permitted bit 10 (cap_net_bind_service), nothing else.
        let value = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
        assert_eq!(nginx.1, [(CAPABILITY_XATTR_RECORD.to_owned(), value)]);
        let other = found
            .iter()
            .find(|(path, _)| path == "usr/sbin/other")
            .expect("other");
        assert!(other.1.is_empty());
    }

    #[test]
    fn random_files_differ_by_seed_and_do_not_compress() {
        assert_ne!(pseudo_random_bytes(64, 1), pseudo_random_bytes(64, 2));
        let (tar, gzip) = LayerBuilder::new()
            .random_file("blob", 1 << 20, 3)
            .build()
            .expect("layer");
        assert!(
            gzip.len() as f64 > tar.len() as f64 * 0.95,
            "{} of {}",
            gzip.len(),
            tar.len()
        );
    }
}
