//! Session tokens and API keys: issuing, authenticating, listing and revoking.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::manager::auth::{Actor, NewToken, secret_matches};
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::model::{ApiKey, User, validate_display_name};

use super::users::UserRow;

/// How long an API key lives unless asked otherwise.
const DEFAULT_API_KEY_DAYS: u32 = 365;

/// `POST /api/v0/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A name to recognise the key by.
    pub name: String,
    /// Lifetime in days (1 to 3650; default 365).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Stores a new token of `kind` for `user_id` and returns it.
async fn issue(
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

/// Issues an API key for the caller; the token is in the answer only.
pub async fn create_api_key(
    pool: &PgPool,
    actor: &Actor,
    request: CreateApiKey,
) -> ApiResult<(ApiKey, String)> {
    validate_display_name(&request.name)?;
    let days = request.expires_in_days.unwrap_or(DEFAULT_API_KEY_DAYS);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_expiry",
            "expires_in_days must be between 1 and 3650",
            "field: expires_in_days",
        ));
    }
    let ttl = Duration::from_secs(u64::from(days) * 86_400);
    let (token, expires_at) = issue(pool, &actor.user.id, "api_key", &request.name, ttl).await?;
    let key = ApiKey {
        id: token.id.clone(),
        name: request.name,
        created_at: Utc::now(),
        expires_at,
        last_used_at: None,
    };
    Ok((key, token.token))
}

/// The caller's live API keys (not session tokens).
pub async fn list(pool: &PgPool, actor: &Actor) -> ApiResult<Vec<ApiKey>> {
    let keys: Vec<ApiKey> = sqlx::query_as(
        "SELECT id, name, created_at, expires_at, last_used_at FROM api_keys
         WHERE user_id = $1 AND kind = 'api_key' AND NOT revoked AND expires_at > now()
         ORDER BY created_at",
    )
    .bind(&actor.user.id)
    .fetch_all(pool)
    .await?;
    Ok(keys)
}

/// Revokes one of the caller's API keys; others' keys are 404.
pub async fn delete(pool: &PgPool, actor: &Actor, id: &str) -> ApiResult<()> {
    let revoked = sqlx::query("UPDATE api_keys SET revoked = TRUE WHERE id = $1 AND user_id = $2 AND kind = 'api_key' AND NOT revoked")
        .bind(id)
        .bind(&actor.user.id)
        .execute(pool)
        .await?
        .rows_affected();
    if revoked == 0 {
        Err(ApiError::NotFound("api key"))
    } else {
        Ok(())
    }
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
