//! Bad inputs: each a clear error, nothing written or pushed.

use coder_testenv::{Registry, RegistryFlavour};

use crate::tool::{failure, platform_image};

#[test]
fn a_missing_binary_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let stderr = failure(platform_image(
        &[
            "build",
            "--binary",
            "/nonexistent/coder-service",
            "--oci-layout",
            layout.to_str().expect("utf-8 path"),
        ],
        None,
    ));
    assert!(
        stderr.contains("--binary /nonexistent/coder-service: cannot read it")
            && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(!layout.exists(), "nothing written");
}

#[test]
fn a_file_that_is_not_an_executable_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("coder-service");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").expect("write");
    let stderr = failure(platform_image(
        &[
            "build",
            "--binary",
            script.to_str().expect("utf-8 path"),
            "--version",
            "1.0.0",
            "--oci-layout",
            dir.path().join("layout").to_str().expect("utf-8 path"),
        ],
        None,
    ));
    assert!(stderr.contains("not an ELF file"), "{stderr}");
}

#[test]
fn a_build_needs_a_destination() {
    let stderr = failure(platform_image(&["build", "--binary", "/bin/echo"], None));
    assert!(
        stderr.contains("--oci-layout") && stderr.contains("--push"),
        "{stderr}"
    );
}

#[test]
fn bad_references_are_refused_before_building() {
    for (reference, expected) in [
        ("Not A Reference", "Not A Reference"),
        ("registry.example.com/coderenvs/coder-service", "name a tag"),
        (
            "registry.example.com/coderenvs/coder-service@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "name a tag",
        ),
        (
            "https://registry.example.com/coderenvs/coder-service:1.0",
            "without a scheme",
        ),
    ] {
        let stderr = failure(platform_image(
            &[
                "build",
                "--binary",
                "/bin/echo",
                "--version",
                "1",
                "--push",
                reference,
            ],
            None,
        ));
        assert!(stderr.contains(expected), "{reference}: {stderr}");
    }
}

#[test]
fn a_ca_bundle_without_certificates_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let stderr = failure(platform_image(
        &[
            "build",
            "--binary",
            "/bin/echo",
            "--version",
            "1",
            "--ca-certificates",
            empty.to_str().expect("utf-8 path"),
            "--oci-layout",
            dir.path().join("layout").to_str().expect("utf-8 path"),
        ],
        None,
    ));
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}

#[test]
fn a_non_empty_directory_that_is_not_a_layout_is_not_written_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let stderr = failure(platform_image(
        &[
            "build",
            "--binary",
            "/bin/echo",
            "--version",
            "1",
            "--oci-layout",
            dir.path().to_str().expect("utf-8 path"),
        ],
        None,
    ));
    assert!(stderr.contains("not an OCI image layout"), "{stderr}");
    assert!(!dir.path().join("blobs").exists());
}

#[tokio::test]
async fn a_registry_that_refuses_the_push_is_a_clear_error() {
    let registry = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("start registry");
    let ca = registry
        .ca_file()
        .expect("CA")
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let reference = format!("{}/coderenvs/coder-service:1.0.0", registry.host());
    let (user, _) = registry.credentials().expect("credentials");
    let empty_docker_config = tempfile::tempdir().expect("tempdir");
    let base = [
        "build",
        "--binary",
        "/bin/echo",
        "--version",
        "1",
        "--push",
        &reference,
    ];

    // No credentials at all.
    let mut args = base.to_vec();
    args.extend(["--registry-ca", &ca]);
    let stderr = failure(crate::tool::platform_image_with_env(
        &args,
        &[("DOCKER_CONFIG", empty_docker_config.path())],
    ));
    assert!(stderr.contains(&format!("pushing {reference}")), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("unauthorized") || stderr.contains("401"),
        "{stderr}"
    );

    // A wrong password.
    let mut args = base.to_vec();
    args.extend(["--registry-ca", &ca, "--username", user, "--password-stdin"]);
    let stderr = failure(platform_image(&args, Some("wrong-password\n")));
    assert!(stderr.contains(&format!("pushing {reference}")), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("unauthorized") || stderr.contains("401"),
        "{stderr}"
    );

    // The registry's certificate without its CA.
    let stderr = failure(platform_image(&base, None));
    assert!(stderr.contains(&format!("pushing {reference}")), "{stderr}");

    // Nothing listening.
    let closed = "127.0.0.1:9/coderenvs/coder-service:1.0.0";
    let stderr = failure(platform_image(
        &[
            "build",
            "--binary",
            "/bin/echo",
            "--version",
            "1",
            "--push",
            closed,
            "--insecure-registry",
            "127.0.0.1:9",
        ],
        None,
    ));
    assert!(stderr.contains(&format!("pushing {closed}")), "{stderr}");
}
