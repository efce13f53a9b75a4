//! `serve` benchmark: `cargo benches -p coder-install --bench serve` prints figures, asserts nothing.
//!
//! The same images (4, each a 48 MiB and a 24 MiB layer: 288 MiB) are pulled from the CNCF
//! distribution registry (Debian's `docker-registry`, filesystem storage, content pushed there
//! by `coder-install push`) and from `coder-install serve` of the bundle, on loopback:
//! - every manifest and blob, 4 at a time, over HTTP with one client (bodies read and counted,
//!   not stored): the servers' throughput; each server is read once untimed first, so both
//!   serve from the page cache;
//! - `skopeo copy` of every image into an OCI layout: what a real client sees end to end.
//!
//! The goal is serve ≥ 1.0× the distribution registry's throughput.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use coder_testenv::fixture::{Image, ImageBuilder, LayerBuilder};
use coder_testenv::{Registry, RegistryFlavour};
use futures_util::StreamExt;

const MIB: usize = 1 << 20;
const IMAGES: u64 = 4;
const CONCURRENCY: usize = 4;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let upstream = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("upstream registry");
    let work = tempfile::tempdir().expect("tempdir");
    let images: Vec<Image> = (0..IMAGES)
        .map(|index| {
            ImageBuilder::new()
                .layer(LayerBuilder::new().random_file("base.bin", 48 * MIB, 300 + index))
                .layer(LayerBuilder::new().random_file("app.bin", 24 * MIB, 400 + index))
                .build()
                .expect("build fixture")
        })
        .collect();
    let mut spec = String::from("name: bench\nversion: 1.0.0\nimages:\n");
    for (index, image) in images.iter().enumerate() {
        upstream
            .push_image(&format!("bench/image{index}:1"), image)
            .await
            .expect("push");
        spec.push_str(&format!(
            "  - name: image{index}\n    ref: {}/bench/image{index}:1\n",
            upstream.host()
        ));
    }
    let spec_path = work.path().join("coder.yaml");
    std::fs::write(&spec_path, spec).expect("spec");
    let lock = work.path().join("images.lock");
    let bundle = work.path().join("bench.bundle");
    let host = upstream.host();
    coder_install(&[
        "lock",
        "--spec",
        text(&spec_path),
        "-o",
        text(&lock),
        "--insecure-registry",
        &host,
    ]);
    coder_install(&[
        "bundle",
        "--spec",
        text(&spec_path),
        "--lock",
        text(&lock),
        "--cache",
        text(&work.path().join("cache")),
        "-o",
        text(&bundle),
        "--insecure-registry",
        &host,
    ]);

    // The distribution registry with the bundle's content, at the same paths serve uses.
    let distribution = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("distribution registry");
    let license = work.path().join("bench.license");
    let claims = coder_license::test_keys::claims(coder_license::Tier::Enterprise, true, 50, 365);
    std::fs::write(&license, coder_license::test_keys::sign(&claims).expect("sign")).expect("license");
    coder_install(&[
        "push",
        "--allow-unsigned",
        "--bundle",
        text(&bundle),
        "--registry",
        &distribution.host(),
        "--insecure-registry",
        &distribution.host(),
        "--license",
        text(&license),
    ]);
    let served = Served::start(&bundle);

    // Every (repository, manifest digest, blob digests) to pull.
    let mut targets: Vec<(String, String, Vec<String>)> = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let blobs = image
            .layers
            .iter()
            .chain([&image.config])
            .map(|blob| blob.digest.clone())
            .collect();
        targets.push((
            format!("bench/image{index}"),
            image.manifest.digest.clone(),
            blobs,
        ));
    }
    let total: usize = images
        .iter()
        .flat_map(|image| image.layers.iter().chain([&image.config]))
        .map(|blob| blob.data.len())
        .sum();
    println!(
        "image set: {IMAGES} images, {:.0} MiB of blobs; {CONCURRENCY} downloads at a time, loopback",
        total as f64 / MIB as f64
    );

    let http = reqwest::Client::new();
    let distribution_url = distribution.url();
    let serve_url = format!("http://{}", served.host);
    // Untimed first reads: both servers then read from the page cache.
    pull_everything(&http, &distribution_url, &targets).await;
    pull_everything(&http, &serve_url, &targets).await;
    let (distribution_bytes, distribution_seconds) =
        pull_everything(&http, &distribution_url, &targets).await;
    let (serve_bytes, serve_seconds) = pull_everything(&http, &serve_url, &targets).await;
    assert_eq!(distribution_bytes, serve_bytes, "both serve the same bytes");
    let rate = |bytes: u64, seconds: f64| bytes as f64 / MIB as f64 / seconds;
    let (distribution_rate, serve_rate) = (
        rate(distribution_bytes, distribution_seconds),
        rate(serve_bytes, serve_seconds),
    );
    println!(
        "pull every blob, distribution registry: {distribution_seconds:.2} s, {distribution_rate:.0} MiB/s"
    );
    println!("pull every blob, coder-install serve:   {serve_seconds:.2} s, {serve_rate:.0} MiB/s");
    println!(
        "serve throughput vs distribution registry: {:.2}x (goal >= 1.0)",
        serve_rate / distribution_rate
    );

    let skopeo_seconds = |base: &str| {
        let layout = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        for (repository, _, _) in &targets {
            let status = Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false", "--quiet"])
                .arg(format!("docker://{base}/{repository}:1"))
                .arg(format!(
                    "oci:{}:{}",
                    layout.path().display(),
                    repository.replace('/', "-")
                ))
                .stdout(Stdio::null())
                .status()
                .expect("run skopeo");
            assert!(status.success(), "skopeo copy from {base}");
        }
        started.elapsed().as_secs_f64()
    };
    let distribution_skopeo = skopeo_seconds(&distribution.host());
    let serve_skopeo = skopeo_seconds(&served.host);
    println!(
        "skopeo copy of every image, distribution registry: {distribution_skopeo:.2} s; coder-install serve: {serve_skopeo:.2} s ({:.2}x the registry's time)",
        serve_skopeo / distribution_skopeo
    );
}

