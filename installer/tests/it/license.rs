//! `coder-install license inspect|verify` through the real binary, with licenses signed by the
//! committed test key (trusted because the installer's dev-dependencies enable `test-keys`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coder_license::test_keys::{self, TEST_KEY_ID};
use coder_license::token::sign_parts;
use coder_license::{Claims, FORMAT_VERSION, Tier, sign};

const DAY: i64 = 86_400;

fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit i64")
}

/// A license of `tier` that runs for a year, with 50 seats.
pub(crate) fn claims(tier: Tier, airgap: bool) -> Claims {
    test_keys::claims(tier, airgap, 50, 365)
}

pub(crate) fn signed(claims: &Claims) -> String {
    test_keys::sign(claims).expect("sign a test license")
}

/// Writes an enterprise license with the air-gap feature to `path` (what `apply --bundle` and
/// `push` need).
pub(crate) fn write_airgap_license(path: &std::path::Path) {
    std::fs::write(path, signed(&claims(Tier::Enterprise, true))).expect("write the license");
}

/// A license file in a directory removed when the value drops.
struct LicenseFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn license_file(contents: impl AsRef<[u8]>) -> LicenseFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("coder.license");
    std::fs::write(&path, contents).expect("write license");
    LicenseFile { _dir: dir, path }
}

fn license(subcommand: &str, file: &LicenseFile, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coder-install"))
        .args(["license", subcommand])
        .arg(&file.path)
        .args(extra)
        .output()
        .expect("run coder-install")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts `verify` (and `inspect`) refuse the file with `code`, and stderr says every fragment.
fn assert_refused(file: &LicenseFile, verify_args: &[&str], code: i32, fragments: &[&str]) {
    let output = license("verify", file, verify_args);
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(&output));
    for fragment in fragments {
        assert!(
            stderr(&output).contains(fragment),
            "{fragment:?} missing from: {}",
            stderr(&output)
        );
    }
    if verify_args.is_empty() {
        let inspected = license("inspect", file, &[]);
        assert_eq!(
            inspected.status.code(),
            Some(code),
            "inspect stderr: {}",
            stderr(&inspected)
        );
    }
}

fn inspect_json(file: &LicenseFile) -> (Option<i32>, serde_json::Value) {
    let output = license("inspect", file, &["--output", "json"]);
    let value = serde_json::from_slice(&output.stdout).expect("inspect prints JSON");
    (output.status.code(), value)
}

/// Replaces the claims part of a token with `claims_json`, keeping header and signature.
fn with_claims_part(token: &str, claims_json: &[u8]) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims_json),
        parts[2]
    )
}

#[test]
fn a_valid_enterprise_license_verifies_also_for_airgap() {
    let file = license_file(signed(&claims(Tier::Enterprise, true)));
    for args in [&[][..], &["--airgap"][..]] {
        let output = license("verify", &file, args);
        assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
        assert!(stdout(&output).contains("lic-test-1 is valid: enterprise tier for Example Corp"));
        assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    }
}

