//! Running the tool and the helpers around it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The workspace root (the tool reads the git revision from there).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The static dev-profile `coder-service`, built (once per process; cargo keeps it cached) by
/// the same script the quick start uses.
pub fn static_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let output = Command::new(workspace_root().join("scripts/build-platform-image.sh"))
                .args(["--profile", "dev", "--test-keys", "--print-binary"])
                .current_dir(workspace_root())
                .stderr(Stdio::inherit())
                .output()
                .expect("run scripts/build-platform-image.sh");
            assert!(
                output.status.success(),
                "building the static coder-service failed"
            );
            let relative = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            workspace_root().join(relative)
        })
        .clone()
}

/// Runs `platform-image` with `args` in the workspace root; `stdin` is written to its input.
pub fn platform_image(args: &[&str], stdin: Option<&str>) -> Output {
    run(args, stdin, &[])
}

/// Runs `platform-image` with `args`, `stdin` written to its input, and extra environment.
pub fn run(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_platform-image"));
    command.envs(env.iter().copied());
    command
        .args(args)
        .current_dir(workspace_root())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run platform-image");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for platform-image")
}

/// Asserts that `platform-image` succeeded and returns its stdout.
pub fn success(output: Output) -> String {
    coder_testenv::cli::success("platform-image", output)
}

/// Asserts failure and returns stderr (also shown in the test's output).
pub fn failure(output: Output) -> String {
    let stderr = coder_testenv::cli::failure(output);
    eprintln!("platform-image failed as expected:\n{stderr}");
    stderr
}

/// Runs skopeo with `args` and parses its JSON output.
pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("skopeo JSON")
}
