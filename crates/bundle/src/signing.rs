//! Bundle signatures: Ed25519 over `coder-bundle/manifest.json`, keys as PEM files in the formats
//! `openssl genpkey -algorithm ed25519` (PKCS#8) and `openssl pkey -pubout` (SPKI) write.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading {role} {}", path.display())]
    Unreadable {
        /// `signing key` or `public key`.
        role: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 private key in PKCS#8 PEM.
    #[error(
        "{} is not an Ed25519 private key in PKCS#8 PEM ({reason}); make one with \
         `openssl genpkey -algorithm ed25519 -out key.pem`",
        path.display()
    )]
    NotAPrivateKey {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The file is not an Ed25519 public key in SPKI PEM.
    #[error(
        "{} is not an Ed25519 public key in PEM ({reason}); derive it with \
         `openssl pkey -in key.pem -pubout -out key.pub`",
        path.display()
    )]
    NotAPublicKey {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

/// Reads a PKCS#8 PEM private key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
        role: "signing key",
        path: path.to_owned(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|error| KeyError::NotAPrivateKey {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Reads an SPKI PEM public key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
        role: "public key",
        path: path.to_owned(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|error| KeyError::NotAPublicKey {
        path: path.to_owned(),
        reason: error.to_string(),
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
