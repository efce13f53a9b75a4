//! What the benches share: running `coder-install` (timed, with its peak memory), the medians
//! of [`ROUNDS`] rounds, a `sync` between rounds, and the test license `push` and `apply` need.
//! Each bench uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const MIB: usize = 1 << 20;

/// How many times each compared figure is measured; the median is reported.
pub const ROUNDS: usize = 3;

/// Runs coder-install with `args`; fails the bench, with its stderr, if it fails.
pub fn coder_install(args: &[&str]) {
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

/// One run of a command: how long it took and its peak resident set size.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub took: Duration,
    pub peak_rss_kib: u64,
}

impl Run {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Runs coder-install with `args` (stdout discarded, stderr kept for a failure), timing it
/// and sampling its peak resident set size (`VmHWM`) every few milliseconds until it exits.
pub fn coder_install_measured(args: &[&str]) -> Run {
    let stderr = tempfile::tempfile().expect("a file for stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().expect("stderr file"))
        .spawn()
        .expect("run coder-install");
    let started = Instant::now();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_rss_kib = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:"))
        {
            let kib = line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok());
            peak_rss_kib = peak_rss_kib.max(kib.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("poll coder-install") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    if !status.success() {
        let mut text = String::new();
        let mut stderr = stderr;
        std::io::Seek::rewind(&mut stderr).expect("rewind stderr");
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("read stderr");
        panic!("coder-install {args:?}: {status}: {text}");
    }
    Run { took, peak_rss_kib }
}

/// [`ROUNDS`] runs of `round` (given the round's number), each after a [`settle`]: their times
/// and the largest peak RSS.
pub fn measured_rounds(mut round: impl FnMut(usize) -> Run) -> (Samples, u64) {
    let mut peak = 0;
    let times = Samples::of(|number| {
        let run = round(number);
        peak = peak.max(run.peak_rss_kib);
        run.took
    });
    (times, peak)
}

/// [`ROUNDS`] cold `bundle`s of `spec` and `lock` into `output` (each with a new cache in
/// `work`, removed afterwards; the last bundle kept): their times and the largest peak RSS.
pub fn cold_bundle_rounds(
    spec: &Path,
    lock: &Path,
    output: &Path,
    insecure: &[&str],
    work: &Path,
) -> (Samples, u64) {
    measured_rounds(|round| {
        let cache = work.join(format!("cache-{round}"));
        let _ = std::fs::remove_file(output);
        let run = coder_install_measured(&bundle_args(spec, lock, &cache, output, insecure));
        let _ = std::fs::remove_dir_all(cache);
        run
    })
}

/// [`ROUNDS`] `push`es of `bundle`, each into a new empty registry after a [`settle`]: their
/// times and the largest peak RSS.
pub async fn push_rounds(bundle: &Path, license: &Path) -> (Samples, u64) {
    let (mut times, mut peak) = (Samples::default(), 0);
    for _ in 0..ROUNDS {
        let target = coder_testenv::Registry::start(coder_testenv::RegistryFlavour::Plain)
            .await
            .expect("push target");
        settle();
        let run = coder_install_measured(&push_args(bundle, &target.host(), license));
        times.add(run.took);
        peak = peak.max(run.peak_rss_kib);
    }
    (times, peak)
}

/// Runs `command`; fails the bench, with its stderr, if it fails.
pub fn run_quiet(command: &mut Command) {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

pub fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}

pub fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Writes back every dirty page on the machine (`sync`), so that a measurement does not pay
/// for the writes of the one before it.
pub fn settle() {
    run_quiet(&mut Command::new("sync"));
}

/// An enterprise license with the air-gap feature, signed by the test key, in `dir`: `push`
/// and `apply` of a bundle need one.
pub fn airgap_license(dir: &Path) -> PathBuf {
    let file = dir.join("bench.license");
    let claims = coder_license::test_keys::claims(coder_license::Tier::Enterprise, true, 50, 365);
    let token = coder_license::test_keys::sign(&claims).expect("sign the bench license");
    std::fs::write(&file, token).expect("write the bench license");
    file
}

/// `coder-install lock` of `spec` into `lock`.
pub fn lock_spec(spec: &Path, lock: &Path, insecure: &[&str]) {
    coder_install(&[&["lock", "--spec", path(spec), "-o", path(lock)][..], insecure].concat());
}

/// `bundle` arguments with JSON output.
pub fn bundle_args<'a>(
    spec: &'a Path,
    lock: &'a Path,
    cache: &'a Path,
    output: &'a Path,
    insecure: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "bundle",
        "--spec",
        path(spec),
        "--lock",
        path(lock),
        "--cache",
        path(cache),
        "-o",
        path(output),
        "--output",
        "json",
    ];
    args.extend_from_slice(insecure);
    args
}

/// The timings of one figure's rounds.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// [`ROUNDS`] timings of `round` (given the round's number), each after a [`settle`].
    pub fn of(mut round: impl FnMut(usize) -> Duration) -> Self {
        Self(
            (0..ROUNDS)
                .map(|number| {
                    settle();
                    round(number)
                })
                .collect(),
        )
    }

    pub fn add(&mut self, took: Duration) {
        self.0.push(took);
    }

