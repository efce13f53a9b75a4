use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use coder_bundle::read::BundleReader;
use coder_testenv::RegistryFlavour;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};

use crate::world::{World, failure, success};

fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn lock_and_bundle_make_an_oci_archive_that_skopeo_reads() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, summary) = world.lock_and_bundle("coder.bundle");

    // The lock pins the index and lists both platforms.
    let lock = std::fs::read_to_string(world.lock()).expect("lock");
    assert!(lock.contains(world.app.digest()), "{lock}");
    assert!(lock.contains("linux/arm64"), "{lock}");
    assert_eq!(summary["images"], 2);
    assert_eq!(summary["charts"], 1);

    // skopeo reads the index byte for byte, and copies the amd64 image out with its digest.
    let archive = format!("oci-archive:{}:{}", bundle.display(), world.app_ref());
    let raw = skopeo(&["inspect", "--raw", &archive]);
    assert_eq!(raw.as_bytes(), world.app.index.data.as_slice());
    let target = tempfile::tempdir().expect("tempdir");
    skopeo(&[
        "copy",
        "--override-arch",
        "amd64",
        &archive,
        &format!("oci:{}:app", target.path().display()),
    ]);
    let copied_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.path().join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(
        copied_index["manifests"][0]["digest"],
        world.app.images[0].digest()
    );

    // The Docker schema2 image is carried byte for byte and named in index.json. (Debian's skopeo
    // 1.9 only resolves OCI-typed descriptors by name, so it is checked with our own reader.)
    let reader = BundleReader::open(&bundle).expect("open bundle");
    let index = reader
        .read_document("index.json")
        .expect("read")
        .expect("index.json");
    let index: serde_json::Value = serde_json::from_slice(&index).expect("index JSON");
    let db_entry = index["manifests"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == world.db_ref())
        })
        .expect("db in index.json");
    assert_eq!(db_entry["digest"], world.db.digest());
    assert_eq!(
        db_entry["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let db_manifest = reader
        .read_document(&coder_bundle_spec::format::blob_path(world.db.digest()))
        .expect("read")
        .expect("db manifest");
    assert_eq!(db_manifest, world.db.manifest.data);

    // Only the spec's platform is carried; the shared base layer is stored once.
    let inspection: serde_json::Value = serde_json::from_str(&success(world.run(&[
        "inspect",
        &bundle.display().to_string(),
        "--output",
        "json",
    ])))
    .expect("json");
    assert_eq!(inspection["images"][0]["platforms"][0]["platform"], "linux/amd64");
    assert_eq!(
        inspection["images"][0]["platforms"].as_array().map(Vec::len),
        Some(1)
    );
    let arm64_layer = &world.app.images[1].layers[1].digest;
    assert!(
        !reader
            .entries()
            .contains_key(&coder_bundle_spec::format::blob_path(arm64_layer)),
        "arm64 layer carried"
    );
    let shared = &world.app.images[0].layers[0].digest;
    assert_eq!(world.db.layers[1].digest, *shared);
    assert!(
        inspection["shared_savings"].as_u64().unwrap_or(0) >= 256 * 1024,
        "{inspection}"
    );
    assert_eq!(inspection["charts"][0]["ref"], "charts/coder:1.2.3");

    success(world.run(&["verify", "--allow-unsigned", &bundle.display().to_string()]));
}

#[tokio::test]
async fn rebundling_is_byte_identical_and_downloads_nothing() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (first, first_summary) = world.lock_and_bundle("first.bundle");
    assert!(first_summary["downloaded_bytes"].as_u64().unwrap_or(0) > 0);
    let (second, second_summary) = world.bundle("second.bundle");
    assert_eq!(second_summary["downloaded_bytes"], 0);
    assert_eq!(second_summary["cached_blobs"], second_summary["blobs"]);
    let first_bytes = std::fs::read(&first).expect("first");
    assert!(
        first_bytes == std::fs::read(&second).expect("second"),
        "bundles differ"
    );

    // Written afresh, blob by blob in whatever order the downloads finish: the same bytes.
    let fresh = world.path("fresh.bundle");
    let mut args = world.bundle_args(&fresh);
    let other_cache = world.path("other-cache").display().to_string();
    let cache_at = args.iter().position(|arg| arg == "--cache").expect("--cache") + 1;
    args[cache_at] = other_cache;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    success(world.run(&args));
    assert!(
        first_bytes == std::fs::read(&fresh).expect("fresh"),
        "a fresh bundle differs"
    );
}

