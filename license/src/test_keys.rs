//! TEST-ONLY signing key: its private half is committed in `license/test-keys/`, so anyone can
//! sign licenses with it. Compiled only with the `test-keys` cargo feature (or in this crate's
//! own unit tests); builds with the feature trust it, and release builds refuse the feature.

use ed25519_dalek::SigningKey;

use crate::keys::{TrustedKey, hex_key};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_private_key_matches_the_committed_public_key() {
        assert_eq!(signing_key().verifying_key().to_bytes(), TEST_KEY.public_key);
    }
}
