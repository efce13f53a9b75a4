//! Bundle benchmark: `cargo benches -p coder-install --bench bundle` prints figures, asserts nothing.
//! The compared figures are medians of three rounds (with the fastest and slowest), each
//! measured after a `sync`, so that one round does not pay for the disk writes of another.
//!
//! Against one loopback registry holding 6 images with shared layers (about 300 MiB unique):
//! - `coder-install bundle` (cold cache) vs `skopeo copy` of each image into one OCI layout plus
//!   `tar` (what a script would do), and vs fetching every unique blob once with parallel curl
//!   (into the page cache, and the same fetch with its files then flushed to disk, as a bundle is);
//! - a re-bundle with a warm cache vs the cold run, and a version 2 with one layer changed;
//! - `verify` throughput;
//! - `push` of the bundle into an empty loopback registry vs `skopeo copy oci-archive:BUNDLE:<ref>
//!   docker://...` of each image into another, and vs the upload limit (every unique blob, held
//!   in memory, sent once by `POST` + one monolithic `PUT`, 8 at a time, into one repository of a
//!   third empty registry, then every manifest `PUT`); the same push in chunks of 16 MiB and of
//!   1 MiB (`--chunk-size`, as behind a proxy that caps request bodies) against that limit; and
//!   a re-push when everything is present;
//! - peak RSS of `bundle` and of `push` on an image with a 1 GiB layer (skip with
//!   `BENCH_SKIP_LARGE=1`).
//!
//! `BENCH_KEEP_WORK=1` keeps the work folder (the bundles, the license) and prints where it is,
//! for profiling a command by hand afterwards. `BENCH_HOLD=SECONDS` measures nothing: it keeps
//! the registry up that long with the locked spec and a file of every unique blob's URL, for
//! profiling `bundle` (or a raw fetch) by hand against it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coder_testenv::fixture::{Image, ImageBuilder, LayerBuilder};
use coder_testenv::{Registry, RegistryFlavour};
use common::{
    MIB, ROUNDS, Samples, airgap_license, bundle_args, coder_install, coder_install_measured, lock_spec,
    path, ratio, run_quiet, settle, timed,
};

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    let work = tempfile::tempdir().expect("tempdir");
    let images = fixture_set();
    let mut refs = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let repository = format!("bench/image{index}:1");
        registry.push_image(&repository, image).await.expect("push");
        refs.push(format!("{}/{repository}", registry.host()));
    }
    // Every unique blob with the URL of one repository that holds it (the registry serves a blob
    // only from a repository it was pushed to); manifests from the manifests endpoint, which
    // needs their media type in `Accept`.
    let mut unique: std::collections::BTreeMap<&str, (usize, String)> = Default::default();
    let manifest_types: std::collections::BTreeMap<&str, &str> = images
        .iter()
        .map(|image| (image.manifest.digest.as_str(), image.manifest.media_type.as_str()))
        .collect();
    for (index, image) in images.iter().enumerate() {
        let repository = format!("http://{}/v2/bench/image{index}", registry.host());
        unique.entry(image.manifest.digest.as_str()).or_insert_with(|| {
            let url = format!("{repository}/manifests/{}", image.manifest.digest);
            (image.manifest.data.len(), url)
        });
        for blob in image.layers.iter().chain([&image.config]) {
            unique
                .entry(blob.digest.as_str())
                .or_insert_with(|| (blob.data.len(), format!("{repository}/blobs/{}", blob.digest)));
        }
    }
    let unique_bytes: usize = unique.values().map(|(size, _)| size).sum();
    println!(
        "image set: {} images, {} unique blobs, {:.0} MiB unique",
        images.len(),
        unique.len(),
        unique_bytes as f64 / MIB as f64
    );

    let spec = work.path().join("coder.yaml");
    let mut text = String::from("name: bench\nversion: 1.0.0\nimages:\n");
    for (index, reference) in refs.iter().enumerate() {
        text.push_str(&format!("  - name: image{index}\n    ref: {reference}\n"));
    }
    std::fs::write(&spec, text).expect("spec");
    let lock = work.path().join("images.lock");
    let host = registry.host();
    let insecure = ["--insecure-registry", host.as_str()];
    lock_spec(&spec, &lock, &insecure);

    if let Some(seconds) = std::env::var_os("BENCH_HOLD") {
        // For profiling by hand: the registry stays up with the locked spec, then the run ends.
        let seconds: u64 = seconds.to_str().and_then(|text| text.parse().ok()).unwrap_or(600);
        println!(
            "holding {seconds} s: coder-install bundle --spec {} --lock {} --insecure-registry {host} -o OUT",
            spec.display(),
            lock.display()
        );
        let urls: Vec<&str> = unique.values().map(|(_, url)| url.as_str()).collect();
        std::fs::write(work.path().join("urls.txt"), urls.join("\n")).expect("urls");
        println!("blob URLs: {}", work.path().join("urls.txt").display());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        return;
    }

    // Ours, cold cache: each round into a new cache (the first one's is kept for the warm run).
    let cache = work.path().join("cache");
    let bundle = |name: &str, cache: &Path| {
        let output = work.path().join(name);
        let args = bundle_args(&spec, &lock, cache, &output, &insecure);
        timed(|| coder_install(&args))
    };
    let cold = Samples::of(|round| match round {
        0 => bundle("cold.bundle", &cache),
        _ => {
            let (output, cache) = (
                format!("cold-{round}.bundle"),
                work.path().join(format!("cache-{round}")),
            );
            let took = bundle(&output, &cache);
            let _ = std::fs::remove_file(work.path().join(output));
            let _ = std::fs::remove_dir_all(cache);
            took
        }
    });
    let warm = Samples::of(|round| bundle(&format!("warm-{round}.bundle"), &cache));

    // Version 2: one image's own 30 MiB layer changed, everything else shared with version 1.
    let changed = bench_image(5, 300);
    registry
        .push_image("bench/image5:2", &changed)
        .await
        .expect("push version 2 image");
    let spec_v2 = work.path().join("coder-v2.yaml");
    let lock_v2 = work.path().join("images-v2.lock");
    let text_v2 = std::fs::read_to_string(&spec)
        .expect("spec")
        .replace("bench/image5:1", "bench/image5:2")
        .replace("version: 1.0.0", "version: 2.0.0");
    std::fs::write(&spec_v2, text_v2).expect("spec v2");
    lock_spec(&spec_v2, &lock_v2, &insecure);
    let v2_output = work.path().join("v2.bundle");
    settle();
    let next_version = timed(|| {
        coder_install(&bundle_args(&spec_v2, &lock_v2, &cache, &v2_output, &insecure));
    });

    // skopeo into one OCI layout, then tar it.
    let skopeo = Samples::of(|round| {
        let layout = work.path().join(format!("skopeo-layout-{round}"));
        let tar = work.path().join(format!("skopeo-{round}.tar"));
        let took = timed(|| {
            for (index, reference) in refs.iter().enumerate() {
                run_quiet(Command::new("skopeo").args([
                    "copy",
                    "--src-tls-verify=false",
                    &format!("docker://{reference}"),
                    &format!("oci:{}:image{index}", layout.display()),
                ]));
            }
            run_quiet(Command::new("tar").args(["-cf", path(&tar), "-C", path(&layout), "."]));
        });
        let _ = std::fs::remove_dir_all(layout);
        let _ = std::fs::remove_file(tar);
        took
    });

    // Every unique blob once, by 8 curl processes running side by side; and the same fetch made
    // durable (each file flushed to disk afterwards), as a bundle is before it is renamed into
    // place: which of the two a bundle is close to depends on the disk.
    let curl_dir = work.path().join("curl");
    let jobs: Vec<(&str, &String)> = unique.iter().map(|(digest, (_, url))| (*digest, url)).collect();
    let mut curl = Samples::default();
    let mut curl_durable = Samples::default();
    for _ in 0..ROUNDS {
        let _ = std::fs::remove_dir_all(&curl_dir);
        std::fs::create_dir_all(&curl_dir).expect("curl dir");
        settle();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    while let Some((digest, url)) =
                        jobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let out = curl_dir.join(digest.trim_start_matches("sha256:"));
                        let mut curl = Command::new("curl");
                        curl.args(["-sSf", "-o", path(&out), url]);
                        if let Some(media_type) = manifest_types.get(digest) {
                            curl.args(["-H", &format!("Accept: {media_type}")]);
                        }
                        run_quiet(&mut curl);
                    }
                });
            }
        });
        curl.add(started.elapsed());
        for entry in std::fs::read_dir(&curl_dir).expect("curl dir") {
            let file = std::fs::File::open(entry.expect("curl file").path()).expect("open");
            file.sync_data().expect("flush a fetched file");
        }
        std::fs::File::open(&curl_dir)
            .and_then(|dir| dir.sync_all())
            .expect("flush the curl dir");
        curl_durable.add(started.elapsed());
    }

    settle();
    let verify_started = Instant::now();
    coder_install(&[
        "verify",
        "--allow-unsigned",
        path(&work.path().join("cold.bundle")),
    ]);
    let verify = verify_started.elapsed();
    let bundle_size = std::fs::metadata(work.path().join("cold.bundle"))
        .map(|meta| meta.len())
        .unwrap_or(0);

    println!("medians of {ROUNDS} rounds (fastest-slowest), each after a sync:");
    println!("bundle (cold cache):      {cold}");
    println!(
        "skopeo copy x6 + tar:     {skopeo}   ratio ours/skopeo = {:.2} (target <= 0.40)",
        ratio(cold.median(), skopeo.median())
    );
    println!(
        "parallel curl (unique):   {curl}   ratio ours/curl   = {:.2} (target <= 1.10)",
        ratio(cold.median(), curl.median())
    );
    println!(
        "curl, then each fsynced:  {curl_durable}   ratio ours/that   = {:.2} (the same durability)",
        ratio(cold.median(), curl_durable.median())
    );
    println!(
        "bundle (warm cache):      {warm}   ratio warm/cold   = {:.2} (target <= 0.10)",
        ratio(warm.median(), cold.median())
    );
    println!(
        "bundle v2 (1 layer new):  {:>8.3} s   ratio v2/cold     = {:.2} (one run)",
        next_version.as_secs_f64(),
        ratio(next_version, cold.median())
    );
    println!(
        "verify:                   {:>8.3} s   {:.2} GB/s (target >= 1)",
        verify.as_secs_f64(),
        bundle_size as f64 / verify.as_secs_f64() / 1e9
    );

    push_figures(&work.path().join("cold.bundle"), &refs, &images).await;

    if std::env::var_os("BENCH_SKIP_LARGE").is_none() {
        large_layer_rss(&registry, work.path(), &insecure).await;
    }
    if std::env::var_os("BENCH_KEEP_WORK").is_some() {
        println!("work folder kept: {}", work.keep().display());
    }
}

