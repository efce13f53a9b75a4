//! The service layer: what the API does, independent of HTTP. Handlers parse and authenticate,
//! then call one function here; these check authorization, validate, touch the database and the
//! cluster, and record admin actions in the audit log.
//!
//! Authorization rule: objects a caller may not see (another user's workspace, API key or
//! account) answer 404 `not_found`, exactly as objects that do not exist, so a denial leaks
//! nothing; endpoints reserved to admins answer a uniform 403 `forbidden` that names no object.

pub mod audit;
pub mod keys;
pub mod license;
pub mod sessions;
pub mod tickets;
pub mod users;
pub mod workspaces;

use super::error::ApiError;

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Maps a unique-constraint violation to a 409 with `code`; every other error as usual.
pub(crate) fn conflict_on_unique(code: &'static str, message: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
    let message = message.to_owned();
    move |error| match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            ApiError::Conflict { code, message }
        }
        _ => error.into(),
    }
}
