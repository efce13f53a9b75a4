//! containerd (with runc and the CNI plugins) as the node's container runtime, configured for
//! these machines: everything under the node's directory, the pod network's bridge, plain-HTTP
//! registries on loopback, and the pause image built from the Kubernetes source and imported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use super::network::{BRIDGE, NODE_ADDRESS, POD_CIDR};
use crate::fixture::{Image, ImageBuilder, LayerBuilder};
use crate::process::ServerProcess;
use crate::tls::write_file;
use crate::{Error, Result, io_context};

/// The name the pause image is imported under (the CRI plugin's `sandbox_image`).
pub(crate) const SANDBOX_IMAGE: &str = "coder-testenv.local/pause:1.20.2";
/// The containerd namespace the CRI plugin keeps Kubernetes' images and containers in.
const CRI_NAMESPACE: &str = "k8s.io";
/// Where Debian's containernetworking-plugins are.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A running containerd; see [`Containerd::stop`] for how it is taken down.
pub(crate) struct Containerd {
    process: Option<ServerProcess>,
    dir: PathBuf,
}

impl Containerd {
    /// Writes the configuration under `dir`, starts containerd and imports the pause image
    /// built from `pause_binary`.
    pub(crate) async fn start(dir: &Path, pause_binary: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("certs.d"))
            .map_err(io_context("creating containerd's directory"))?;
        std::fs::create_dir_all(dir.join("cni")).map_err(io_context("creating the CNI directory"))?;
        write_file(&dir.join("config.toml"), config(dir).as_bytes())?;
        write_file(
            &dir.join("cni/10-coder-testenv.conflist"),
            cni_config(dir)?.as_bytes(),
        )?;
        let mut command = Command::new("containerd");
        command.arg("--config").arg(dir.join("config.toml")).env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        let mut process = ServerProcess::spawn(
            "containerd",
            command,
            &dir.join("containerd.log"),
            Signal::SIGTERM,
        )?;
        let socket = socket(dir);
        process
            .wait_ready(Duration::from_secs(30), || {
                let socket = socket.clone();
                async move { Ok(socket.exists() && ctr(&socket, &["version"]).is_ok()) }
            })
            .await?;
        let containerd = Self {
            process: Some(process),
            dir: dir.to_owned(),
        };
        containerd.import_pause_image(pause_binary)?;
        Ok(containerd)
    }

    /// The CRI socket, as the kubelet's `--container-runtime-endpoint` names it.
    pub(crate) fn endpoint(&self) -> String {
        format!("unix://{}", socket(&self.dir).display())
    }

    /// Lets containerd pull from `host` (`HOST:PORT`) over plain HTTP.
    pub(crate) fn trust_plain_http_registry(&self, host: &str) -> Result<()> {
        let dir = self.dir.join("certs.d").join(host);
        std::fs::create_dir_all(&dir).map_err(io_context(format!("creating {}", dir.display())))?;
        let hosts = format!(
            "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        write_file(&dir.join("hosts.toml"), hosts.as_bytes())
    }

    /// Installs a registry configuration folder (`config_path` layout: one folder per registry
    /// host, each with its `hosts.toml` and the files it names) as it is, beside what is there.
    pub(crate) fn install_registry_config(&self, config: &Path) -> Result<()> {
        let hosts = std::fs::read_dir(config).map_err(io_context(format!("reading {}", config.display())))?;
        for host in hosts {
            let host = host.map_err(io_context(format!("reading {}", config.display())))?;
            let target = self.dir.join("certs.d").join(host.file_name());
            std::fs::create_dir_all(&target).map_err(io_context(format!("creating {}", target.display())))?;
            let files = std::fs::read_dir(host.path())
                .map_err(io_context(format!("reading {}", host.path().display())))?;
            for file in files {
                let file = file.map_err(io_context(format!("reading {}", host.path().display())))?;
                let bytes = std::fs::read(file.path())
                    .map_err(io_context(format!("reading {}", file.path().display())))?;
                write_file(&target.join(file.file_name()), &bytes)?;
            }
        }
        Ok(())
    }

    /// Kills every container (pods' and their sandboxes') and stops containerd and its shims.
    /// Their mounts and network namespaces, all under the node's directory, are the caller's
    /// to unmount.
    pub(crate) fn stop(&mut self) {
        let socket = socket(&self.dir);
        if let Ok(tasks) = ctr_output(&socket, &["tasks", "ls", "-q"]) {
            for task in tasks.lines().filter(|line| !line.is_empty()) {
                let _ = ctr(&socket, &["tasks", "kill", "-s", "SIGKILL", task]);
            }
        }
        self.process.take();
        kill_shims(&socket);
    }

    fn import_pause_image(&self, pause_binary: &Path) -> Result<()> {
        let image = ImageBuilder::new()
            .label(
                "org.opencontainers.image.description",
                "coder-testenv: the pod sandbox's pause program, built from the Kubernetes 1.20.2 source",
            )
            .layer(LayerBuilder::new().host_executable("pause", pause_binary)?)
            .entrypoint(["/pause"])
            .build()?;
        let archive = self.dir.join("pause.oci.tar");
        write_oci_archive(&archive, &image, SANDBOX_IMAGE)?;
        ctr(
            &socket(&self.dir),
            &["images", "import", &archive.display().to_string()],
        )
        .map(|_| ())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("containerd.sock")
}

fn config(dir: &Path) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  # These VMs lack CAP_SYS_RESOURCE: without this every sandbox fails to start
  # ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, so that tearing down the node's
  # directory removes them.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni}"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        root = path("root"),
        state = path("state"),
        socket = socket(dir).display(),
        opt = path("opt"),
        cni = path("cni"),
        certs = path("certs.d"),
    )
}

