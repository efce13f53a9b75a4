//! Open WebSocket sessions: counted per user (for `--max-connections-per-user`) and in total
//! (for the drain at shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    per_user: Mutex<HashMap<String, usize>>,
    changed: Notify,
}

/// One open session; dropping it frees its slot.
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    user: String,
}

impl Sessions {
    /// Takes a slot for `user` unless they hold `limit` already.
    pub fn acquire(self: &Arc<Self>, user: &str, limit: usize) -> Option<SessionSlot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_user.entry(user.to_owned()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            sessions: Arc::clone(self),
            user: user.to_owned(),
        })
    }

    /// Open sessions in total.
    pub fn total(&self) -> usize {
        self.per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// Waits until no session is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.changed.notified();
            if self.total() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut per_user = self.sessions.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_user.remove(&self.user);
            }
        }
        drop(per_user);
        self.sessions.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_user_and_freed_on_drop() {
        let sessions = Arc::new(Sessions::default());
        let a1 = sessions.acquire("a", 2).expect("first");
        let _a2 = sessions.acquire("a", 2).expect("second");
        assert!(sessions.acquire("a", 2).is_none());
        let _b = sessions.acquire("b", 2).expect("another user");
        assert_eq!(sessions.total(), 3);
        drop(a1);
        assert!(sessions.acquire("a", 2).is_some());
    }
}
