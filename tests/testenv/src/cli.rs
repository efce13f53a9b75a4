//! Running a command-line program under test and checking how it ended.

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
