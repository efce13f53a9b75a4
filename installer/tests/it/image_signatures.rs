//! Image signatures travel with the images (spec `signatures: true`): cosign `.sig` and `.att`
//! artifacts, built in cosign's format with a P-256 key made here, are locked, bundled, pushed
//! into a second registry under the same tags byte for byte, and `verify --image-key` says per
//! image: signed by the key, unsigned, or bad.

use coder_testenv::cosign::{
    DSSE_ENVELOPE, SigningKey, attachment_artifact, referrer_artifact, signature_artifact,
    simple_signing_payload, tag_for,
};
use coder_testenv::fixture::{Image, ImageBuilder, Index, LayerBuilder, MediaTypes};
use coder_testenv::{Registry, RegistryFlavour};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

use crate::push::{PREFIX, push_json};
use crate::world::{World, failure, success};

/// A small image of its own (a distinct label per name).
fn small_image(name: &str) -> Image {
    ImageBuilder::new()
        .label("name", name)
        .layer(LayerBuilder::new().file("etc/name", name.as_bytes(), 0o644))
        .build()
        .expect("build image")
}

/// Pushes a `.sig` artifact for `digest` into `repository` of `registry`, one layer per
/// `(payload, signature)`; returns the artifact.
async fn push_signature(
    registry: &Registry,
    repository: &str,
    digest: &str,
    layers: &[(Vec<u8>, String)],
) -> Image {
    let artifact = signature_artifact(layers).expect("signature artifact");
    registry
        .push_image(&format!("{repository}:{}", tag_for(digest, "sig")), &artifact)
        .await
        .expect("push signature");
    artifact
}

/// A manifest's exact bytes as `registry` serves them.
async fn raw_manifest(registry: &Registry, repository: &str, reference: &str) -> Vec<u8> {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v2/{repository}/manifests/{reference}",
            registry.url()
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .expect("GET manifest");
    assert!(
        response.status().is_success(),
        "{repository}:{reference}: {}",
        response.status()
    );
    response.bytes().await.expect("manifest body").to_vec()
}

fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["image_signatures"]
        .as_array()
        .unwrap_or_else(|| panic!("no image_signatures in {report}"))
        .iter()
        .map(|image| {
            (
                image["name"].as_str().unwrap_or_default().to_owned(),
                image["verdict"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn problems_of(report: &Value, name: &str) -> String {
    report["image_signatures"]
        .as_array()
        .and_then(|images| images.iter().find(|image| image["name"] == name))
        .map(|image| image["problems"].to_string())
        .unwrap_or_else(|| panic!("no image {name} in {report}"))
}

/// `verify --allow-unsigned` of `bundle` with an `--image-key` per key, and `extra` flags.
fn verify_with_keys(world: &World, bundle: &Path, keys: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec![
        "verify".to_owned(),
        bundle.display().to_string(),
        "--allow-unsigned".to_owned(),
    ];
    for key in keys {
        args.extend(["--image-key".to_owned(), key.display().to_string()]);
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    world.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The world's spec with three more images and `signatures: true`.
fn signed_spec(world: &World) -> String {
    let host = world.registry.host();
    let extra: String = ["tampered", "elsewhere", "otherkey"]
        .iter()
        .map(|name| format!("  - name: {name}\n    ref: {host}/team/{name}:1\n"))
        .collect();
    format!(
        "{}signatures: true\n",
        world
            .spec_text()
            .replace("charts:\n", &format!("{extra}charts:\n"))
    )
}

#[tokio::test]
async fn signatures_travel_with_the_images_and_verify_tells_signed_unsigned_and_bad_apart() {
    let world = World::new(RegistryFlavour::Plain).await;
    let host = world.registry.host();
    let key = SigningKey::generate().expect("key");
    let other_key = SigningKey::generate().expect("other key");
    let key_file = world.path("cosign.pub");
    std::fs::write(&key_file, key.public_pem().expect("PEM")).expect("cosign.pub");
    let other_key_file = world.path("other.pub");
    std::fs::write(&other_key_file, other_key.public_pem().expect("PEM")).expect("other.pub");

    // app: its index signed by the key, plus an attestation.
    let app_digest = world.app.digest().to_owned();
    let app_payload = simple_signing_payload(&format!("{host}/team/app"), &app_digest);
    let app_signature = push_signature(
        &world.registry,
        "team/app",
        &app_digest,
        &[(app_payload.clone(), key.sign(&app_payload))],
    )
    .await;
    let attestation = attachment_artifact(
        DSSE_ENVELOPE,
        br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#,
    )
    .expect("attestation");
    world
        .registry
        .push_image(&format!("team/app:{}", tag_for(&app_digest, "att")), &attestation)
        .await
        .expect("push attestation");
    // db: unsigned. tampered: the payload changed after signing. elsewhere: a valid signature
    // of another image (db). otherkey: signed with another key.
    let mut images = Vec::new();
    for name in ["tampered", "elsewhere", "otherkey"] {
        let image = small_image(name);
        world
            .registry
            .push_image(&format!("team/{name}:1"), &image)
            .await
            .expect("push image");
        let digest = image.digest().to_owned();
        let payload = simple_signing_payload(&format!("{host}/team/{name}"), &digest);
        let layer = match name {
            "tampered" => {
                let signature = key.sign(&payload);
                let altered = simple_signing_payload(&format!("{host}/team/{name}-altered"), &digest);
                (altered, signature)
            }
            "elsewhere" => {
                let about_db = simple_signing_payload(&format!("{host}/library/db"), world.db.digest());
                let signature = key.sign(&about_db);
                (about_db, signature)
            }
            _ => {
                let signature = other_key.sign(&payload);
                (payload, signature)
            }
        };
        push_signature(&world.registry, &format!("team/{name}"), &digest, &[layer]).await;
        images.push(image);
    }

    // lock records the artifacts under cosign's tags.
    world.write_spec(&signed_spec(&world));
    world.lock_spec();
    let lock = std::fs::read_to_string(world.lock()).expect("lock");
    assert!(lock.contains("signatures: true"), "{lock}");
    for (kind, suffix) in [("signature", "sig"), ("attestation", "att")] {
        assert!(lock.contains(&format!("kind: {kind}")), "{lock}");
        assert!(lock.contains(&tag_for(&app_digest, suffix)), "{lock}");
    }
    assert!(lock.contains(app_signature.digest()), "{lock}");

    // bundle carries them, deterministically.
    let (bundle, summary) = world.bundle("signed.bundle");
    assert_eq!(summary["referrers"], 5, "{summary}");
    let manifest = coder_bundle::read::BundleReader::open(&bundle)
        .expect("open")
        .manifest()
        .expect("manifest");
    assert_eq!(manifest.format_version, 2);
    let fresh = world.path("fresh.bundle");
    let mut args = world.bundle_args(&fresh);
    let cache_at = args.iter().position(|arg| arg == "--cache").expect("--cache") + 1;
    args[cache_at] = world.path("other-cache").display().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    success(world.run(&args));
    assert!(
        std::fs::read(&bundle).expect("bundle") == std::fs::read(&fresh).expect("fresh"),
        "a fresh bundle with signatures differs"
    );

    let inspection = success(world.run(&["inspect", &bundle.display().to_string()]));
    for (kind, suffix) in [("Signature", "sig"), ("Attestation", "att")] {
        let line = format!("{kind} {} of {app_digest}", tag_for(&app_digest, suffix));
        assert!(inspection.contains(&line), "{inspection}");
    }

    // verify --image-key: per image, and a failure since not every image is signed.
    let output = verify_with_keys(&world, &bundle, &[&key_file], &["--output", "json"]);
    assert!(
        !output.status.success(),
        "verify should fail: not every image is signed"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("verify JSON");
    let expected = [
        ("app", "signed"),
        ("db", "unsigned"),
        ("tampered", "bad"),
        ("elsewhere", "bad"),
        ("otherkey", "bad"),
    ]
    .map(|(name, verdict)| (name.to_owned(), verdict.to_owned()));
    assert_eq!(verdicts(&report), expected, "{report}");
    assert!(
        problems_of(&report, "tampered").contains("does not verify"),
        "{report}"
    );
    assert!(
        problems_of(&report, "elsewhere").contains(&format!("is about {}", world.db.digest())),
        "{report}"
    );
    assert!(
        problems_of(&report, "otherkey").contains("does not verify"),
        "{report}"
    );
    assert!(
        report["problems"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("db (unsigned)") && stderr.contains("tampered (bad)"),
        "{stderr}"
    );

    // --allow-unsigned-images: the unsigned image is accepted, the bad ones still fail verify.
    let output = verify_with_keys(&world, &bundle, &[&key_file], &["--allow-unsigned-images"]);
    let stderr = failure(output);
    assert!(
        !stderr.contains("db (unsigned)") && stderr.contains("tampered (bad)"),
        "{stderr}"
    );

    // Both keys: otherkey is signed too; text output names the key.
    let output = verify_with_keys(&world, &bundle, &[&key_file, &other_key_file], &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("signed by p256:"), "{text}");
    // The last line naming it is its signature verdict (the first, its blobs' check).
    let otherkey_line = text
        .lines()
        .rfind(|line| line.contains("team/otherkey"))
        .unwrap_or_default();
    assert!(otherkey_line.contains("signed by"), "{text}");

    // push restores them at the site under the same tags, byte for byte.
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let pushed = push_json(&bundle, &site, None);
    let kinds: Vec<&str> = pushed["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|artifact| artifact["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "signature").count(),
        4,
        "{pushed}"
    );
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "attestation").count(),
        1,
        "{pushed}"
    );
    let site_app = format!("{PREFIX}/team/app");
    for (artifact, suffix) in [(&app_signature, "sig"), (&attestation, "att")] {
        let tag = tag_for(&app_digest, suffix);
        assert_eq!(
            raw_manifest(&site, &site_app, &tag).await,
            artifact.manifest.data,
            "{site_app}:{tag} differs from upstream"
        );
        assert_eq!(
            raw_manifest(&world.registry, "team/app", &tag).await,
            artifact.manifest.data
        );
    }
    let repushed = push_json(&bundle, &site, None);
    assert_eq!(repushed["manifests_pushed"], 0, "{repushed}");
    assert_eq!(repushed["tags_set"], 0, "{repushed}");

    // A delta bundle against it leaves out the image layers but carries the signatures whole:
    // verify --image-key gives the same verdicts from it alone, and it pushes onto its base.
    let delta = world.path("delta.bundle");
    let mut args = world.bundle_args(&delta);
    args.extend(["--delta-from".to_owned(), bundle.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary: Value = serde_json::from_str(&success(world.run(&args))).expect("delta summary");
    assert!(summary["omitted_blobs"].as_u64().unwrap_or(0) > 0, "{summary}");
    let output = verify_with_keys(&world, &delta, &[&key_file], &["--output", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("verify JSON");
    assert_eq!(verdicts(&report), expected, "{report}");
    let pushed_delta = push_json(&delta, &site, None);
    assert_eq!(pushed_delta["manifests_pushed"], 0, "{pushed_delta}");

    // A bundle of signed images only passes verify --image-key.
    world.write_spec(&format!(
        "{}signatures: true\n",
        world
            .spec_text()
            .replace(&format!("  - name: db\n    ref: {}\n", world.db_ref()), "")
    ));
    let (only_signed, _) = world.lock_and_bundle("only-signed.bundle");
    let text = success(verify_with_keys(&world, &only_signed, &[&key_file], &[]));
    assert!(text.contains("signed by p256:"), "{text}");

    // Without `signatures: true` nothing travels, and verify says so.
    world.write_spec(&world.spec_text());
    let (plain, _) = world.lock_and_bundle("plain.bundle");
    let error = failure(verify_with_keys(&world, &plain, &[&key_file], &[]));
    assert!(error.contains("app (unsigned)"), "{error}");
    let manifest = coder_bundle::read::BundleReader::open(&plain)
        .expect("open")
        .manifest()
        .expect("manifest");
    assert_eq!(
        manifest.format_version, 1,
        "a bundle without signatures stays format 1"
    );
}

#[tokio::test]
async fn a_referrer_only_the_api_listed_is_put_by_digest_and_listed_in_the_fallback_index() {
    let world = World::new(RegistryFlavour::Plain).await;
    let sbom = referrer_artifact(
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
        &world.app.index,
    )
    .expect("SBOM");
    // Under a tag that is not cosign's: only a referrers API would find it.
    world
        .registry
        .push_image("team/app:sbom-holder", &sbom)
        .await
        .expect("push SBOM");
    world.write_spec(&format!("{}signatures: true\n", world.spec_text()));
    world.lock_spec();
    // The test registry has no referrers API: record the SBOM as its listing would have.
    let mut lock = coder_bundle_spec::ImageLock::from_yaml(
        &std::fs::read_to_string(world.lock()).expect("lock"),
        "lock",
    )
    .expect("parse lock");
    assert!(lock.images.iter().all(|image| image.referrers.is_empty()));
    lock.images[0]
        .referrers
        .push(coder_bundle_spec::referrer::Referrer {
            subject: world.app.digest().to_owned(),
            kind: coder_bundle_spec::referrer::ReferrerKind::Sbom,
            tag: None,
            artifact_type: Some("application/spdx+json".to_owned()),
            digest: sbom.digest().to_owned(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            size: sbom.manifest.data.len() as u64,
            blobs: Vec::new(),
        });
    std::fs::write(world.lock(), lock.to_yaml().expect("lock YAML")).expect("write lock");
    let (bundle, summary) = world.bundle("api.bundle");
    assert_eq!(summary["referrers"], 1, "{summary}");

    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let pushed = push_json(&bundle, &site, None);
    let repository = format!("{PREFIX}/team/app");
    assert_eq!(
        raw_manifest(&site, &repository, sbom.digest()).await,
        sbom.manifest.data
    );
    let fallback = world.app.digest().replacen(':', "-", 1);
    let index: Value = serde_json::from_slice(&raw_manifest(&site, &repository, &fallback).await)
        .expect("fallback index JSON");
    assert_eq!(index["manifests"][0]["digest"], sbom.digest(), "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"], "application/spdx+json",
        "{index}"
    );
    assert!(
        pushed["artifacts"].as_array().is_some_and(|artifacts| artifacts
            .iter()
            .any(|artifact| artifact["kind"] == "sbom" && artifact["subject"] == world.app.digest())),
        "{pushed}"
    );
    let repushed = push_json(&bundle, &site, None);
    assert_eq!(repushed["tags_set"], 0, "{repushed}");
    assert_eq!(repushed["manifests_pushed"], 0, "{repushed}");
}

/// A copy of `bundle` at `output` whose `coder-bundle/manifest.json` is `edit`ed (the tar
/// repacked entry by entry): a bundle made by someone other than coder-install.
fn with_edited_manifest(bundle: &Path, output: &Path, edit: impl FnOnce(&mut Value)) {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).expect("open bundle"));
    let mut builder = tar::Builder::new(std::fs::File::create(output).expect("create crafted bundle"));
    let mut edit = Some(edit);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let path = entry.path().expect("path").display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read entry");
        if path == "coder-bundle/manifest.json" {
            let mut manifest: Value = serde_json::from_slice(&data).expect("manifest JSON");
            (edit.take().expect("one manifest"))(&mut manifest);
            data = serde_json::to_vec(&manifest).expect("manifest");
            header.set_size(data.len() as u64);
            header.set_cksum();
        }
        builder.append(&header, data.as_slice()).expect("append");
    }
    builder.finish().expect("finish crafted bundle");
}

#[tokio::test]
async fn an_unsigned_child_beside_a_signed_platform_is_neither_counted_as_signed_nor_pushed() {
    let world = World::new(RegistryFlavour::Plain).await;
    let host = world.registry.host();
    let key = SigningKey::generate().expect("key");
    let key_file = world.path("cosign.pub");
    std::fs::write(&key_file, key.public_pem().expect("PEM")).expect("cosign.pub");

    // An index with two linux/amd64 children: an unsigned one first (what a node would pick),
    // and the signed one after it.
    let unsigned = small_image("planted");
    let signed = small_image("genuine");
    let index = Index::new(MediaTypes::Oci, vec![unsigned.clone(), signed.clone()]).expect("index");
    world
        .registry
        .push_index("team/mixed:1", &index)
        .await
        .expect("push index");
    let payload = simple_signing_payload(&format!("{host}/team/mixed"), signed.digest());
    push_signature(
        &world.registry,
        "team/mixed",
        signed.digest(),
        &[(payload.clone(), key.sign(&payload))],
    )
    .await;
    world.write_spec(&format!(
        "{}signatures: true\n",
        world.spec_text().replace(
            "charts:\n",
            &format!("  - name: mixed\n    ref: {host}/team/mixed:1\ncharts:\n")
        )
    ));
    let (honest, _) = world.lock_and_bundle("honest.bundle");

    // Made by coder-install, both children are carried and listed: the unsigned one is seen.
    let verdict_of = |bundle: &Path| {
        let output = verify_with_keys(
            &world,
            bundle,
            &[&key_file],
            &["--allow-unsigned-images", "--output", "json"],
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("verify JSON");
        let verdict = verdicts(&report)
            .into_iter()
            .find(|(name, _)| name == "mixed")
            .map(|(_, verdict)| verdict)
            .unwrap_or_default();
        (verdict, problems_of(&report, "mixed"))
    };
    assert_eq!(verdict_of(&honest).0, "bad");

    // Crafted: the same blobs, but the manifest lists only the signed child as carried.
    let crafted = world.path("crafted.bundle");
    with_edited_manifest(&honest, &crafted, |manifest| {
        let images = manifest["images"].as_array_mut().expect("images");
        let mixed = images
            .iter_mut()
            .find(|image| image["name"] == "mixed")
            .expect("mixed");
        let platforms = mixed["platforms"].as_array_mut().expect("platforms");
        platforms.retain(|platform| platform["digest"] == signed.digest());
        assert_eq!(platforms.len(), 1);
    });
    let (verdict, problems) = verdict_of(&crafted);
    assert_eq!(verdict, "bad", "{problems}");
    assert!(
        problems.contains(unsigned.digest()) && problems.contains("does not list as a carried platform"),
        "{problems}"
    );

    // push and apply with --image-key refuse it before anything is pushed or applied (apply
    // before it reads its kubeconfig, which does not exist here).
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let license = world.path("enterprise.license");
    let claims = crate::license::claims(coder_license::Tier::Enterprise, true);
    std::fs::write(&license, crate::license::signed(&claims)).expect("license");
    let (crafted_text, key_text, license_text) = (
        crafted.display().to_string(),
        key_file.display().to_string(),
        license.display().to_string(),
    );
    let (site_host, site_registry) = (site.host(), format!("{}/{PREFIX}", site.host()));
    let with_image_key = |command: &str, extra: &[&str]| {
        let mut args = vec![
            command,
            "--bundle",
            &crafted_text,
            "--registry",
            &site_registry,
            "--insecure-registry",
            &site_host,
            "--allow-unsigned",
            "--image-key",
            &key_text,
            "--allow-unsigned-images",
            "--license",
            &license_text,
        ];
        args.extend(extra);
        failure(world.run(&args))
    };
    let refused = with_image_key("push", &[]);
    assert!(
        refused.contains("images not signed")
            && refused.contains("mixed")
            && refused.contains("nothing was pushed"),
        "{refused}"
    );
    let refused = with_image_key("apply", &["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(
        refused.contains("images not signed") && refused.contains("nothing was pushed or applied"),
        "{refused}"
    );
    assert!(
        crate::world::catalog(&site).await.is_empty(),
        "nothing may be pushed"
    );

    // Without --image-key, push uploads only what the manifest lists as carried: the planted
    // child never reaches the site, so no node can pull it.
    push_json(&crafted, &site, None);
    let planted = reqwest::Client::new()
        .head(format!(
            "{}/v2/{PREFIX}/team/mixed/manifests/{}",
            site.url(),
            unsigned.digest()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("HEAD planted child");
    assert_eq!(
        planted.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the unlisted child was pushed"
    );
    let genuine = reqwest::Client::new()
        .head(format!(
            "{}/v2/{PREFIX}/team/mixed/manifests/{}",
            site.url(),
            signed.digest()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("HEAD signed child");
    assert!(genuine.status().is_success(), "{}", genuine.status());
}
