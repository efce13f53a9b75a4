//! One image with one huge layer (`BENCH_HUGE_GIB` GiB, 8 by default: incompressible bytes in
//! an uncompressed tar layer, generated into the upstream registry and never held in memory).
//! Each figure the median of 3 rounds, each after a `sync`, with the peak RSS of every run:
//! - `bundle` (cold cache) against the durable fetch of the same blob (`curl -o`, then the file
//!   flushed to disk, as a bundle is before it counts): goal ≤ 1.1×;
//! - `verify`: goal ≥ 1 GB/s;
//! - `push` into an empty registry against the upload limit (`POST`, then the registry's own
//!   copy of the blob sent by `curl -T` in one `PUT`, then the config and manifest): goal ≤ 1.2×;
//! - a `bundle` and a `push` killed (SIGKILL) once half the layer has crossed, then run again:
//!   the bytes that crossed in all, counted by a proxy in front of the registry, against the
//!   blob's size (goal ≤ 1.02×);
//! - peak RSS goal ≤ 64 MiB for each command.
//!
//! It needs about three times the layer's size free on the disk of `TMPDIR` (the upstream
//! registry, the bundle, and one copy at a time); it says so and stops if there is not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::common::{
    self, ROUNDS, Samples, airgap_license, bundle_args, coder_install_measured, path, ratio, run_quiet,
    settle,
};
use coder_testenv::{Registry, RegistryFlavour};

const GIB: u64 = 1 << 30;
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

pub async fn run() {
    let gib: f64 = std::env::var("BENCH_HUGE_GIB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(8.0);
    let size = (gib * GIB as f64) as u64;
    let work = tempfile::tempdir().expect("tempdir");
    let free = free_bytes(work.path());
    if free < 3 * size + GIB {
        println!(
            "\n== one {gib} GiB layer: SKIPPED: {:.1} GiB free under {}, {:.1} GiB needed (set BENCH_HUGE_GIB lower or TMPDIR elsewhere)",
            free as f64 / GIB as f64,
            work.path().display(),
            (3 * size + GIB) as f64 / GIB as f64
        );
        return;
    }
    let upstream = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("upstream registry");
    let started = Instant::now();
    let layer = HugeImage::generate_and_push(&upstream, work.path(), size).await;
    println!();
    println!(
        "== one image, one {gib} GiB layer ({} bytes, incompressible): made and pushed in {:.1} s",
        layer.layer_size,
        started.elapsed().as_secs_f64()
    );
    let host = upstream.host();
    let spec = work.path().join("huge.yaml");
    std::fs::write(&spec, layer.spec(&host)).expect("spec");
    let lock = work.path().join("huge.lock");
    let insecure = ["--insecure-registry", host.as_str()];
    common::lock_spec(&spec, &lock, &insecure);

    // The durable fetch: the blob by curl into a file, then the file flushed.
    let fetched = work.path().join("fetched");
    let fetch = Samples::of(|_| {
        let started = Instant::now();
        run_quiet(Command::new("curl").args([
            "-sSf",
            "-o",
            path(&fetched),
            &format!("{}/v2/bench/huge/blobs/{}", upstream.url(), layer.layer_digest),
        ]));
        std::fs::File::open(&fetched)
            .and_then(|file| file.sync_all())
            .expect("flush the fetched blob");
        let took = started.elapsed();
        let _ = std::fs::remove_file(&fetched);
        took
    });

    let bundle = work.path().join("huge.bundle");
    let (bundles, bundle_peak) = common::cold_bundle_rounds(&spec, &lock, &bundle, &insecure, work.path());
    let bundle_size = std::fs::metadata(&bundle).map(|meta| meta.len()).unwrap_or(0);
    let (verifies, verify_peak) =
        common::measured_rounds(|_| coder_install_measured(&["verify", "--allow-unsigned", path(&bundle)]));

    let license = airgap_license(work.path());
    let (pushes, push_peak) = common::push_rounds(&bundle, &license).await;
    let mut limit = Samples::default();
    for _ in 0..ROUNDS {
        limit.add(layer.upload_limit(&upstream).await);
    }

    let bundle_resume = bundle_killed_half_way(&layer, &upstream, work.path()).await;
    let push_resume = push_killed_half_way(&layer, &bundle, &license).await;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };
    println!("durable fetch (curl + flush): {fetch}");
    let bundle_ratio = ratio(bundles.median(), fetch.median());
    println!(
        "bundle (cold cache):          {bundles}   bundle/fetch = {bundle_ratio:.2} (goal <= 1.1: {})   peak {:.1} MiB",
        verdict(bundle_ratio <= 1.1),
        mib(bundle_peak)
    );
    let rate = bundle_size as f64 / verifies.median().as_secs_f64() / 1e9;
    println!(
        "verify:                       {verifies}   {rate:.2} GB/s (goal >= 1: {})   peak {:.1} MiB",
        verdict(rate >= 1.0),
        mib(verify_peak)
    );
    let push_ratio = ratio(pushes.median(), limit.median());
    println!(
        "push (empty registry):        {pushes}   push/limit = {push_ratio:.2} (goal <= 1.2: {})   peak {:.1} MiB",
        verdict(push_ratio <= 1.2),
        mib(push_peak)
    );
    println!("upload limit (POST + curl -T): {limit}");
    for (what, crossed) in [("bundle", bundle_resume), ("push", push_resume)] {
        let share = crossed as f64 / layer.layer_size as f64;
        println!(
            "{what} killed at 50%, run again: {:.2} GiB crossed in all = {share:.3}x the layer (goal <= 1.02: {})",
            crossed as f64 / GIB as f64,
            verdict(share <= 1.02)
        );
    }
    println!(
        "peak RSS (goal <= 64 MiB): {}",
        verdict(
            [bundle_peak, verify_peak, push_peak]
                .iter()
                .all(|&kib| mib(kib) <= 64.0)
        )
    );
}

