//! `serve` benchmark: `cargo benches -p coder-install --bench serve` prints figures, asserts nothing.
//!
//! The same images (16, each a 12 MiB and a 6 MiB layer: 288 MiB) are pulled from the CNCF
//! distribution registry (Debian's `docker-registry`, filesystem storage, content pushed there
//! by `coder-install push`) and from `coder-install serve` of the bundle, on loopback:
//! - every manifest and blob, 4 at a time, over HTTP with one client (bodies read and counted,
//!   not stored): the servers' throughput; each server is read once untimed first, so both
//!   serve from the page cache;
//! - `skopeo copy` of every image into an OCI layout: what a real client sees end to end.
//!
//! - 16 pullers at once, each pulling its own image 4 times (manifest, then config and layers
//!   one after another, as one client pulls one image): the throughput of each server (median of
//!   5 rounds, the servers taking turns) and the p50/p99 time to first byte of every request.
//!
//! The goals: serve ≥ 1.0× the distribution registry's throughput, and ≥ 1.5× under 16 pullers.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::{MIB, PullTarget, Served, coder_install, path as text};

use coder_testenv::fixture::{Image, ImageBuilder, LayerBuilder};
use coder_testenv::{Registry, RegistryFlavour};

const IMAGES: u64 = 16;
const CONCURRENCY: usize = 4;
/// Clients pulling at once, each its own image.
const PULLERS: usize = 16;
/// How many times each of them pulls its image in a round.
const PULLS_EACH: usize = 4;
/// Rounds of the pullers per server; the median is reported.
const PULLER_ROUNDS: usize = 5;

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
                .layer(LayerBuilder::new().random_file("base.bin", 12 * MIB, 300 + index))
                .layer(LayerBuilder::new().random_file("app.bin", 6 * MIB, 400 + index))
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
    let served = Served::start(&bundle, &[]);

    // Every image's repository, manifest and blobs, to pull.
    let targets: Vec<PullTarget> = images
        .iter()
        .enumerate()
        .map(|(index, image)| PullTarget {
            repository: format!("bench/image{index}"),
            manifests: vec![(image.manifest.digest.clone(), image.manifest.media_type.clone())],
            blobs: image
                .layers
                .iter()
                .chain([&image.config])
                .map(|blob| blob.digest.clone())
                .collect(),
        })
        .collect();
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

    many_pullers(&http, &distribution_url, &serve_url, &targets).await;

    let skopeo_seconds = |base: &str| {
        let layout = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        for PullTarget { repository, .. } in &targets {
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

/// Every manifest and blob of `targets` from `base`, [`CONCURRENCY`] at a time: the bytes and
/// the seconds it took.
async fn pull_everything(http: &reqwest::Client, base: &str, targets: &[PullTarget]) -> (u64, f64) {
    let started = Instant::now();
    let bytes = common::pull_everything(http, base, targets, CONCURRENCY).await;
    (bytes, started.elapsed().as_secs_f64())
}

/// [`PULLERS`] clients at once, each pulling its own image [`PULLS_EACH`] times in a row: per
/// server, [`PULLER_ROUNDS`] rounds (the servers taking turns, so that a slower moment of the
/// machine falls on both) of the throughput, and every request's time to first byte.
async fn many_pullers(http: &reqwest::Client, distribution: &str, serve: &str, targets: &[PullTarget]) {
    let servers = [distribution, serve];
    let mut rates = [Vec::new(), Vec::new()];
    let mut first_bytes = [Vec::new(), Vec::new()];
    for _ in 0..PULLER_ROUNDS {
        for (index, base) in servers.iter().enumerate() {
            let started = Instant::now();
            let pulls =
                futures_util::future::join_all(targets.iter().take(PULLERS).map(|target| async move {
                    let mut pulled = (0, Vec::new());
                    for _ in 0..PULLS_EACH {
                        let (bytes, times) = pull_one_image(http, base, target).await;
                        pulled.0 += bytes;
                        pulled.1.extend(times);
                    }
                    pulled
                }))
                .await;
            let seconds = started.elapsed().as_secs_f64();
            let bytes: u64 = pulls.iter().map(|(bytes, _)| bytes).sum();
            rates[index].push(bytes as f64 / MIB as f64 / seconds);
            first_bytes[index].extend(pulls.into_iter().flat_map(|(_, times)| times));
        }
    }
    let mut figures = Vec::new();
    for (rates, first_bytes) in rates.iter_mut().zip(first_bytes.iter_mut()) {
        rates.sort_by(f64::total_cmp);
        first_bytes.sort();
        let percentile = |p: f64| {
            let rank = ((p / 100.0) * first_bytes.len() as f64).ceil() as usize;
            first_bytes[rank.clamp(1, first_bytes.len()) - 1].as_secs_f64() * 1e3
        };
        let (low, high) = (rates[0], rates[rates.len() - 1]);
        figures.push((
            rates[rates.len() / 2],
            low,
            high,
            percentile(50.0),
            percentile(99.0),
        ));
    }
    for ((rate, low, high, p50, p99), name) in figures
        .iter()
        .zip(["distribution registry", "coder-install serve  "])
    {
        println!(
            "{PULLERS} pullers, {name}: {rate:.0} MiB/s ({low:.0}-{high:.0}), time to first byte p50 {p50:.1} ms, p99 {p99:.1} ms"
        );
    }
    println!(
        "serve throughput vs distribution registry under {PULLERS} pullers: {:.2}x (goal >= 1.5)",
        figures[1].0 / figures[0].0
    );
}

/// One client's pull of one image: the manifest, then each blob, one request after another;
/// returns the bytes and each request's time to its first byte.
async fn pull_one_image(
    http: &reqwest::Client,
    base: &str,
    target: &PullTarget,
) -> (u64, Vec<std::time::Duration>) {
    let mut bytes = 0;
    let mut first_bytes = Vec::new();
    for (url, accept) in target.requests(base) {
        let (size, first_byte) = common::get_counted(http, &url, accept).await;
        bytes += size;
        first_bytes.push(first_byte);
    }
    (bytes, first_bytes)
}
