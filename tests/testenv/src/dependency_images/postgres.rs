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

fn build() -> Result<Image> {
    let install = binaries::postgres_program("postgres")?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .ok_or_else(|| {
            Error::InvalidArgument("the postgres binary has no installation directory".to_owned())
        })?;
    let bin = install.join("bin");
    let lib = install.join("lib");
    let share = PathBuf::from(format!("/usr/share/postgresql/{MAJOR}"));
    let zoneinfo = Path::new("/usr/share/zoneinfo");

    let programs = files_below(&bin, &|_| true)?;
    let modules = files_below(&lib, &|path| {
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
    let layer = with_host_files(layer, &programs)?;
    let layer = with_host_files(layer, &modules)?;
    let layer = with_host_files(layer, &data)?;
    let layer = with_host_files(layer, &zones)?;
    let layer = with_shared_libraries(layer, &[programs, modules].concat())?;
    let layer = with_busybox(layer)?;

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
