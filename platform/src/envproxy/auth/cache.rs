//! A small time-bounded cache of the manager's answers (users by token, workspaces by id), so
//! that an IDE loading a hundred assets does not ask the manager a hundred times.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries live `ttl`; at most `capacity` are kept (expired ones are dropped first, then all).
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache; a zero `ttl` caches nothing.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value stored under `key` less than `ttl` ago.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: String, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets `key` (after the manager refused it).
    pub fn remove(&self, key: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TtlCache::new(Duration::from_millis(50), 2);
        cache.insert("a".into(), 1);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None);
        for (i, key) in ["x", "y", "z"].into_iter().enumerate() {
            cache.insert(key.into(), i);
        }
        let held = ["x", "y", "z"].iter().filter(|k| cache.get(k).is_some()).count();
        assert!(held <= 2);
        assert_eq!(cache.get("z"), Some(2));
        let off = TtlCache::new(Duration::ZERO, 2);
        off.insert("a".into(), 1);
        assert_eq!(off.get("a"), None);
    }
}