/// The pod network: the harness's bridge, addresses from [`POD_CIDR`], no masquerading.
fn cni_config(dir: &Path) -> Result<String> {
    let [a, b, c, d] = NODE_ADDRESS;
    let config = json!({
        "cniVersion": "0.4.0",
        "name": "coder-testenv",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_CIDR, "gateway": format!("{a}.{b}.{c}.{d}") }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("cni/ipam"),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    serde_json::to_string_pretty(&config).map_err(|error| Error::Node(format!("CNI config: {error}")))
}

/// Writes `image` as an OCI image layout tar that `ctr images import` names `name`.
fn write_oci_archive(path: &Path, image: &Image, name: &str) -> Result<()> {
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest,
            "size": image.manifest.data.len(),
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name },
        }],
    });
    let index = serde_json::to_vec(&index).map_err(|error| Error::Node(format!("OCI index: {error}")))?;
    let file = std::fs::File::create(path).map_err(io_context(format!("creating {}", path.display())))?;
    let mut tar = tar::Builder::new(file);
    let mut append = |name: String, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, &name, data)
            .map_err(io_context(format!("writing {name} into {}", path.display())))
    };
    append("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append("index.json".to_owned(), &index)?;
    for blob in [&image.manifest, &image.config].into_iter().chain(&image.layers) {
        let hex = blob.digest.trim_start_matches("sha256:");
        append(format!("blobs/sha256/{hex}"), &blob.data)?;
    }
    tar.into_inner()
        .map_err(io_context(format!("finishing {}", path.display())))?;
    Ok(())
}

/// Runs `ctr` against the node's containerd in the CRI namespace.
fn ctr(socket: &Path, args: &[&str]) -> Result<()> {
    ctr_output(socket, args).map(|_| ())
}

fn ctr_output(socket: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE])
        .args(args)
        .output()
        .map_err(io_context("running ctr (install containerd)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Node(format!(
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Kills the runc shims of this containerd (their command line names its socket): they outlive
/// containerd by design.
fn kill_shims(socket: &Path) {
    let socket = socket.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("containerd-shim") && cmdline.split('\0').any(|arg| arg == socket) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