/// Six images over three shared 40 MiB bases, each with its own 30 MiB layer.
fn fixture_set() -> Vec<Image> {
    (0..6u64).map(|index| bench_image(index, 200 + index)).collect()
}

/// Image `index` of the set: the shared base `index % 3` and an own layer made from `app_seed`.
fn bench_image(index: u64, app_seed: u64) -> Image {
    ImageBuilder::new()
        .layer(LayerBuilder::new().random_file("base.bin", 40 * MIB, 100 + index % 3))
        .layer(LayerBuilder::new().random_file("app.bin", 30 * MIB, app_seed))
        .label("bench", &index.to_string())
        .build()
        .expect("build fixture")
}

async fn large_layer_rss(registry: &Registry, work: &Path, insecure: &[&str]) {
    let image = ImageBuilder::new()
        .layer(LayerBuilder::new().random_file("big.bin", 1024 * MIB, 7))
        .build()
        .expect("build 1 GiB image");
    registry
        .push_image("bench/large:1", &image)
        .await
        .expect("push large");
    let spec = work.join("large.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: bench\nversion: 1.0.0\nimages:\n  - name: large\n    ref: {}/bench/large:1\n",
            registry.host()
        ),
    )
    .expect("spec");
    let lock = work.join("large.lock");
    lock_spec(&spec, &lock, insecure);
    let (cache, output) = (work.join("large-cache"), work.join("large.bundle"));
    let args = bundle_args(&spec, &lock, &cache, &output, insecure);
    let peak = coder_install_measured(&args).peak_rss_mib();
    println!("peak RSS, 1 GiB layer:    {peak:>8.1} MiB (target <= 64)");

    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start push target");
    let host = target.host();
    let license = airgap_license(work);
    let push_args = common::push_args(&output, &host, &license);
    let peak = coder_install_measured(&push_args).peak_rss_mib();
    println!("peak RSS, push of it:     {peak:>8.1} MiB");
}

