//! `inventory` at the site, `bundle --have-list` on the connected side: release 1.0 is
//! installed from a full bundle, the site's inventory taken, and release 2.0 (one image with a
//! new layer) bundled against it holds only 2.0's new blobs, and applies. A site that lacks what
//! the delta left out is refused before anything is sent.

use std::collections::BTreeSet;

use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{Registry, RegistryFlavour};
use serde_json::Value;

use crate::apply::{PLATFORM_IMAGES, Platform};
use crate::world::{failure, success};

/// `inventory` of `site_registry` (plain HTTP) for the platform's spec into `out`; its JSON.
fn inventory(platform: &Platform, site_registry: &str, out: &std::path::Path) -> Value {
    let host = site_registry.split('/').next().unwrap_or_default();
    let stdout = success(platform.run([
        "inventory",
        "--registry",
        site_registry,
        "--spec",
        &platform.text(&platform.spec()),
        "--insecure-registry",
        host,
        "-o",
        &platform.text(out),
        "--output",
        "json",
    ]));
    serde_json::from_str(&stdout).expect("inventory JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_bundled_against_the_sites_inventory_carries_only_the_new_blobs() {
    let platform = Platform::start().await;
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let site_registry = format!("{}/mirror", site.host());
    let license = platform.airgap_license();
    let license = platform.text(&license);
    let apply = |bundle: &std::path::Path, registry: &str| {
        platform.run(platform.air_gapped_apply(
            bundle,
            registry,
            // No node here: the database never runs, so the upgrade cannot back it up.
            &[
                "--license",
                &license,
                "--namespace",
                "coder",
                "--no-backup",
                "--output",
                "json",
            ],
        ))
    };

    // Release 1.0, whole, installed.
    let full = platform.bundle("coder-1.0.bundle");
    success(apply(&full, &site_registry));

    // The site's inventory: every digest of what push put there, after a header saying where.
    let list = platform.path("site.list");
    let taken = inventory(&platform, &site_registry, &list);
    let text = std::fs::read_to_string(&list).expect("the have-list");
    assert!(
        text.starts_with(&format!("# coder-install inventory of {site_registry} at ")),
        "{text}"
    );
    let full_manifest = coder_bundle::read::BundleReader::open(&full)
        .expect("open the full bundle")
        .manifest()
        .expect("its manifest");
    let listed: BTreeSet<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
    for blob in &full_manifest.blobs {
        assert!(
            listed.contains(blob.digest.as_str()),
            "{} not in the inventory",
            blob.digest
        );
    }
    assert_eq!(taken["digests"], listed.len(), "{taken}");

    // Release 2.0: the first image gets a new layer over the same base.
    let (_, path) = &PLATFORM_IMAGES[0];
    let changed = ImageBuilder::new()
        .layer(LayerBuilder::new().random_file("base.bin", 64 * 1024, 7))
        .layer(LayerBuilder::new().random_file("app.bin", 16 * 1024, 2000))
        .build()
        .expect("release 2.0's image");
    platform
        .upstream
        .push_image(path, &changed)
        .await
        .expect("push 2.0's image");
    std::fs::write(platform.spec(), platform.spec_text("2.0.0")).expect("spec 2.0");
    platform.lock_spec();
    let list_arg = platform.text(&list);
    let delta = platform.bundle_with("coder-2.0.bundle", &["--have-list", &list_arg]);

    // Of the images, it carries 2.0's new config and layer (and the manifests, always carried),
    // nothing else; charts, made from the local folder, travel whole (a few KiB).
    let manifest = coder_bundle::read::BundleReader::open(&delta)
        .expect("open the delta")
        .manifest()
        .expect("its manifest");
    let manifests: BTreeSet<&str> = manifest
        .images
        .iter()
        .chain(&manifest.charts)
        .flat_map(|artifact| {
            std::iter::once(artifact.digest.as_str())
                .chain(artifact.platforms.iter().map(|platform| platform.digest.as_str()))
        })
        .collect();
    let charts: BTreeSet<&str> = manifest
        .charts
        .iter()
        .flat_map(|chart| chart.blobs.iter().map(String::as_str))
        .collect();
    let carried: BTreeSet<&str> = manifest
        .blobs
        .iter()
        .map(|blob| blob.digest.as_str())
        .filter(|digest| !manifests.contains(digest) && !charts.contains(digest))
        .collect();
    let new: BTreeSet<&str> = [changed.config.digest.as_str(), changed.layers[1].digest.as_str()].into();
    assert_eq!(
        carried, new,
        "the delta carries more (or less) than 2.0's new blobs"
    );
    let base = manifest.delta.as_ref().expect("a delta bundle");
    assert!(base.base.contains("the inventory of"), "{}", base.base);

    // It applies at the site it was made for.
    let report: Value = serde_json::from_str(&success(apply(&delta, &site_registry))).expect("apply JSON");
    assert_eq!(report["version"], "2.0.0", "{report}");

    // At a site without the base, nothing is sent: the missing blobs are named first.
    let empty = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("an empty registry");
    let error = failure(apply(&delta, &format!("{}/mirror", empty.host())));
    assert!(error.contains("delta bundle"), "{error}");
    // (Preflight's write probe is the only repository there.)
    let repositories = crate::world::catalog(&empty).await;
    assert!(
        repositories
            .iter()
            .all(|name| name.as_str().is_some_and(|name| name.ends_with("/write-probe"))),
        "something of the bundle was pushed: {repositories:?}"
    );
}
