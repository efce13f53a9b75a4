//! Bad inputs: each a clear error, nothing written or pushed.

use std::path::Path;

use coder_testenv::{Registry, RegistryFlavour};

use crate::tool::{failure, platform_image, run};

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `platform-image build --binary BINARY --version 1 --oci-layout LAYOUT EXTRA...`; returns stderr
/// of the failure it must be.
fn failed_layout_build(binary: &Path, layout: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "build",
        "--binary",
        utf8(binary),
        "--version",
        "1",
        "--oci-layout",
        utf8(layout),
    ];
    args.extend_from_slice(extra);
    failure(platform_image(&args, None))
}

/// `platform-image build --binary /bin/echo --version 1 --push REFERENCE EXTRA...`; returns stderr
/// of the failure it must be.
fn failed_push(reference: &str, extra: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> String {
    let mut args = vec![
        "build",
        "--binary",
        "/bin/echo",
        "--version",
        "1",
        "--push",
        reference,
    ];
    args.extend_from_slice(extra);
    failure(run(&args, stdin, env))
}

#[test]
fn a_missing_binary_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let stderr = failed_layout_build(Path::new("/nonexistent/coder-service"), &layout, &[]);
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
    let stderr = failed_layout_build(&script, &dir.path().join("layout"), &[]);
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
        let stderr = failed_push(reference, &[], None, &[]);
        assert!(stderr.contains(expected), "{reference}: {stderr}");
        assert!(
            !stderr.contains("built sha256:"),
            "refused before building: {stderr}"
        );
    }
}

#[test]
fn a_ca_bundle_without_certificates_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let layout = dir.path().join("layout");
    let stderr = failed_layout_build(
        Path::new("/bin/echo"),
        &layout,
        &["--ca-certificates", utf8(&empty)],
    );
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}

#[test]
fn a_non_empty_directory_that_is_not_a_layout_is_not_written_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let stderr = failed_layout_build(Path::new("/bin/echo"), dir.path(), &[]);
    assert!(stderr.contains("not an OCI image layout"), "{stderr}");
    assert!(!dir.path().join("blobs").exists());
}

#[tokio::test]
async fn a_registry_that_refuses_the_push_is_a_clear_error() {
    let registry = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("start registry");
    let ca = utf8(registry.ca_file().expect("CA")).to_owned();
    let reference = format!("{}/coderenvs/coder-service:1.0.0", registry.host());
    let (user, _) = registry.credentials().expect("credentials");
    let empty_docker_config = tempfile::tempdir().expect("tempdir");
    let push = |extra: &[&str], stdin: Option<&str>| {
        let no_credentials: &[(&str, &Path)] = &[("DOCKER_CONFIG", empty_docker_config.path())];
        let stderr = failed_push(&reference, extra, stdin, no_credentials);
        assert!(stderr.contains(&format!("pushing {reference}")), "{stderr}");
        stderr
    };

    let stderr = push(&["--registry-ca", &ca], None);
    assert!(
        stderr.contains("401") && stderr.contains("wants credentials"),
        "{stderr}"
    );

    let stderr = push(
        &["--registry-ca", &ca, "--username", user, "--password-stdin"],
        Some("wrong-password\n"),
    );
    assert!(
        stderr.contains("401") && stderr.contains("refused the user name"),
        "{stderr}"
    );

    let stderr = push(&[], None);
    assert!(
        stderr.contains("--registry-ca"),
        "the certificate without its CA: {stderr}"
    );

    // Nothing listening.
    let closed = "127.0.0.1:9/coderenvs/coder-service:1.0.0";
    let stderr = failed_push(closed, &["--insecure-registry", "127.0.0.1:9"], None, &[]);
    assert!(
        stderr.contains(&format!("pushing {closed}")) && stderr.contains("is the registry running"),
        "{stderr}"
    );
}
