use std::io::Read;
use std::process::Command;

use coder_testenv::fixture::{ImageBuilder, Index, LayerBuilder, MediaTypes, Platform};
use coder_testenv::{Registry, RegistryFlavour};

/// `skopeo inspect` output for `reference`: an independent client reading what we pushed.
pub(super) fn skopeo_inspect(registry: &Registry, reference: &str, extra: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{}/{reference}", registry.host()))
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn platform_image(media_types: MediaTypes, architecture: &str) -> coder_testenv::fixture::Image {
    ImageBuilder::new()
        .media_types(media_types)
        .platform(Platform::linux(architecture))
        .layer(LayerBuilder::new().file("etc/shared", b"same in every platform\n", 0o644))
        .layer(LayerBuilder::new().file("etc/arch", architecture.as_bytes(), 0o644))
        .build()
        .expect("build")
}

#[tokio::test]
async fn multi_arch_indexes_are_readable_by_skopeo() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    for (media_types, repository) in [
        (MediaTypes::Oci, "multi/oci"),
        (MediaTypes::DockerSchema2, "multi/docker"),
    ] {
        let index = Index::new(
            media_types,
            vec![
                platform_image(media_types, "amd64"),
                platform_image(media_types, "arm64"),
            ],
        )
        .expect("index");
        // The shared layer is one blob, whichever platform refers to it.
        assert_eq!(index.images[0].layers[0].digest, index.images[1].layers[0].digest);

        let digest = registry
            .push_index(&format!("{repository}:1.0"), &index)
            .await
            .expect("push index");
        let raw = skopeo_inspect(&registry, &format!("{repository}:1.0"), &["--raw"]);
        assert_eq!(raw, index.index.data, "skopeo read different index bytes");
        assert_eq!(coder_testenv::fixture::sha256_digest(&raw), digest);

        // Resolving the index for arm64 reaches the arm64 child's config, byte for byte.
        let arm64_config = skopeo_inspect(
            &registry,
            &format!("{repository}:1.0"),
            &[
                "--override-arch",
                "arm64",
                "--override-os",
                "linux",
                "--config",
                "--raw",
            ],
        );
        assert_eq!(arm64_config, index.images[1].config.data);
    }
}

#[tokio::test]
async fn docker_schema2_manifests_keep_their_media_type() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    let image = platform_image(MediaTypes::DockerSchema2, "amd64");
    registry.push_image("docker/app:1", &image).await.expect("push");
    let response = registry
        .http_client()
        .expect("client")
        .get(format!("{}/v2/docker/app/manifests/1", registry.url()))
        .header("Accept", MediaTypes::DockerSchema2.manifest())
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some(MediaTypes::DockerSchema2.manifest())
    );
    assert_eq!(
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok()),
        Some(image.digest())
    );
}

#[tokio::test]
async fn busybox_image_carries_a_runnable_static_executable() {
    let image = ImageBuilder::busybox()
        .expect("busybox image")
        .build()
        .expect("build");
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    registry
        .push_image("tools/busybox:1", &image)
        .await
        .expect("push");

    // Pull the layer back and unpack it the way a container runtime would.
    let mut layer = Vec::new();
    registry
        .oci_client()
        .pull_blob(
            &registry.reference("tools/busybox:1"),
            image.layers[0].digest.as_str(),
            &mut layer,
        )
        .await
        .expect("pull layer");
    let unpacked = tempfile::tempdir().expect("tempdir");
    tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()))
        .unpack(unpacked.path())
        .expect("unpack");

    let busybox = unpacked.path().join("bin/busybox");
    let mut magic = [0u8; 4];
    std::fs::File::open(&busybox)
        .and_then(|mut file| file.read_exact(&mut magic))
        .expect("read busybox");
    assert_eq!(&magic, b"\x7fELF");
    let output = Command::new(&busybox)
        .args(["echo", "still runnable"])
        .output()
        .expect("run busybox");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "still runnable\n");
}
