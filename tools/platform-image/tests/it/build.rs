//! Building to an OCI layout: determinism, contents, and the binary running from the layer alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tool::{platform_image, skopeo_json, static_binary, success};

const EPOCH: &str = "1700000000";

fn build_layout(binary: &Path, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let epoch_given = extra.contains(&"--source-date-epoch");
    let mut args = vec!["build", "--binary", binary.to_str().expect("utf-8 path")];
    if !epoch_given {
        args.extend(["--source-date-epoch", EPOCH]);
    }
    args.extend([
        "--oci-layout",
        dir.to_str().expect("utf-8 path"),
        "--output",
        "json",
    ]);
    args.extend_from_slice(extra);
    serde_json::from_str(&success(platform_image(&args, None))).expect("JSON report")
}

/// The layer of the layout's only image: its raw tar.
fn layer_tar(layout: &Path) -> Vec<u8> {
    let read_blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(layout.join("blobs/sha256").join(hex)).expect("read blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index");
    let manifest: serde_json::Value = serde_json::from_slice(&read_blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ))
    .expect("manifest");
    let layer = read_blob(manifest["layers"][0]["digest"].as_str().expect("layer digest"));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar)
        .expect("gunzip layer");
    tar
}

/// `(path, mode, uid, gid)` of every entry.
fn tar_entries(tar: &[u8]) -> Vec<(String, u32, u64, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
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
            )
        })
        .collect()
}

/// Unpacks the layer into a fresh directory: the container's whole root file system.
fn unpack(tar: &[u8]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.unpack(root.path()).expect("unpack layer");
    root
}