/// `bundle` through a counting proxy, killed once half the layer came through it, then run
/// again to the end; returns the bytes that came through in all.
async fn bundle_killed_half_way(layer: &HugeImage, upstream: &Registry, work: &Path) -> u64 {
    let proxy = crate::Proxy::start(upstream.addr(), Duration::ZERO).await;
    let far = proxy.host();
    let spec = work.join("resume.yaml");
    std::fs::write(&spec, layer.spec(&far)).expect("spec");
    let lock = work.join("resume.lock");
    let insecure = ["--insecure-registry", far.as_str()];
    common::lock_spec(&spec, &lock, &insecure);
    let (cache, output) = (work.join("resume-cache"), work.join("resume.bundle"));
    let args = bundle_args(&spec, &lock, &cache, &output, &insecure);
    proxy.answered.store(0, Ordering::Relaxed);
    settle();
    kill_half_way(&args, &proxy.answered, layer.layer_size / 2).await;
    common::coder_install(&args);
    let crossed = proxy.answered.load(Ordering::Relaxed);
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_dir_all(&cache);
    crossed
}

/// `push` into an empty registry through a counting proxy, killed once half the layer went
/// through it, then run again to the end; returns the bytes that went through in all.
async fn push_killed_half_way(layer: &HugeImage, bundle: &Path, license: &Path) -> u64 {
    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("push target");
    let proxy = crate::Proxy::start(target.addr(), Duration::ZERO).await;
    let far = proxy.host();
    let args = common::push_args(bundle, &far, license);
    settle();
    kill_half_way(&args, &proxy.requested, layer.layer_size / 2).await;
    common::coder_install(&args);
    proxy.requested.load(Ordering::Relaxed)
}

