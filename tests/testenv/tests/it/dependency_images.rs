//! The dependency stand-in images run for real: each image's layer is unpacked into a temporary
//! root and its entrypoint run there with `chroot`, as the image's user, on loopback ports
//! (this needs root, as these tests have). `workspace-standin` is also run straight on the host.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coder_testenv::dependency_images::{postgres_image, workspace_image};
use coder_testenv::fixture::Image;
use coder_testenv::{Registry, RegistryFlavour};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One entry of an image's layer.
#[derive(Debug)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    contents: Vec<u8>,
}

/// The entries of the image's (only) layer.
fn entries(image: &Image) -> Vec<Entry> {
    assert_eq!(image.layers.len(), 1, "one layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(image.layers[0].data.as_slice()));
    archive
        .entries()
        .expect("entries")
        .map(|entry| {
            let mut entry = entry.expect("entry");
            let header = entry.header().clone();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).expect("read entry");
            Entry {
                path: entry.path().expect("path").display().to_string(),
                kind: header.entry_type(),
                mode: header.mode().expect("mode"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                link: entry
                    .link_name()
                    .expect("link name")
                    .map(|link| link.display().to_string()),
                contents,
            }
        })
        .collect()
}

fn entry<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
    entries
        .iter()
        .find(|entry| entry.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("{path} is not in the layer"))
}

/// The image config's `config` object.
fn runtime_config(image: &Image) -> Value {
    let config: Value = serde_json::from_slice(&image.config.data).expect("config JSON");
    config["config"].clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A temporary root holding the unpacked layer, with `/dev/null` (which a container runtime
/// provides).
struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    fn unpack(image: &Image) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(image.layers[0].data.as_slice()));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(&root).expect("unpack the layer");
        std::fs::create_dir_all(root.join("dev")).expect("mkdir dev");
        let status = Command::new("mknod")
            .args(["-m", "666"])
            .arg(root.join("dev/null"))
            .args(["c", "1", "3"])
            .status()
            .expect("run mknod (these tests run as root)");
        assert!(status.success(), "mknod dev/null (these tests run as root)");
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `argv` run in the root as the image's user, with the image's `Env` plus `env`.
    fn command(&self, image: &Image, argv: &[String], env: &[(&str, &str)]) -> Command {
        let config = runtime_config(image);
        let user = config["User"].as_str().expect("the image sets a user");
        let mut command = Command::new("chroot");
        command
            .arg(format!("--userspec={user}"))
            .arg(self.root())
            .args(argv)
            .env_clear();
        for variable in strings(&config["Env"]) {
            if let Some((key, value)) = variable.split_once('=') {
                command.env(key, value);
            }
        }
        command.envs(env.iter().copied());
        if let Some(dir) = config["WorkingDir"].as_str() {
            command.current_dir(self.root().join(dir.trim_start_matches('/')));
        }
        command
    }

    /// Starts the image's entrypoint and command, logging to `log` (outside the root).
    fn start(&self, image: &Image, env: &[(&str, &str)], log: &Path) -> Running {
        let config = runtime_config(image);
        let argv = [strings(&config["Entrypoint"]), strings(&config["Cmd"])].concat();
        let log_file = std::fs::File::create(log).expect("log file");
        let child = self
            .command(image, &argv, env)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("run chroot");
        Running {
            child,
            log: log.to_owned(),
        }
    }
}