/// Runs `command` inside `root` (chroot) as 65532:65532, as the image's config says.
///
/// Like a container runtime, it first supplies the devices the OCI runtime spec requires in
/// every container (`/dev/null`, `zero`, `full`, `random`, `urandom`): the image does not carry
/// them. (getrandom falls back to `/dev/urandom` in a static glibc binary, where it cannot find
/// the libc `getrandom` function with dlsym.)
fn run_in_root(root: &Path, command: &[&str]) -> std::process::Output {
    assert!(
        nix_is_root(),
        "these tests chroot into the unpacked layer and need root (scripts/test.sh runs as root)"
    );
    std::fs::create_dir_all(root.join("dev")).expect("create dev");
    for (name, minor) in [
        ("null", "3"),
        ("zero", "5"),
        ("full", "7"),
        ("random", "8"),
        ("urandom", "9"),
    ] {
        let node = root.join("dev").join(name);
        if !node.exists() {
            let status = Command::new("mknod")
                .args(["-m", "666"])
                .arg(&node)
                .args(["c", "1", minor])
                .status()
                .expect("run mknod");
            assert!(status.success(), "mknod {}", node.display());
        }
    }
    Command::new("/usr/sbin/chroot")
        .arg("--userspec=65532:65532")
        .arg(root)
        .args(command)
        .env_clear()
        .env("PATH", "/usr/local/bin")
        .output()
        .expect("run chroot")
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[test]
fn the_same_binary_gives_the_same_digest_and_runs_from_the_layer_alone() {
    let binary = static_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let (first_dir, second_dir) = (work.path().join("first"), work.path().join("second"));
    let started = std::time::Instant::now();
    let first = build_layout(&binary, &first_dir, &[]);
    eprintln!(
        "built {} in {:.1?}: {first:#}",
        binary.display(),
        started.elapsed()
    );
    let second = build_layout(&binary, &second_dir, &[]);
    assert_eq!(first["digest"], second["digest"], "two builds of the same inputs");
    assert_eq!(first["layer"], second["layer"]);
    assert_eq!(first["linkage"], "static", "{first:#}");
    assert_eq!(first["shared_libraries"], serde_json::json!([]));
    let later = build_layout(
        &binary,
        &work.path().join("later"),
        &["--source-date-epoch", "1700000001"],
    );
    assert_ne!(first["digest"], later["digest"], "another epoch is another image");

    // skopeo reads the layout and finds the same digest under the version tag.
    let version = first["version"].as_str().expect("version");
    let inspected = skopeo_json(&["inspect", &format!("oci:{}:{version}", first_dir.display())]);
    assert_eq!(inspected["Digest"], first["digest"]);
    let config = skopeo_json(&[
        "inspect",
        "--config",
        &format!("oci:{}:{version}", first_dir.display()),
    ]);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    // The layer: sorted entries, explicit owners, /tmp sticky and world-writable.
    let tar = layer_tar(&first_dir);
    let entries = tar_entries(&tar);
    let paths: Vec<&str> = entries.iter().map(|entry| entry.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted);
    assert!(
        entries.contains(&("tmp/".to_owned(), 0o1777, 0, 0)),
        "{entries:?}"
    );
    assert!(entries.contains(&("home/nonroot/".to_owned(), 0o700, 65532, 65532)));
    assert!(entries.contains(&("usr/local/bin/coder-service".to_owned(), 0o755, 0, 0)));
    assert!(entries.contains(&("etc/ssl/certs/ca-certificates.crt".to_owned(), 0o644, 0, 0)));
    assert!(
        !paths.iter().any(|path| path.contains(".so")),
        "a static image has no libraries"
    );

    let root = unpack(&tar);
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:"),
        "{passwd}"
    );
    assert_eq!(
        std::fs::read(root.path().join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle"),
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").expect("host CA bundle")
    );

    // Nothing but the layer: the binary runs as 65532 in a root holding only what the image holds.
    let output = run_in_root(root.path(), &["/usr/local/bin/coder-service", "--version"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("coder-service {version}")
    );
    let ldd = Command::new("ldd").arg(&binary).output().expect("run ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd {}: {ldd}",
        binary.display()
    );
}

#[test]
fn a_dynamic_binary_brings_exactly_its_libraries_and_loader() {
    // /bin/echo stands in for a dynamically linked coder-service: it needs libc and the loader.
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let report = build_layout(Path::new("/bin/echo"), &layout, &["--version", "0.0.0-dynamic"]);
    assert_eq!(report["linkage"], "dynamic");
    let libraries: Vec<PathBuf> = report["shared_libraries"]
        .as_array()
        .expect("libraries")
        .iter()
        .map(|library| PathBuf::from(library.as_str().expect("path")))
        .collect();
    assert!(
        libraries.iter().any(|library| library.ends_with("libc.so.6")),
        "{libraries:?}"
    );
    let tar = layer_tar(&layout);
    let paths: Vec<String> = tar_entries(&tar).into_iter().map(|entry| entry.0).collect();
    let shared: Vec<&String> = paths.iter().filter(|path| path.contains(".so")).collect();
    assert_eq!(
        shared.len(),
        libraries.len(),
        "exactly what ldd lists: {shared:?}"
    );

    let root = unpack(&tar);
    let output = run_in_root(
        root.path(),
        &["/usr/local/bin/coder-service", "from", "the", "layer"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from the layer\n");
}

#[tokio::test]
async fn the_static_binary_migrates_a_database_by_host_name_from_the_bare_layer() {
    // The manager reaches PostgreSQL by a Service name: static glibc must resolve it (from
    // /etc/hosts here, which Kubernetes mounts into every container) with no libc in the image.
    let binary = static_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    build_layout(&binary, &layout, &[]);
    let root = unpack(&layer_tar(&layout));
    std::fs::write(root.path().join("etc/hosts"), "127.0.0.1 postgres.coder.test\n").expect("write hosts");

    let postgres = coder_testenv::Postgres::start().await.expect("start postgres");
    let url = postgres
        .create_database("platform_image")
        .await
        .expect("create database")
        .replace("127.0.0.1", "postgres.coder.test");
    assert!(url.contains("@postgres.coder.test:"), "{url}");
    let output = run_in_root(
        root.path(),
        &["/usr/local/bin/coder-service", "migrate", "--pg-url", &url],
    );
    assert!(
        output.status.success(),
        "coder-service migrate in the bare layer: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
