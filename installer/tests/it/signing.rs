//! Bundle signatures on `apply` and `verify`: a key or an explicit `--allow-unsigned` is
//! required and the choice is reported and recorded; what `apply` uses of the bundle after
//! verifying it is pinned to the verified manifest. Against a real registry and API server.

use coder_bundle::read::OpenedBundle;
use coder_bundle::read::verify::verify_bundle;
use coder_deploy::release::Release;
use coder_license::Tier;
use coder_mirror::{MirrorOptions, mirror_bundle};
use coder_registry::RegistryOptions;
use coder_testenv::{Registry, RegistryFlavour};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::Value;

use crate::apply::Platform;
use crate::world::catalog as registry_catalog;
use crate::world::{failure, success};

async fn recorded_signature(platform: &Platform, namespace: &str) -> String {
    let configmaps: Api<ConfigMap> = Api::namespaced(platform.client().await, namespace);
    let record = configmaps.get("coder-install").await.expect("install record");
    let text = record
        .data
        .as_ref()
        .and_then(|data| data.get("record.json"))
        .cloned()
        .unwrap_or_default();
    let record: Value = serde_json::from_str(&text).expect("record JSON");
    record["bundle_signature"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_and_verify_need_a_key_or_allow_unsigned_and_pin_what_they_verified() {
    let platform = Platform::start().await;
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");

    let key = SigningKey::from_bytes(&[9u8; 32]);
    let private = platform.path("vendor.pem");
    let public = platform.path("vendor.pub");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("key");
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem"),
    )
    .expect("public key");
    let bundle = |name: &str, signed: bool| {
        let output = platform.path(name);
        let mut args = vec![
            "bundle".to_owned(),
            "--spec".to_owned(),
            platform.text(&platform.spec()),
            "--lock".to_owned(),
            platform.text(&platform.lock()),
            "--cache".to_owned(),
            platform.text(&platform.path("cache")),
            "-o".to_owned(),
            platform.text(&output),
            "--insecure-registry".to_owned(),
            platform.upstream.host(),
        ];
        if signed {
            args.extend(["--signing-key".to_owned(), platform.text(&private)]);
        }
        success(platform.run(&args));
        platform.text(&output)
    };
    let signed = bundle("signed.bundle", true);
    let unsigned = bundle("unsigned.bundle", false);
    let license = platform.path("enterprise.license");
    std::fs::write(
        &license,
        crate::license::signed(&crate::license::claims(Tier::Enterprise, true)),
    )
    .expect("license");
    let site_registry = format!("{}/mirror", site.host());
    let apply = |bundle: &str, namespace: &str, extra: &[&str]| {
        let mut args: Vec<String> = [
            "apply",
            "--bundle",
            bundle,
            "--registry",
            &site_registry,
            "--insecure-registry",
            &site.host(),
            "--license",
            &platform.text(&license),
            "--namespace",
            namespace,
            "--kubeconfig",
            &platform.text(platform.cluster.kubeconfig_path()),
        ]
        .map(str::to_owned)
        .into();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        platform.run(&args)
    };

    // Neither a key nor --allow-unsigned: refused before anything is pushed or written.
    let verify = failure(platform.run(["verify", &signed]));
    assert!(
        verify.contains("--public-key") && verify.contains("--allow-unsigned"),
        "{verify}"
    );
    let refused = failure(apply(&signed, "signed", &[]));
    assert!(
        refused.contains("--public-key") && refused.contains("--allow-unsigned"),
        "{refused}"
    );
    assert!(registry_catalog(&site).await.is_empty(), "nothing may be pushed");

    // An unsigned bundle with a key is refused; with --allow-unsigned it goes in, and both the
    // output and the install record say the signature was not checked.
    let wrong = failure(apply(
        &unsigned,
        "unsigned",
        &["--public-key", &platform.text(&public)],
    ));
    assert!(wrong.contains("not signed"), "{wrong}");
    let output = apply(&unsigned, "unsigned", &["--allow-unsigned"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    success(output);
    assert!(
        stderr.contains("signature: NOT checked (--allow-unsigned)"),
        "{stderr}"
    );
    assert_eq!(
        recorded_signature(&platform, "unsigned").await,
        "NOT checked (--allow-unsigned)"
    );
    let verify = success(platform.run(["verify", "--allow-unsigned", &unsigned]));
    assert!(verify.contains("NOT checked (--allow-unsigned)"), "{verify}");

    // Signed, with the vendor's key: verified, and recorded with the key's fingerprint.
    let output = apply(&signed, "signed", &["--public-key", &platform.text(&public)]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    success(output);
    assert!(stderr.contains("signature: verified with key"), "{stderr}");
    assert!(
        recorded_signature(&platform, "signed")
            .await
            .starts_with("verified with key"),
        "the record names how the bundle was checked"
    );

    // Time of check, time of use: the file is rewritten in place after it was verified and
    // opened (here with another release's bundle). What apply reads next, and what push sends,
    // is refused; so is opening it again against the digest that verified.
    let verified_path = platform.path("swapped.bundle");
    std::fs::copy(platform.path("signed.bundle"), &verified_path).expect("copy");
    let verifying = key.verifying_key();
    let report = verify_bundle(&verified_path, Some(&verifying), &|_| {}).expect("verify");
    assert!(report.ok());
    let opened = OpenedBundle::open(&verified_path, Some(&report.manifest_digest)).expect("open");
    std::fs::write(platform.spec(), platform.spec_text("9.9.9")).expect("spec");
    platform.lock_spec();
    let other = bundle("other.bundle", true);
    std::fs::copy(&other, &verified_path).expect("rewrite the file in place");

    let site: coder_mirror::SiteRegistry = site_registry.parse().expect("site");
    let error = Release::from_opened(&opened, &site)
        .err()
        .expect("a release read from a rewritten bundle is refused")
        .to_string();
    assert!(error.contains("changed since it was verified"), "{error}");
    let reopened = OpenedBundle::open(&verified_path, Some(&report.manifest_digest))
        .err()
        .expect("reopened against the verified digest, it is refused")
        .to_string();
    assert!(reopened.contains("changed since it was verified"), "{reopened}");

    let fresh = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("fresh registry");
    let options = MirrorOptions {
        registry: RegistryOptions {
            insecure_registries: vec![fresh.host()],
            ..RegistryOptions::default()
        },
        ..MirrorOptions::default()
    };
    let target = format!("{}/mirror", fresh.host()).parse().expect("site");
    let error = mirror_bundle(&opened, &target, &options, &coder_progress::Silent)
        .await
        .expect_err("a push of a swapped bundle is refused")
        .to_string();
    assert!(error.contains("changed since it was verified"), "{error}");
    assert!(
        registry_catalog(&fresh).await.is_empty(),
        "nothing of the swapped bundle is pushed"
    );
}
