//! Failed logins, limited per client: a token bucket per address.
//!
//! Each failed password check takes a token from its client's bucket; a client whose bucket is
//! empty is answered 429 with `Retry-After` and no bcrypt runs. Checks that pass cost nothing,
//! so a client with the right password (many pulls at once, many nodes behind one address) is
//! never held back. Buckets refill at a steady rate; only clients that failed have one. IPv6
//! clients are counted per /64 (one host usually holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many clients' buckets are kept; past it, full buckets are forgotten first, then the
/// oldest.
const MAX_CLIENTS: usize = 4096;

/// How many failed logins a client may make, and how fast it may make more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failed logins allowed in a row (the bucket's size).
    pub burst: u32,
    /// One more failed login is allowed each time this passes.
    pub refill: Duration,
}

impl Default for FailureLimit {
    /// 10 in a row, then one every 6 s (10 a minute).
    fn default() -> Self {
        Self {
            burst: 10,
            refill: Duration::from_secs(6),
        }
    }
}

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Checks left, with the fraction refilled so far.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// The buckets of every client seen.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limit: FailureLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl LoginLimiter {
    /// Limits failed logins to `limit` per client.
    pub(crate) fn new(limit: FailureLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may have a password checked at `now`: `Err(wait)` when its failures
    /// have used up its bucket (`wait`: until it has a token again).
    pub(crate) fn allowed(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(buckets) = self.buckets.lock() else {
            return Ok(());
        };
        match buckets.get(&client_key(client)) {
            Some(bucket) => {
                let tokens = self.refilled(bucket, now);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.limit.refill.mul_f64(1.0 - tokens))
                }
            }
            None => Ok(()),
        }
    }

    /// Takes a token from `client`'s bucket for a check that failed at `now`.
    pub(crate) fn failed(&self, client: IpAddr, now: Instant) {
        let key = client_key(client);
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if !buckets.contains_key(&key) && buckets.len() >= MAX_CLIENTS {
            self.forget_some(&mut buckets, now);
        }
        let burst = f64::from(self.limit.burst.max(1));
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = (self.refilled(bucket, now) - 1.0).max(0.0);
        bucket.updated = now;
    }

    /// `bucket`'s tokens at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let burst = f64::from(self.limit.burst.max(1));
        let elapsed = now.saturating_duration_since(bucket.updated);
        let gained = if self.limit.refill.is_zero() {
            burst
        } else {
            elapsed.as_secs_f64() / self.limit.refill.as_secs_f64()
        };
        (bucket.tokens + gained).min(burst)
    }

    /// Makes room for a new client: forgets the buckets that are full again (those clients are
    /// where they started), and if none is, the one updated longest ago.
    fn forget_some(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let burst = f64::from(self.limit.burst.max(1));
        buckets.retain(|_, bucket| self.refilled(bucket, now) < burst);
        if buckets.len() >= MAX_CLIENTS
            && let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, bucket)| bucket.updated)
                .map(|(key, _)| *key)
        {
            buckets.remove(&oldest);
        }
    }
}

/// What a client is counted as: its IPv4 address, or its IPv6 address's /64.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: FailureLimit = FailureLimit {
        burst: 3,
        refill: Duration::from_secs(6),
    };

    /// `count` failures of `client` at `now`.
    fn fail(limiter: &LoginLimiter, client: IpAddr, now: Instant, count: usize) {
        for _ in 0..count {
            assert_eq!(limiter.allowed(client, now), Ok(()));
            limiter.failed(client, now);
        }
    }

    #[test]
    fn a_client_out_of_tokens_waits_and_others_do_not() {
        let limiter = LoginLimiter::new(LIMIT);
        let start = Instant::now();
        let attacker: IpAddr = "192.0.2.1".parse().expect("address");
        fail(&limiter, attacker, start, 3);
        let wait = limiter.allowed(attacker, start).expect_err("out of tokens");
        assert_eq!(wait, Duration::from_secs(6));
        let other: IpAddr = "192.0.2.2".parse().expect("address");
        assert_eq!(limiter.allowed(other, start), Ok(()), "another client");
        // Half a refill later it still waits, the other half; a refill later it may try once.
        let later = start + Duration::from_secs(3);
        assert_eq!(limiter.allowed(attacker, later), Err(Duration::from_secs(3)));
        let refilled = start + Duration::from_secs(6);
        fail(&limiter, attacker, refilled, 1);
        assert!(limiter.allowed(attacker, refilled).is_err());
    }

    #[test]
    fn checks_that_pass_cost_nothing() {
        let limiter = LoginLimiter::new(LIMIT);
        let now = Instant::now();
        let client: IpAddr = "198.51.100.7".parse().expect("address");
        for _ in 0..10 {
            assert_eq!(limiter.allowed(client, now), Ok(()));
        }
        assert!(
            limiter.buckets.lock().expect("lock").is_empty(),
            "no bucket without a failure"
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = LoginLimiter::new(LIMIT);
        let now = Instant::now();
        for host in 1..=3 {
            let address: IpAddr = format!("2001:db8::{host}").parse().expect("address");
            fail(&limiter, address, now, 1);
        }
        let same_64: IpAddr = "2001:db8::ffff:1".parse().expect("address");
        assert!(limiter.allowed(same_64, now).is_err());
        let other_64: IpAddr = "2001:db8:0:1::1".parse().expect("address");
        assert_eq!(limiter.allowed(other_64, now), Ok(()));
        assert_eq!(
            client_key("::ffff:192.0.2.9".parse().expect("address")),
            "192.0.2.9".parse::<IpAddr>().expect("address")
        );
    }

    #[test]
    fn the_table_of_clients_stays_bounded() {
        let limiter = LoginLimiter::new(LIMIT);
        let now = Instant::now();
        for index in 0..(MAX_CLIENTS as u32 + 100) {
            fail(&limiter, IpAddr::V4(index.into()), now, 1);
        }
        let held = limiter.buckets.lock().expect("lock").len();
        assert!(held <= MAX_CLIENTS, "{held}");
    }
}
