//! Credential primitives, without HTTP or the database: argon2id password hashes,
//! `<id>-<secret>` tokens, and random bytes and ids. Who is calling is [`super::actor`]; the
//! extractor that authenticates API calls is in `api::extract`, the token table in
//! `service::sessions`.
//!
//! A token is `<10 hex id>-<32 hex secret>`. The database keeps the id and the SHA-256 of the
//! secret only; a presented token is looked up by id and its secret's hash compared in
//! constant time. Session tokens (from login) and API keys share the format and the table.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiResult};

/// A freshly made token: the id to store and look up, the secret's hash to store, and the
/// full token to hand to the client once.
#[derive(Debug)]
pub struct NewToken {
    /// The lookup id (primary key of `api_keys`).
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// `<id>-<secret>`: shown to the client once, never stored.
    pub token: String,
}

impl NewToken {
    /// Makes a random token.
    pub fn generate() -> ApiResult<Self> {
        let id = hex::encode(random_bytes::<5>()?);
        let secret = hex::encode(random_bytes::<16>()?);
        Ok(Self {
            secret_hash: hash_secret(&secret),
            token: format!("{id}-{secret}"),
            id,
        })
    }
}

/// SHA-256 of a token's secret. Secrets are 128 random bits, so a fast hash is enough.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a presented token into id and secret if it has the right shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('-')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 10) && hex(secret, 32)).then_some((id, secret))
}

/// Whether a presented secret matches the stored hash, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &[u8]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes) and a random salt.
pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|error| ApiError::Internal(format!("salt: {error}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| ApiError::Internal(format!("hashing a password: {error}")))
}

/// Checks a password against a stored PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A new random identifier: 12 random bytes as 24 lowercase hex digits.
pub fn new_id() -> ApiResult<String> {
    Ok(hex::encode(random_bytes::<12>()?))
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| ApiError::Internal(format!("random source: {error}")))?;
    Ok(bytes)
}

/// The argon2 parameters new hashes get (the crate's defaults), e.g. for a benchmark to print:
/// `argon2id v19, m=19456 KiB, t=2, p=1`. A stored hash is verified with its own.
pub fn hash_parameters() -> String {
    let argon2 = Argon2::default();
    let params = argon2.params();
    format!(
        "argon2id v{}, m={} KiB, t={}, p={}",
        u32::from(argon2::Version::default()),
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    )
}

/// How many argon2 computations run at once: one per CPU. Each takes a CPU for its whole time
/// and its memory (19 MiB), so more at once would only slow every one of them and grow the
/// memory with the number of concurrent logins; the others wait their turn.
pub fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

static HASHING_SLOTS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(hashing_slots())));

/// Runs the CPU-heavy argon2 work off the async workers, at most [`hashing_slots`] at once. The
/// slot goes with the work, so a request that gives up (its client left) frees it only when its
/// hashing ends.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    let slot = HASHING_SLOTS
        .clone()
        .acquire_owned()
        .await
        .map_err(|error| ApiError::Internal(format!("password hashing slots: {error}")))?;
    tokio::task::spawn_blocking(move || {
        let done = work();
        drop(slot);
        done
    })
    .await
    .map_err(|error| ApiError::Internal(format!("password hashing task: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let token = NewToken::generate().expect("token");
        let (id, secret) = parse_token(&token.token).expect("parses");
        assert_eq!(id, token.id);
        assert!(secret_matches(secret, &token.secret_hash));
        assert!(!secret_matches(&"0".repeat(32), &token.secret_hash));
        for bad in [
            "",
            "-",
            "abc",
            &format!("{id}{secret}"),
            &format!("{id}-{secret}x"),
            "zzzzzzzzzz-00000000000000000000000000000000",
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong horse battery", &hash));
        assert!(!verify_password("x", "not a phc string"));
        // The parameters printed are those of the hashes made: `$v=19$m=19456,t=2,p=1$`.
        let printed = hash_parameters().replace("argon2id v", "$v=").replace(" KiB", "");
        let phc_params = printed.replacen(", ", "$", 1).replace(", ", ",") + "$";
        assert!(hash.contains(&phc_params), "{hash} vs {phc_params}");
    }
}