#[tokio::test]
async fn a_new_version_downloads_only_what_the_last_bundle_lacks() {
    let world = World::new(RegistryFlavour::Plain).await;
    world.lock_and_bundle("v1.bundle");
    let app2 = world.publish_app_v2().await;
    let (v2, summary) = world.lock_and_bundle("v2.bundle");
    // The shared base layer and the whole db image come from the v1 bundle in the cache.
    let new_bytes = app2.config.data.len() + app2.layers[1].data.len();
    assert_eq!(summary["downloaded_bytes"], new_bytes as u64, "{summary}");
    success(world.run(&["verify", "--allow-unsigned", &v2.display().to_string()]));
}

#[tokio::test]
async fn a_cached_bundle_damaged_through_its_output_is_not_trusted() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (first, _) = world.lock_and_bundle("first.bundle");
    // The cache keeps the bundle as a hard link to the output: a byte flipped in the output is
    // flipped in the cache too.
    let shared = world.db.layers[1].clone();
    flip_byte(&first, &shared.digest);

    let (second, summary) = world.bundle("second.bundle");
    assert_eq!(
        summary["downloaded_bytes"],
        shared.data.len() as u64,
        "only the damaged layer is fetched again: {summary}"
    );
    success(world.run(&["verify", "--allow-unsigned", &second.display().to_string()]));
}

/// Flips one byte of blob `digest` inside `bundle`.
fn flip_byte(bundle: &std::path::Path, digest: &str) {
    let location = *BundleReader::open(bundle)
        .expect("open")
        .entries()
        .get(&coder_bundle_spec::format::blob_path(digest))
        .expect("blob in bundle");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(bundle)
        .expect("open rw");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, location.offset + 100)
        .expect("read");
    file.write_all_at(&[byte[0] ^ 0xff], location.offset + 100)
        .expect("flip");
}

#[tokio::test]
async fn verify_names_a_corrupted_blob_and_the_images_using_it() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("coder.bundle");
    let shared = world.db.layers[1].digest.clone();
    flip_byte(&bundle, &shared);

    let output = world.run(&[
        "verify",
        "--allow-unsigned",
        &bundle.display().to_string(),
        "--output",
        "json",
    ]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("report JSON");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(&shared) && problems.contains("corrupt"),
        "{problems}"
    );
    for artifact in report["artifacts"].as_array().expect("artifacts") {
        let expect_broken = artifact["name"] == "app" || artifact["name"] == "db";
        assert_eq!(artifact["intact"], !expect_broken, "{artifact}");
        if expect_broken {
            assert_eq!(artifact["bad_blobs"][0], shared.as_str());
        }
    }
}

#[tokio::test]
async fn signed_bundles_verify_only_with_the_right_key() {
    let world = World::new(RegistryFlavour::Plain).await;
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let write_key = |name: &str, key: &SigningKey| {
        let private = world.path(&format!("{name}.pem"));
        let public = world.path(&format!("{name}.pub"));
        std::fs::write(
            &private,
            key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
        )
        .expect("write");
        std::fs::write(
            &public,
            key.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
        )
        .expect("write");
        (private.display().to_string(), public.display().to_string())
    };
    let (private, public) = write_key("vendor", &key);
    let (_, other_public) = write_key("other", &other);
    let (spec, lock) = world.lock_spec();
    let bundle = world.path("signed.bundle").display().to_string();
    let cache = world.cache().display().to_string();
    success(world.run(&[
        "bundle",
        "--spec",
        &spec,
        "--lock",
        &lock,
        "--cache",
        &cache,
        "-o",
        &bundle,
        "--signing-key",
        &private,
    ]));

    assert!(
        success(world.run(&["verify", &bundle, "--public-key", &public])).contains("signature: verified")
    );
    let error = failure(world.run(&["verify", &bundle, "--public-key", &other_public]));
    assert!(error.contains("signature"), "{error}");
    assert!(
        success(world.run(&["verify", "--allow-unsigned", &bundle]))
            .contains("NOT checked (--allow-unsigned")
    );

    // A key given for an unsigned bundle is a failure, not a pass.
    let (unsigned, _) = world.bundle("unsigned.bundle");
    failure(world.run(&["verify", &unsigned.display().to_string(), "--public-key", &public]));
}