    pub fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for Samples {
    /// The median and the range: `   0.512 s (0.49-0.60)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fastest = self.0.iter().min().copied().unwrap_or_default();
        let slowest = self.0.iter().max().copied().unwrap_or_default();
        write!(
            f,
            "{:>8.3} s ({:.2}-{:.2})",
            self.median().as_secs_f64(),
            fastest.as_secs_f64(),
            slowest.as_secs_f64()
        )
    }
}

/// `coder-install serve` of a bundle on a free loopback port; stopped when dropped.
pub struct Served {
    child: std::process::Child,
    pub host: String,
}

impl Served {
    /// Starts serving `bundle` (unsigned allowed) with `extra` arguments; returns once it
    /// listens (after its verification of the bundle).
    pub fn start(bundle: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
            .args(["serve", "--bundle", path(bundle), "--allow-unsigned"])
            .args(["--listen", "127.0.0.1:0", "--output", "json"])
            .args(extra)
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

    /// Its peak resident set size so far (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|line| line.starts_with("VmHWM:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to pull of one image: its repository, its manifests (digest, media type) and blobs.
pub struct PullTarget {
    pub repository: String,
    pub manifests: Vec<(String, String)>,
    pub blobs: Vec<String>,
}

impl PullTarget {
    /// The URL of each manifest (with its media type, for `Accept`), then of each blob, at `base`.
    pub fn requests(&self, base: &str) -> Vec<(String, Option<&str>)> {
        let repository = &self.repository;
        self.manifests
            .iter()
            .map(|(digest, media_type)| {
                (
                    format!("{base}/v2/{repository}/manifests/{digest}"),
                    Some(media_type.as_str()),
                )
            })
            .chain(
                self.blobs
                    .iter()
                    .map(|blob| (format!("{base}/v2/{repository}/blobs/{blob}"), None)),
            )
            .collect()
    }
}

/// GETs every manifest and blob of `targets` from `base`, `concurrency` at a time, reading and
/// counting the bodies (not storing them); returns the bytes read.
pub async fn pull_everything(
    http: &reqwest::Client,
    base: &str,
    targets: &[PullTarget],
    concurrency: usize,
) -> u64 {
    use futures_util::StreamExt;
    let requests: Vec<(String, Option<&str>)> =
        targets.iter().flat_map(|target| target.requests(base)).collect();
    let sizes: Vec<u64> = futures_util::stream::iter(requests)
        .map(|(url, accept)| async move { get_counted(http, &url, accept).await.0 })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    sizes.iter().sum()
}

/// GETs `url` (with `accept` as `Accept`), reading the body and counting it, not storing it;
/// returns its size and the time from the request to the first bytes of the body.
pub async fn get_counted(http: &reqwest::Client, url: &str, accept: Option<&str>) -> (u64, Duration) {
    use futures_util::StreamExt;
    let sent = Instant::now();
    let mut request = http.get(url);
    if let Some(media_type) = accept {
        request = request.header(reqwest::header::ACCEPT, media_type);
    }
    let response = request.send().await.expect("GET");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    let mut body = response.bytes_stream();
    let (mut size, mut first_byte) = (0u64, None);
    while let Some(chunk) = body.next().await {
        first_byte.get_or_insert_with(|| sent.elapsed());
        size += chunk.expect("body").len() as u64;
    }
    (size, first_byte.unwrap_or_else(|| sent.elapsed()))
}

/// `push` arguments: `bundle` (unsigned allowed) into `host` over plain HTTP, with `license`.
pub fn push_args<'a>(bundle: &'a Path, host: &'a str, license: &'a Path) -> [&'a str; 10] {
    [
        "push",
        "--allow-unsigned",
        "--bundle",
        path(bundle),
        "--registry",
        host,
        "--insecure-registry",
        host,
        "--license",
        path(license),
    ]
}

/// Uploads `bytes` as blob `digest` into `repository` at `base` (`http://host:port`) in the
/// fewest requests the distribution registry 2.8 allows: `POST` (an upload session; it answers
/// the one-request form, `POST ?digest=` with the bytes, by opening a session too) and one
/// monolithic `PUT`.
pub async fn upload_blob(
    client: &reqwest::Client,
    base: &str,
    repository: &str,
    digest: &str,
    bytes: Vec<u8>,
) {
    let url = upload_session(client, base, repository).await;
    let separator = if url.contains('?') { '&' } else { '?' };
    put_created(
        client,
        format!("{url}{separator}digest={digest}"),
        "application/octet-stream",
        bytes,
    )
    .await;
}

/// Starts an upload into `repository` at `base`; returns its absolute URL.
pub async fn upload_session(client: &reqwest::Client, base: &str, repository: &str) -> String {
    let session = client
        .post(format!("{base}/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .expect("start an upload");
    assert_eq!(session.status(), reqwest::StatusCode::ACCEPTED);
    let location = session
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("the upload's Location")
        .to_owned();
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    }
}

/// `PUT`s `body` to `url` and checks that the registry answers `201 Created`.
pub async fn put_created(
    client: &reqwest::Client,
    url: String,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) {
    let put = client
        .put(&url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("PUT to the registry");
    assert_eq!(put.status(), reqwest::StatusCode::CREATED, "PUT {url}");
}
