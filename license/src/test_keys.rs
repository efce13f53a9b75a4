//! TEST-ONLY signing key: its private half is committed in `license/test-keys/`, so anyone can
//! sign licenses with it. Compiled only with the `test-keys` cargo feature (or in this crate's
//! own unit tests); builds with the feature trust it, and release builds refuse the feature.

use ed25519_dalek::SigningKey;

use crate::error::LicenseError;
use crate::keys::{TrustedKey, hex_key};
use crate::{Claims, FORMAT_VERSION, Features, Tier};

/// The test key's id. A license naming it is only ever trusted by test builds.
pub const TEST_KEY_ID: &str = "test-only-insecure";

/// The test key's public half, as test builds trust it.
pub const TEST_KEY: TrustedKey = TrustedKey {
    kid: TEST_KEY_ID,
    public_key: hex_key(include_str!("../test-keys/test-only-insecure.pub")),
};

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
    fn test_claims_are_valid_even_when_already_expired() {
        for days in [365, -5] {
            let claims = claims(Tier::Enterprise, true, 10, days);
            assert!(claims.iat < claims.license_expires && claims.license_expires < claims.grace_until);
            assert!(sign(&claims).is_ok(), "{days} days");
        }
    }
}