#[tokio::test]
async fn a_tls_registry_with_basic_auth_works_through_the_docker_config() {
    let world = World::new(RegistryFlavour::TlsBasicAuth).await;
    let (bundle, summary) = world.lock_and_bundle("coder.bundle");
    assert_eq!(summary["images"], 2);
    success(world.run(&["verify", "--allow-unsigned", &bundle.display().to_string()]));

    // The same request without the credentials is told apart as a 401 with advice.
    let empty_config = world.path("no-credentials");
    std::fs::create_dir_all(&empty_config).expect("dir");
    let ca = world.registry.ca_file().expect("ca").display().to_string();
    let output = crate::world::coder_install(
        [
            "lock",
            "--spec",
            &world.spec().display().to_string(),
            "-o",
            &world.path("x.lock").display().to_string(),
            "--registry-ca",
            &ca,
        ],
        &[("DOCKER_CONFIG", &empty_config)],
    );
    let error = failure(output);
    assert!(error.contains("401") && error.contains("log in"), "{error}");
    assert!(!world.path("x.lock").exists(), "a failed lock left a file behind");
}

#[tokio::test]
async fn bad_inputs_are_refused_with_what_to_do() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("coder.bundle");
    let spec = world.spec().display().to_string();
    let lock = world.lock().display().to_string();
    let bundle_path = bundle.display().to_string();

    // An existing output without --force.
    let error = failure(world.run(&["bundle", "--spec", &spec, "--lock", &lock, "-o", &bundle_path]));
    assert!(
        error.contains("already exists") && error.contains("--force"),
        "{error}"
    );

    // A spec that changed since the lock.
    world.write_spec(&world.spec_text().replace("library/db:13", "library/db:14"));
    let error = failure(world.run(&[
        "bundle",
        "--spec",
        &spec,
        "--lock",
        &lock,
        "-o",
        &world.path("b2").display().to_string(),
    ]));
    assert!(
        error.contains("coder-install lock") && error.contains("db"),
        "{error}"
    );

    // A tag that does not exist.
    let error = failure(world.run(&[
        "lock",
        "--spec",
        &spec,
        "-o",
        &world.path("l2").display().to_string(),
    ]));
    assert!(
        error.contains("library/db:14") && error.contains("not found"),
        "{error}"
    );

    // Malformed YAML, with its line.
    world.write_spec("name: coder\nversion: 1\nimages:\n  - name: [\n");
    let error = failure(world.run(&[
        "lock",
        "--spec",
        &spec,
        "-o",
        &world.path("l3").display().to_string(),
    ]));
    assert!(error.contains("coder.yaml") && error.contains('4'), "{error}");

    // A bundle tar with an escaping path.
    let evil = world.path("evil.bundle");
    let mut builder = tar::Builder::new(std::fs::File::create(&evil).expect("create"));
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"../escape.txt");
    header.set_cksum();
    builder.append(&header, &b"hi"[..]).expect("append");
    builder.finish().expect("finish");
    let error = failure(world.run(&["verify", "--allow-unsigned", &evil.display().to_string()]));
    assert!(
        error.contains("not a valid bundle") && error.contains("escape"),
        "{error}"
    );
}

#[tokio::test]
async fn a_registry_serving_altered_content_is_caught_and_nothing_is_kept() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (spec, lock) = world.lock_spec();

    // Corrupt a layer inside the registry's own storage: the registry then serves altered bytes.
    let layer = &world.app.images[0].layers[1].digest;
    let hex = layer.trim_start_matches("sha256:");
    let data = world.registry.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let original = std::fs::read(&data).expect("registry blob");
    let mut altered = original.clone();
    altered[10] ^= 0xff;
    std::fs::write(&data, altered).expect("corrupt registry blob");

    let output = world.run(&[
        "bundle",
        "--spec",
        &spec,
        "--lock",
        &lock,
        "--cache",
        &world.cache().display().to_string(),
        "-o",
        &world.path("x.bundle").display().to_string(),
    ]);
    let error = failure(output);
    assert!(
        error.contains(layer.as_str()) && error.contains("altered"),
        "{error}"
    );
    for left in ["x.bundle", "x.bundle.partial", "x.bundle.partial.journal"] {
        assert!(!world.path(left).exists(), "a failed bundle left {left}");
    }
    assert!(
        !world.cache().join("blobs/sha256").join(hex).exists(),
        "an unverified blob entered the cache"
    );

    // Once the registry serves the right bytes again, only that layer is downloaded: the
    // failed run kept what it had verified.
    std::fs::write(&data, &original).expect("repair registry blob");
    let (_, summary) = world.bundle("x.bundle");
    assert_eq!(summary["downloaded_bytes"], original.len() as u64, "{summary}");
}

