//! Snapshot tests (insta) of what users read: every `coder-service --help`. A change to one
//! shows as a diff of the committed `snapshots/*.snap` file; review it and accept it with
//! `cargo insta review` (or `INSTA_UPDATE=always` and a look at the diff).

/// Runs `coder-service` at a fixed help width and without the environment, so that neither the
/// terminal nor a `CODER_*` variable of the machine shows in the text.
fn help_of(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("COLUMNS", "100")
        .output()
        .expect("run coder-service");
    assert!(output.status.success(), "{args:?} --help failed: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn every_help_text() {
    let mut all = String::new();
    for component in [&[][..], &["manager"], &["envproxy"], &["dashboard"], &["migrate"]] {
        let help = help_of(component);
        let command = [&["coder-service"][..], component, &["--help"]]
            .concat()
            .join(" ");
        all.push_str(&format!("==== {command}\n{help}\n"));
    }
    insta::assert_snapshot!("help", all);
}