/// GETs every manifest and blob of `targets` from `base`, [`CONCURRENCY`] at a time, reading
/// and counting the bodies; returns the bytes and the seconds it took.
async fn pull_everything(
    http: &reqwest::Client,
    base: &str,
    targets: &[(String, String, Vec<String>)],
) -> (u64, f64) {
    let urls: Vec<String> = targets
        .iter()
        .flat_map(|(repository, manifest, blobs)| {
            std::iter::once(format!("{base}/v2/{repository}/manifests/{manifest}")).chain(
                blobs
                    .iter()
                    .map(move |blob| format!("{base}/v2/{repository}/blobs/{blob}")),
            )
        })
        .collect();
    let started = Instant::now();
    let sizes: Vec<u64> = futures_util::stream::iter(urls)
        .map(|url| async move {
            let response = http
                .get(&url)
                .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .expect("GET");
            assert!(response.status().is_success(), "{url}: {}", response.status());
            let mut body = response.bytes_stream();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                size += chunk.expect("body").len() as u64;
            }
            size
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    (sizes.iter().sum(), started.elapsed().as_secs_f64())
}

/// `coder-install serve` of the bundle on a free port; stopped when dropped.
struct Served {
    child: Child,
    host: String,
}

impl Served {
    fn start(bundle: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
            .args(["serve", "--bundle", text(bundle), "--allow-unsigned"])
            .args(["--listen", "127.0.0.1:0", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run coder-install serve");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("serve's JSON line");
        let summary: serde_json::Value = serde_json::from_str(&line).expect("serve's JSON");
        let host = summary["listen"].as_str().expect("listen").to_owned();
        Self { child, host }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn coder_install(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(args)
        .output()
        .expect("run coder-install");
    assert!(
        output.status.success(),
        "coder-install {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
