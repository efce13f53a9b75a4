use std::process::Command;

fn coder_install(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(args)
        .output()
        .expect("run coder-install")
}

#[test]
fn help_lists_every_subcommand() {
    let output = coder_install(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for subcommand in [
        "lock",
        "bundle",
        "verify",
        "inspect",
        "push",
        "apply",
        "template",
        "preflight",
        "status",
        "check",
        "backup",
        "restore",
        "rollback",
        "uninstall",
        "license",
        "allowlist",
    ] {
        assert!(
            help.lines().any(|line| line.trim_start().starts_with(subcommand)),
            "{subcommand} missing from:\n{help}"
        );
    }
}

#[test]
fn bundling_with_the_unresolved_built_in_lock_says_to_run_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(["bundle", "-o", "coder.bundle"])
        .current_dir(dir.path())
        .output()
        .expect("run coder-install");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run `coder-install lock`") && stderr.contains("coder-service"),
        "{stderr}"
    );
    assert!(!dir.path().join("coder.bundle").exists());
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let output = coder_install(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand"));
}

#[test]
fn a_duration_too_long_to_count_is_a_usage_error_not_a_crash() {
    // 5124095576030432 hours are more seconds than a u64 holds.
    for args in [
        ["apply", "--wait", "--timeout", "5124095576030432h"],
        [
            "allowlist",
            "generate",
            "--probe-timeout",
            "18446744073709551615m",
        ],
    ] {
        let output = coder_install(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("too long"), "{args:?}: {stderr}");
    }
}
