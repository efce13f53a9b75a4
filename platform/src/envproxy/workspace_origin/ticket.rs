//! Sealed workspace credentials: the short-lived ticket the platform origin hands to a
//! workspace host in a redirect, and the host-only cookie the workspace host sets in exchange.
//!
//! Both carry the caller's Coder token (so that every request is still checked with the manager
//! and a logout or a revoked token ends them), the one workspace they are good for, an expiry
//! and a random nonce, sealed with AES-256-GCM under a key derived from the envproxy's token
//! (shared by every envproxy replica, never sent anywhere). The kind (ticket or cookie) is bound
//! as associated data, so one cannot stand for the other. A ticket in a URL (browser history,
//! access logs) therefore shows nothing and opens one workspace for a minute, once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a ticket may wait before it is exchanged.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// How long a workspace cookie lives (the token inside it may end sooner: logout, expiry).
pub const COOKIE_TTL: Duration = Duration::from_secs(12 * 3600);

/// What a sealed value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The redirect's one-time ticket.
    Ticket,
    /// The workspace host's cookie.
    Cookie,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Ticket => b"coder workspace ticket v1",
            Self::Cookie => b"coder workspace cookie v1",
        }
    }
}

/// What is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The workspace it opens.
    #[serde(rename = "w")]
    pub workspace: String,
    /// The caller's Coder token.
    #[serde(rename = "t")]
    pub token: String,
    /// Unix seconds after which it is refused.
    #[serde(rename = "e")]
    pub expires: u64,
    /// Random, hex: tickets are single-use by it.
    #[serde(rename = "n")]
    pub nonce: String,
}

impl Claims {
    /// Claims for `token` and `workspace`, valid for `ttl` from now.
    pub fn new(workspace: &str, token: &str, ttl: Duration) -> Result<Self, SealError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        Ok(Self {
            workspace: workspace.to_owned(),
            token: token.to_owned(),
            expires: now_secs().saturating_add(ttl.as_secs()),
            nonce: hex::encode(nonce),
        })
    }
}

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not hex, too short, or not what was sealed.
    #[error("malformed or forged")]
    Invalid,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// The system's random source failed.
    #[error("no random bytes available")]
    Random,
}

/// Seals and opens [`Claims`].
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Sealer {
    /// A sealer keyed by `secret` (the envproxy's token): every replica derives the same key.
    pub fn from_secret(secret: &[u8]) -> Result<Self, SealError> {
        let mut hasher = Sha256::new();
        hasher.update(b"coder-envproxy workspace credentials v1\0");
        hasher.update(secret);
        let key = hasher.finalize();
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SealError::Invalid)?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// A sealer with a random key (one replica only: what it seals no other process opens).
    pub fn random() -> Result<Self, SealError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| SealError::Random)?;
        Self::from_secret(&secret)
    }

    /// Seals `claims` as hex text (safe in URLs and cookies).
    pub fn seal(&self, kind: Kind, claims: &Claims) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = serde_json::to_vec(claims).map_err(|_| SealError::Invalid)?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kind.aad()),
                &mut data,
            )
            .map_err(|_| SealError::Invalid)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(hex::encode(sealed))
    }

    /// Opens what [`Sealer::seal`] made for `kind`; refuses anything else and expired claims.
    pub fn open(&self, kind: Kind, text: &str) -> Result<Claims, SealError> {
        // Bounds the work an outside value can cause.
        if text.len() > 4096 {
            return Err(SealError::Invalid);
        }
        let mut sealed = hex::decode(text.trim()).map_err(|_| SealError::Invalid)?;
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Invalid);
        }
        let mut data = sealed.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&sealed).map_err(|_| SealError::Invalid)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kind.aad()), &mut data)
            .map_err(|_| SealError::Invalid)?;
        let claims: Claims = serde_json::from_slice(plain).map_err(|_| SealError::Invalid)?;
        if claims.expires <= now_secs() {
            return Err(SealError::Expired);
        }
        Ok(claims)
    }

    /// The claims of a sealed `kind` for workspace `id`; `None` when forged, expired or another
    /// workspace's.
    pub fn open_for(&self, kind: Kind, text: &str, id: &str) -> Option<Claims> {
        let claims = self.open(kind, text).ok()?;
        claims.workspace.eq_ignore_ascii_case(id).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_claims_open_only_as_their_kind_under_their_key_until_expiry() {
        let sealer = Sealer::from_secret(b"envproxy-token").expect("sealer");
        let claims = Claims::new("ab12", "0123456789-secret", TICKET_TTL).expect("claims");
        let ticket = sealer.seal(Kind::Ticket, &claims).expect("seal");
        assert!(!ticket.contains("secret"), "the token is not readable");
        assert_eq!(sealer.open(Kind::Ticket, &ticket), Ok(claims.clone()));
        assert_eq!(sealer.open(Kind::Cookie, &ticket), Err(SealError::Invalid));
        let other = Sealer::from_secret(b"another token").expect("sealer");
        assert_eq!(other.open(Kind::Ticket, &ticket), Err(SealError::Invalid));
        let same = Sealer::from_secret(b"envproxy-token").expect("sealer");
        assert_eq!(same.open(Kind::Ticket, &ticket), Ok(claims.clone()));
        // A flipped bit, a truncation, or junk.
        let mut bytes = hex::decode(&ticket).expect("hex");
        bytes[20] ^= 1;
        assert_eq!(
            sealer.open(Kind::Ticket, &hex::encode(&bytes)),
            Err(SealError::Invalid)
        );
        for junk in ["", "zz", &ticket[..30], &"ab".repeat(3000)] {
            assert_eq!(sealer.open(Kind::Ticket, junk), Err(SealError::Invalid));
        }
        let expired = Claims {
            expires: now_secs() - 1,
            ..claims
        };
        let sealed = sealer.seal(Kind::Cookie, &expired).expect("seal");
        assert_eq!(sealer.open(Kind::Cookie, &sealed), Err(SealError::Expired));
    }
}
