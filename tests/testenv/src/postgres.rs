//! PostgreSQL 15 as a test server.
//!
//! `initdb` and `postgres` refuse to run as root, so when the tests run as root (as CI does) the
//! server runs as the `postgres` system user that Debian's package creates; otherwise it runs as
//! the current user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown};
use sqlx::Connection;
use tempfile::TempDir;

use crate::process::{ServerProcess, start_on_free_port};
use crate::registry::random_hex;
use crate::tls::write_file;
use crate::{Error, Result, binaries, io_context};

/// The superuser that `initdb` creates.
const SUPERUSER: &str = "postgres";

/// A running PostgreSQL server; dropping it shuts the server down and deletes its data.
pub struct Postgres {
    process: Option<ServerProcess>,
    port: u16,
    password: String,
    postgres: PathBuf,
    run_as: Option<RunAs>,
    _dir: TempDir,
}

/// Who the server runs as.
struct RunAs {
    uid: Uid,
    gid: Gid,
}

impl RunAs {
    fn for_this_process() -> Result<Option<Self>> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let user = User::from_name("postgres")
            .map_err(|errno| Error::Io {
                context: "looking up the postgres user".into(),
                source: errno.into(),
            })?
            .ok_or(Error::MissingBinary {
                what: "the `postgres` system user (PostgreSQL refuses to run as root)",
                looked_in: "/etc/passwd".into(),
                hint: "install PostgreSQL with `apt-get install postgresql-15`, which creates it",
            })?;
        Ok(Some(Self {
            uid: user.uid,
            gid: user.gid,
        }))
    }

    fn apply(&self, command: &mut Command) {
        command.uid(self.uid.as_raw()).gid(self.gid.as_raw());
    }

    fn give(&self, path: &Path) -> Result<()> {
        chown(path, Some(self.uid), Some(self.gid)).map_err(|errno| Error::Io {
            context: format!("chown {}", path.display()),
            source: errno.into(),
        })
    }
}

impl Postgres {
    /// Runs `initdb` in a fresh directory and starts the server on a free loopback port.
    pub async fn start() -> Result<Self> {
        let initdb = binaries::postgres_program("initdb")?;
        let postgres = binaries::postgres_program("postgres")?;
        let run_as = RunAs::for_this_process()?;

        let dir = tempfile::Builder::new()
            .prefix("testenv-postgres-")
            .tempdir()
            .map_err(io_context("creating the PostgreSQL directory"))?;
        let password = random_hex(16)?;
        let password_file = dir.path().join("password");
        write_file(&password_file, password.as_bytes())?;
        if let Some(run_as) = &run_as {
            run_as.give(dir.path())?;
            run_as.give(&password_file)?;
        }

        let data = dir.path().join("data");
        let mut command = Command::new(&initdb);
        command
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .env("LC_ALL", "C");
        if let Some(run_as) = &run_as {
            run_as.apply(&mut command);
        }
        let output = command
            .output()
            .map_err(io_context(format!("running {}", initdb.display())))?;
        if !output.status.success() {
            return Err(Error::NotReady {
                server: "initdb",
                waited: Duration::ZERO,
                reason: format!("exited with {}", output.status),
                log_path: initdb,
                log: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }

        let dir_path = dir.path().to_owned();
        let (process, port) = start_on_free_port(|port| {
            let process = spawn_server(&postgres, &dir_path, port, &password, run_as.as_ref());
            async move { Ok((process.await?, port)) }
        })
        .await?;
        Ok(Self {
            process: Some(process),
            port,
            password,
            postgres,
            run_as,
            _dir: dir,
        })
    }

    /// Stops the server (PostgreSQL's fast shutdown) and keeps its data, to test what clients
    /// do while the database is down; [`Self::restart`] brings it back.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts a stopped server again, on the same port and with the same data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let process = spawn_server(
            &self.postgres,
            self._dir.path(),
            self.port,
            &self.password,
            self.run_as.as_ref(),
        )
        .await?;
        self.process = Some(process);
        Ok(())
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection URL for the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        connection_url(self.port, &self.password, SUPERUSER)
    }

    /// Creates database `name` (which must be a plain identifier) and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidArgument(format!(
                "{name:?} is not a plain database name"
            )));
        }
        let mut connection = sqlx::PgConnection::connect(&self.url()).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        Ok(connection_url(self.port, &self.password, name))
    }
}

/// Starts `postgres` on the data directory under `dir`, listening on `port`, and waits until it
/// accepts a connection.
fn spawn_server(
    postgres: &Path,
    dir: &Path,
    port: u16,
    password: &str,
    run_as: Option<&RunAs>,
) -> impl std::future::Future<Output = Result<ServerProcess>> + use<> {
    let mut command = Command::new(postgres);
    command
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Throw-away data: durability off for speed.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .env("LC_ALL", "C");
    if let Some(run_as) = run_as {
        run_as.apply(&mut command);
    }
    let log = dir.join("postgres.log");
    let url = connection_url(port, password, SUPERUSER);
    async move {
        // SIGINT is PostgreSQL's "fast shutdown": sessions are ended, nothing lingers.
        let mut process = ServerProcess::spawn("postgres", command, &log, Signal::SIGINT)?;
        process
            .wait_ready(Duration::from_secs(30), || {
                let url = url.clone();
                async move {
                    let connection = sqlx::PgConnection::connect(&url)
                        .await
                        .map_err(|error| error.to_string())?;
                    let _ = connection.close().await;
                    Ok(true)
                }
            })
            .await?;
        Ok(process)
    }
}

fn connection_url(port: u16, password: &str, database: &str) -> String {
    format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/{database}")
}
