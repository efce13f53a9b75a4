//! User accounts: the first admin and the account management (signing in is
//! [`super::sessions`]).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::{PgPool, QueryBuilder};

use crate::api_types::{Role, User};
use crate::manager::actor::Actor;
use crate::manager::credentials::{blocking, hash_password, new_id, verify_password};
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::model::{validate_display_name, validate_email, validate_password};
use crate::manager::pagination::{Cursor, Page, PageRequest};

use super::{audit, conflict_on_unique};

/// Key of the transaction-scoped advisory lock that serialises first-admin creation across
/// replicas (an arbitrary constant: "coder" in ASCII).
const BOOTSTRAP_LOCK: i64 = 0x0063_6f64_6572;

/// The columns of `users` that the API shows, as a literal for `concat!`.
macro_rules! user_columns {
    () => {
        "id, email, name, role, created_at, updated_at"
    };
}

/// A `users` row as read (role still text).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = ApiError;

    fn try_from(row: UserRow) -> ApiResult<Self> {
        Ok(Self {
            role: Role::from_column(&row.role)
                .ok_or_else(|| ApiError::Internal(format!("unknown role {:?} in the database", row.role)))?,
            id: row.id,
            email: row.email,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// `POST /api/v0/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Email address, unique regardless of case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Initial password.
    pub password: String,
    /// Role (default: member).
    #[serde(default)]
    pub role: Option<Role>,
}

/// `PATCH /api/v0/users/{id}`: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New email address (admins only).
    pub email: Option<String>,
    /// New display name.
    pub name: Option<String>,
    /// New password. Changing one's own needs `current_password`; an admin resetting another
    /// account's does not. Either way every API key of the account (the caller's included) and
    /// every session but the caller's are revoked.
    pub password: Option<String>,
    /// The caller's current password: required to change one's own password.
    pub current_password: Option<String>,
    /// New role (admins only, not their own).
    pub role: Option<Role>,
}

/// Whether any admin account exists.
pub async fn admin_exists(pool: &PgPool) -> ApiResult<bool> {
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(pool)
        .await?;
    Ok(admins > 0)
}

/// Creates the first admin with `password` if no admin exists; returns whether it did. The
/// password is never generated here: it comes from the admin password Secret, so it is never
/// shown in a log.
pub async fn bootstrap_admin(pool: &PgPool, email: &str, password: &str) -> ApiResult<bool> {
    validate_email(email)?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *tx)
        .await?;
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&mut *tx)
        .await?;
    if admins > 0 {
        return Ok(false);
    }
    validate_password(password, email)?;
    let to_hash = password.to_owned();
    let hash = blocking(move || hash_password(&to_hash)).await??;
    let id = new_id()?;
    sqlx::query(
        "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, 'Admin', 'admin', $3)",
    )
    .bind(&id)
    .bind(email)
    .bind(&hash)
    .execute(&mut *tx)
    .await
    .map_err(conflict_on_unique(
        "email_taken",
        "the admin email belongs to an existing member",
    ))?;
    audit::record(
        &mut tx,
        "system",
        "user.create",
        &id,
        json!({ "role": "admin", "bootstrap": true }),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A page of the accounts, in creation order (admins only).
pub async fn list(pool: &PgPool, actor: &Actor, page: &PageRequest) -> ApiResult<Page<User>> {
    actor.require_admin()?;
    let mut query = QueryBuilder::new(concat!("SELECT ", user_columns!(), " FROM users WHERE TRUE"));
    page.push_keyset(&mut query);
    let rows: Vec<UserRow> = query.build_query_as().fetch_all(pool).await?;
    Page::cut(rows, page, |row| Cursor::of(row.created_at, &row.id)).try_map(User::try_from)
}

/// Resolves `me` to the caller's id.
fn resolve<'a>(actor: &'a Actor, id: &'a str) -> &'a str {
    if id == "me" { &actor.user.id } else { id }
}

/// One account: admins any, members only themselves (others are 404).
pub async fn get(pool: &PgPool, actor: &Actor, id: &str) -> ApiResult<User> {
    let id = resolve(actor, id);
    if !actor.is_admin() && id != actor.user.id {
        return Err(ApiError::NotFound("user"));
    }
    let row: Option<UserRow> =
        sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.ok_or(ApiError::NotFound("user"))?.try_into()
}

/// Creates an account (admins only).
pub async fn create(pool: &PgPool, actor: &Actor, request: CreateUser) -> ApiResult<User> {
    actor.require_admin()?;
    validate_email(&request.email)?;
    validate_display_name(&request.name)?;
    validate_password(&request.password, &request.email)?;
    let role = request.role.unwrap_or(Role::Member);
    let password = request.password;
    let hash = blocking(move || hash_password(&password)).await??;
    let id = new_id()?;
    let mut tx = pool.begin().await?;
    // Serialise account creation so that two requests cannot both take the last seat.
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    super::license::ensure_seat_available(&mut tx).await?;
    let row: UserRow = sqlx::query_as(concat!(
        "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING ",
        user_columns!()
    ))
    .bind(&id)
    .bind(&request.email)
    .bind(request.name.trim())
    .bind(role.as_str())
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict_on_unique(
        "email_taken",
        "an account with this email already exists",
    ))?;
    audit::record(
        &mut tx,
        &actor.user.id,
        "user.create",
        &id,
        json!({ "role": role.as_str() }),
    )
    .await?;
    tx.commit().await?;
    row.try_into()
}

