//! nginx itself: writing a config and its certificates, checking it with `nginx -t`, running
//! the master as a child (`daemon off`) and reloading it with SIGHUP.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::render::Layout;

/// Where Debian's nginx is.
pub const DEFAULT_NGINX: &str = "/usr/sbin/nginx";

/// Why nginx could not be configured or run.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// A file could not be written or removed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `nginx -t` refused a config; `output` is what it printed.
    #[error("nginx -t refused the config:\n{output}")]
    Refused {
        /// nginx's messages.
        output: String,
    },
    /// The master could not be signalled.
    #[error("signalling nginx: {0}")]
    Signal(#[from] nix::Error),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NginxError {
    let context = context.into();
    move |source| NginxError::Io { context, source }
}

/// Writes each certificate file into `layout`'s ssl directory (mode 0600) unless a file of
/// that name is there already (the names carry a hash of the contents).
pub fn write_certificates(
    layout: &Layout,
    certificates: &BTreeMap<String, Vec<u8>>,
) -> Result<(), NginxError> {
    for (name, contents) in certificates {
        let path = layout.ssl_dir().join(name);
        if path.exists() {
            continue;
        }
        let partial = layout.ssl_dir().join(format!(".{name}.partial"));
        write_private(&path, &partial, contents)?;
    }
    Ok(())
}

/// Removes the certificate files of `layout` that are not in `keep`.
pub fn remove_other_certificates(
    layout: &Layout,
    keep: &BTreeMap<String, Vec<u8>>,
) -> Result<(), NginxError> {
    let dir = layout.ssl_dir();
    let entries = std::fs::read_dir(&dir).map_err(io_error(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_error(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains_key(&name) {
            std::fs::remove_file(entry.path())
                .map_err(io_error(format!("removing {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Writes `config` to `path` (mode 0600, through a temporary file and a rename).
pub fn write_config(path: &Path, config: &str) -> Result<(), NginxError> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    write_private(path, &partial, config.as_bytes())
}

/// Writes `bytes` to `partial` (mode 0600) and renames it to `path`, so that nginx never reads
/// a half-written file.
fn write_private(path: &Path, partial: &Path, bytes: &[u8]) -> Result<(), NginxError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(partial)
        .map_err(io_error(format!("creating {}", partial.display())))?;
    file.write_all(bytes)
        .map_err(io_error(format!("writing {}", partial.display())))?;
    std::fs::rename(partial, path).map_err(io_error(format!("renaming {}", partial.display())))
}

/// Runs `nginx -t` on the config at `config` with `layout`'s root as prefix.
pub async fn test_config(nginx: &Path, layout: &Layout, config: &Path) -> Result<(), NginxError> {
    let output = Command::new(nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(layout.root())
        .arg("-c")
        .arg(config)
        .arg("-e")
        .arg("stderr")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io_error(format!("running {} -t", nginx.display())))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text.push('\n');
        text.push_str(stdout.trim());
    }
    if text.is_empty() {
        text = format!("nginx -t exited with {}", output.status);
    }
    Err(NginxError::Refused { output: text })
}

/// Checks `config` (with its certificates) in a fresh directory below `scratch`, which is
/// removed afterwards: what the admission webhook does with a candidate Ingress.
pub async fn test_in_scratch(
    nginx: &Path,
    scratch: &Path,
    render: impl FnOnce(&Layout) -> (String, BTreeMap<String, Vec<u8>>),
) -> Result<(), NginxError> {
    let dir = tempfile::Builder::new()
        .prefix("check-")
        .tempdir_in(scratch)
        .map_err(io_error(format!("creating a directory in {}", scratch.display())))?;
    let layout = Layout::new(dir.path());
    layout
        .create_dirs()
        .map_err(io_error(format!("creating {}", dir.path().display())))?;
    let (config, certificates) = render(&layout);
    write_certificates(&layout, &certificates)?;
    write_config(&layout.config(), &config)?;
    test_config(nginx, &layout, &layout.config()).await
}

/// The running nginx master.
pub struct Master {
    child: Child,
    pid: Pid,
}

impl Master {
    /// Starts `nginx -p ROOT -c ROOT/nginx.conf -e stderr` (the config says `daemon off`), with
    /// this process's stdout (access log) and stderr (error log).
    pub fn start(nginx: &Path, layout: &Layout) -> Result<Self, NginxError> {
        let child = Command::new(nginx)
            .arg("-p")
            .arg(layout.root())
            .arg("-c")
            .arg(layout.config())
            .arg("-e")
            .arg("stderr")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("starting {}", nginx.display())))?;
        let id = child.id().ok_or_else(|| NginxError::Io {
            context: "starting nginx".to_owned(),
            source: std::io::Error::other("nginx exited at once"),
        })?;
        let pid = Pid::from_raw(i32::try_from(id).map_err(|_| NginxError::Io {
            context: "starting nginx".to_owned(),
            source: std::io::Error::other(format!("pid {id} out of range")),
        })?);
        Ok(Self { child, pid })
    }

    /// Asks the master to re-read its config (SIGHUP): new workers, old ones finish their
    /// requests.
    pub fn reload(&self) -> Result<(), NginxError> {
        kill(self.pid, Signal::SIGHUP)?;
        Ok(())
    }

    /// Waits for the master to exit; its status.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Asks for a graceful stop (SIGQUIT: open requests finish) and waits for it.
    pub async fn quit(mut self) -> std::io::Result<std::process::ExitStatus> {
        if let Err(error) = kill(self.pid, Signal::SIGQUIT) {
            eprintln!("ingress-standin: signalling nginx to quit: {error}");
        }
        self.child.wait().await
    }
}
