//! Sessions, in one place: signing in (login issues a session token), authenticating a presented
//! token (session or API key: they share the `api_keys` table), signing out (revoking the
//! token), and deleting dead session tokens (at start and every hour). The dashboard keeps the
//! session token in its cookie (`dashboard::session`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::api_types::User;
use crate::manager::actor::Actor;
use crate::manager::credentials::{NewToken, blocking, secret_matches, verify_password};
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::state::AppState;

use super::users::UserRow;

/// `POST /auth/basic/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's email address (any case).
    pub email: String,
    /// Its password.
    pub password: String,
}

/// Checks a login and issues a session token. Unknown emails cost the same argon2 work as
/// wrong passwords, and both get the same 401.
pub async fn login(state: &AppState, request: Login, client: &str) -> ApiResult<String> {
    let account_key = format!("account:{}", request.email.to_lowercase());
    let client_key = format!("client:{client}");
    state
        .limiter
        .check(&[&account_key, &client_key])
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)")
            .bind(&request.email)
            .fetch_optional(&state.pool)
            .await?;
    let hash = row
        .as_ref()
        .map_or_else(|| state.dummy_hash.to_string(), |(_, hash)| hash.clone());
    let password = request.password;
    let verified = blocking(move || verify_password(&password, &hash)).await?;
    match row {
        Some((user_id, _)) if verified => {
            create_session(&state.pool, &user_id, state.config.session_ttl).await
        }
        _ => Err(ApiError::Unauthenticated("invalid email or password")),
    }
}

/// Stores a new token of `kind` for `user_id` and returns it.
pub(super) async fn issue(
    pool: &PgPool,
    user_id: &str,
    kind: &str,
    name: &str,
    ttl: Duration,
) -> ApiResult<(NewToken, DateTime<Utc>)> {
    let token = NewToken::generate()?;
    let ttl = chrono::Duration::from_std(ttl)
        .map_err(|error| ApiError::Internal(format!("token lifetime: {error}")))?;
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (id, secret_hash, user_id, kind, name, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6) RETURNING expires_at",
    )
    .bind(&token.id)
    .bind(&token.secret_hash[..])
    .bind(user_id)
    .bind(kind)
    .bind(name)
    .bind(ttl)
    .fetch_one(pool)
    .await?;
    Ok((token, expires_at))
}

/// Issues a session token (what login returns).
pub async fn create_session(pool: &PgPool, user_id: &str, ttl: Duration) -> ApiResult<String> {
    Ok(issue(pool, user_id, "session", "", ttl).await?.0.token)
}

/// Revokes the token the caller authenticated with (logout).
pub async fn revoke(pool: &PgPool, key_id: &str) -> ApiResult<()> {
    sqlx::query("UPDATE api_keys SET revoked = TRUE WHERE id = $1")
        .bind(key_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes the session tokens that can never authenticate again (expired, or revoked by a
/// logout or a password change); returns how many. API keys stay, dead or alive, so that their
/// owners and admins still see them listed until they delete them.
pub async fn purge_dead_sessions(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM api_keys WHERE kind = 'session' AND (revoked OR expires_at <= now())")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Resolves a presented token to its user: unknown, wrong, revoked and expired tokens are all
/// the same 401.
pub async fn authenticate(pool: &PgPool, id: &str, secret: &str) -> ApiResult<Actor> {
    #[derive(sqlx::FromRow)]
    struct KeyRow {
        secret_hash: Vec<u8>,
        live: bool,
        touch: bool,
        #[sqlx(flatten)]
        user: UserRow,
    }
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.secret_hash,
                (NOT k.revoked AND k.expires_at > now()) AS live,
                (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute') AS touch,
                u.id, u.email, u.name, u.role, u.created_at, u.updated_at
         FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let invalid = ApiError::Unauthenticated("invalid, expired or revoked token");
    let Some(row) = row else { return Err(invalid) };
    // Compare first, always, so the time taken does not depend on the key's state.
    let matches = secret_matches(secret, &row.secret_hash);
    if !(matches && row.live) {
        return Err(invalid);
    }
    if row.touch {
        // Last use is kept to the minute, so most requests do not write.
        sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
    }
    let user: User = row.user.try_into()?;
    Ok(Actor {
        user,
        key_id: id.to_owned(),
    })
}

/// How often the manager deletes dead session tokens (also once at start).
const SESSION_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes dead session tokens now and every [`SESSION_PURGE_INTERVAL`]: every login adds a
/// row, and without this the table only grows.
pub async fn purge_dead_sessions_forever(pool: PgPool) {
    let mut ticks = tokio::time::interval(SESSION_PURGE_INTERVAL);
    loop {
        ticks.tick().await;
        match purge_dead_sessions(&pool).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired and revoked session tokens"),
            Err(error) => {
                tracing::warn!(%error, "deleting expired session tokens failed; trying again in an hour");
            }
        }
    }
}