/// `push` of the bundle into an empty registry vs `skopeo copy oci-archive:` per image into
/// another and vs the [upload limit](upload_limit) into a third (a new registry for every
/// round of each); then a re-push into the last push's registry, where everything is present.
async fn push_figures(bundle: &Path, refs: &[String], images: &[Image]) {
    let license = airgap_license(bundle.parent().expect("the bundle's folder"));
    let push_into = |host: &str, extra: &[&str]| {
        let mut args = common::push_args(bundle, host, &license).to_vec();
        args.extend(["--output", "json"]);
        args.extend(extra);
        timed(|| coder_install(&args))
    };
    // Whole blobs, then chunks of 16 MiB (a 413's fallback) and of 1 MiB (NGINX's default cap).
    let mut pushes = Vec::new();
    let mut last_target = None;
    for extra in [&[][..], &["--chunk-size", "16Mi"], &["--chunk-size", "1Mi"]] {
        let mut samples = Samples::default();
        for _ in 0..ROUNDS {
            let target = Registry::start(RegistryFlavour::Plain)
                .await
                .expect("start push target");
            settle();
            samples.add(push_into(&target.host(), extra));
            last_target = Some(target);
        }
        pushes.push(samples);
    }
    let repush = push_into(&last_target.expect("a push target").host(), &[]);
    let push = pushes.remove(0);

    let mut skopeo = Samples::default();
    for _ in 0..ROUNDS {
        let theirs = Registry::start(RegistryFlavour::Plain)
            .await
            .expect("start skopeo target");
        settle();
        skopeo.add(timed(|| {
            for reference in refs {
                let repository = reference
                    .split_once('/')
                    .map_or(reference.as_str(), |(_, rest)| rest);
                run_quiet(Command::new("skopeo").args([
                    "copy",
                    "--dest-tls-verify=false",
                    &format!("oci-archive:{}:{reference}", bundle.display()),
                    &format!("docker://{}/{repository}", theirs.host()),
                ]));
            }
        }));
    }
    let mut limit = Samples::default();
    for _ in 0..ROUNDS {
        limit.add(upload_limit(images).await);
    }
    println!("push (empty registry):    {push}");
    println!(
        "skopeo copy oci-archive:  {skopeo}   ratio ours/skopeo = {:.2} (target <= 0.25)",
        ratio(push.median(), skopeo.median())
    );
    println!(
        "upload limit (8 PUTs):    {limit}   ratio ours/limit  = {:.2} (target <= 1.20)",
        ratio(push.median(), limit.median())
    );
    for (samples, chunks) in pushes.iter().zip(["16 MiB", " 1 MiB"]) {
        println!(
            "push, {chunks} chunks:     {samples}   ratio chunks/limit = {:.2}",
            ratio(samples.median(), limit.median())
        );
    }
    println!(
        "re-push (all present):    {:>8.3} s   (target <= 1)",
        repush.as_secs_f64()
    );
}

