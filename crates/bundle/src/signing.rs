//! Bundle signatures: Ed25519 over `coder-bundle/manifest.json`, keys as PEM files in the formats
//! `openssl genpkey -algorithm ed25519` (PKCS#8) and `openssl pkey -pubout` (SPKI) write.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Reads a PKCS#8 PEM private key.
pub fn read_signing_key(path: &Path) -> crate::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| fail!("reading signing key {}: {error}", path.display()))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|error| {
        fail!("{} is not an Ed25519 private key in PKCS#8 PEM ({error}); make one with `openssl genpkey -algorithm ed25519 -out key.pem`", path.display())
    })
}

/// Reads an SPKI PEM public key.
pub fn read_public_key(path: &Path) -> crate::Result<VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| fail!("reading public key {}: {error}", path.display()))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|error| {
        fail!("{} is not an Ed25519 public key in PEM ({error}); derive it with `openssl pkey -in key.pem -pubout -out key.pub`", path.display())
    })
}

/// Signs the bundle manifest's bytes.
pub fn sign(key: &SigningKey, manifest: &[u8]) -> Vec<u8> {
    key.sign(manifest).to_bytes().to_vec()
}

/// A short, stable name for a public key: `ed25519:` and the first 16 hex digits of its SHA-256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    use sha2::Digest;
    format!(
        "ed25519:{}",
        &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..16]
    )
}
