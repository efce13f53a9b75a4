//! PostgreSQL 15 from Debian's `postgresql-15`, honouring the official `postgres` image's
//! contract as the chart uses it (see `postgres-entrypoint.sh`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{
    DESCRIPTION_LABEL, User, cached, files_below, stand_in_description, with_busybox, with_host_files,
    with_shared_libraries, with_users,
};
use crate::fixture::{Image, ImageBuilder, LayerBuilder};
use crate::{Error, Result, binaries};

/// The server's major version, as in Debian's paths.
const MAJOR: &str = "15";

/// The uid and gid of the `postgres` user, as in the official image (and the chart's
/// `runAsUser`).
const POSTGRES_ID: u32 = 999;

/// Where the entrypoint script is in the image (as in the official image).
const ENTRYPOINT: &str = "/usr/local/bin/docker-entrypoint.sh";

/// Time zones kept from the host's tzdata: UTC under its names, and the fixed-offset zones.
const TIME_ZONES: [&str; 7] = ["UTC", "UCT", "GMT", "Universal", "Zulu", "Greenwich", "Etc"];

/// PostgreSQL 15 from Debian's `postgresql-15`, honouring the official postgres image's contract.
///
/// - `POSTGRES_USER` (default `postgres`), `POSTGRES_PASSWORD` or `POSTGRES_PASSWORD_FILE`,
///   `POSTGRES_DB` (default the user), `PGDATA` (default `/var/lib/postgresql/data`),
///   `POSTGRES_INITDB_ARGS`, `POSTGRES_HOST_AUTH_METHOD`: the first start runs `initdb`
///   (trust on the local socket, scram-sha-256 over TCP from any address, UTF8, C locale) and
///   creates the database; later starts reuse the data.
/// - Runs as `999:999`; `postgres` becomes PID 1, listens on port 5432 (or `$PGPORT`) on all
///   addresses and on the socket in `/var/run/postgresql`, and logs to stderr. SIGTERM stops it
///   (a smart shutdown); the image's stop signal is SIGINT (a fast one), as the official image's.
/// - `pg_isready`, `psql`, `pg_ctl`, `initdb` and the other client and server programs are on
///   `PATH`; `/tmp` is 1777; the JIT (`llvmjit.so`) is left out.
///
/// Built once per process (it takes a few seconds), then cloned.
pub fn postgres_image() -> Result<Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    cached(&IMAGE, build)
}

/// Builds the image: the host's PostgreSQL files in one layer with the entrypoint, the
/// `postgres` user and busybox, configured as the official image is.
fn build() -> Result<Image> {
    let install = install_dir()?;
    let bin = install.join("bin");
    let files = HostFiles::find(&install)?;
    let layer = layer(files)?;
    let path = format!(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{}",
        bin.display()
    );
    ImageBuilder::new()
        .layer(layer)
        .label(DESCRIPTION_LABEL, &stand_in_description("postgres:15"))
        .env("PATH", &path)
        .env("PG_MAJOR", MAJOR)
        .env("PGDATA", "/var/lib/postgresql/data")
        .user(&format!("{POSTGRES_ID}:{POSTGRES_ID}"))
        .entrypoint([ENTRYPOINT])
        .cmd(["postgres"])
        .expose_tcp(5432)
        .stop_signal("SIGINT")
        .build()
}

/// The host's PostgreSQL installation directory (the parent of its `bin/`).
fn install_dir() -> Result<PathBuf> {
    binaries::postgres_program("postgres")?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .ok_or_else(|| Error::InvalidArgument("the postgres binary has no installation directory".to_owned()))
}

/// The host's files the image carries.
struct HostFiles {
    /// Every program of the installation's `bin/`.
    programs: Vec<PathBuf>,
    /// Its `lib/` modules (`*.so`), without the JIT.
    modules: Vec<PathBuf>,
    /// Its shared data (`/usr/share/postgresql/15`), without man pages.
    data: Vec<PathBuf>,
    /// The host's time zones: every file in the zoneinfo folder's subfolders, and at its top
    /// only those [`TIME_ZONES`] names.
    zones: Vec<PathBuf>,
}

impl HostFiles {
    /// Lists the files of the installation at `install`, its shared data and the time zones.
    fn find(install: &Path) -> Result<Self> {
        let share = PathBuf::from(format!("/usr/share/postgresql/{MAJOR}"));
        let zoneinfo = Path::new("/usr/share/zoneinfo");
        let programs = files_below(&install.join("bin"), &|_| true)?;
        let modules = files_below(&install.join("lib"), &|path| {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default();
            name.ends_with(".so") && !name.starts_with("llvmjit")
        })?;
        let data = files_below(&share, &|path| !path.ends_with("man"))?;
        let zones = files_below(zoneinfo, &|path| {
            path.parent() != Some(zoneinfo)
                || path
                    .file_name()
                    .is_some_and(|name| TIME_ZONES.iter().any(|zone| name == *zone))
        })?;
        Ok(Self {
            programs,
            modules,
            data,
            zones,
        })
    }
}

/// The image's one layer: the data and socket folders owned by `postgres`, the entrypoint, the
/// `postgres` user, the host's files with the shared libraries they load, and busybox.
fn layer(files: HostFiles) -> Result<LayerBuilder> {
    let layer = LayerBuilder::new()
        .directory_owned_by(
            "var/lib/postgresql",
            0o755,
            POSTGRES_ID.into(),
            POSTGRES_ID.into(),
        )
        .directory_owned_by(
            "var/lib/postgresql/data",
            0o1777,
            POSTGRES_ID.into(),
            POSTGRES_ID.into(),
        )
        .directory_owned_by(
            "var/run/postgresql",
            0o3777,
            POSTGRES_ID.into(),
            POSTGRES_ID.into(),
        )
        .file(
            ENTRYPOINT.trim_start_matches('/'),
            include_bytes!("postgres-entrypoint.sh"),
            0o755,
        );
    let layer = with_users(
        layer,
        &[User {
            name: "postgres",
            id: POSTGRES_ID,
            home: "/var/lib/postgresql",
        }],
    );
    let layer = with_host_files(layer, &files.programs)?;
    let layer = with_host_files(layer, &files.modules)?;
    let layer = with_host_files(layer, &files.data)?;
    let layer = with_host_files(layer, &files.zones)?;
    let layer = with_shared_libraries(layer, &[files.programs, files.modules].concat())?;
    with_busybox(layer)
}
