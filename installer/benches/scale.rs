//! Scale benchmark: `cargo benches -p coder-install --bench scale` prints figures, asserts
//! nothing. How the cost grows with the number of images (issue 29, part 1), and with the size
//! of one layer (part 2). Loopback registries, fixture images made on the fly.
//!
//! **Many images** (`BENCH_SCALE_IMAGES`, default `10,100,1000`): sets of N images in N/2
//! repositories with 2 tags each, every image two small own layers (4 and 12 KiB) over one
//! shared 64 KiB base, one repository in 25 with a two-platform index as its first tag. For each
//! set, each figure the median of 3 rounds (each after a `sync`) with its peak RSS:
//! - `lock`, and `lock` through a proxy that holds every request 20 ms (a far registry) against
//!   the same number of `HEAD`s made 8 at a time through it (goal ≤ 1.5×);
//! - `bundle` (cold cache), `verify`, `inspect`;
//! - `push` into an empty registry, against the upload limit: every unique blob sent once by
//!   `POST` + `PUT` (the distribution registry 2.8 has no one-request upload), the base mounted
//!   into every other repository (one `POST`), every manifest by `PUT`, 8 requests in flight
//!   (goal ≤ 1.3×);
//! - `serve` of the bundle: its start (it verifies the bundle first), the catalog read page by
//!   page, every manifest and blob pulled 8 at a time, and `apply --no-push`'s presence check
//!   against it (the library function `apply` runs, in this process: it has no RSS of its own).
//!
//! Then the time per image of each command at every size, the ratio 1000/100 (goal ≤ 1.2:
//! linear) and the peak RSS at the largest size (goal ≤ 64 MiB).
//!
//! **One huge layer** (`BENCH_HUGE_GIB`, default 8; `BENCH_SKIP_HUGE=1` skips it): see
//! [`huge`].
//!
//! `BENCH_HOLD=SECONDS` measures nothing: it makes the first set, locks it, prints the
//! `bundle` command to run against it and keeps its registry up that long (for profiling).

mod common;
#[path = "scale/huge.rs"]
mod huge;

use std::path::Path;
use std::time::{Duration, Instant};

use coder_testenv::fixture::{Image, ImageBuilder, Index, LayerBuilder, MediaTypes, Platform};
use coder_testenv::{Registry, RegistryFlavour};
use common::{
    ROUNDS, Samples, airgap_license, coder_install_measured, cold_bundle_rounds, measured_rounds, path,
    push_rounds, ratio, settle,
};
use futures_util::StreamExt;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let sizes = std::env::var("BENCH_SCALE_IMAGES").unwrap_or_else(|_| "10,100,1000".to_owned());
        let sizes: Vec<usize> = sizes
            .split(',')
            .filter_map(|size| size.trim().parse().ok())
            .collect();
        if !sizes.is_empty() {
            many_images(&sizes).await;
        }
        if std::env::var_os("BENCH_SKIP_HUGE").is_none() {
            huge::run().await;
        }
    });
}

/// The commands measured at every size, in the order printed.
const COMMANDS: [&str; 12] = [
    "lock",
    "  registry HEADs",
    "bundle",
    "  registry GETs",
    "verify",
    "inspect",
    "push",
    "serve start",
    "serve catalog",
    "serve pulls",
    "presence check",
    "  upload limit",
];

/// One size's figures: per command its median time and its largest peak RSS (0: in process).
struct SizeFigures {
    images: usize,
    times: Vec<Samples>,
    peaks: Vec<u64>,
}

