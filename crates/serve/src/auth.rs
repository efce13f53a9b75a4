//! Basic authentication from an htpasswd file, as the distribution registry's `htpasswd` auth:
//! bcrypt entries only (`htpasswd -B`). bcrypt is slow on purpose, so a header that passed is
//! remembered (by its SHA-256, never the password) and later requests with it skip bcrypt;
//! failed attempts are not remembered and each costs a bcrypt check.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::ServeError;

/// The realm of the `WWW-Authenticate` challenge.
pub(crate) const REALM: &str = "coder-install serve";
/// How many accepted headers are remembered (the set is cleared when full).
const REMEMBERED: usize = 1024;

/// The users of an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    accepted: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file: `user:bcrypt-hash` lines; blank lines and `#` comments skipped.
    pub fn read(path: &Path) -> Result<Self, ServeError> {
        let what = || format!("--htpasswd {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|error| ServeError::Config {
            what: what(),
            reason: error.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ServeError::Config { what: what(), reason })
    }

    /// Parses htpasswd text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not `user:hash`", number + 1))?;
            if !["$2a$", "$2b$", "$2y$"]
                .iter()
                .any(|prefix| hash.starts_with(prefix))
            {
                return Err(format!(
                    "line {} ({user}): only bcrypt entries are supported, as by the distribution registry; \
                     make them with `htpasswd -B`",
                    number + 1
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err("no users in it".to_owned());
        }
        Ok(Self {
            users,
            accepted: Mutex::new(HashSet::new()),
        })
    }

    /// Whether this `Authorization` header value passed [`Self::verify`] before (cheap).
    pub(crate) fn remembered(&self, authorization: &str) -> bool {
        let key = remember_key(authorization);
        self.accepted.lock().is_ok_and(|accepted| accepted.contains(&key))
    }

    /// Whether the `Authorization` header value names a user of the file with the right
    /// password: runs bcrypt (slow and blocking: call it off the async threads), and remembers a
    /// header that passed.
    pub(crate) fn verify(&self, authorization: &str) -> bool {
        let Some((user, password)) = basic_credentials(authorization) else {
            return false;
        };
        let passed = self
            .users
            .get(&user)
            .is_some_and(|hash| bcrypt::verify(&password, hash).unwrap_or(false));
        if passed && let Ok(mut accepted) = self.accepted.lock() {
            if accepted.len() >= REMEMBERED {
                accepted.clear();
            }
            accepted.insert(remember_key(authorization));
        }
        passed
    }
}

/// What is kept of a header that passed: its SHA-256.
fn remember_key(authorization: &str) -> [u8; 32] {
    Sha256::digest(authorization.as_bytes()).into()
}

/// The user and password of a `Basic` authorization header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn bcrypt_users_pass_and_everything_else_is_refused() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let file = Htpasswd::parse(&format!("# users\n\nalice:{hash}\n")).expect("parse");
        let alice = header("alice", "s3cret");
        assert!(!file.remembered(&alice));
        assert!(file.verify(&alice));
        assert!(
            file.remembered(&alice),
            "a header that passed skips bcrypt next time"
        );
        for refused in [
            header("alice", "wrong"),
            header("bob", "s3cret"),
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
        ] {
            assert!(!file.verify(&refused), "{refused}");
            assert!(!file.remembered(&refused), "{refused}");
        }
    }

    #[test]
    fn non_bcrypt_entries_and_empty_files_are_refused_with_the_line() {
        let error = Htpasswd::parse("alice:{SHA}abc=\n").expect_err("sha1");
        assert!(
            error.contains("line 1 (alice)") && error.contains("htpasswd -B"),
            "{error}"
        );
        assert!(Htpasswd::parse("# nobody\n").is_err());
        assert!(Htpasswd::parse("no-colon\n").is_err());
    }
}
