//! A small upstream world for bundle tests: a real registry with fixture images, a spec and a
//! chart on disk, and a way to run the real `coder-install` binary against them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coder_testenv::fixture::{ImageBuilder, Index, LayerBuilder, MediaTypes, Platform};
use coder_testenv::{Registry, RegistryFlavour, ThrottledLink};

/// The `coder-install` binary under test, with `args`.
pub fn coder_install_command<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coder-install"));
    command.args(args);
    command
}

/// Runs `coder-install` with `args`, and `env` set.
pub fn coder_install<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>, env: &[(&str, &Path)]) -> Output {
    let mut command = coder_install_command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run coder-install")
}

/// Asserts that `coder-install` succeeded and returns its stdout.
pub fn success(output: Output) -> String {
    coder_testenv::cli::success("coder-install", output)
}

pub use coder_testenv::cli::failure;

/// Runs skopeo `subcommand` with `args` against a registry reached with `ca` (HTTPS, that CA
/// trusted) or plain HTTP (`None`), with `credentials` if given; for `copy` the registry is the
/// source. Returns skopeo's output (the caller checks its status).
pub fn skopeo_output(
    subcommand: &str,
    args: &[&str],
    ca: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> Output {
    let flag = |name: &str| {
        if subcommand == "copy" {
            format!("--src-{name}")
        } else {
            format!("--{name}")
        }
    };
    let home = tempfile::tempdir().expect("skopeo home");
    let mut command = Command::new("skopeo");
    command.arg(subcommand);
    match ca {
        Some(ca) => {
            std::fs::copy(ca, home.path().join("ca.crt")).expect("copy CA");
            command.arg(flag("cert-dir")).arg(home.path());
        }
        None => {
            command.arg(format!("{}=false", flag("tls-verify")));
        }
    }
    if let Some((user, password)) = credentials {
        command.arg(flag("creds")).arg(format!("{user}:{password}"));
    }
    command
        .args(args)
        .env("HOME", home.path())
        .output()
        .expect("run skopeo (apt-get install skopeo)")
}

/// [`skopeo_output`], which must succeed; returns its stdout.
pub fn skopeo(
    subcommand: &str,
    args: &[&str],
    ca: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> Vec<u8> {
    let output = skopeo_output(subcommand, args, ca, credentials);
    assert!(
        output.status.success(),
        "skopeo {subcommand} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The repositories `registry` holds (its `/v2/_catalog`).
pub async fn catalog(registry: &Registry) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::get(format!("{}/v2/_catalog", registry.url()))
        .await
        .expect("catalog")
        .json()
        .await
        .expect("catalog JSON");
    body["repositories"].as_array().cloned().unwrap_or_default()
}

/// The upstream registry, its images, and a work folder with spec and chart.
pub struct World {
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    /// The multi-arch app image (amd64 and arm64, sharing a base layer with `db`).
    pub app: Index,
    /// The single-platform Docker schema2 image.
    pub db: coder_testenv::fixture::Image,
}

/// A base layer that both images share, to test de-duplication.
fn shared_base() -> LayerBuilder {
    LayerBuilder::new().random_file("usr/lib/base.bin", 256 * 1024, 42)
}

impl World {
    pub async fn new(flavour: RegistryFlavour) -> Self {
        let registry = Registry::start(flavour).await.expect("start registry");
        let app_image = |architecture: &str| {
            ImageBuilder::new()
                .platform(Platform::linux(architecture))
                .layer(shared_base())
                .layer(LayerBuilder::new().random_file(
                    "app/bin",
                    128 * 1024,
                    if architecture == "amd64" { 1 } else { 2 },
                ))
                .build()
                .expect("build app image")
        };
        let app = Index::new(MediaTypes::Oci, vec![app_image("amd64"), app_image("arm64")]).expect("index");
        registry.push_index("team/app:1.0", &app).await.expect("push app");
        let db = ImageBuilder::busybox()
            .expect("busybox")
            .media_types(MediaTypes::DockerSchema2)
            .layer(shared_base())
            .build()
            .expect("build db");
        registry.push_image("library/db:13", &db).await.expect("push db");

        let dir = tempfile::tempdir().expect("tempdir");
        let chart = dir.path().join("charts/coder");
        std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: coder\nversion: 1.2.3\n",
        )
        .expect("Chart.yaml");
        std::fs::write(chart.join("templates/configmap.yaml"), "kind: ConfigMap\n").expect("template");
        let world = Self {
            registry,
            dir,
            app,
            db,
        };
        world.write_spec(&world.spec_text());
        world
    }

    /// Publishes version 2 of the app (`team/app:2.0`, one platform): the shared base layer
    /// kept, a new layer added; and writes the spec of release 2.0.0 that uses it.
    pub async fn publish_app_v2(&self) -> coder_testenv::fixture::Image {
        let app2 = ImageBuilder::new()
            .layer(shared_base())
            .layer(LayerBuilder::new().random_file("app/bin", 64 * 1024, 99))
            .build()
            .expect("build app 2");
        self.registry
            .push_image("team/app:2.0", &app2)
            .await
            .expect("push app 2");
        self.write_spec(
            &self
                .spec_text()
                .replace("team/app:1.0", "team/app:2.0")
                .replace("version: 1.0.0", "version: 2.0.0"),
        );
        app2
    }

    /// Pushes `team/big:1`, an image of one layer holding a random file of `size` bytes (from
    /// `seed`), and returns it.
    pub async fn push_big_image(&self, size: usize, seed: u64) -> coder_testenv::fixture::Image {
        let big = ImageBuilder::new()
            .layer(LayerBuilder::new().random_file("big.bin", size, seed))
            .build()
            .expect("build big");
        self.registry
            .push_image("team/big:1", &big)
            .await
            .expect("push big");
        big
    }

    pub fn app_ref(&self) -> String {
        format!("{}/team/app:1.0", self.registry.host())
    }

    pub fn db_ref(&self) -> String {
        format!("{}/library/db:13", self.registry.host())
    }

    pub fn spec_text(&self) -> String {
        format!(
            "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n  - name: app\n    ref: {}\n  - name: db\n    ref: {}\ncharts:\n  - name: coder\n    path: charts/coder\n",
            self.app_ref(),
            self.db_ref()
        )
    }

    pub fn write_spec(&self, text: &str) {
        std::fs::write(self.spec(), text).expect("write spec");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn spec(&self) -> PathBuf {
        self.path("coder.yaml")
    }

    pub fn lock(&self) -> PathBuf {
        self.path("images.lock")
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// Registry flags for this world's registry.
    pub fn registry_args(&self) -> Vec<String> {
        match self.registry.ca_file() {
            Some(ca) => vec!["--registry-ca".to_owned(), ca.display().to_string()],
            None => vec!["--insecure-registry".to_owned(), self.registry.host()],
        }
    }

    /// The environment for the binary: a Docker config with this registry's credentials, if any.
    pub fn docker_config_dir(&self) -> PathBuf {
        let dir = self.path("docker");
        std::fs::create_dir_all(&dir).expect("docker config dir");
        let auths = match self.registry.credentials() {
            Some((user, password)) => {
                use base64::Engine;
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                serde_json::json!({ self.registry.host(): { "auth": auth } })
            }
            None => serde_json::json!({}),
        };
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({ "auths": auths }).to_string(),
        )
        .expect("config.json");
        dir
    }

    /// Runs a subcommand with this world's registry flags and Docker config.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        if matches!(args.first(), Some(&"lock") | Some(&"bundle")) {
            all.extend(self.registry_args());
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let docker = self.docker_config_dir();
        let cache_home = self.path("xdg-cache");
        coder_install(
            &all,
            &[("DOCKER_CONFIG", &docker), ("XDG_CACHE_HOME", &cache_home)],
        )
    }

    /// Runs `lock` on the current spec; returns the spec and lock paths as arguments.
    pub fn lock_spec(&self) -> (String, String) {
        let spec = self.spec().display().to_string();
        let lock = self.lock().display().to_string();
        success(self.run(&["lock", "--spec", &spec, "-o", &lock]));
        (spec, lock)
    }

    /// `lock` then `bundle` into `name`; returns the bundle path and the JSON summary.
    pub fn lock_and_bundle(&self, name: &str) -> (PathBuf, serde_json::Value) {
        self.lock_spec();
        self.bundle(name)
    }

    /// `bundle` into `name` from the existing lock.
    pub fn bundle(&self, name: &str) -> (PathBuf, serde_json::Value) {
        let bundle = self.path(name);
        let summary = self.bundle_into(&bundle, &[]);
        (bundle, summary)
    }

    /// `bundle` into `output` from the existing lock, with `extra` flags; returns the JSON
    /// summary.
    pub fn bundle_into(&self, output: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = self.bundle_args(output);
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&success(self.run(&args))).expect("bundle summary JSON")
    }

    /// The arguments of `bundle` from the current spec and lock into `output`, with JSON output
    /// (registry flags are added by [`World::run`], or by the caller when running it otherwise).
    pub fn bundle_args(&self, output: &Path) -> Vec<String> {
        let text = |path: &Path| path.display().to_string();
        vec![
            "bundle".to_owned(),
            "--spec".to_owned(),
            text(&self.spec()),
            "--lock".to_owned(),
            text(&self.lock()),
            "--cache".to_owned(),
            text(&self.cache()),
            "-o".to_owned(),
            text(output),
            "--output".to_owned(),
            "json".to_owned(),
        ]
    }

    /// An image of `count` random layers of `size` bytes each (seeds from `seed`), pushed as
    /// `team/layers:1` and reached through a [`ThrottledLink`] of `rate` bytes a second; the
    /// spec names it through the link, and is locked. Returns the image and the link.
    pub async fn layers_through_a_slow_link(
        &self,
        count: u64,
        size: usize,
        seed: u64,
        rate: u64,
    ) -> (coder_testenv::fixture::Image, ThrottledLink) {
        let mut builder = ImageBuilder::new();
        for layer in 0..count {
            builder = builder.layer(LayerBuilder::new().random_file("layer.bin", size, seed + layer));
        }
        let image = builder.build().expect("build the image");
        self.registry
            .push_image("team/layers:1", &image)
            .await
            .expect("push the image");
        let link = ThrottledLink::start(self.registry.addr(), rate).expect("start the link");
        let host = link.host();
        self.write_spec(&format!(
            "name: coder\nversion: 1.0.0\nimages:\n  - name: layers\n    ref: {host}/team/layers:1\n"
        ));
        let (spec, lock) = (
            self.spec().display().to_string(),
            self.lock().display().to_string(),
        );
        success(coder_install(
            ["lock", "--spec", &spec, "-o", &lock, "--insecure-registry", &host],
            &[],
        ));
        (image, link)
    }

    /// The arguments of `bundle` into `output` (as [`World::bundle_args`]) with the cache
    /// folder `cache` of the work folder, reaching the registry at `host` (a link's).
    pub fn bundle_args_through(&self, output: &Path, cache: &str, host: &str) -> Vec<String> {
        let mut args = self.bundle_args(output);
        let at = args.iter().position(|arg| arg == "--cache").expect("--cache") + 1;
        args[at] = self.path(cache).display().to_string();
        args.extend(["--insecure-registry".to_owned(), host.to_owned()]);
        args
    }
}

/// Runs `coder-install` with `args` and kills it (SIGKILL) as soon as `ready` says so (polled
/// every 2 ms, for up to two minutes); fails if the run ends first. `what` names the moment.
pub fn run_and_kill_when(args: &[String], ready: impl Fn() -> bool, what: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start coder-install");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got to {what}"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run finished before it was killed at {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill the run");
    assert!(!child.wait().expect("reap").success(), "a killed run succeeded");
}

/// The size of an image's config and layers.
pub fn blob_bytes(image: &coder_testenv::fixture::Image) -> u64 {
    image
        .layers
        .iter()
        .chain([&image.config])
        .map(|blob| blob.data.len() as u64)
        .sum()
}
