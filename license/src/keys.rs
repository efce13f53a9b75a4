//! The public keys this build trusts, compiled in and selected by the token's `kid`.
//!
//! There is deliberately no way to add a key at run time (no flag, environment variable or
//! file): a release build trusts exactly [`PRODUCTION_KEYS`]. Rotating the signing key means
//! adding a new `(kid, key)` entry here and shipping a new coder-install; licenses signed with an
//! older key keep working while its entry stays.
//!
//! Builds with the `test-keys` cargo feature also trust [`crate::test_keys::TEST_KEY`], whose
//! private half is committed in the repository. The feature is refused at compile time in
//! builds without debug assertions (`--release`), see `lib.rs`.

/// A trusted Ed25519 public key and the id (`kid`) licenses name it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key id, as in a license header's `kid`.
    pub kid: &'static str,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

/// The vendor's license signing keys. Their private halves are kept by the vendor, offline,
/// and never committed. `keys/KID.pub` holds each public key as 64 hex digits.
pub const PRODUCTION_KEYS: &[TrustedKey] = &[TrustedKey {
    kid: "coder-license-2026-11",
    public_key: hex_key(include_str!("../keys/coder-license-2026-11.pub")),
}];

/// Every key this build trusts: [`PRODUCTION_KEYS`], plus the test key in builds with the
/// `test-keys` feature.
pub fn trusted_keys() -> Vec<TrustedKey> {
    #[allow(unused_mut)]
    let mut keys = PRODUCTION_KEYS.to_vec();
    #[cfg(feature = "test-keys")]
    keys.push(crate::test_keys::TEST_KEY);
    keys
}

/// Decodes a key file's text (64 hex digits, then only white space) at compile time: a
/// malformed committed key file fails the build instead of a run.
pub(crate) const fn hex_key(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    assert!(bytes.len() >= 64, "a key file holds 64 hex digits");
    let mut key = [0u8; 32];
    let mut index = 0;
    while index < 32 {
        key[index] = (hex_digit(bytes[2 * index]) << 4) | hex_digit(bytes[2 * index + 1]);
        index += 1;
    }
    let mut rest = 64;
    while rest < bytes.len() {
        assert!(
            bytes[rest].is_ascii_whitespace(),
            "a key file holds only 64 hex digits"
        );
        rest += 1;
    }
    key
}

const fn hex_digit(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => panic!("a key file holds only hex digits"),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::VerifyingKey;

    use super::*;
    use crate::test_keys::{TEST_KEY, TEST_KEY_ID};

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

    /// `coder-license` features as cargo resolves them for the whole root workspace, over
    /// the dependency edges `edges` (`cargo tree -e`).
    fn root_workspace_license_features(edges: &str) -> String {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
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

    #[test]
    fn key_text_decodes_with_trailing_white_space() {
        let text = "00ff".repeat(16) + "\n";
        assert_eq!(hex_key(&text)[..2], [0x00, 0xff]);
    }
}