/// Runs coder-install with `args` and kills it (SIGKILL) once `counter` reaches `at`.
async fn kill_half_way(args: &[&str], counter: &AtomicU64, at: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run coder-install");
    loop {
        if counter.load(Ordering::Relaxed) >= at {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("coder-install {args:?} ended ({status}) before half the layer crossed");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The image: its layer (pushed to `bench/huge` of the upstream registry), config, manifest.
struct HugeImage {
    layer_digest: String,
    layer_size: u64,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl HugeImage {
    /// Writes a tar layer of one `size`-byte file of xorshift output into `work` (hashing it as
    /// it goes), uploads it to the upstream registry with `curl -T`, removes the file, then
    /// pushes the config and the manifest under `bench/huge:1`.
    async fn generate_and_push(upstream: &Registry, work: &Path, size: u64) -> Self {
        let file = work.join("layer.tar");
        let (layer_digest, layer_size, diff_id) = write_layer(&file, size);
        let base = upstream.url();
        let client = reqwest::Client::new();
        let url = common::upload_session(&client, &base, "bench/huge").await;
        let separator = if url.contains('?') { '&' } else { '?' };
        curl_put(&format!("{url}{separator}digest={layer_digest}"), &file);
        let _ = std::fs::remove_file(&file);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))
        .expect("config JSON");
        let config_digest = digest_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": { "mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size }],
        }))
        .expect("manifest JSON");
        let image = Self {
            layer_digest,
            layer_size,
            config,
            manifest,
        };
        image.push_small_parts(&client, &base, "bench/huge", "1").await;
        image
    }

    async fn push_small_parts(&self, client: &reqwest::Client, base: &str, repository: &str, tag: &str) {
        common::upload_blob(
            client,
            base,
            repository,
            &digest_of(&self.config),
            self.config.clone(),
        )
        .await;
        let url = format!("{base}/v2/{repository}/manifests/{tag}");
        common::put_created(client, url, MANIFEST_TYPE, self.manifest.clone()).await;
    }

    fn spec(&self, host: &str) -> String {
        format!("name: bench\nversion: 1.0.0\nimages:\n  - name: huge\n    ref: {host}/bench/huge:1\n")
    }

    /// The upload limit: into a new registry, `POST` then the upstream registry's own file of
    /// the layer sent by `curl -T` in one `PUT`, then the config and the manifest.
    async fn upload_limit(&self, upstream: &Registry) -> Duration {
        let hex = self.layer_digest.trim_start_matches("sha256:");
        let data: PathBuf = upstream.storage_dir().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        let target = Registry::start(RegistryFlavour::Plain)
            .await
            .expect("upload-limit target");
        let base = target.url();
        let client = reqwest::Client::new();
        settle();
        let started = Instant::now();
        let url = common::upload_session(&client, &base, "bench/huge").await;
        let separator = if url.contains('?') { '&' } else { '?' };
        curl_put(&format!("{url}{separator}digest={}", self.layer_digest), &data);
        self.push_small_parts(&client, &base, "bench/huge", "1").await;
        started.elapsed()
    }
}

/// `curl -T FILE` (one streamed `PUT`), which must be answered 201.
fn curl_put(url: &str, file: &Path) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", path(file)])
        .args(["-H", "Content-Type: application/octet-stream", url])
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        code,
        "201",
        "curl -T {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes the layer (a tar of one file `big.bin` of `size` pseudo-random bytes) to `file`;
/// returns its digest, its size, and its diff ID (the same: it is not compressed).
fn write_layer(file: &Path, size: u64) -> (String, u64, String) {
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(file).expect("layer file"));
    let mut hash = sha2::Sha256::new();
    let mut put = |bytes: &[u8]| {
        hash.update(bytes);
        out.write_all(bytes).expect("write the layer");
    };
    let mut header = tar::Header::new_ustar();
    header.set_path("big.bin").expect("tar path");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    put(header.as_bytes());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let take = left.min(chunk.len() as u64) as usize;
        put(&chunk[..take]);
        left -= take as u64;
    }
    let padding = (512 - size % 512) % 512;
    put(&vec![0u8; padding as usize + 1024]);
    out.flush().expect("flush the layer");
    let layer_size = 512 + size + padding + 1024;
    let digest = format!("sha256:{}", hex::encode(hash.finalize()));
    (digest.clone(), layer_size, digest)
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Bytes free for an unprivileged user on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1", path(dir)])
        .output()
        .expect("run df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or(0)
}
