//! `coder-install push` against real registries: a bundle made from the upstream world goes into
//! a second registry (the site registry) under a prefix, and skopeo reads it back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use coder_mirror::{SiteRegistry, check_registry_writable};
use coder_registry::{CredentialStore, Credentials, RegistryError, RegistryOptions};
use coder_testenv::{Registry, RegistryFlavour};
use serde_json::Value;

use crate::world::{World, failure, success};

/// The prefix every test pushes under.
pub(crate) const PREFIX: &str = "site/mirror";

/// Runs `coder-install push` of `bundle` into `target` (under [`PREFIX`]); `password` is piped
/// to `--registry-password-stdin` with the target's user name; `--allow-unsigned` unless `extra`
/// gives a signature policy.
fn push(bundle: &Path, target: &Registry, password: Option<&str>, extra: &[&str]) -> Output {
    push_via(bundle, target, &target.host(), password, extra)
}

/// [`push`] through `host`, a proxy in front of `target` (plain HTTP when `target` is).
pub(crate) fn push_via(
    bundle: &Path,
    target: &Registry,
    host: &str,
    password: Option<&str>,
    extra: &[&str],
) -> Output {
    let site = format!("{host}/{PREFIX}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_coder-install"));
    command
        .args(["push", "--bundle"])
        .arg(bundle)
        .args(["--registry", &site]);
    // Unsigned unless the caller names a policy.
    if !extra
        .iter()
        .any(|arg| matches!(*arg, "--public-key" | "--allow-unsigned"))
    {
        command.arg("--allow-unsigned");
    }
    match target.ca_file() {
        Some(ca) => command.arg("--registry-ca").arg(ca),
        None => command.args(["--insecure-registry", host]),
    };
    if let (Some(_), Some((user, _))) = (password, target.credentials()) {
        command.args(["--registry-username", user, "--registry-password-stdin"]);
    }
    command.args(extra);
    // An empty Docker config: the only credentials are the ones given on the command line.
    let docker = tempfile::tempdir().expect("docker config dir");
    std::fs::write(docker.path().join("config.json"), "{}").expect("config.json");
    // Pushing a bundle needs the air-gap license (see airgap_license.rs for the refusals).
    let license = docker.path().join("coder.license");
    let claims = crate::license::claims(coder_license::Tier::Enterprise, true);
    std::fs::write(&license, crate::license::signed(&claims)).expect("license");
    command.arg("--license").arg(&license);
    command
        .env("DOCKER_CONFIG", docker.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run coder-install push");
    // stdin is closed (dropped) right after, so a reader of it sees the end.
    if let (Some(mut stdin), Some(password)) = (child.stdin.take(), password) {
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
    }
    child.wait_with_output().expect("wait for coder-install push")
}

/// `push` with JSON output, which must succeed; returns the report.
pub(crate) fn push_json(bundle: &Path, target: &Registry, password: Option<&str>) -> Value {
    let stdout = success(push(bundle, target, password, &["--output", "json"]));
    serde_json::from_str(&stdout).expect("push report JSON")
}

/// Runs skopeo `subcommand` with `args`, reading from the target registry (plain HTTP, or its CA
/// and credentials); for `copy` the registry is the source.
fn skopeo(target: &Registry, subcommand: &str, args: &[&str]) -> Vec<u8> {
    crate::world::skopeo(subcommand, args, target.ca_file(), target.credentials())
}

/// The sha256 digest of what skopeo reads raw at `reference` on the target.
fn raw_digest(target: &Registry, reference: &str) -> String {
    let raw = skopeo(
        target,
        "inspect",
        &[
            "--raw",
            &format!("docker://{}/{PREFIX}/{reference}", target.host()),
        ],
    );
    coder_testenv::fixture::sha256_digest(&raw)
}

fn artifact<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["artifacts"]
        .as_array()
        .and_then(|artifacts| artifacts.iter().find(|artifact| artifact["name"] == name))
        .unwrap_or_else(|| panic!("no artifact {name} in {report}"))
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// The world's spec with every platform carried, so the app's index travels whole.
pub(crate) fn all_platforms(world: &World) -> String {
    world.spec_text().replace(
        "platforms: [linux/amd64]",
        "platforms: [linux/amd64, linux/arm64]",
    )
}