#[test]
fn inspect_shows_tier_features_account_window_and_verdict() {
    let claims = claims(Tier::Enterprise, true);
    let file = license_file(signed(&claims));
    let output = license("inspect", &file, &[]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "lic-test-1 (format version 1, verified)",
        "Example Corp (id example-corp)",
        "tier:           enterprise",
        "user limit:     50",
        "airgap feature: true",
        "signing key:    test-only-insecure",
        &format!(
            "term ends:      {}",
            coder_license::time::format_unix_time(claims.license_expires)
        ),
        &format!(
            "grace ends:     {}",
            coder_license::time::format_unix_time(claims.grace_until)
        ),
        "air-gapped:     allowed",
        "verdict:        VALID (within its term)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }

    let (code, json) = inspect_json(&file);
    assert_eq!(code, Some(0));
    assert_eq!(json["license"]["tier"], "enterprise");
    assert_eq!(json["license"]["features"]["user_limit"], 50);
    assert_eq!(json["license"]["account"]["id"], "example-corp");
    assert_eq!(json["license"]["verified"], true);
    assert_eq!(json["verdict"]["status"], "valid");
    assert_eq!(json["airgap"]["allowed"], true);
}

#[test]
fn one_changed_byte_of_the_claims_is_a_bad_signature() {
    let token = signed(&claims(Tier::Free, false));
    let claims_json = serde_json::to_string(&claims(Tier::Free, false)).expect("json");
    let tampered = claims_json.replace("\"user_limit\":50", "\"user_limit\":59");
    assert_eq!(tampered.len(), claims_json.len());
    let file = license_file(with_claims_part(&token, tampered.as_bytes()));
    assert_refused(&file, &[], 16, &["signature does not match its content"]);
    let (_, json) = inspect_json(&file);
    assert_eq!(json["license"]["verified"], false);
    assert_eq!(json["verdict"]["error_kind"], "bad_signature");
}

#[test]
fn a_signature_by_an_unknown_key_under_the_trusted_kid_is_refused() {
    let forger = coder_license::test_keys::signing_key()
        .to_bytes()
        .map(|byte| byte ^ 0x5a);
    let forged = sign(
        &claims(Tier::Enterprise, true),
        TEST_KEY_ID,
        &coder_license::SigningKey::from_bytes(&forger),
    )
    .expect("sign");
    assert_refused(&license_file(forged), &[], 16, &["not issued by Coder"]);
}

#[test]
fn an_unknown_kid_is_refused() {
    let license = sign(
        &claims(Tier::Enterprise, true),
        "rogue-2026",
        &test_keys::signing_key(),
    )
    .expect("sign");
    assert_refused(
        &license_file(license),
        &[],
        15,
        &["key `rogue-2026`", "does not trust"],
    );
}

#[test]
fn alg_none_and_hs256_are_refused_as_algorithms() {
    let claims_json = serde_json::to_vec(&claims(Tier::Enterprise, true)).expect("json");
    let none_header = format!(r#"{{"alg":"none","typ":"JWT","kid":"{TEST_KEY_ID}"}}"#);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(none_header),
        URL_SAFE_NO_PAD.encode(&claims_json)
    );
    assert_refused(&license_file(unsigned), &[], 14, &["algorithm `none`"]);
    let hs256_header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{TEST_KEY_ID}"}}"#);
    let hs256 = sign_parts(hs256_header.as_bytes(), &claims_json, &test_keys::signing_key());
    assert_refused(
        &license_file(hs256),
        &[],
        14,
        &["algorithm `HS256`", "only EdDSA"],
    );
}

#[test]
fn truncated_empty_and_non_utf8_files_are_refused() {
    let token = signed(&claims(Tier::Enterprise, true));
    assert_refused(&license_file(&token[..token.len() / 2]), &[], 10, &["truncated"]);
    assert_refused(&license_file(&token[..token.len() - 3]), &[], 10, &["truncated"]);
    assert_refused(&license_file(""), &[], 10, &["the file is empty"]);
    let mut binary = token.into_bytes();
    binary[3] = 0xfe;
    assert_refused(&license_file(binary), &[], 11, &["not UTF-8"]);
}

#[test]
fn bad_base64_and_bad_json_are_refused() {
    let token = signed(&claims(Tier::Enterprise, true));
    let header = token.split('.').next().expect("header");
    let bad_base64 = token.replacen(header, &format!("{}!", &header[1..]), 1);
    assert_refused(&license_file(bad_base64), &[], 12, &["not valid base64url"]);
    let not_json = sign_parts(b"{\"alg\":\"EdDSA\",", b"{}", &test_keys::signing_key());
    assert_refused(&license_file(not_json), &[], 13, &["not valid JSON"]);
}

#[test]
fn an_expired_license_is_refused_with_both_dates() {
    let mut claims = claims(Tier::Enterprise, true);
    claims.license_expires = now() - 40 * DAY;
    claims.grace_until = now() - 10 * DAY;
    claims.nbf = now() - 400 * DAY;
    claims.iat = claims.nbf;
    let expired_on = coder_license::time::format_unix_time(claims.license_expires);
    let grace_ended = coder_license::time::format_unix_time(claims.grace_until);
    let file = license_file(signed(&claims));
    assert_refused(&file, &[], 20, &[&expired_on, &grace_ended, "renew it"]);
    let inspected = license("inspect", &file, &[]);
    assert!(
        stdout(&inspected).contains("UNVERIFIED"),
        "{}",
        stdout(&inspected)
    );
    assert!(stdout(&inspected).contains("verdict:        REFUSED: the license expired"));
}

#[test]
fn a_license_that_is_not_valid_yet_is_refused() {
    let mut claims = claims(Tier::Enterprise, true);
    claims.nbf = now() + 2 * DAY;
    let file = license_file(signed(&claims));
    assert_refused(&file, &[], 19, &["not valid before", "check the clock"]);
}

#[test]
fn within_grace_the_license_works_with_a_loud_warning_naming_the_stop_date() {
    let mut claims = claims(Tier::Enterprise, true);
    claims.nbf = now() - 100 * DAY;
    claims.iat = claims.nbf;
    claims.license_expires = now() - 2 * DAY;
    claims.grace_until = now() + 28 * DAY;
    let stops = coder_license::time::format_unix_time(claims.grace_until);
    let file = license_file(signed(&claims));
    let output = license("verify", &file, &["--airgap"]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains("WARNING: this license expired on"));
    assert!(
        stderr(&output).contains(&format!("STOPS WORKING ON {stops}")),
        "{}",
        stderr(&output)
    );
    let inspected = license("inspect", &file, &[]);
    assert_eq!(inspected.status.code(), Some(0));
    assert!(stdout(&inspected).contains(&format!("in its grace period, stops working on {stops}")));
    let (_, json) = inspect_json(&file);
    assert_eq!(json["verdict"]["status"], "grace");
    assert!(
        json["verdict"]["warning"]
            .as_str()
            .is_some_and(|warning| warning.contains(&stops))
    );
}

#[test]
fn trial_and_free_licenses_work_connected_but_never_air_gapped() {
    for tier in [Tier::Trial, Tier::Free] {
        let file = license_file(signed(&claims(tier, true)));
        let connected = license("verify", &file, &[]);
        assert_eq!(connected.status.code(), Some(0), "{tier}: {}", stderr(&connected));
        assert_refused(
            &file,
            &["--airgap"],
            21,
            &[
                &format!("this is a {tier} license"),
                "air-gapped installs need an enterprise license",
                "contact sales@coder.com",
            ],
        );
        let (_, json) = inspect_json(&file);
        assert_eq!(json["airgap"]["allowed"], false);
        assert_eq!(json["airgap"]["error_kind"], "airgap_not_allowed_for_tier");
    }
}

#[test]
fn an_enterprise_license_without_the_airgap_feature_is_refused_for_airgap() {
    let file = license_file(signed(&claims(Tier::Enterprise, false)));
    assert_eq!(license("verify", &file, &[]).status.code(), Some(0));
    assert_refused(
        &file,
        &["--airgap"],
        22,
        &["does not include air-gapped installs"],
    );
}

#[test]
fn a_newer_format_version_says_to_upgrade_coder_install() {
    let mut newer = serde_json::to_value(claims(Tier::Enterprise, true)).expect("json");
    newer["version"] = serde_json::json!(FORMAT_VERSION + 1);
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{TEST_KEY_ID}"}}"#);
    let claims_json = serde_json::to_vec(&newer).expect("json");
    let file = license_file(sign_parts(
        header.as_bytes(),
        &claims_json,
        &test_keys::signing_key(),
    ));
    assert_refused(&file, &[], 17, &["format version 2", "upgrade coder-install"]);
}

#[test]
fn a_missing_file_is_a_general_error() {
    let file = license_file("");
    let missing = LicenseFile {
        path: file.path.with_file_name("absent.license"),
        _dir: file._dir,
    };
    let output = license("verify", &missing, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("reading license file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inspect_json_of_an_unreadable_token_has_no_license_and_the_refusal() {
    let (code, json) = inspect_json(&license_file("not a license"));
    assert_eq!(code, Some(10));
    assert!(json["license"].is_null());
    assert_eq!(json["verdict"]["status"], "refused");
    assert_eq!(json["verdict"]["error_kind"], "malformed");
    assert_eq!(json["verdict"]["exit_code"], 10);
}