#[tokio::test]
async fn a_delta_bundle_leaves_out_what_the_earlier_bundle_carried() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (old, _) = world.lock_and_bundle("v1.bundle");

    // Version 2: a new app image that keeps the shared base layer and adds a new one.
    let base = world.app.images[0].layers[0].digest.clone();
    let app2 = world.publish_app_v2().await;
    assert_eq!(app2.layers[0].digest, base);

    let (spec, lock) = world.lock_spec();
    let delta = world.path("v2-delta.bundle").display().to_string();
    let cache = world.cache().display().to_string();
    let summary: serde_json::Value = serde_json::from_str(&success(world.run(&[
        "bundle",
        "--spec",
        &spec,
        "--lock",
        &lock,
        "--cache",
        &cache,
        "-o",
        &delta,
        "--delta-from",
        &old.display().to_string(),
        "--output",
        "json",
    ])))
    .expect("summary");

    let reader = BundleReader::open(std::path::Path::new(&delta)).expect("open delta");
    let has = |digest: &str| {
        reader
            .entries()
            .contains_key(&coder_bundle_spec::format::blob_path(digest))
    };
    assert!(!has(&base), "the shared base layer was carried again");
    assert!(
        !has(&world.db.layers[0].digest),
        "the unchanged db layer was carried again"
    );
    assert!(has(&app2.layers[1].digest), "the new layer is missing");
    assert!(has(app2.digest()), "manifests always travel");
    assert!(summary["omitted_blobs"].as_u64().unwrap_or(0) >= 3, "{summary}");

    let report = success(world.run(&["verify", "--allow-unsigned", &delta, "--output", "json"]));
    let report: serde_json::Value = serde_json::from_str(&report).expect("report");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(0), "{report}");
    let inspection = success(world.run(&["inspect", &delta]));
    assert!(
        inspection.contains("delta bundle") && inspection.contains("coder 1.0.0"),
        "{inspection}"
    );
}