async fn many_images(sizes: &[usize]) {
    let mut all = Vec::new();
    for &images in sizes {
        all.push(one_size(images).await);
    }
    println!();
    println!("time per image (ms), median of {ROUNDS}; peak RSS (MiB) at each size:");
    let mut header = format!("{:<16}", "command");
    for figures in &all {
        header.push_str(&format!("{:>12}", format!("{} images", figures.images)));
    }
    header.push_str("   largest/previous (goal <= 1.2)   peak RSS (goal <= 64)");
    println!("{header}");
    for (index, command) in COMMANDS.iter().enumerate() {
        let mut line = format!("{command:<16}");
        for figures in &all {
            let per_image = figures.times[index].median().as_secs_f64() * 1e3 / figures.images as f64;
            line.push_str(&format!("{per_image:>12.3}"));
        }
        if let [.., previous, largest] = all.as_slice() {
            let per_image =
                |figures: &SizeFigures| figures.times[index].median().as_secs_f64() / figures.images as f64;
            let growth = per_image(largest) / per_image(previous);
            let verdict = if growth <= 1.2 { "met" } else { "NOT MET" };
            line.push_str(&format!("   {growth:>6.2} ({verdict})"));
            let peak = largest.peaks[index];
            if peak > 0 {
                let mib = peak as f64 / 1024.0;
                let verdict = if mib <= 64.0 { "met" } else { "NOT MET" };
                line.push_str(&format!("{:>26}", format!("{mib:.1} ({verdict})")));
            }
        }
        println!("{line}");
    }
}

