//! A reverse proxy that caps request bodies in front of a server: Debian's NGINX with
//! `client_max_body_size`, as site registries are often deployed. A body over the cap is
//! answered 413 by NGINX itself and never reaches the server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{ServerProcess, accepts_connections, start_on_free_port};
use crate::tls::write_file;
use crate::{Result, binaries, io_context};

/// A running proxy; dropping it stops NGINX and removes its directory.
pub struct BodyLimitProxy {
    // Declared first so that it is dropped (the server stopped) before the directory is removed.
    _process: ServerProcess,
    addr: SocketAddr,
    _dir: TempDir,
}

impl BodyLimitProxy {
    /// Starts NGINX on a free loopback port, passing every request to `upstream` (plain HTTP,
    /// the `Host` header kept, bodies streamed, not buffered) and refusing bodies over
    /// `max_body` (NGINX's syntax: `32m`, `1m`).
    pub async fn start(upstream: SocketAddr, max_body: &str) -> Result<Self> {
        let nginx = binaries::node_package_program("nginx", "install it with `apt-get install nginx`")?;
        start_on_free_port(|port| Self::start_on(nginx.clone(), upstream, max_body.to_owned(), port)).await
    }

    async fn start_on(
        nginx: std::path::PathBuf,
        upstream: SocketAddr,
        max_body: String,
        port: u16,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testenv-body-limit-")
            .tempdir()
            .map_err(io_context("creating the proxy's directory"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        std::fs::create_dir(dir.path().join("temp"))
            .map_err(io_context("creating the proxy's temporary directory"))?;
        let config = dir.path().join("nginx.conf");
        write_file(
            &config,
            nginx_config(dir.path(), addr, upstream, &max_body).as_bytes(),
        )?;
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg("stderr");
        let mut process = ServerProcess::spawn(
            "nginx (body limit proxy)",
            command,
            &dir.path().join("nginx.log"),
            Signal::SIGQUIT,
        )?;
        process
            .wait_ready(Duration::from_secs(20), || accepts_connections(addr))
            .await?;
        Ok(Self {
            _process: process,
            addr,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`, as a registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// One server on `listen`, everything to `upstream`. As root, the workers run as root too (they
/// write the temporary files under `dir`, which only root can).
fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, max_body: &str) -> String {
    let temp = dir.join("temp");
    format!(
        "daemon off;\n\
         worker_processes 1;\n\
         user root;\n\
         pid {dir}/nginx.pid;\n\
         error_log stderr warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path {temp}/client-body;\n\
         \x20 proxy_temp_path {temp}/proxy;\n\
         \x20 fastcgi_temp_path {temp}/fastcgi;\n\
         \x20 uwsgi_temp_path {temp}/uwsgi;\n\
         \x20 scgi_temp_path {temp}/scgi;\n\
         \x20 server {{\n\
         \x20   listen {listen};\n\
         \x20   client_max_body_size {max_body};\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://{upstream};\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Host $http_host;\n\
         \x20     proxy_request_buffering off;\n\
         \x20     proxy_buffering off;\n\
         \x20     proxy_read_timeout 300s;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        dir = dir.display(),
        temp = temp.display(),
    )
}
