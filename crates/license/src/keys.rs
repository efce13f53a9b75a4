//! The public keys this build trusts, compiled in and selected by the token's `kid`.
//!
//! The table is generated at build time by `crates/license/build.rs` from the folder `crates/license/keys/`:
//! each `KID.pub` file (one line of 64 hex digits, the Ed25519 public key, as
//! `license-issuer keygen` writes it) is trusted under the kid `KID`, its file name. A vendor
//! building coder-install trusts its own key by adding its `.pub` file there, without touching
//! code; rotation is described in `crates/license/keys/README.md`.
//!
//! There is deliberately no way to add a key at run time (no flag, environment variable or
//! file): a release build trusts exactly [`PRODUCTION_KEYS`].
//!
//! Builds with the `test-keys` cargo feature also trust `TEST_KEY` (the public half of
//! `crates/license/test-keys/test-only-insecure.pub`, whose private half is committed in the
//! repository). The feature is refused at compile time in builds without debug assertions
//! (`--release`), see `lib.rs`.

/// A trusted Ed25519 public key and the id (`kid`) licenses name it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key id, as in a license header's `kid`.
    pub kid: &'static str,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

// `PRODUCTION_KEYS` (the vendor's keys; their private halves are kept by the vendor, offline,
// and never committed) and `TEST_KEY` (tests and `test-keys` builds only).
include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));

/// Every key this build trusts: [`PRODUCTION_KEYS`], plus the test key in builds with the
/// `test-keys` feature.
pub fn trusted_keys() -> Vec<TrustedKey> {
    #[allow(unused_mut)]
    let mut keys = PRODUCTION_KEYS.to_vec();
    #[cfg(feature = "test-keys")]
    keys.push(TEST_KEY);
    keys
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::VerifyingKey;

    use super::*;
    use crate::test_keys::TEST_KEY_ID;

    #[test]
    fn production_keys_are_valid_distinct_and_never_the_test_key() {
        for (index, key) in PRODUCTION_KEYS.iter().enumerate() {
            assert!(VerifyingKey::from_bytes(&key.public_key).is_ok(), "{}", key.kid);
            assert_ne!(key.kid, TEST_KEY_ID);
            assert_ne!(key.public_key, TEST_KEY.public_key, "{} is the test key", key.kid);
            assert!(
                PRODUCTION_KEYS[..index]
                    .iter()
                    .all(|earlier| earlier.kid != key.kid)
            );
        }
    }

    /// What release builds trust: run `cargo test -p coder-license` on its own (no other
    /// package in the same command), so that no dev-dependency turns `test-keys` on.
    #[cfg(not(feature = "test-keys"))]
    #[test]
    fn without_the_test_keys_feature_only_production_keys_are_trusted() {
        assert_eq!(trusted_keys(), PRODUCTION_KEYS);
    }

    #[cfg(feature = "test-keys")]
    #[test]
    fn with_the_test_keys_feature_the_test_key_is_trusted_too() {
        assert_eq!(trusted_keys().last(), Some(&TEST_KEY));
        assert_eq!(trusted_keys().len(), PRODUCTION_KEYS.len() + 1);
    }

    /// The lines of `[section]` in the TOML `text` (up to the next section), trimmed.
    fn toml_section<'a>(text: &'a str, section: &str) -> Vec<&'a str> {
        let header = format!("[{section}]");
        text.lines()
            .map(str::trim)
            .skip_while(|line| *line != header)
            .skip(1)
            .take_while(|line| !line.starts_with('['))
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect()
    }

    /// Benches build coder-install with the test key trusted: never into `target/release`
    /// (profile `bench`), only into their own profile's folder, through the `cargo benches` alias.
    #[test]
    fn benches_that_trust_the_test_key_build_outside_target_release() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).expect("Cargo.toml");
        let bench = toml_section(&manifest, "profile.bench");
        assert!(
            !bench
                .iter()
                .any(|line| line.replace(' ', "") == "debug-assertions=true"),
            "profile.bench must keep debug assertions off, so that the test key cannot compile into target/release: {bench:?}"
        );
        let own = toml_section(&manifest, "profile.bench-test-keys");
        for expected in ["inherits = \"bench\"", "debug-assertions = true"] {
            assert!(
                own.contains(&expected),
                "profile.bench-test-keys lacks {expected}: {own:?}"
            );
        }
        let config =
            std::fs::read_to_string(format!("{root}/.cargo/config.toml")).expect(".cargo/config.toml");
        assert!(
            toml_section(&config, "alias").contains(&"benches = \"bench --profile bench-test-keys\""),
            "{config}"
        );
    }

    /// `coder-license` features as cargo resolves them for the whole root workspace, over
    /// the dependency edges `edges` (`cargo tree -e`).
    fn root_workspace_license_features(edges: &str) -> String {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = std::process::Command::new(cargo)
            .args(["tree", "--offline", "--workspace", "--prefix", "none"])
            .args(["--manifest-path", manifest, "-e", edges, "-i", "coder-license"])
            .output()
            .expect("run cargo tree");
        assert!(
            output.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A plain `cargo build` (or `--release`) at the root must never unify `test-keys` into
    /// the binaries a user builds: only dev-dependencies (tests) may turn it on.
    #[test]
    fn only_dev_dependencies_of_the_root_workspace_enable_the_test_keys_feature() {
        let built = root_workspace_license_features("normal,build,features");
        assert!(built.contains("coder-license v"), "{built}");
        assert!(
            !built.contains("\"test-keys\""),
            "a build at the root trusts the test key:\n{built}"
        );
        let tested = root_workspace_license_features("normal,build,dev,features");
        assert!(tested.contains("\"test-keys\""), "{tested}");
    }
}