#[tokio::test]
async fn push_mirrors_images_and_charts_byte_for_byte_and_a_second_push_sends_nothing() {
    let world = World::new(RegistryFlavour::Plain).await;
    world.write_spec(&all_platforms(&world));
    let (bundle, summary) = world.lock_and_bundle("full.bundle");
    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("target registry");

    let report = push_json(&bundle, &target, None);

    // Every artifact lands under the prefix, keeping its original repository path.
    let app = artifact(&report, "app");
    assert_eq!(app["repository"], format!("{}/{PREFIX}/team/app", target.host()));
    assert_eq!(app["digest"], world.app.digest());
    assert_eq!(
        app["pull_digest"],
        world.app.digest(),
        "the whole index is in the registry"
    );
    assert_eq!(app["complete"], true);
    assert_eq!(app["tag"], "1.0");
    let db = artifact(&report, "db");
    assert_eq!(db["repository"], format!("{}/{PREFIX}/library/db", target.host()));
    assert_eq!(db["digest"], world.db.digest());
    let chart = artifact(&report, "coder");
    assert_eq!(chart["kind"], "chart");
    assert_eq!(chart["tag"], "1.2.3");

    // skopeo reads back the exact bytes: the index, both children, the schema2 image, the chart.
    assert_eq!(raw_digest(&target, "team/app:1.0"), world.app.digest());
    for image in &world.app.images {
        assert_eq!(
            raw_digest(&target, &format!("team/app@{}", image.digest())),
            image.digest()
        );
    }
    assert_eq!(raw_digest(&target, "library/db:13"), world.db.digest());
    assert_eq!(
        raw_digest(&target, "charts/coder:1.2.3"),
        chart["digest"].as_str().expect("digest")
    );
    // And a full copy (every blob fetched and verified by skopeo) works.
    let copy = tempfile::tempdir().expect("tempdir");
    skopeo(
        &target,
        "copy",
        &[
            &format!("docker://{}/{PREFIX}/library/db:13", target.host()),
            &format!("oci:{}:db", copy.path().display()),
        ],
    );

    // Each distinct blob is sent once: the base layer shared by app and db is mounted into the
    // second repository (amd64 and arm64 share it too, but within one repository).
    let unique_blobs = world
        .app
        .images
        .iter()
        .chain([&world.db])
        .flat_map(|image| image.layers.iter().chain([&image.config]))
        .map(|blob| blob.digest.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64
        + 2; // the chart's config and content
    assert_eq!(count(&report, "blobs_uploaded"), unique_blobs, "{report}");
    assert_eq!(count(&report, "blobs_mounted"), 1, "{report}");
    assert_eq!(count(&report, "blobs_present"), 0, "{report}");
    // 1 index + 2 children + db + chart.
    assert_eq!(count(&report, "manifests_pushed"), 5, "{report}");
    assert_eq!(count(&report, "tags_set"), 3, "{report}");
    assert!(count(&report, "bytes_sent") <= summary["unique_bytes"].as_u64().expect("unique_bytes"));

    // A second push finds everything and sends nothing.
    let again = push_json(&bundle, &target, None);
    for key in [
        "blobs_uploaded",
        "blobs_mounted",
        "manifests_pushed",
        "tags_set",
        "bytes_sent",
    ] {
        assert_eq!(count(&again, key), 0, "{key} in {again}");
    }
    assert_eq!(count(&again, "manifests_present"), 5, "{again}");
    assert!(count(&again, "blobs_skipped") > 0, "{again}");

    // The text output names where each image went.
    let text = success(push(&bundle, &target, None, &[]));
    assert!(
        text.contains(&format!(
            "{}/{PREFIX}/library/db:13@{}",
            target.host(),
            world.db.digest()
        )),
        "{text}"
    );
    assert!(text.contains("0 blobs uploaded"), "{text}");
}

#[tokio::test]
async fn push_to_a_tls_basic_auth_registry_reads_the_password_from_stdin_and_refuses_a_wrong_one() {
    // The default world spec carries linux/amd64 only: the registry refuses the partial index,
    // so the carried platform manifest is pushed and tagged, and the report says so.
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("amd64.bundle");
    let target = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("target registry");
    let (_, password) = target.credentials().expect("credentials");

    let wrong = failure(push(&bundle, &target, Some("not-the-password"), &[]));
    assert!(wrong.contains("authentication failed (401)"), "{wrong}");
    assert!(wrong.contains("credentials given were refused"), "{wrong}");

    let report = push_json(&bundle, &target, Some(password));
    let amd64 = world.app.images[0].digest();
    let app = artifact(&report, "app");
    assert_eq!(app["digest"], world.app.digest());
    assert_eq!(app["complete"], false, "{app}");
    assert_eq!(app["pull_digest"], amd64, "{app}");
    assert!(
        app["note"]
            .as_str()
            .is_some_and(|note| note.contains("MANIFEST_BLOB_UNKNOWN")),
        "{app}"
    );
    assert_eq!(raw_digest(&target, "team/app:1.0"), amd64);
    assert_eq!(raw_digest(&target, "library/db:13"), world.db.digest());

    // Without credentials at all, the message says how to give them.
    let anonymous = failure(push(&bundle, &target, None, &[]));
    assert!(anonymous.contains("--registry-password-stdin"), "{anonymous}");
}

/// The folder of one repository inside the distribution registry's storage.
fn repository_dir(target: &Registry, repository: &str) -> PathBuf {
    target
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(PREFIX)
        .join(repository)
}

#[tokio::test]
async fn an_interrupted_push_resumes_and_sends_only_what_is_missing() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("resume.bundle");
    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("target registry");
    push_json(&bundle, &target, None);

    // Simulate a push cut off after some blobs: no manifests or tags anywhere yet, and the app's
    // own layer never arrived in its repository.
    let app_layer = &world.app.images[0].layers[1];
    for repository in ["team/app", "library/db", "charts/coder"] {
        std::fs::remove_dir_all(repository_dir(&target, repository).join("_manifests"))
            .expect("remove manifests");
    }
    std::fs::remove_dir_all(
        repository_dir(&target, "team/app")
            .join("_layers/sha256")
            .join(app_layer.digest.trim_start_matches("sha256:")),
    )
    .expect("remove layer link");

    let report = push_json(&bundle, &target, None);
    assert_eq!(count(&report, "blobs_uploaded"), 1, "{report}");
    assert_eq!(
        count(&report, "bytes_sent"),
        app_layer.data.len() as u64,
        "{report}"
    );
    assert_eq!(count(&report, "blobs_mounted"), 0, "{report}");
    assert!(count(&report, "blobs_present") >= 5, "{report}");
    // The amd64 manifest, db and the chart again (the partial index is refused again).
    assert_eq!(count(&report, "manifests_pushed"), 3, "{report}");
    assert_eq!(count(&report, "tags_set"), 3, "{report}");
    assert_eq!(raw_digest(&target, "team/app:1.0"), world.app.images[0].digest());
}