/// Updates an account: members their own name and password; admins anything but their own role.
pub async fn update(pool: &PgPool, actor: &Actor, id: &str, request: UpdateUser) -> ApiResult<User> {
    let current = get(pool, actor, id).await?;
    let is_self = current.id == actor.user.id;
    if !actor.is_admin() && (request.email.is_some() || request.role.is_some()) {
        return Err(ApiError::Forbidden(
            "changing email or role requires the admin role",
        ));
    }
    if is_self && request.role.is_some_and(|role| role != current.role) {
        return Err(ApiError::bad_request(
            "own_role",
            "admins cannot change their own role",
            "field: role",
        ));
    }
    if let Some(email) = &request.email {
        validate_email(email)?;
    }
    if let Some(name) = &request.name {
        validate_display_name(name)?;
    }
    let hash = match request.password {
        Some(password) => {
            if is_self {
                check_current_password(pool, &current.id, request.current_password).await?;
            }
            validate_password(&password, request.email.as_deref().unwrap_or(&current.email))?;
            Some(blocking(move || hash_password(&password)).await??)
        }
        None => None,
    };
    let mut tx = pool.begin().await?;
    let row: UserRow = sqlx::query_as(concat!(
        "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name), role = COALESCE($4, role),
                password_hash = COALESCE($5, password_hash), updated_at = now()
         WHERE id = $1 RETURNING ",
        user_columns!()
    ))
    .bind(&current.id)
    .bind(&request.email)
    .bind(request.name.as_deref().map(str::trim))
    .bind(request.role.map(Role::as_str))
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(conflict_on_unique(
        "email_taken",
        "an account with this email already exists",
    ))?
    .ok_or(ApiError::NotFound("user"))?;
    if hash.is_some() {
        // A new password ends every API key of the account (a key made by whoever knew the old
        // password must not outlive it), the one the change was made with included, and every
        // session but the caller's: only a caller signed in with a session token stays signed in.
        sqlx::query(
            "UPDATE api_keys SET revoked = TRUE
             WHERE user_id = $1 AND NOT revoked AND NOT (id = $2 AND kind = 'session')",
        )
        .bind(&current.id)
        .bind(&actor.key_id)
        .execute(&mut *tx)
        .await?;
    }
    if actor.is_admin() {
        let changed = json!({
            "email": request.email.is_some(), "name": request.name.is_some(),
            "password": hash.is_some(), "role": request.role.map(Role::as_str),
        });
        audit::record(&mut tx, &actor.user.id, "user.update", &current.id, changed).await?;
    }
    tx.commit().await?;
    row.try_into()
}

/// Checks the caller's own current password before it is changed: a stolen session token alone
/// must not be enough to take the account over.
async fn check_current_password(pool: &PgPool, user_id: &str, given: Option<String>) -> ApiResult<()> {
    let Some(given) = given else {
        return Err(ApiError::bad_request(
            "current_password_required",
            "changing your own password needs your current password",
            "field: current_password",
        ));
    };
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if blocking(move || verify_password(&given, &hash)).await? {
        Ok(())
    } else {
        Err(ApiError::Forbidden("the current password is wrong"))
    }
}

/// Deletes an account and, by cascade, its tokens and workspace rows (admins only, not
/// themselves). The caller removes the account's workspaces from the cluster first.
pub async fn delete(pool: &PgPool, actor: &Actor, id: &str) -> ApiResult<()> {
    actor.require_admin()?;
    let id = resolve(actor, id);
    if id == actor.user.id {
        return Err(ApiError::bad_request(
            "delete_self",
            "admins cannot delete their own account",
            "",
        ));
    }
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::NotFound("user"));
    }
    audit::record(&mut tx, &actor.user.id, "user.delete", id, json!({})).await?;
    tx.commit().await?;
    Ok(())
}
