//! Basic authentication from an htpasswd file, as the distribution registry's `htpasswd` auth:
//! bcrypt entries only (`htpasswd -B`). bcrypt is slow on purpose, so a header that passed is
//! remembered (by its SHA-256, never the password) and later requests with it skip bcrypt.
//!
//! A name that is not in the file costs the same bcrypt check as a wrong password (against a
//! dummy hash of the file's cost), so timing does not tell which users exist. Checks that
//! do run go through a [`PasswordGate`]: a few at a time, and a client whose attempts keep
//! failing is answered 429 without one (see [`crate::login_limit`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServeError;
use crate::login_limit::{FailureLimit, LoginLimiter};

/// The realm of the `WWW-Authenticate` challenge.
pub(crate) const REALM: &str = "coder-install serve";
/// How many accepted headers are remembered (the set is cleared when full).
const REMEMBERED: usize = 1024;
/// A bcrypt hash's salt and digest (of no password anyone knows), behind `$2b$<cost>$`: what
/// a name that is not in the file is checked against.
const DUMMY_SALT_AND_HASH: &str = "yCxjwv/yV0IKTWsa0WIhxukMKcBoeMocYZCFwJ7A829mubJdEimkK";

/// The users of an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// A hash of the file's (highest) cost that no password matches, checked for unknown names.
    dummy_hash: String,
    accepted: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt checks run (real and dummy).
    bcrypt_checks: AtomicU64,
    /// bcrypt checks under way now, and the most there have been at once.
    bcrypt_running: AtomicUsize,
    bcrypt_peak: AtomicUsize,
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
        let mut cost = bcrypt::DEFAULT_COST;
        let mut costs_seen = false;
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
            let parts = bcrypt::HashParts::from_str(hash)
                .map_err(|error| format!("line {} ({user}): not a bcrypt hash: {error}", number + 1))?;
            cost = if costs_seen {
                cost.max(parts.get_cost())
            } else {
                parts.get_cost()
            };
            costs_seen = true;
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err("no users in it".to_owned());
        }
        Ok(Self {
            users,
            dummy_hash: format!("$2b${cost:02}${DUMMY_SALT_AND_HASH}"),
            accepted: Mutex::new(HashSet::new()),
            bcrypt_checks: AtomicU64::new(0),
            bcrypt_running: AtomicUsize::new(0),
            bcrypt_peak: AtomicUsize::new(0),
        })
    }

    /// Whether this `Authorization` header value passed [`Self::verify`] before (cheap).
    pub(crate) fn remembered(&self, authorization: &str) -> bool {
        let key = remember_key(authorization);
        self.accepted.lock().is_ok_and(|accepted| accepted.contains(&key))
    }

    /// Whether the `Authorization` header value names a user of the file with the right
    /// password: runs bcrypt (slow and blocking: call it off the async threads), for a name
    /// not in the file too (against the dummy hash: the same cost), and remembers a header that
    /// passed.
    pub(crate) fn verify(&self, authorization: &str) -> bool {
        let Some((user, password)) = basic_credentials(authorization) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy_hash.as_str(), false),
        };
        self.bcrypt_checks.fetch_add(1, Ordering::Relaxed);
        let running = self.bcrypt_running.fetch_add(1, Ordering::SeqCst) + 1;
        self.bcrypt_peak.fetch_max(running, Ordering::SeqCst);
        let matched = bcrypt::verify(&password, hash).unwrap_or(false);
        self.bcrypt_running.fetch_sub(1, Ordering::SeqCst);
        let passed = matched && known;
        if passed && let Ok(mut accepted) = self.accepted.lock() {
            if accepted.len() >= REMEMBERED {
                accepted.clear();
            }
            accepted.insert(remember_key(authorization));
        }
        passed
    }
}

/// What a request's credentials came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A user of the file with the right password.
    Passed,
    /// No credentials, or wrong ones.
    Refused,
    /// The client failed too often: no check was run; it may try again after this long.
    TooManyFailures(Duration),
}

/// The way into an htpasswd file's checks: remembered headers pass at once; the others are
/// checked by bcrypt a few at a time, unless their client has used up its failed logins.
pub(crate) struct PasswordGate {
    htpasswd: Arc<Htpasswd>,
    checks: Arc<Semaphore>,
    limiter: LoginLimiter,
}

impl PasswordGate {
    /// Checks `htpasswd`'s passwords `concurrent_checks` at a time, limiting each client's
    /// failed logins to `failures`.
    pub(crate) fn new(htpasswd: Htpasswd, concurrent_checks: usize, failures: FailureLimit) -> Self {
        Self {
            htpasswd: Arc::new(htpasswd),
            checks: Arc::new(Semaphore::new(concurrent_checks.max(1))),
            limiter: LoginLimiter::new(failures),
        }
    }