/// A started container process, killed on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("exited with {status}; log:\n{}", self.log());
        }
    }

    /// Sends `signal` and waits for a clean exit.
    fn stop(mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit status {status}; log:\n{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("did not stop on {signal}; log:\n{}", self.log());
    }

    /// The program the process runs now (`/proc/PID/comm`).
    fn program(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Polls `ready` until it holds, failing when `running` exits or after a minute.
async fn wait_until(running: &mut Running, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        running.assert_running();
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} not ready after a minute; log:\n{}", running.log());
}

const PASSWORD: &str = "s3cret pass'\"$word";

fn postgres_options(port: u16, password: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("coder")
        .password(password)
        .database("coder")
}

#[test]
fn the_postgres_image_is_a_labelled_stand_in_with_the_official_contract() {
    let image = postgres_image().expect("build the postgres image");
    let config = runtime_config(&image);
    assert!(
        config["Labels"]["org.opencontainers.image.description"]
            .as_str()
            .is_some_and(
                |text| text.contains("coder-testenv stand-in for postgres") && text.contains("Debian")
            ),
        "{config}"
    );
    assert_eq!(config["User"], "999:999");
    assert_eq!(strings(&config["Cmd"]), ["postgres"]);
    assert!(config["ExposedPorts"].get("5432/tcp").is_some(), "{config}");
    let env = strings(&config["Env"]);
    assert!(
        env.contains(&"PGDATA=/var/lib/postgresql/data".to_owned()),
        "{env:?}"
    );
    assert!(
        env.iter().any(
            |variable| variable.starts_with("PATH=") && variable.ends_with(":/usr/lib/postgresql/15/bin")
        ),
        "{env:?}"
    );

    let entries = entries(&image);
    let tmp = entry(&entries, "tmp");
    assert_eq!(
        (tmp.kind, tmp.mode, tmp.uid),
        (tar::EntryType::Directory, 0o1777, 0)
    );
    let run = entry(&entries, "var/run/postgresql");
    assert_eq!((run.uid, run.gid), (999, 999));
    let sh = entry(&entries, "bin/sh");
    assert_eq!(
        (sh.kind, sh.link.as_deref()),
        (tar::EntryType::Symlink, Some("/bin/busybox"))
    );
    for program in ["postgres", "initdb", "pg_isready", "psql", "pg_ctl"] {
        let file = entry(&entries, &format!("usr/lib/postgresql/15/bin/{program}"));
        assert_eq!(file.mode & 0o111, 0o111, "{program} is executable");
    }
    entry(&entries, "usr/lib/postgresql/15/lib/plpgsql.so");
    entry(&entries, "usr/share/postgresql/15/postgres.bki");
    entry(&entries, "usr/share/zoneinfo/Etc/UTC");
    entry(&entries, "lib64/ld-linux-x86-64.so.2");
    assert!(
        entries
            .iter()
            .all(|entry| !entry.path.contains("llvmjit") && !entry.path.contains("/man/")),
        "no JIT, no manual pages"
    );
    let passwd = String::from_utf8_lossy(&entry(&entries, "etc/passwd").contents).into_owned();
    assert!(passwd.contains("postgres:x:999:999:"), "{passwd}");
    let size: usize = image.layers.iter().map(|layer| layer.data.len()).sum();
    assert!(size < 64 << 20, "the layer is {size} bytes compressed");
}

#[tokio::test]
async fn the_postgres_image_initialises_once_serves_over_tcp_and_keeps_its_data() {
    let image = postgres_image().expect("build the postgres image");
    let rootfs = Rootfs::unpack(&image);
    let secret = rootfs.root().join("run/secrets/coder-db/password");
    std::fs::create_dir_all(secret.parent().expect("parent")).expect("mkdir secrets");
    std::fs::write(&secret, PASSWORD).expect("write the password");
    let port = free_port().to_string();
    let env = [
        ("POSTGRES_USER", "coder"),
        ("POSTGRES_DB", "coder"),
        ("POSTGRES_PASSWORD_FILE", "/run/secrets/coder-db/password"),
        ("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ("PGPORT", port.as_str()),
    ];
    let port: u16 = port.parse().expect("port");
    let pg_isready = ["pg_isready".to_owned(), "-U".to_owned(), "coder".to_owned()];
    let ready = |rootfs: &Rootfs| {
        rootfs
            .command(&image, &pg_isready, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };

    // First start: initdb, the database, then the server.
    let mut first = rootfs.start(&image, &env, &rootfs.dir.path().join("first.log"));
    wait_until(&mut first, "postgres (first start)", || ready(&rootfs)).await;
    assert_eq!(first.program(), "postgres", "the entrypoint execs postgres");
    assert!(
        rootfs
            .root()
            .join("var/lib/postgresql/data/pgdata/PG_VERSION")
            .is_file(),
        "PGDATA is where it was told"
    );
    let pool = sqlx::PgPool::connect_with(postgres_options(port, PASSWORD))
        .await
        .expect("connect over TCP with the password from the file");
    let (version, database, encoding): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_database(), current_setting('server_encoding')",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert!(version.starts_with("15."), "{version}");
    assert_eq!((database.as_str(), encoding.as_str()), ("coder", "UTF8"));
    let (listen, method, zone): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('listen_addresses'), (SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' AND address = 'all'), current_setting('TimeZone')",
    )
    .fetch_one(&pool)
    .await
    .expect("settings");
    assert_eq!((listen.as_str(), method.as_str()), ("*", "scram-sha-256"));
    assert!(["UTC", "Etc/UTC"].contains(&zone.as_str()), "time zone {zone}");
    sqlx::raw_sql("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('from the first start')")
        .execute(&pool)
        .await
        .expect("write");
    let refused = sqlx::PgPool::connect_with(postgres_options(port, "wrong"))
        .await
        .expect_err("a wrong password is refused over TCP");
    assert!(
        refused.to_string().contains("password authentication failed"),
        "{refused}"
    );
    pool.close().await;
    assert!(first.log().contains("init process complete"), "{}", first.log());
    first.stop(nix::sys::signal::Signal::SIGTERM);

    // Second start: the same data, no second initdb.
    let mut second = rootfs.start(&image, &env, &rootfs.dir.path().join("second.log"));
    wait_until(&mut second, "postgres (second start)", || ready(&rootfs)).await;
    let pool = sqlx::PgPool::connect_with(postgres_options(port, PASSWORD))
        .await
        .expect("connect again");
    let note: String = sqlx::query_scalar("SELECT note FROM kept")
        .fetch_one(&pool)
        .await
        .expect("the data survived the restart");
    assert_eq!(note, "from the first start");
    pool.close().await;
    assert!(
        !second.log().contains("init process complete"),
        "{}",
        second.log()
    );
    second.stop(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn the_postgres_entrypoint_refuses_to_initialise_without_a_password() {
    let image = postgres_image().expect("build the postgres image");
    let rootfs = Rootfs::unpack(&image);
    let config = runtime_config(&image);
    let argv = [strings(&config["Entrypoint"]), strings(&config["Cmd"])].concat();
    let output = rootfs
        .command(&image, &argv, &[("PGDATA", "/var/lib/postgresql/data/pgdata")])
        .output()
        .expect("run the entrypoint");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("POSTGRES_PASSWORD"), "{stderr}");
}

/// The stand-in's three listen addresses, on free loopback ports.
struct Addresses {
    http: String,
    terminal: String,
    ssh: String,
}

impl Addresses {
    fn free() -> Self {
        let address = || format!("127.0.0.1:{}", free_port());
        Self {
            http: address(),
            terminal: address(),
            ssh: address(),
        }
    }

    fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("STANDIN_HTTP_ADDR", self.http.as_str()),
            ("STANDIN_TERMINAL_ADDR", self.terminal.as_str()),
            ("STANDIN_SSH_ADDR", self.ssh.as_str()),
        ]
    }
}

/// Checks every service of a running stand-in: the page, the echoing WebSocket, a terminal
/// round trip with a subprotocol, and TCP echo.
async fn check_standin(running: &mut Running, addresses: &Addresses) {
    let ssh = addresses.ssh.clone();
    wait_until(running, "workspace-standin", || {
        std::net::TcpStream::connect(&ssh).is_ok()
    })
    .await;

    let response = reqwest::get(format!("http://{}/some/path?folder=/home/coder", addresses.http))
        .await
        .expect("GET the page");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("type")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("page");
    assert!(
        page.contains("workspace stand-in") && page.contains("/some/path?folder=/home/coder"),
        "{page}"
    );

    let (mut echo, _) = tokio_tungstenite::connect_async(format!("ws://{}/stable/socket", addresses.http))
        .await
        .expect("WebSocket on the HTTP port");
    echo.send(Message::text("ping")).await.expect("send");
    let answer = echo.next().await.expect("an answer").expect("a message");
    assert_eq!(answer, Message::text("ping"));

    let mut request = format!("ws://{}/?session=1", addresses.terminal)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "tty, other".parse().expect("header"));
    let (mut terminal, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("terminal WebSocket");
    assert_eq!(response.headers()["sec-websocket-protocol"], "tty");
    terminal.send(Message::text("echo hello\n")).await.expect("send");
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains("hello\n") {
        match tokio::time::timeout(Duration::from_secs(10), terminal.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => output.extend_from_slice(&bytes),
            other => panic!(
                "no shell output ({other:?}) after {:?}",
                String::from_utf8_lossy(&output)
            ),
        }
    }
    terminal
        .send(Message::binary(b"exit\n".to_vec()))
        .await
        .expect("send exit");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = terminal.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the terminal closes when the shell exits");

    let mut tcp = tokio::net::TcpStream::connect(&addresses.ssh)
        .await
        .expect("connect");
    tcp.write_all(b"SSH-2.0-test\r\n").await.expect("write");
    let mut echoed = [0u8; 14];
    tcp.read_exact(&mut echoed).await.expect("read the echo");
    assert_eq!(&echoed, b"SSH-2.0-test\r\n");

    running.assert_running();
    // The stand-in logs a session's end after it has sent the close frame: wait for the line.
    let logged = |log: &str| {
        log.lines()
            .any(|line| line.contains("terminal") && line.contains("shell exit"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logged(&running.log()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = running.log();
    assert!(logged(&log), "{log}");
}

#[tokio::test]
async fn workspace_standin_serves_the_page_a_terminal_and_tcp_echo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("standin.log");
    let addresses = Addresses::free();
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_workspace-standin"))
        .envs(addresses.env())
        .stdin(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start workspace-standin");
    let mut running = Running { child, log };
    check_standin(&mut running, &addresses).await;
    running.stop(nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test]
async fn the_workspace_image_runs_its_stand_in_with_busybox_as_the_shell() {
    let image = workspace_image().expect("build the workspace image");
    let config = runtime_config(&image);
    assert_eq!(config["User"], "1000:1000");
    assert!(
        config["Labels"]["org.opencontainers.image.description"]
            .as_str()
            .is_some_and(|text| text.starts_with("coder-testenv stand-in for codercom/enterprise-base")),
        "{config}"
    );
    for port in ["13337/tcp", "26337/tcp", "12212/tcp"] {
        assert!(config["ExposedPorts"].get(port).is_some(), "{config}");
    }
    let entries = entries(&image);
    let program = entry(&entries, "usr/local/bin/workspace-standin");
    assert_eq!(program.mode, 0o755);
    entry(&entries, "lib64/ld-linux-x86-64.so.2");
    assert!(entries.iter().any(|entry| entry.path.ends_with("/libc.so.6")));
    assert_eq!(entry(&entries, "bin/sh").link.as_deref(), Some("/bin/busybox"));
    assert_eq!(entry(&entries, "bin/busybox").mode, 0o755);
    assert_eq!(entry(&entries, "tmp").mode, 0o1777);
    assert_eq!(entry(&entries, "home/coder").uid, 1000);
    let passwd = String::from_utf8_lossy(&entry(&entries, "etc/passwd").contents).into_owned();
    assert!(
        passwd.contains("coder:x:1000:1000:coder:/home/coder:"),
        "{passwd}"
    );

    let rootfs = Rootfs::unpack(&image);
    let addresses = Addresses::free();
    let mut running = rootfs.start(&image, &addresses.env(), &rootfs.dir.path().join("standin.log"));
    check_standin(&mut running, &addresses).await;
    running.stop(nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test]
async fn the_stand_in_images_push_to_a_registry_and_read_back_with_skopeo() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    for (reference, image) in [
        ("library/postgres:15", postgres_image().expect("postgres image")),
        (
            "codercom/enterprise-base:ubuntu",
            workspace_image().expect("workspace image"),
        ),
    ] {
        let digest = registry.push_image(reference, &image).await.expect("push");
        let output = super::fixture::skopeo_inspect(&registry, reference, &["--config"]);
        let config: Value = serde_json::from_slice(&output).expect("config");
        assert_eq!(
            config,
            serde_json::from_slice::<Value>(&image.config.data).expect("ours")
        );
        assert_eq!(digest, image.digest());
    }
}