async fn one_size(images: usize) -> SizeFigures {
    let set = ImageSet::new(images);
    let upstream = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("upstream registry");
    let started = Instant::now();
    set.push_to(&upstream).await;
    let work = tempfile::tempdir().expect("tempdir");
    let spec = work.path().join("coder.yaml");
    std::fs::write(&spec, set.spec(&upstream.host())).expect("spec");
    println!();
    println!(
        "== {images} images in {} repositories ({} indexes), {} unique blobs, {:.1} MiB; set made and pushed in {:.1} s",
        set.repositories.len(),
        set.indexes(),
        set.unique_blobs().len(),
        set.unique_bytes() as f64 / common::MIB as f64,
        started.elapsed().as_secs_f64()
    );
    let host = upstream.host();
    let insecure = ["--insecure-registry", host.as_str()];
    let lock = work.path().join("images.lock");
    let lock_args = [&["lock", "--spec", path(&spec), "-o", path(&lock)][..], &insecure].concat();
    if let Some(seconds) = std::env::var_os("BENCH_HOLD") {
        // For profiling by hand: the upstream registry stays up with the locked spec.
        let seconds: u64 = seconds.to_str().and_then(|text| text.parse().ok()).unwrap_or(600);
        coder_install_measured(&lock_args);
        println!(
            "holding {seconds} s: coder-install bundle --spec {} --lock {} --insecure-registry {host} -o OUT",
            spec.display(),
            lock.display()
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        std::process::exit(0);
    }
    let (lock_times, lock_peak) = measured_rounds(|_| coder_install_measured(&lock_args));
    let client = reqwest::Client::new();
    let manifest_urls: Vec<String> = set
        .tags()
        .map(|(repository, tag, _)| format!("{}/v2/{repository}/manifests/{tag}", upstream.url()))
        .collect();
    let mut lock_floor = Samples::default();
    for _ in 0..ROUNDS {
        settle();
        lock_floor.add(heads_8_at_a_time(&client, &manifest_urls).await);
    }
    let fetch_targets = set.unique_fetches();
    let mut bundle_floor = Samples::default();
    for _ in 0..ROUNDS {
        settle();
        let started = Instant::now();
        common::pull_everything(&client, &upstream.url(), &fetch_targets, 8).await;
        bundle_floor.add(started.elapsed());
    }
    far_registry_lock(&set, &upstream, work.path()).await;

    let bundle = work.path().join("set.bundle");
    let (bundle_times, bundle_peak) = cold_bundle_rounds(&spec, &lock, &bundle, &insecure, work.path());
    let verify_args = ["verify", "--allow-unsigned", path(&bundle)];
    let (verify_times, verify_peak) = measured_rounds(|_| coder_install_measured(&verify_args));
    let inspect_args = ["inspect", path(&bundle), "--output", "json"];
    let (inspect_times, inspect_peak) = measured_rounds(|_| coder_install_measured(&inspect_args));

    let license = airgap_license(work.path());
    let (push_times, push_peak) = push_rounds(&bundle, &license).await;
    let mut limit = Samples::default();
    for _ in 0..ROUNDS {
        limit.add(set.upload_limit().await);
    }

    let (serve, served) = serve_figures(&set, &bundle).await;
    println!(
        "lock:                 {lock_times}   peak {:.1} MiB",
        mib(lock_peak)
    );
    println!(
        "  the registry alone:  {lock_floor}   (a HEAD of every tag, 8 at a time)   lock/that = {:.2}",
        ratio(lock_times.median(), lock_floor.median())
    );
    println!(
        "bundle (cold cache):  {bundle_times}   peak {:.1} MiB",
        mib(bundle_peak)
    );
    println!(
        "  the registry alone:  {bundle_floor}   (a GET of every manifest and unique blob, 8 at a time)   bundle/that = {:.2}",
        ratio(bundle_times.median(), bundle_floor.median())
    );
    println!(
        "verify:               {verify_times}   peak {:.1} MiB",
        mib(verify_peak)
    );
    println!(
        "inspect:              {inspect_times}   peak {:.1} MiB",
        mib(inspect_peak)
    );
    println!(
        "push (empty registry):{push_times}   peak {:.1} MiB",
        mib(push_peak)
    );
    println!(
        "upload limit:         {limit}   push/limit = {:.2} (goal <= 1.3)",
        ratio(push_times.median(), limit.median())
    );
    for (name, samples) in ["serve start", "serve catalog", "serve pulls", "presence check"]
        .iter()
        .zip(&serve)
    {
        println!("{:<22}{samples}", format!("{name}:"));
    }
    println!("serve peak RSS after the pulls: {:.1} MiB", mib(served));
    let mut times = vec![
        lock_times,
        lock_floor,
        bundle_times,
        bundle_floor,
        verify_times,
        inspect_times,
        push_times,
    ];
    times.extend(serve);
    times.push(limit);
    // Per command (in the order of COMMANDS) its peak RSS; 0 for what runs in this process.
    let peaks = vec![
        lock_peak,
        0,
        bundle_peak,
        0,
        verify_peak,
        inspect_peak,
        push_peak,
        served,
        0,
        0,
        0,
        0,
    ];
    SizeFigures { images, times, peaks }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `lock` against the upstream registry behind a proxy that holds each request 20 ms, against
/// the same number of `HEAD` requests (one per image) made 8 at a time through the same proxy.
async fn far_registry_lock(set: &ImageSet, upstream: &Registry, work: &Path) {
    let proxy = Proxy::start(upstream.addr(), Duration::from_millis(20)).await;
    let far = proxy.host();
    let far_spec = work.join("far.yaml");
    std::fs::write(&far_spec, set.spec(&far)).expect("spec through the proxy");
    let lock = work.join("far.lock");
    let args = [
        "lock",
        "--spec",
        path(&far_spec),
        "-o",
        path(&lock),
        "--insecure-registry",
        &far,
    ];
    let ours = Samples::of(|_| coder_install_measured(&args).took);
    let client = reqwest::Client::new();
    let urls: Vec<String> = set
        .tags()
        .map(|(repository, tag, _)| format!("http://{far}/v2/{repository}/manifests/{tag}"))
        .collect();
    let mut heads = Samples::default();
    for _ in 0..ROUNDS {
        settle();
        heads.add(heads_8_at_a_time(&client, &urls).await);
    }
    println!(
        "lock, 20 ms registry: {ours}   {} HEADs 8 at a time: {heads}   ratio = {:.2} (goal <= 1.5)",
        urls.len(),
        ratio(ours.median(), heads.median())
    );
}

/// A `HEAD` of each of `urls` (manifests), 8 at a time: how long the registry takes to answer
/// that many requests, with nothing of a client's own.
async fn heads_8_at_a_time(client: &reqwest::Client, urls: &[String]) -> Duration {
    let started = Instant::now();
    futures_util::stream::iter(urls)
        .map(|url| async move {
            let answer = client
                .head(url)
                .header("Accept", ACCEPT_MANIFESTS)
                .send()
                .await
                .expect("HEAD a manifest");
            assert!(answer.status().is_success(), "HEAD {url}: {}", answer.status());
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

const ACCEPT_MANIFESTS: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

/// `serve` of the bundle, started 3 times (each start verifies the bundle), then against the
/// last: the catalog page by page, every manifest and blob 8 at a time, and the presence check
/// of `apply --no-push`. Returns those four figures and serve's peak RSS.
async fn serve_figures(set: &ImageSet, bundle: &Path) -> (Vec<Samples>, u64) {
    let mut start = Samples::default();
    let mut served = None;
    for _ in 0..ROUNDS {
        settle();
        let started = Instant::now();
        let server = common::Served::start(bundle, &[]);
        start.add(started.elapsed());
        served = Some(server);
    }
    let served = served.expect("serve ran");
    let base = format!("http://{}", served.host);
    let client = reqwest::Client::new();
    let targets = set.pull_targets();
    let site: coder_mirror::SiteRegistry = served.host.parse().expect("serve's address as a site registry");
    let options = coder_mirror::MirrorOptions {
        registry: coder_registry::RegistryOptions {
            insecure_registries: vec![served.host.clone()],
            ..Default::default()
        },
        ..Default::default()
    };
    let opened = coder_bundle::read::OpenedBundle::open(bundle, None).expect("open the bundle");
    let (mut catalog, mut pulls, mut presence) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        settle();
        let started = Instant::now();
        let repositories = read_catalog(&client, &base).await;
        catalog.add(started.elapsed());
        assert_eq!(
            repositories,
            set.repositories.len(),
            "the catalog lists every repository"
        );
        settle();
        let started = Instant::now();
        common::pull_everything(&client, &base, &targets, 8).await;
        pulls.add(started.elapsed());
        settle();
        let started = Instant::now();
        let report = coder_mirror::check_bundle_present(&opened, &site, &options)
            .await
            .expect("serve holds the whole bundle");
        presence.add(started.elapsed());
        assert!(report.manifests_present >= set.tags().count());
    }
    let peak = served.peak_rss_kib();
    (vec![start, catalog, pulls, presence], peak)
}

/// Reads `_catalog` 100 at a time, following each `Link`; returns how many repositories it lists.
async fn read_catalog(client: &reqwest::Client, base: &str) -> usize {
    let mut next = Some(format!("{base}/v2/_catalog?n=100"));
    let mut count = 0;
    while let Some(url) = next.take() {
        let answer = client.get(&url).send().await.expect("GET the catalog");
        assert!(answer.status().is_success(), "{url}: {}", answer.status());
        next = answer
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|link| link.to_str().ok())
            .and_then(|link| link.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(target, _)| format!("{base}{target}"));
        let page: serde_json::Value = answer.json().await.expect("catalog JSON");
        count += page["repositories"].as_array().map_or(0, Vec::len);
    }
    count
}

/// What one tag holds.
enum Artifact {
    Image(Image),
    Index(Index),
}

impl Artifact {
    /// The manifests it consists of, children before their index.
    fn manifests(&self) -> Vec<&coder_testenv::fixture::Blob> {
        match self {
            Artifact::Image(image) => vec![&image.manifest],
            Artifact::Index(index) => index
                .images
                .iter()
                .map(|image| &image.manifest)
                .chain([&index.index])
                .collect(),
        }
    }

    /// Its manifests' digests and media types, children before their index.
    fn manifest_digests(&self) -> Vec<(String, String)> {
        self.manifests()
            .iter()
            .map(|manifest| (manifest.digest.clone(), manifest.media_type.clone()))
            .collect()
    }

    fn images(&self) -> Vec<&Image> {
        match self {
            Artifact::Image(image) => vec![image],
            Artifact::Index(index) => index.images.iter().collect(),
        }
    }
}

/// N images in N/2 repositories, two tags each.
struct ImageSet {
    /// Per repository its name and its two tags.
    repositories: Vec<(String, Vec<(String, Artifact)>)>,
}

impl ImageSet {
    fn new(images: usize) -> Self {
        let base = || LayerBuilder::new().random_file("base.bin", 64 << 10, 1);
        let image = |seed: u64, platform: &str| {
            ImageBuilder::new()
                .platform(Platform::linux(platform))
                .layer(base())
                .layer(LayerBuilder::new().random_file("lib.bin", 4 << 10, seed))
                .layer(LayerBuilder::new().random_file("app.bin", 12 << 10, seed + 1))
                .build()
                .expect("build a fixture image")
        };
        let repositories = (0..images.div_ceil(2))
            .map(|repository| {
                let tags = (1..=2u64)
                    .map(|tag| {
                        let seed = (repository as u64) * 1000 + tag * 10;
                        let artifact = if tag == 1 && repository % 25 == 0 {
                            let children = vec![image(seed, "amd64"), image(seed + 5, "arm64")];
                            Artifact::Index(Index::new(MediaTypes::Oci, children).expect("index"))
                        } else {
                            Artifact::Image(image(seed, "amd64"))
                        };
                        (format!("t{tag}"), artifact)
                    })
                    .collect();
                (format!("bench/r{repository}"), tags)
            })
            .collect();
        Self { repositories }
    }

    fn tags(&self) -> impl Iterator<Item = (&str, &str, &Artifact)> {
        self.repositories.iter().flat_map(|(repository, tags)| {
            tags.iter()
                .map(move |(tag, artifact)| (repository.as_str(), tag.as_str(), artifact))
        })
    }

    fn indexes(&self) -> usize {
        self.tags()
            .filter(|(_, _, artifact)| matches!(artifact, Artifact::Index(_)))
            .count()
    }

    /// Every unique blob (configs and layers): digest → (bytes, the first repository that has it).
    fn unique_blobs(&self) -> std::collections::BTreeMap<&str, (&[u8], &str)> {
        let mut blobs = std::collections::BTreeMap::new();
        for (repository, _, artifact) in self.tags() {
            for image in artifact.images() {
                for blob in image.layers.iter().chain([&image.config]) {
                    blobs
                        .entry(blob.digest.as_str())
                        .or_insert((blob.data.as_slice(), repository));
                }
            }
        }
        blobs
    }

    fn unique_bytes(&self) -> usize {
        self.unique_blobs().values().map(|(data, _)| data.len()).sum()
    }

    async fn push_to(&self, registry: &Registry) {
        futures_util::stream::iter(self.tags())
            .map(|(repository, tag, artifact)| async move {
                let reference = format!("{repository}:{tag}");
                // The distribution registry can fail one of two uploads of the same blob (the
                // shared base) committed at the same moment into two repositories: again.
                let mut attempts = 0;
                loop {
                    let pushed = match artifact {
                        Artifact::Image(image) => registry.push_image(&reference, image).await,
                        Artifact::Index(index) => registry.push_index(&reference, index).await,
                    };
                    attempts += 1;
                    match pushed {
                        Ok(_) => break,
                        Err(error) if attempts >= 3 => panic!("push a fixture image: {error}"),
                        Err(_) => continue,
                    }
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
    }

    /// The spec: every tag an image of its own.
    fn spec(&self, host: &str) -> String {
        let mut text = String::from("name: bench\nversion: 1.0.0\nimages:\n");
        for (repository, tag, _) in self.tags() {
            let name = format!("{}-{tag}", repository.trim_start_matches("bench/"));
            text.push_str(&format!("  - name: {name}\n    ref: {host}/{repository}:{tag}\n"));
        }
        text
    }

    /// What to pull: per tag its repository, its manifests and its blobs.
    fn pull_targets(&self) -> Vec<common::PullTarget> {
        self.tags()
            .map(|(repository, _, artifact)| common::PullTarget {
                repository: repository.to_owned(),
                manifests: artifact.manifest_digests(),
                blobs: artifact
                    .images()
                    .iter()
                    .flat_map(|image| image.layers.iter().chain([&image.config]))
                    .map(|blob| blob.digest.clone())
                    .collect(),
            })
            .collect()
    }

    /// What a bundle fetches at the least: every tag's manifests, and every unique blob once
    /// (from the first repository that has it).
    fn unique_fetches(&self) -> Vec<common::PullTarget> {
        let mut blobs: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (digest, (_, repository)) in self.unique_blobs() {
            blobs.entry(repository).or_default().push(digest.to_owned());
        }
        self.tags()
            .map(|(repository, tag, artifact)| common::PullTarget {
                repository: repository.to_owned(),
                manifests: artifact.manifest_digests(),
                blobs: if tag == "t1" {
                    blobs.remove(repository).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// The upload limit of the set into a new empty registry: every unique blob sent once by
    /// `POST` + `PUT` into the first repository that has it, mounted (one `POST`) into every
    /// other repository that has it, then every manifest by one `PUT` (children by digest,
    /// before their index; every tag's top manifest under its tag), 8 requests in flight at each
    /// stage. Nothing of a client's own: no file reading, hashing or existence checks.
    async fn upload_limit(&self) -> Duration {
        let target = Registry::start(RegistryFlavour::Plain)
            .await
            .expect("start the upload-limit target");
        let base = target.url();
        let blobs = self.unique_blobs();
        let mut mounts = std::collections::BTreeSet::new();
        for (repository, _, artifact) in self.tags() {
            for image in artifact.images() {
                for blob in image.layers.iter().chain([&image.config]) {
                    let (_, first) = blobs[blob.digest.as_str()];
                    if first != repository {
                        mounts.insert((repository, blob.digest.as_str(), first));
                    }
                }
            }
        }
        let client = reqwest::Client::new();
        settle();
        let started = Instant::now();
        futures_util::stream::iter(&blobs)
            .map(|(digest, (data, repository))| {
                common::upload_blob(&client, &base, repository, digest, data.to_vec())
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        futures_util::stream::iter(&mounts)
            .map(|(repository, digest, from)| {
                let url = format!("{base}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}");
                let client = &client;
                async move {
                    let answer = client.post(&url).send().await.expect("mount");
                    assert_eq!(answer.status(), reqwest::StatusCode::CREATED, "POST {url}");
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        let mut children = Vec::new();
        let mut tops = Vec::new();
        for (repository, tag, artifact) in self.tags() {
            let manifests = artifact.manifests();
            let (top, below) = manifests.split_last().expect("a manifest");
            children.extend(
                below
                    .iter()
                    .map(|manifest| (repository, manifest.digest.as_str(), *manifest)),
            );
            tops.push((repository, tag, *top));
        }
        for stage in [children, tops] {
            futures_util::stream::iter(stage)
                .map(|(repository, reference, manifest)| {
                    let url = format!("{base}/v2/{repository}/manifests/{reference}");
                    common::put_created(&client, url, &manifest.media_type, manifest.data.clone())
                })
                .buffer_unordered(8)
                .collect::<Vec<()>>()
                .await;
        }
        started.elapsed()
    }
}

/// A TCP proxy on loopback that holds every piece of a request `delay` before passing it on
/// (a registry that answers every request that much later, as a far one does), and counts the
/// bytes each way.
struct Proxy {
    addr: std::net::SocketAddr,
    /// Bytes from the clients to the server.
    requested: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bytes from the server to the clients.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("its address");
        let requested = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counters = (requested.clone(), answered.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (requested, answered) = counters.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        relay(client_read, server_write, delay, &requested),
                        relay(server_read, client_write, Duration::ZERO, &answered)
                    );
                });
            }
        });
        Self {
            addr,
            requested,
            answered,
            task,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each read held `delay` first and counted, until either side closes.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    counter: &std::sync::atomic::AtomicU64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        counter.fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}
