//! A server child process that is stopped when its handle is dropped.

use std::fs::File;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result, io_context};

/// Returns a loopback port that was free a moment ago.
///
/// The port is released before the server binds it, so another process could take it in
/// between; servers are started with [`ServerProcess::spawn`] and retried by their callers
/// when they fail to bind.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_context("binding a probe port"))?;
    let port = listener
        .local_addr()
        .map_err(io_context("reading the probe port"))?
        .port();
    Ok(port)
}

/// A running server; dropping it stops the process (with `stop_signal`, then SIGKILL).
pub(crate) struct ServerProcess {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    stop_signal: Signal,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr appended to `log_path`.
    pub(crate) fn spawn(
        name: &'static str,
        mut command: Command,
        log_path: &Path,
        stop_signal: Signal,
    ) -> Result<Self> {
        let log = File::create(log_path).map_err(io_context(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_context("duplicating the log file handle"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_context(format!(
                "starting {name} ({:?})",
                command.get_program()
            )))?;
        Ok(Self {
            name,
            child,
            log_path: log_path.to_owned(),
            stop_signal,
        })
    }

    /// Polls `probe` until it returns `Ok(true)`, failing early if the process exits.
    ///
    /// `probe` returns `Err(reason)` or `Ok(false)` while the server is not ready yet; the last
    /// reason is reported on time-out.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        let started = Instant::now();
        let mut reason = String::from("not probed yet");
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(started.elapsed(), format!("exited with {status}")));
            }
            match probe().await {
                Ok(true) => return Ok(()),
                Ok(false) => reason = "probe answered not ready".to_owned(),
                Err(error) => reason = error,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(self.not_ready(started.elapsed(), reason))
    }

    /// Sends `signal` to the process (ignored once it has exited).
    pub(crate) fn signal(&mut self, signal: Signal) {
        if !self.has_exited() {
            // The child's pid fits in i32 on every platform nix supports.
            let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
        }
    }

    /// Whether the process has exited.
    pub(crate) fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// A [`Error::NotReady`] for this process: `reason`, and the tail of its log.
    pub(crate) fn not_ready(&self, waited: Duration, reason: String) -> Error {
        Error::NotReady {
            server: self.name,
            waited,
            reason,
            log_path: self.log_path.clone(),
            log: log_tail(&self.log_path, 30),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        // The child's pid fits in i32 on every platform nix supports.
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.has_exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connect probe: ready when something accepts connections on `addr`.
pub(crate) async fn accepts_connections(addr: SocketAddr) -> Result<bool, String> {
    tokio::net::TcpStream::connect(addr)
        .await
        .map(|_| true)
        .map_err(|error| format!("connecting to {addr}: {error}"))
}

/// The last `lines` lines of a log file, or a note saying why it could not be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read the log: {error})"),
    }
}

/// Starts a server on a fresh free port, retrying with another port when the start fails.
///
/// `start` gets the port and returns the ready server; a bind race with another process shows
/// up as a start failure, so three attempts make the race practically harmless.
pub(crate) async fn start_on_free_port<T, F, Fut>(mut start: F) -> Result<T>
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start(free_port()?).await {
            Ok(server) => return Ok(server),
            Err(error @ Error::NotReady { .. }) if attempt < 3 => {
                eprintln!("testenv: retrying on another port after: {error}");
            }
            Err(error) => return Err(error),
        }
    }
}