#[tokio::test]
async fn a_damaged_blob_is_refused_before_anything_is_pushed() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("damaged.bundle");
    // One byte in the middle of the app's own layer flipped after the bundle was written.
    let layer = &world.app.images[0].layers[1];
    let mut bytes = std::fs::read(&bundle).expect("read the bundle");
    let start = bytes
        .windows(64)
        .position(|window| window == &layer.data[..64])
        .expect("the app layer in the bundle");
    bytes[start + layer.data.len() / 2] ^= 0xff;
    std::fs::write(&bundle, &bytes).expect("damage the bundle");
    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("target registry");

    // push verifies the bundle before it sends anything.
    let text = failure(push(&bundle, &target, None, &[]));
    assert!(
        text.contains(&layer.digest)
            && text.contains("does not verify")
            && text.contains("nothing was pushed"),
        "{text}"
    );
    assert!(
        crate::world::catalog(&target).await.is_empty(),
        "nothing may be pushed"
    );
    // The registry hashed what it received and committed nothing under the layer's digest.
    let hex = layer.digest.trim_start_matches("sha256:");
    let stored = target
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    assert!(!stored.exists(), "{} was committed", stored.display());
}

#[tokio::test]
async fn a_read_only_registry_is_refused_clearly_and_the_probe_tells_writable_registries_apart() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (bundle, _) = world.lock_and_bundle("ro.bundle");
    let read_only = Registry::start(RegistryFlavour::ReadOnly)
        .await
        .expect("read-only registry");
    let error = failure(push(&bundle, &read_only, None, &[]));
    assert!(
        error.contains("refuses pushes") && error.contains("read-only"),
        "{error}"
    );
    assert!(
        !read_only
            .storage_dir()
            .join("docker/registry/v2/repositories")
            .exists(),
        "nothing may be written"
    );

    let options = |registry: &Registry| RegistryOptions {
        insecure_registries: vec![registry.host()],
        attempts: 2,
        ..RegistryOptions::default()
    };
    let site = |registry: &Registry| -> SiteRegistry {
        format!("{}/{PREFIX}", registry.host()).parse().expect("site")
    };
    let refused = check_registry_writable(&site(&read_only), &options(&read_only))
        .await
        .expect_err("read-only");
    assert!(
        matches!(refused, RegistryError::PushNotAllowed { .. }),
        "{refused}"
    );

    // Deletes disabled (the registry's default): writable, probe left in place.
    let plain = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("plain registry");
    let check = check_registry_writable(&site(&plain), &options(&plain))
        .await
        .expect("writable");
    assert!(!check.probe_deleted);
    assert!(
        check.summary.contains("probe blob left in place"),
        "{}",
        check.summary
    );
    assert!(
        check
            .repository
            .ends_with(&format!("{PREFIX}/coder-install/write-probe"))
    );

    let deletable = Registry::start(RegistryFlavour::DeleteEnabled)
        .await
        .expect("registry");
    let check = check_registry_writable(&site(&deletable), &options(&deletable))
        .await
        .expect("writable");
    assert!(check.probe_deleted, "{}", check.summary);

    // Wrong credentials: the probe says 401.
    let secured = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("registry");
    let mut credentials = CredentialStore::default();
    credentials.insert(
        &secured.host(),
        Credentials {
            username: "coder-test".into(),
            password: "wrong".into(),
        },
    );
    let refused = check_registry_writable(
        &site(&secured),
        &RegistryOptions {
            ca_files: secured.ca_file().map(Path::to_path_buf).into_iter().collect(),
            credentials,
            attempts: 1,
            ..RegistryOptions::default()
        },
    )
    .await
    .expect_err("wrong password");
    assert!(
        matches!(
            refused,
            RegistryError::Unauthorized {
                with_credentials: true,
                ..
            }
        ),
        "{refused}"
    );
}

