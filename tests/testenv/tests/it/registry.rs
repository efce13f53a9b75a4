use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{Registry, RegistryFlavour};
use reqwest::StatusCode;

/// Pushes a small image and reads its manifest and layer back with `oci-client`.
async fn assert_push_pull_round_trip(registry: &Registry) -> String {
    let image = ImageBuilder::new()
        .layer(LayerBuilder::new().file("etc/motd", b"round trip\n", 0o644))
        .build()
        .expect("build image");
    let digest = registry.push_image("smoke/app:1.0", &image).await.expect("push");
    assert_eq!(digest, image.digest());

    let client = registry.oci_client();
    let reference = registry.reference("smoke/app:1.0");
    let (manifest, pulled_digest) = client
        .pull_manifest_raw(
            &reference,
            &registry.auth(),
            &[image.manifest.media_type.as_str()],
        )
        .await
        .expect("pull manifest");
    assert_eq!(
        manifest.as_ref(),
        image.manifest.data.as_slice(),
        "manifest bytes changed in the registry"
    );
    assert_eq!(pulled_digest, image.digest());

    let mut layer = Vec::new();
    client
        .pull_blob(&reference, image.layers[0].digest.as_str(), &mut layer)
        .await
        .expect("pull blob");
    assert_eq!(layer, image.layers[0].data);
    digest
}

/// DELETE of a manifest by digest, raw, as the registry API defines it.
async fn delete_manifest(registry: &Registry, repository: &str, digest: &str) -> StatusCode {
    let http = registry.http_client().expect("http client");
    let url = format!("{}/v2/{repository}/manifests/{digest}", registry.url());
    http.delete(url).send().await.expect("DELETE").status()
}

#[tokio::test]
async fn plain_registry_round_trips_and_refuses_deletes() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    let digest = assert_push_pull_round_trip(&registry).await;
    assert_eq!(
        delete_manifest(&registry, "smoke/app", &digest).await,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn delete_enabled_registry_deletes_manifests() {
    let registry = Registry::start(RegistryFlavour::DeleteEnabled)
        .await
        .expect("start registry");
    let digest = assert_push_pull_round_trip(&registry).await;
    assert_eq!(
        delete_manifest(&registry, "smoke/app", &digest).await,
        StatusCode::ACCEPTED
    );
    let http = registry.http_client().expect("http client");
    let status = http
        .get(format!("{}/v2/smoke/app/manifests/{digest}", registry.url()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET")
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tls_registry_requires_its_ca_and_credentials() {
    let registry = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("start registry");
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let (user, password) = registry.credentials().expect("credentials");
    let http = registry.http_client().expect("http client");
    let v2 = format!("{}/v2/", registry.url());

    let anonymous = http.get(&v2).send().await.expect("anonymous GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Basic"),
        "expected a Basic challenge, got {challenge:?}"
    );

    let wrong = http
        .get(&v2)
        .basic_auth(user, Some("wrong"))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = http
        .get(&v2)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("GET");
    assert_eq!(right.status(), StatusCode::OK);

    // A client that does not trust the test CA is refused at the TLS handshake.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .expect("client");
    let error = untrusting
        .get(&v2)
        .send()
        .await
        .expect_err("must not trust the test CA");
    assert!(error.is_connect(), "expected a TLS connect error, got {error:?}");

    assert_push_pull_round_trip(&registry).await;
}
