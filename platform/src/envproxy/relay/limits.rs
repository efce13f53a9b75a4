//! Open WebSocket sessions: counted per user (`--max-connections-per-user`), in total
//! (`--max-connections`, and for the drain at shutdown), and against the memory budget
//! (`--memory-budget`): each session reserves its worst-case memory when it opens and gives it
//! back when it ends, so the sessions together can never hold more than the budget, whatever
//! their users send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::upstream::{IO_BUFFER_BYTES, max_write_buffer};

/// What a session holds besides its messages: the two WebSockets' read and write buffers
/// (`IO_BUFFER_BYTES` each), the upgraded connection's and the relay task's state.
pub const SESSION_BASE_BYTES: usize = 4 * IO_BUFFER_BYTES + 32 * 1024;

/// The most memory one session can hold: in each direction one message (the relay reads the
/// next only after the last was written), which exists whole while it is copied into the other
/// side's write buffer (up to [`max_write_buffer`]); plus [`SESSION_BASE_BYTES`].
pub fn session_bytes(max_message_bytes: usize) -> usize {
    let per_direction = max_message_bytes.saturating_add(max_write_buffer(max_message_bytes));
    per_direction.saturating_mul(2).saturating_add(SESSION_BASE_BYTES)
}

/// The limits sessions are admitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions one user may hold.
    pub per_user: usize,
    /// Sessions in all.
    pub total: usize,
    /// The memory all sessions may hold together.
    pub budget_bytes: usize,
    /// What each session reserves ([`session_bytes`]).
    pub session_bytes: usize,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user holds `per_user` sessions already (429).
    PerUser,
    /// The proxy holds `total` sessions, or another would not fit in the budget (503).
    Capacity,
}

#[derive(Debug, Default)]
struct State {
    per_user: HashMap<String, usize>,
    total: usize,
    reserved_bytes: usize,
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    state: Mutex<State>,
    changed: Notify,
}

/// One open session; dropping it frees its slot and its reservation.
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    user: String,
    bytes: usize,
}

impl Sessions {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for `user` and reserves its memory, unless a limit is reached.
    pub fn acquire(self: &Arc<Self>, user: &str, limits: &Limits) -> Result<SessionSlot, Refusal> {
        let mut state = self.state();
        if state.per_user.get(user).copied().unwrap_or(0) >= limits.per_user {
            return Err(Refusal::PerUser);
        }
        let reserved = state.reserved_bytes.saturating_add(limits.session_bytes);
        if state.total >= limits.total || reserved > limits.budget_bytes {
            return Err(Refusal::Capacity);
        }
        *state.per_user.entry(user.to_owned()).or_insert(0) += 1;
        state.total += 1;
        state.reserved_bytes = reserved;
        Ok(SessionSlot {
            sessions: Arc::clone(self),
            user: user.to_owned(),
            bytes: limits.session_bytes,
        })
    }

    /// Open sessions in total.
    pub fn total(&self) -> usize {
        self.state().total
    }

    /// The memory the open sessions have reserved.
    pub fn reserved_bytes(&self) -> usize {
        self.state().reserved_bytes
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
        let mut state = self.sessions.state();
        if let Some(count) = state.per_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_user.remove(&self.user);
            }
        }
        state.total = state.total.saturating_sub(1);
        state.reserved_bytes = state.reserved_bytes.saturating_sub(self.bytes);
        drop(state);
        self.sessions.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_user: usize, total: usize, sessions_in_budget: usize) -> Limits {
        let session_bytes = session_bytes(1024 * 1024);
        Limits {
            per_user,
            total,
            budget_bytes: session_bytes * sessions_in_budget + session_bytes / 2,
            session_bytes,
        }
    }

    #[test]
    fn slots_are_limited_per_user_and_freed_on_drop() {
        let sessions = Arc::new(Sessions::default());
        let limits = limits(2, 100, 100);
        let a1 = sessions.acquire("a", &limits).expect("first");
        let _a2 = sessions.acquire("a", &limits).expect("second");
        assert_eq!(sessions.acquire("a", &limits).err(), Some(Refusal::PerUser));
        let _b = sessions.acquire("b", &limits).expect("another user");
        assert_eq!(sessions.total(), 3);
        drop(a1);
        assert!(sessions.acquire("a", &limits).is_ok());
    }

    #[test]
    fn the_total_and_the_memory_budget_bound_every_user_together() {
        let sessions = Arc::new(Sessions::default());
        // The budget fits three sessions and a half; the total allows ten.
        let by_budget = limits(64, 10, 3);
        let held: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|user| sessions.acquire(user, &by_budget).expect("fits"))
            .collect();
        assert_eq!(sessions.acquire("d", &by_budget).err(), Some(Refusal::Capacity));
        assert_eq!(sessions.reserved_bytes(), 3 * by_budget.session_bytes);
        assert!(sessions.reserved_bytes() <= by_budget.budget_bytes);
        drop(held);
        assert_eq!(sessions.reserved_bytes(), 0);
        let by_count = limits(64, 2, 100);
        let _one = sessions.acquire("a", &by_count).expect("one");
        let _two = sessions.acquire("b", &by_count).expect("two");
        assert_eq!(sessions.acquire("c", &by_count).err(), Some(Refusal::Capacity));
    }

    #[test]
    fn a_session_reserves_about_four_messages() {
        let bytes = session_bytes(1024 * 1024);
        assert!(
            (4 * 1024 * 1024..4 * 1024 * 1024 + 256 * 1024).contains(&bytes),
            "{bytes}"
        );
    }
}