/// The upload limit of the image set: into one repository of a new empty registry, every unique
/// blob sent once, its bytes already in memory, by `POST` (an upload session) and one monolithic
/// `PUT`, 8 blobs at a time; then each image's manifest by one `PUT` under its tag, 8 at a time. It is what
/// any push of these images costs the registry and the loopback link, with nothing of a client's
/// own: no file reading, no hashing, no existence checks, no mounts.
async fn upload_limit(images: &[Image]) -> Duration {
    use futures_util::StreamExt;

    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start the upload-limit target");
    let base = target.url();
    let repository = format!("{base}/v2/bench/limit");
    let mut blobs: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for image in images {
        for blob in image.layers.iter().chain([&image.config]) {
            blobs
                .entry(blob.digest.clone())
                .or_insert_with(|| blob.data.clone());
        }
    }
    let client = reqwest::Client::new();
    settle();
    let started = Instant::now();
    futures_util::stream::iter(blobs)
        .map(|(digest, bytes)| {
            let (client, base) = (&client, &base);
            async move {
                let url = common::upload_session(client, base, "bench/limit").await;
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{separator}digest={digest}");
                common::put_created(client, url, "application/octet-stream", bytes).await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    futures_util::stream::iter(images.iter().enumerate())
        .map(|(index, image)| {
            let url = format!("{repository}/manifests/image{index}");
            common::put_created(
                &client,
                url,
                &image.manifest.media_type,
                image.manifest.data.clone(),
            )
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}