#[tokio::test]
async fn an_interrupted_or_killed_bundle_run_resumes_without_downloading_again() {
    let world = World::new(RegistryFlavour::Plain).await;
    // A layer large enough that the run is still downloading when it is killed.
    let big = world.push_big_image(384 << 20, 5).await;
    world.write_spec(&format!(
        "name: coder\nversion: 1.0.0\nimages:\n  - name: big\n    ref: {}/team/big:1\n",
        world.registry.host()
    ));
    world.lock_spec();

    let bundle = world.path("big.bundle");
    let mut args = world.bundle_args(&bundle);
    args.extend(world.registry_args());
    // The run records in its journal how far each download got.
    let journal = world.path("big.bundle.partial.journal");
    let progress = |journal: &std::path::Path| {
        std::fs::read_to_string(journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("part {} ", big.layers[0].digest)))
            .filter_map(|checkpoint| checkpoint.split(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    // Interrupted twice: with Ctrl-C once 8 MiB of the layer are in, then killed outright once
    // 8 MiB more are.
    let mut left = 0;
    for signal in [Signal::SIGINT, Signal::SIGKILL] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coder-install"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bundle");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while progress(&journal) < left + (8 << 20) {
            assert!(std::time::Instant::now() < deadline, "the download never went on");
            assert!(
                child.try_wait().expect("poll").is_none(),
                "the run finished before it could be interrupted"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal the run");
        let output = child.wait_with_output().expect("reap");
        assert!(!output.status.success(), "an interrupted run reported success");
        if signal == Signal::SIGINT {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("run the same command again"), "{stderr}");
        }
        left = progress(&journal);
        assert!(
            !bundle.exists(),
            "an interrupted run left a bundle that looks complete"
        );
        assert!(
            world.path("big.bundle.partial").exists(),
            "the partial bundle was lost"
        );
    }

    let (bundle, summary) = world.bundle("big.bundle");
    let resumed = summary["resumed_bytes"].as_u64().expect("resumed");
    let downloaded = summary["downloaded_bytes"].as_u64().expect("downloaded");
    assert!(
        resumed >= left,
        "{left} bytes were in place, {resumed} reused: {summary}"
    );
    let fetched_blobs = (big.config.data.len() + big.layers[0].data.len()) as u64;
    assert!(
        downloaded + left <= fetched_blobs,
        "what was in place was downloaded again: {summary}"
    );
    assert!(
        resumed + downloaded <= summary["unique_bytes"].as_u64().expect("unique"),
        "{summary}"
    );
    assert!(!journal.exists(), "the journal outlived the finished bundle");
    success(world.run(&["verify", "--allow-unsigned", &bundle.display().to_string()]));
}

/// Killed twice (SIGKILL) at random points while downloading through a slow link, a bundle run
/// continues each time from what it had written: the registry sends each byte about once (at
/// most 2% more in all, counted by the link) and the result is byte for byte the bundle of an
/// uninterrupted run.
#[tokio::test]
async fn a_bundle_killed_twice_through_a_slow_link_downloads_each_byte_about_once() {
    use std::hash::{BuildHasher, Hasher};

    let world = World::new(RegistryFlavour::Plain).await;
    // Four layers, downloaded side by side: each kill finds several of them half done.
    let (image, link) = world.layers_through_a_slow_link(4, 32 << 20, 60, 64 << 20).await;
    let host = link.host();
    let bundle_args = |output: &std::path::Path, cache: &str| world.bundle_args_through(output, cache, &host);
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::world::coder_install(&args, &[])
    };
    // The bundle of an uninterrupted run, with a cache of its own.
    let uninterrupted = world.path("uninterrupted.bundle");
    success(run(&bundle_args(&uninterrupted, "cache-uninterrupted")));
    let unique = crate::world::blob_bytes(&image);
    let before = link.bytes_from_server();
    let sent = || link.bytes_from_server() - before;
    // Two random points, one in each half of the transfer.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let first = 0.15 + (random % 1000) as f64 / 1000.0 * 0.3;
    let second = 0.55 + (random / 1000 % 1000) as f64 / 1000.0 * 0.3;
    let bundle = world.path("resumed.bundle");
    let args = bundle_args(&bundle, "cache");
    for fraction in [first, second] {
        let kill_at = (unique as f64 * fraction) as u64;
        crate::world::run_and_kill_when(
            &args,
            || sent() >= kill_at,
            &format!("{fraction:.2} of the bytes"),
        );
        assert!(
            world.path("resumed.bundle.partial").exists(),
            "the partial bundle was lost"
        );
    }

    let summary: serde_json::Value = serde_json::from_str(&success(run(&args))).expect("bundle summary JSON");
    let sent = sent();
    let points = format!("killed at {first:.2} and {second:.2} of {unique} bytes");
    eprintln!(
        "{points}: the registry sent {sent} bytes in all, {:.4}x the unique bytes",
        sent as f64 / unique as f64
    );
    assert!(
        summary["resumed_bytes"].as_u64().expect("resumed") > 0,
        "nothing was resumed ({points}): {summary}"
    );
    assert!(
        sent as f64 <= unique as f64 * 1.02,
        "the registry sent {sent} bytes for {unique} unique ({:.3}x; {points}): {summary}",
        sent as f64 / unique as f64
    );
    assert!(
        same_bytes(&bundle, &uninterrupted),
        "the resumed bundle differs from an uninterrupted run's ({points})"
    );
    success(world.run(&["verify", "--allow-unsigned", &bundle.display().to_string()]));
}

/// Whether two files hold the same bytes (read a MiB at a time).
fn same_bytes(left: &std::path::Path, right: &std::path::Path) -> bool {
    use std::io::Read;
    let (Ok(mut left), Ok(mut right)) = (std::fs::File::open(left), std::fs::File::open(right)) else {
        return false;
    };
    let (mut left_chunk, mut right_chunk) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let Ok(read) = left.read(&mut left_chunk) else {
            return false;
        };
        if read == 0 {
            return right.read(&mut right_chunk).is_ok_and(|more| more == 0);
        }
        if right.read_exact(&mut right_chunk[..read]).is_err() || left_chunk[..read] != right_chunk[..read] {
            return false;
        }
    }
}

