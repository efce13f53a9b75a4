//! `push` to a site registry behind NGINX with `client_max_body_size 32m` (Debian's nginx in
//! front of the distribution registry): a 200 MiB layer is refused whole (413) and goes up in
//! chunks instead, said once; with `--chunk-size` it goes in chunks from the start. Either way
//! the blobs read back through the proxy are the bytes of the upstream image.

use coder_testenv::fixture::Image;
use coder_testenv::{BodyLimitProxy, Registry, RegistryFlavour};
use serde_json::Value;
use sha2::Digest;

use crate::push::{PREFIX, push_via};
use crate::world::{World, success};

const MIB: usize = 1 << 20;

/// What the switch to chunks prints (once per run).
const SWITCH_NOTE: &str = "refused an upload as too large (HTTP 413): uploading blobs in chunks";

/// A world whose spec holds one more image, of one 200 MiB random layer (`team/big:1`), and
/// its bundle.
async fn world_with_a_big_layer() -> (World, Image, std::path::PathBuf) {
    let world = World::new(RegistryFlavour::Plain).await;
    let big = world.push_big_image(200 * MIB, 11).await;
    world.write_spec(&world.spec_text().replace(
        "charts:\n",
        &format!(
            "  - name: big\n    ref: {}/team/big:1\ncharts:\n",
            world.registry.host()
        ),
    ));
    let (bundle, _) = world.lock_and_bundle("big.bundle");
    (world, big, bundle)
}

/// A site registry behind a 32 MiB body limit.
async fn capped_site() -> (Registry, BodyLimitProxy) {
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let proxy = BodyLimitProxy::start(site.addr(), "32m")
        .await
        .expect("nginx in front of it");
    (site, proxy)
}

/// Reads every blob of `image` back through `host` (the proxy) and checks it is the upstream
/// bytes.
async fn assert_pulled_byte_for_byte(host: &str, image: &Image) {
    let client = reqwest::Client::new();
    for blob in image.layers.iter().chain([&image.config]) {
        let url = format!("http://{host}/v2/{PREFIX}/team/big/blobs/{}", blob.digest);
        let response = client.get(&url).send().await.expect("GET the blob");
        assert_eq!(response.status(), 200, "{url}");
        let bytes = response.bytes().await.expect("the blob's bytes");
        assert_eq!(bytes.len(), blob.data.len(), "{url}");
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        assert_eq!(digest, blob.digest, "{url}");
        assert!(bytes == blob.data, "{url}: the bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_too_large_for_the_proxy_goes_up_in_chunks_said_once() {
    let (_world, big, bundle) = world_with_a_big_layer().await;
    let (site, proxy) = capped_site().await;

    let output = push_via(&bundle, &site, &proxy.host(), None, &["--output", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report: Value = serde_json::from_str(&success(output)).expect("push report JSON");
    assert_eq!(stderr.matches(SWITCH_NOTE).count(), 1, "{stderr}");
    assert_eq!(
        report["upload_chunk_size"],
        coder_registry::FALLBACK_CHUNK,
        "{report}"
    );
    assert!(
        report["bytes_sent"].as_u64().expect("bytes_sent") >= 200 * MIB as u64,
        "{report}"
    );
    assert_pulled_byte_for_byte(&proxy.host(), &big).await;

    // The same bundle again: everything is there, nothing is sent.
    let again: Value = serde_json::from_str(&success(push_via(
        &bundle,
        &site,
        &proxy.host(),
        None,
        &["--output", "json"],
    )))
    .expect("second push report JSON");
    assert_eq!(again["bytes_sent"], 0, "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_chunk_size_every_blob_goes_in_chunks_and_nothing_is_refused() {
    let (_world, big, bundle) = world_with_a_big_layer().await;
    let (site, proxy) = capped_site().await;

    let output = push_via(
        &bundle,
        &site,
        &proxy.host(),
        None,
        &["--output", "json", "--chunk-size", "8Mi"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report: Value = serde_json::from_str(&success(output)).expect("push report JSON");
    assert!(!stderr.contains("413"), "{stderr}");
    assert_eq!(report["upload_chunk_size"], 8 * MIB, "{report}");
    assert_pulled_byte_for_byte(&proxy.host(), &big).await;

    // A chunk size under the smallest is refused before anything is read.
    let refused = push_via(&bundle, &site, &proxy.host(), None, &["--chunk-size", "1K"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--chunk-size") && stderr.contains("smallest chunk"),
        "{stderr}"
    );
}
