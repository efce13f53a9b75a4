//! API keys: issuing, listing and revoking them (sessions, and authenticating either kind of
//! token, are [`super::sessions`]).

use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use sqlx::{PgPool, QueryBuilder};

use crate::api_types::ApiKey;
use crate::manager::actor::Actor;
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::model::validate_display_name;
use crate::manager::pagination::{Cursor, Page, PageRequest};

use super::sessions::issue;

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

/// A page of the caller's live API keys (not session tokens), in creation order.
pub async fn list(pool: &PgPool, actor: &Actor, page: &PageRequest) -> ApiResult<Page<ApiKey>> {
    let mut query = QueryBuilder::new(
        "SELECT id, name, created_at, expires_at, last_used_at FROM api_keys
         WHERE kind = 'api_key' AND NOT revoked AND expires_at > now() AND user_id = ",
    );
    query.push_bind(&actor.user.id);
    page.push_keyset(&mut query);
    let keys: Vec<ApiKey> = query.build_query_as().fetch_all(pool).await?;
    Ok(Page::cut(keys, page, |key| Cursor::of(key.created_at, &key.id)))
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
