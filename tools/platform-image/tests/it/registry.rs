//! Pushing to a real registry (CNCF distribution) and reading the image back with skopeo.

use base64::Engine;
use coder_testenv::{Registry, RegistryFlavour};

use crate::tool::{platform_image, skopeo_json, static_binary, success};

const REPOSITORY_AND_TAG: &str = "coderenvs/coder-service:1.0.0";

fn push_args<'a>(binary: &'a str, reference: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "build", "--binary", binary, "--push", reference, "--output", "json",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn the_pushed_image_reads_back_with_the_printed_digest() {
    let registry = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("start registry");
    let binary = static_binary();
    let binary = binary.to_str().expect("utf-8 path");
    let reference = format!("{}/{REPOSITORY_AND_TAG}", registry.host());
    let host = registry.host();
    let args = push_args(
        binary,
        &reference,
        &["--insecure-registry", &host, "--version", "1.0.0"],
    );
    let started = std::time::Instant::now();
    let report: serde_json::Value =
        serde_json::from_str(&success(platform_image(&args, None))).expect("JSON");
    eprintln!("built and pushed in {:.1?}", started.elapsed());
    let digest = report["digest"].as_str().expect("digest");

    let inspected = skopeo_json(&["inspect", "--tls-verify=false", &format!("docker://{reference}")]);
    assert_eq!(inspected["Digest"], digest);
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Os"], "linux");
    let labels = &inspected["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(labels["org.opencontainers.image.title"], "coder-service");
    assert!(
        labels["org.opencontainers.image.revision"].is_string(),
        "{labels}"
    );

    let config = skopeo_json(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let container = &config["config"];
    assert_eq!(container["User"], "65532:65532");
    assert_eq!(
        container["Entrypoint"],
        serde_json::json!(["/usr/local/bin/coder-service"])
    );
    assert_eq!(container["WorkingDir"], "/home/nonroot");
    assert!(container["ExposedPorts"]["8080/tcp"].is_object());
    assert!(container["ExposedPorts"]["3000/tcp"].is_object());
    let env = container["Env"].to_string();
    assert!(
        env.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env}"
    );

    // Pushing the same inputs again is the same image; the blobs are already there.
    let again: serde_json::Value = serde_json::from_str(&success(platform_image(&args, None))).expect("JSON");
    assert_eq!(again["digest"], digest);
}

#[tokio::test]
async fn tls_with_basic_auth_from_stdin_and_from_the_docker_config() {
    let registry = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("start registry");
    let (user, password) = registry.credentials().expect("credentials");
    let ca = registry
        .ca_file()
        .expect("CA file")
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    // /bin/echo keeps this test about the registry, not the binary.
    let reference = format!("{}/{REPOSITORY_AND_TAG}", registry.host());
    let args = push_args(
        "/bin/echo",
        &reference,
        &[
            "--version",
            "1.0.0",
            "--registry-ca",
            &ca,
            "--username",
            user,
            "--password-stdin",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&success(platform_image(&args, Some(&format!("{password}\n"))))).expect("JSON");

    let cert_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&ca, cert_dir.path().join("ca.crt")).expect("copy CA");
    let inspected = skopeo_json(&[
        "inspect",
        "--cert-dir",
        cert_dir.path().to_str().expect("utf-8 path"),
        "--creds",
        &format!("{user}:{password}"),
        &format!("docker://{reference}"),
    ]);
    assert_eq!(inspected["Digest"], report["digest"]);

    // The same credentials from a Docker config, as `docker login` writes it.
    let docker_config = tempfile::tempdir().expect("tempdir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        docker_config.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host()),
    )
    .expect("write config.json");
    let other = format!("{}/coderenvs/coder-service:from-docker-config", registry.host());
    let args = push_args("/bin/echo", &other, &["--version", "1.0.0", "--registry-ca", &ca]);
    let output = crate::tool::run(&args, None, &[("DOCKER_CONFIG", docker_config.path())]);
    let pushed: serde_json::Value = serde_json::from_str(&success(output)).expect("JSON");
    assert_eq!(pushed["digest"], report["digest"]);
}
