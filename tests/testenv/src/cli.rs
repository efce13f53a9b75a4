//! Running a command-line program under test and checking how it ended, and the command lines
//! of the `coder-install` steps that several tests and benches run alike.

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;

/// Asserts that `program` succeeded and returns its stdout; on failure the message shows both
/// streams.
pub fn success(program: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{program} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the program failed and returns its stderr.
pub fn failure(output: Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The arguments of `coder-install lock`: pin `spec`'s images, which live in the plain-HTTP
/// registry `upstream` (`host:port`), into `lock`.
pub fn lock_args(spec: &Path, lock: &Path, upstream: &str) -> Vec<OsString> {
    vec![
        "lock".into(),
        "--spec".into(),
        spec.into(),
        "-o".into(),
        lock.into(),
        "--insecure-registry".into(),
        upstream.into(),
    ]
}

/// The arguments of `coder-install bundle`: `spec` and its `lock` into the bundle file `output`,
/// through the blob cache `cache`, from the plain-HTTP registry `upstream` (`host:port`).
pub fn bundle_args(spec: &Path, lock: &Path, cache: &Path, output: &Path, upstream: &str) -> Vec<OsString> {
    vec![
        "bundle".into(),
        "--spec".into(),
        spec.into(),
        "--lock".into(),
        lock.into(),
        "--cache".into(),
        cache.into(),
        "-o".into(),
        output.into(),
        "--insecure-registry".into(),
        upstream.into(),
    ]
}
