//! Snapshot tests (insta) of what users read: every `--help`, `template`'s manifests, and the
//! allowlist audit report in each format. A change to one shows as a diff of the committed `snapshots/*.snap` file; review
//! it and accept it with `cargo insta review` (or `INSTA_UPDATE=always` and a look at the diff).

use std::path::Path;

use crate::world::{coder_install_command, success};

/// Runs `coder-install` in `dir` at a fixed help width, so that wrapping does not follow the
/// terminal the tests run in.
fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    coder_install_command(args)
        .current_dir(dir)
        .env("COLUMNS", "100")
        .env_remove("NO_COLOR")
        .output()
        .expect("run coder-install")
}

/// The subcommands a help text lists under `Commands:` (without clap's own `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A name stands two spaces in; wrapped descriptions further.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_help_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pending = vec![Vec::<String>::new()];
    let mut all = String::new();
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = success(run_in(dir.path(), &args));
        all.push_str(&format!("==== coder-install {}\n{help}\n", args.join(" ")));
        for name in subcommands(&help).into_iter().rev() {
            let mut child = path.clone();
            child.push(name);
            pending.push(child);
        }
    }
    assert!(
        all.matches("==== ").count() > 15,
        "every subcommand's help is read"
    );
    insta::assert_snapshot!("help", all);
}

#[test]
fn the_allowlist_report_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("allowlist.txt"),
        "# the site's egress allowlist\n\
         registry-1.docker.io\n\
         *.docker.io\n\
         registry.k8s.io\n\
         10.0.0.0/8\n\
         https://example.com/path\n",
    )
    .expect("write the allowlist");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]");
    settings.add_filter(r"coder-install \d+\.\d+\.\d+", "coder-install [version]");
    let dir_pattern = dir.path().to_string_lossy().replace('.', r"\.");
    settings.add_filter(&dir_pattern, "[dir]");
    settings.bind(|| {
        for format in ["text", "markdown", "json", "html"] {
            let output = run_in(
                dir.path(),
                &[
                    "allowlist",
                    "audit",
                    "--allowlist",
                    "allowlist.txt",
                    "--format",
                    format,
                ],
            );
            // Not everything needed is covered: exit 30, the report on stdout all the same.
            assert_eq!(output.status.code(), Some(30), "{output:?}");
            let report = String::from_utf8_lossy(&output.stdout).into_owned();
            insta::assert_snapshot!(format!("allowlist_report_{format}"), report);
        }
    });
}

/// A lock of the built-in spec whose digests are made up but fixed (each image's digest is the
/// sha256 of its name), so that `template` renders the same text on every run.
fn fixed_lock() -> String {
    use sha2::Digest as _;
    let spec = coder_bundle_spec::BundleSpec::from_yaml(coder_bundle_spec::DEFAULT_SPEC, "built-in")
        .expect("the built-in spec");
    let lock = coder_bundle_spec::ImageLock {
        version: coder_bundle_spec::LOCK_FORMAT_VERSION,
        spec: coder_bundle_spec::LockedSpec {
            name: spec.name.clone(),
            version: spec.version.clone(),
            signatures: false,
        },
        locked_at: "2026-01-01T00:00:00Z".parse().expect("a time"),
        images: spec
            .images
            .iter()
            .map(|image| coder_bundle_spec::LockedArtifact {
                name: image.name.clone(),
                reference: image.reference.clone(),
                digest: format!(
                    "sha256:{}",
                    hex::encode(sha2::Sha256::digest(image.name.as_bytes()))
                ),
                media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
                size: 1024,
                platforms: Vec::new(),
                referrers: Vec::new(),
            })
            .collect(),
        charts: Vec::new(),
    };
    lock.to_yaml().expect("the lock as YAML")
}

#[test]
fn template_output_of_the_built_in_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("images.lock"), fixed_lock()).expect("write the lock");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"coder-install \d+\.\d+\.\d+", "coder-install [version]");
    settings.bind(|| {
        // The defaults for a current cluster; and two replicas of everything on Kubernetes 1.20,
        // whose PodDisruptionBudgets are policy/v1beta1.
        let high_availability = [
            "--set",
            "manager.replicas=2",
            "--set",
            "envproxy.replicas=2",
            "--set",
            "dashboard.replicas=2",
        ];
        for (name, kube_version, values) in [
            ("template_kube_1_33", "1.33", &[][..]),
            ("template_kube_1_20_two_replicas", "1.20", &high_availability[..]),
        ] {
            let mut args = vec![
                "template",
                "--lock",
                "images.lock",
                "--namespace",
                "coder",
                "--kube-version",
                kube_version,
            ];
            args.extend(values);
            let output = success(run_in(dir.path(), &args));
            assert!(output.contains("kind: Deployment"), "{output}");
            insta::assert_snapshot!(name, output);
        }
    });
}