#[tokio::test]
async fn a_disk_too_small_for_the_bundle_is_refused_with_the_figures_and_nothing_left() {
    let world = World::new(RegistryFlavour::Plain).await;
    world.lock_spec();
    let full = world.path("full");
    std::fs::create_dir_all(&full).expect("mount point");

    // A 512 KiB tmpfs, mounted in a private mount namespace that dies with the command.
    let script = r#"mount -t tmpfs -o size=512k tmpfs "$1" || exit 99
shift; out="$1"; shift
"$@"; status=$?
echo "left: $(ls -A "$(dirname "$out")")"
exit $status"#;
    let mut args: Vec<String> = vec!["-m".into(), "sh".into(), "-c".into(), script.into(), "sh".into()];
    let out = full.join("coder.bundle").display().to_string();
    args.extend([
        full.display().to_string(),
        out.clone(),
        env!("CARGO_BIN_EXE_coder-install").to_owned(),
    ]);
    args.extend(world.bundle_args(std::path::Path::new(&out)));
    args.extend(world.registry_args());
    let output = Command::new("unshare")
        .args(&args)
        .output()
        .expect("run unshare (util-linux)");
    assert_ne!(
        output.status.code(),
        Some(99),
        "cannot mount a tmpfs (the test needs root): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "bundling onto a full disk succeeded");
    // Refused before the download, saying how much it needs, where, and how much is free.
    assert!(
        stderr.contains("not enough free space for the bundle")
            && stderr.contains(&format!("in {}, which has 512.00 KiB free", full.display()))
            && stderr.contains("write it elsewhere (-o)"),
        "{stderr}"
    );
    let needed: u64 = stderr
        .split_once(" bytes) in ")
        .and_then(|(before, _)| before.rsplit_once('(')?.1.parse().ok())
        .expect("the bytes needed");
    assert!(needed > 512 * 1024, "{stderr}");
    assert!(
        !stderr.contains("pulling") && !stderr.contains("downloaded"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "left:",
        "files were left behind on the full disk"
    );
}

#[tokio::test]
async fn an_oci_chart_reference_is_locked_and_carried_like_an_image() {
    use coder_bundle_spec::format::{
        HELM_CHART_LAYER_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
    };
    use coder_testenv::fixture::{Blob, Image, Platform};

    let world = World::new(RegistryFlavour::Plain).await;
    // A Helm chart as `helm push` stores it: Helm's config and content media types.
    let config = Blob::new(
        HELM_CONFIG_MEDIA_TYPE,
        br#"{"name":"extras","version":"0.3.0"}"#.to_vec(),
    );
    let content = Blob::new(
        HELM_CHART_LAYER_MEDIA_TYPE,
        b"not really a tgz, but bytes all the same".to_vec(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [content.descriptor()],
    });
    let manifest = Blob::new(
        OCI_MANIFEST_MEDIA_TYPE,
        serde_json::to_vec(&manifest).expect("json"),
    );
    let chart = Image {
        manifest,
        config,
        layers: vec![content],
        platform: Platform::linux("amd64"),
    };
    world
        .registry
        .push_image("charts/extras:0.3.0", &chart)
        .await
        .expect("push chart");
    let chart_ref = format!("{}/charts/extras:0.3.0", world.registry.host());
    world.write_spec(&format!(
        "{}  - name: extras\n    ref: oci://{chart_ref}\n",
        world.spec_text()
    ));

    let (bundle, summary) = world.lock_and_bundle("charts.bundle");
    assert_eq!(summary["charts"], 2, "{summary}");
    let lock = std::fs::read_to_string(world.lock()).expect("lock");
    assert!(
        lock.contains(&format!("oci://{chart_ref}")) && lock.contains(chart.digest()),
        "{lock}"
    );

    let reader = BundleReader::open(&bundle).expect("open");
    let manifest = reader.manifest().expect("manifest");
    let carried = manifest
        .charts
        .iter()
        .find(|c| c.name == "extras")
        .expect("extras chart");
    assert_eq!(carried.reference, chart_ref);
    assert_eq!(carried.digest, chart.digest());
    for blob in [&chart.manifest, &chart.config, &chart.layers[0]] {
        let bytes = reader
            .read_document(&coder_bundle_spec::format::blob_path(&blob.digest))
            .expect("read")
            .expect("blob present");
        assert_eq!(bytes, blob.data);
    }
    success(world.run(&["verify", "--allow-unsigned", &bundle.display().to_string()]));
}
