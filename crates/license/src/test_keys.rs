//! TEST-ONLY signing key: its private half is committed in `crates/license/test-keys/`, so anyone can
//! sign licenses with it. Compiled only with the `test-keys` cargo feature (or in this crate's
//! own unit tests); builds with the feature trust it, and release builds refuse the feature.

use ed25519_dalek::SigningKey;

use crate::error::LicenseError;
/// The test key's public half, as test builds trust it (compiled from
/// `test-keys/test-only-insecure.pub` by `build.rs`, like the production keys).
pub use crate::keys::TEST_KEY;
use crate::{Claims, FORMAT_VERSION, Features, Tier};

/// The test key's id. A license naming it is only ever trusted by test builds.
pub const TEST_KEY_ID: &str = TEST_KEY.kid;

/// The test key's private half (publicly known: never use it for a real license).
const TEST_PRIVATE_KEY: [u8; 32] = hex_key(include_str!("../test-keys/test-only-insecure.key"));

/// The test signing key, for issuing test licenses with [`crate::sign`] and [`TEST_KEY_ID`].
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&TEST_PRIVATE_KEY)
}

/// Claims for tests: license `lic-test-1` of Example Corp (`example-corp`), of `tier`, air-gapped
/// use as `airgap`, `user_limit` seats, expiring `expires_in_days` from now (negative: already
/// expired) with 30 days of grace after that, issued and valid from 10 days before now or before
/// its expiry, whichever is earlier.
pub fn claims(tier: Tier, airgap: bool, user_limit: u32, expires_in_days: i64) -> Claims {
    const DAY: i64 = 86_400;
    let now = crate::time::unix_seconds(std::time::SystemTime::now());
    let license_expires = now + expires_in_days * DAY;
    let issued = now.min(license_expires) - 10 * DAY;
    Claims {
        version: FORMAT_VERSION,
        license_id: "lic-test-1".to_owned(),
        account_name: "Example Corp".to_owned(),
        account_id: "example-corp".to_owned(),
        tier,
        features: Features { airgap, user_limit },
        iat: issued,
        nbf: issued,
        license_expires,
        grace_until: license_expires + 30 * DAY,
    }
}

/// Decodes a key file's text (64 hex digits, then only white space) at compile time: a
/// malformed committed key file fails the build instead of a run.
const fn hex_key(text: &str) -> [u8; 32] {
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

/// `claims` signed with the test key.
pub fn sign(claims: &Claims) -> Result<String, LicenseError> {
    crate::sign(claims, TEST_KEY_ID, &signing_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_private_key_matches_the_committed_public_key() {
        assert_eq!(signing_key().verifying_key().to_bytes(), TEST_KEY.public_key);
    }

    #[test]
    fn key_text_decodes_with_trailing_white_space() {
        let text = "00ff".repeat(16) + "\n";
        assert_eq!(hex_key(&text)[..2], [0x00, 0xff]);
    }

    #[test]
    fn the_test_key_id_is_its_file_name() {
        assert_eq!(TEST_KEY_ID, "test-only-insecure");
    }

    #[test]
    fn test_claims_are_valid_even_when_already_expired() {
        for days in [365, -5] {
            let claims = claims(Tier::Enterprise, true, 10, days);
            assert!(claims.iat < claims.license_expires && claims.license_expires < claims.grace_until);
            assert!(sign(&claims).is_ok(), "{days} days");
        }
    }
}
