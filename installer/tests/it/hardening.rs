//! Robustness against hostile answers and crashes: registry error bodies are read only as far
//! as needed, and finished files survive a power cut (renamed, then their directory flushed).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coder_registry::{RegistryClient, RegistryError, RegistryOptions, Repository};
use coder_testenv::RegistryFlavour;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::world::{World, success};

/// STAND-IN registry (the real one cannot be made to send such answers): every request gets
/// `status` with a body announced as 10 GiB and streamed for as long as the client reads.
/// Returns its host and how many body bytes it managed to send.
async fn endless_error_registry(status: &'static str) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("address").to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    10u64 << 30
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 << 10];
                while socket.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (host, sent)
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_a_bound() {
    for status in ["500 Internal Server Error", "400 Bad Request"] {
        let (host, sent) = endless_error_registry(status).await;
        let client = RegistryClient::new(RegistryOptions {
            insecure_registries: vec![host.clone()],
            attempts: 1,
            ..RegistryOptions::default()
        })
        .expect("client");
        let repository = Repository {
            registry: host.clone(),
            repository: "site/app".to_owned(),
        };

        let pull = tokio::time::timeout(Duration::from_secs(20), client.manifest(&repository, "1.0"))
            .await
            .expect("a manifest error answers promptly, not after reading 10 GiB");
        let error = pull.expect_err("an error status");
        assert!(matches!(error, RegistryError::Status { .. }), "{status}: {error}");
        assert!(error.to_string().len() < 1000, "{error}");

        let push = tokio::time::timeout(Duration::from_secs(20), client.start_upload(&repository))
            .await
            .expect("a push error answers promptly");
        let error = push.expect_err("an error status");
        assert!(error.to_string().len() < 1000, "{error}");

        // What the client read is bounded: socket buffers and the read limit, not the body.
        let sent = sent.load(Ordering::Relaxed);
        assert!(
            sent < 64 << 20,
            "{status}: the client read {sent} bytes of an error body"
        );
    }
}

/// The directory flushes that follow each rename into place, from an strace log: for every
/// renamed target, whether the same thread then opened its directory and fsynced it.
fn renames_followed_by_directory_fsync(trace: &str) -> Vec<(String, bool)> {
    // Per thread: renamed targets waiting for their directory's fsync, and open directory fds.
    let mut waiting: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    let mut opening: HashMap<String, String> = HashMap::new();
    let mut open_dirs: HashMap<(String, String), String> = HashMap::new();
    let mut renames: Vec<(String, bool)> = Vec::new();
    let quoted = |text: &str| -> Vec<String> {
        text.split('"')
            .enumerate()
            .filter(|(index, _)| index % 2 == 1)
            .map(|(_, part)| part.to_owned())
            .collect()
    };
    let result = |text: &str| text.rsplit_once(" = ").map(|(_, fd)| fd.trim().to_owned());
    for line in trace.lines() {
        let Some((tid, call)) = line.split_once(' ') else {
            continue;
        };
        let tid = tid.to_owned();
        let call = call.trim_start();
        let from_partial = call.contains(".partial\"") || call.contains("/partial/");
        if call.starts_with("rename") && from_partial && call.ends_with("= 0") {
            if let Some(target) = quoted(call).get(1) {
                let directory = Path::new(target)
                    .parent()
                    .map(|parent| parent.display().to_string())
                    .unwrap_or_default();
                renames.push((target.clone(), false));
                waiting
                    .entry(tid.clone())
                    .or_default()
                    .push((renames.len() - 1, directory));
            }
        } else if call.starts_with("openat(") {
            let path = quoted(call).first().cloned().unwrap_or_default();
            match result(call) {
                Some(fd) if !call.contains("unfinished") => {
                    open_dirs.insert((tid.clone(), fd), path);
                }
                _ => {
                    opening.insert(tid.clone(), path);
                }
            }
        } else if call.starts_with("<... openat resumed>") {
            if let (Some(path), Some(fd)) = (opening.remove(&tid), result(call)) {
                open_dirs.insert((tid.clone(), fd), path);
            }
        } else if let Some(rest) = call.strip_prefix("fsync(") {
            let fd: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Some(path) = open_dirs.get(&(tid.clone(), fd))
                && let Some(pending) = waiting.get_mut(&tid)
            {
                pending.retain(|(index, directory)| {
                    let flushed = directory == path;
                    if flushed {
                        renames[*index].1 = true;
                    }
                    !flushed
                });
            }
        }
    }
    renames
}

#[tokio::test]
async fn a_finished_bundle_and_its_cache_entries_are_flushed_with_their_directory() {
    let world = World::new(RegistryFlavour::Plain).await;
    world.lock_spec();
    let bundle = world.path("durable.bundle");
    let trace = world.path("strace.txt");
    let mut args = world.bundle_args(&bundle);
    args.extend(world.registry_args());
    let output = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,rename,renameat,renameat2,fsync",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_coder-install"))
        .args(&args)
        .env("DOCKER_CONFIG", world.docker_config_dir())
        .env("XDG_CACHE_HOME", world.path("xdg-cache"))
        .output()
        .expect("run coder-install bundle under strace");
    success(output);
    let trace = std::fs::read_to_string(&trace).expect("strace log");
    let renames = renames_followed_by_directory_fsync(&trace);
    let bundle_name = bundle.display().to_string();
    assert!(
        renames.iter().any(|(target, _)| *target == bundle_name),
        "the bundle is renamed into place: {renames:?}"
    );
    assert!(
        renames
            .iter()
            .any(|(target, _)| target.starts_with(&world.cache().display().to_string())),
        "cache entries are renamed into place: {renames:?}"
    );
    let unflushed: Vec<&String> = renames
        .iter()
        .filter(|(_, flushed)| !flushed)
        .map(|(target, _)| target)
        .collect();
    assert!(
        unflushed.is_empty(),
        "renamed without flushing their directory: {unflushed:?}"
    );
}