    /// What `authorization` (the header's value, if any) from `client` comes to.
    pub(crate) async fn check(&self, client: IpAddr, authorization: Option<&str>) -> Verdict {
        let Some(authorization) = authorization else {
            return Verdict::Refused;
        };
        if self.htpasswd.remembered(authorization) {
            return Verdict::Passed;
        }
        if let Err(wait) = self.limiter.allowed(client, std::time::Instant::now()) {
            return Verdict::TooManyFailures(wait);
        }
        let passed = match Arc::clone(&self.checks).acquire_owned().await {
            Ok(permit) => {
                // The permit goes with the check: a client that hangs up does not free it
                // before bcrypt is done.
                let htpasswd = Arc::clone(&self.htpasswd);
                let authorization = authorization.to_owned();
                tokio::task::spawn_blocking(move || {
                    let passed = htpasswd.verify(&authorization);
                    drop(permit);
                    passed
                })
                .await
                .unwrap_or(false)
            }
            Err(_) => false,
        };
        if passed {
            Verdict::Passed
        } else {
            self.limiter.failed(client, std::time::Instant::now());
            Verdict::Refused
        }
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
        for (line, expected) in [
            ("alice:{SHA}abc=\n", "htpasswd -B"),
            ("alice:$2y$04$short\n", "not a bcrypt hash"),
        ] {
            let error = Htpasswd::parse(line).expect_err(line);
            assert!(
                error.contains("line 1 (alice)") && error.contains(expected),
                "{error}"
            );
        }
        assert!(Htpasswd::parse("# nobody\n").is_err());
        assert!(Htpasswd::parse("no-colon\n").is_err());
    }

    #[test]
    fn an_unknown_user_costs_a_bcrypt_check_of_the_files_cost_like_a_wrong_password() {
        let cheap = bcrypt::hash("one", 4).expect("hash");
        let dear = bcrypt::hash("two", 6).expect("hash");
        let file = Htpasswd::parse(&format!("alice:{cheap}\nbob:{dear}\n")).expect("parse");
        let dummy = bcrypt::HashParts::from_str(&file.dummy_hash).expect("the dummy is a bcrypt hash");
        assert_eq!(dummy.get_cost(), 6, "the file's highest cost");
        assert!(!file.verify(&header("alice", "wrong")));
        assert_eq!(file.bcrypt_checks.load(Ordering::Relaxed), 1);
        assert!(!file.verify(&header("mallory", "wrong")));
        assert_eq!(
            file.bcrypt_checks.load(Ordering::Relaxed),
            2,
            "a name not in the file runs bcrypt too"
        );
        // Whatever password matches the dummy, no name outside the file gets in.
        assert!(!file.verify(&header("mallory", "")));
    }

    fn gate(cost: u32, concurrent: usize, burst: u32) -> PasswordGate {
        let hash = bcrypt::hash("s3cret", cost).expect("hash");
        let file = Htpasswd::parse(&format!("alice:{hash}\n")).expect("parse");
        let failures = FailureLimit {
            burst,
            refill: Duration::from_secs(60),
        };
        PasswordGate::new(file, concurrent, failures)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_runs_a_bounded_number_of_bcrypt_checks_at_once() {
        let gate = Arc::new(gate(8, 2, 100));
        let checks: Vec<_> = (0..8u8)
            .map(|client| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    let wrong = header("alice", &format!("wrong{client}"));
                    gate.check(IpAddr::from([192, 0, 2, client]), Some(&wrong)).await
                })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.expect("check"), Verdict::Refused);
        }
        assert_eq!(gate.htpasswd.bcrypt_checks.load(Ordering::SeqCst), 8);
        let peak = gate.htpasswd.bcrypt_peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "{peak} checks ran at once");
    }

    #[tokio::test]
    async fn a_client_that_keeps_failing_gets_too_many_failures_without_a_bcrypt_check() {
        let gate = gate(4, 4, 3);
        let attacker = IpAddr::from([192, 0, 2, 66]);
        let wrong = header("alice", "wrong");
        for _ in 0..3 {
            assert_eq!(gate.check(attacker, Some(&wrong)).await, Verdict::Refused);
        }
        let right = header("alice", "s3cret");
        let limited = gate.check(attacker, Some(&right)).await;
        assert!(
            matches!(limited, Verdict::TooManyFailures(wait) if wait > Duration::ZERO),
            "{limited:?}"
        );
        assert_eq!(
            gate.htpasswd.bcrypt_checks.load(Ordering::SeqCst),
            3,
            "no check once limited"
        );
        // Another client is not held back, and its header, once passed, passes everywhere.
        assert_eq!(
            gate.check(IpAddr::from([192, 0, 2, 67]), Some(&right)).await,
            Verdict::Passed
        );
        assert_eq!(gate.check(attacker, Some(&right)).await, Verdict::Passed);
        assert_eq!(gate.check(attacker, None).await, Verdict::Refused);
    }
}