#[tokio::test]
async fn a_delta_bundle_needs_its_base_in_the_site_registry() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (v1, _) = world.lock_and_bundle("v1.bundle");
    let app2 = world.publish_app_v2().await;
    world.lock_spec();
    let v2 = world.path("v2-delta.bundle");
    let mut args = world.bundle_args(&v2);
    args.extend(["--delta-from".to_owned(), v1.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    success(world.run(&args));

    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("target registry");
    let error = failure(push(&v2, &target, None, &[]));
    assert!(error.contains("delta bundle made against coder 1.0.0"), "{error}");
    assert!(error.contains("push the full bundle"), "{error}");
    assert!(error.contains(&world.db.layers[0].digest), "{error}");
    assert!(
        !target
            .storage_dir()
            .join("docker/registry/v2/repositories")
            .exists(),
        "nothing may be pushed before the check"
    );

    // With the base pushed first, the delta goes through and sends only the new content.
    push_json(&v1, &target, None);
    let report = push_json(&v2, &target, None);
    assert_eq!(artifact(&report, "app")["tag"], "2.0");
    assert_eq!(raw_digest(&target, "team/app:2.0"), app2.digest());
    assert_eq!(
        count(&report, "bytes_sent"),
        (app2.layers[1].data.len() + app2.config.data.len()) as u64,
        "{report}"
    );
}

/// An Ed25519 key pair for bundle signatures: the private key's PEM file and the public key's.
fn vendor_key(world: &World, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let (private, public) = (
        world.path(&format!("{name}.pem")),
        world.path(&format!("{name}.pub")),
    );
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("key");
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    std::fs::write(&public, pem).expect("public key");
    (private, public)
}

#[tokio::test]
async fn push_and_template_verify_the_bundle_and_its_signer_before_using_it() {
    let world = World::new(RegistryFlavour::Plain).await;
    let (vendor, vendor_public) = vendor_key(&world, "vendor", 3);
    let (attacker, _) = vendor_key(&world, "attacker", 4);
    world.lock_spec();
    let bundle = |name: &str, key: &Path| {
        let output = world.path(name);
        let mut args = world.bundle_args(&output);
        args.extend(["--signing-key".to_owned(), key.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        success(world.run(&args));
        output
    };
    let genuine = bundle("genuine.bundle", &vendor);
    // The file on the transfer media swapped for one someone else made and signed.
    let swapped = bundle("swapped.bundle", &attacker);
    let target = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("target registry");
    let public = vendor_public.display().to_string();

    // No policy at all: refused by the command line, naming both choices.
    let site = format!("{}/{PREFIX}", target.host());
    let text = failure(world.run(&[
        "push",
        "--bundle",
        &swapped.display().to_string(),
        "--registry",
        &site,
    ]));
    assert!(
        text.contains("--public-key") && text.contains("--allow-unsigned"),
        "{text}"
    );
    // The vendor's key: the swapped bundle is refused before anything is sent.
    let text = failure(push(&swapped, &target, None, &["--public-key", &public]));
    assert!(
        text.contains("does not verify") && text.contains("nothing was pushed"),
        "{text}"
    );
    assert!(
        crate::world::catalog(&target).await.is_empty(),
        "nothing may be pushed"
    );
    // The genuine one goes in, and the output says how it was checked and what it is pinned to.
    let stdout = success(push(
        &genuine,
        &target,
        None,
        &["--public-key", &public, "--output", "json"],
    ));
    let report: Value = serde_json::from_str(&stdout).expect("push JSON");
    assert!(
        report["signature"]
            .as_str()
            .is_some_and(|text| text.starts_with("verified with key")),
        "{report}"
    );
    assert!(
        report["manifest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:")),
        "{report}"
    );
    let text = success(push(&genuine, &target, None, &["--allow-unsigned"]));
    assert!(
        text.contains("signature: NOT checked (--allow-unsigned)"),
        "{text}"
    );

    // template --bundle: the same policy, the same refusal, and the header names the check.
    let license = world.path("template.license");
    let claims = crate::license::claims(coder_license::Tier::Enterprise, true);
    std::fs::write(&license, crate::license::signed(&claims)).expect("license");
    let template = |bundle: &Path, extra: &[&str]| {
        let (bundle, license) = (bundle.display().to_string(), license.display().to_string());
        let mut args = vec![
            "template",
            "--bundle",
            &bundle,
            "--registry",
            &site,
            "--license",
            &license,
        ];
        args.extend(extra);
        world.run(&args)
    };
    let text = failure(template(&genuine, &[]));
    assert!(
        text.contains("--public-key") && text.contains("--allow-unsigned"),
        "{text}"
    );
    let text = failure(template(&swapped, &["--public-key", &public]));
    assert!(
        text.contains("does not verify") && text.contains("nothing was rendered"),
        "{text}"
    );
    // (What a verified bundle renders, and the header naming the check: airgap_license.rs, with
    // the real chart; this world's chart is a stub that does not render.)
}
