//! A small in-memory token-bucket limiter for login attempts, keyed by account and by client
//! address. Per process: with several manager replicas each enforces its own budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets beyond this many are pruned of the full ones (the idle keys).
const PRUNE_ABOVE: usize = 10_000;

/// Token buckets of `burst` tokens refilled at `per_minute`, one per key.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter allowing bursts of `burst` and `per_minute` sustained attempts per key.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from each key's bucket if all have one; otherwise takes none and
    /// returns the seconds until every key has one again.
    pub fn check(&self, keys: &[&str]) -> Result<(), u64> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update: the map is still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
        }
        let mut wait: f64 = 0.0;
        for key in keys {
            let tokens = buckets
                .get(*key)
                .map_or(self.burst, |bucket| self.refilled(*bucket, now));
            if tokens < 1.0 {
                let needed = if self.per_second > 0.0 {
                    (1.0 - tokens) / self.per_second
                } else {
                    3600.0
                };
                wait = wait.max(needed);
            }
        }
        if wait > 0.0 {
            // Whole seconds, rounded up, at least one.
            return Err((wait.ceil() as u64).max(1));
        }
        for key in keys {
            let tokens = buckets
                .get(*key)
                .map_or(self.burst, |bucket| self.refilled(*bucket, now));
            buckets.insert(
                (*key).to_owned(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_key() {
        let limiter = RateLimiter::new(3, 1);
        for _ in 0..3 {
            assert!(limiter.check(&["ip:1", "acct:a"]).is_ok());
        }
        let wait = limiter.check(&["ip:1", "acct:b"]).expect_err("ip exhausted");
        assert!((1..=60).contains(&wait));
        // Another address, another account: allowed; the refused call took nothing from acct:b.
        for _ in 0..3 {
            assert!(limiter.check(&["ip:2", "acct:b"]).is_ok());
        }
        assert!(limiter.check(&["ip:3", "acct:b"]).is_err());
    }
}
