//! The manager's objects as the API shows them, and the rules their fields follow.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users and sees every workspace.
    Admin,
    /// Sees and acts on their own workspaces only.
    Member,
}

impl Role {
    /// The value stored in the `users.role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Reads the `users.role` column.
    pub fn from_column(value: &str) -> ApiResult<Self> {
        match value {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(ApiError::Internal(format!(
                "unknown role {other:?} in the database"
            ))),
        }
    }
}

/// A user account (never with its password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Random identifier.
    pub id: String,
    /// Email address, unique regardless of case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
}

/// An API key's metadata (its secret is shown once, at creation).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    /// The key's id, the part of the token before the `-`.
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A workspace's lifecycle state.
pub mod states {
    /// Resources applied, waiting for the Deployment to become available.
    pub const CREATING: &str = "CREATING";
    /// The Deployment is available.
    pub const ON: &str = "ON";
    /// Scaled to zero.
    pub const OFF: &str = "OFF";
    /// Asked to scale to zero; the watch confirms.
    pub const STOPPING: &str = "STOPPING";
    /// Asked to scale back to one; the watch confirms.
    pub const STARTING: &str = "STARTING";
}

/// A workspace.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Workspace {
    /// Random identifier.
    pub id: String,
    /// The owning user's id.
    pub owner_id: String,
    /// DNS-1123 label, unique per owner.
    pub name: String,
    /// The container image.
    pub image: String,
    /// One of the [`states`] constants.
    pub state: String,
    /// CPU cores requested.
    pub cpu_cores: f32,
    /// Memory requested, in GB.
    pub memory_gb: f32,
    /// Home volume size, in GB.
    pub disk_gb: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its state or spec last changed.
    pub updated_at: DateTime<Utc>,
}

/// Checks that `name` is a DNS-1123 label (lowercase alphanumerics and `-`, 1 to 63 long,
/// starting and ending alphanumeric), as workspace names must be.
pub fn validate_dns_label(field: &'static str, name: &str) -> ApiResult<()> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must be a DNS-1123 label"),
            "1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        ))
    }
}

/// Checks an email address's shape (one `@`, a dot in the domain, no white space or controls).
pub fn validate_email(email: &str) -> ApiResult<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_email",
            "email is not a valid address",
            "expected local@domain.tld",
        ))
    }
}

/// Checks a display name: 1 to 128 characters, no control characters.
pub fn validate_display_name(name: &str) -> ApiResult<()> {
    let length = name.trim().chars().count();
    if (1..=128).contains(&length) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 128 characters without control characters",
            "field: name",
        ))
    }
}

/// Passwords so common that no length rule catches them.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "passw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "letmein1",
    "11111111",
    "00000000",
    "abcdefgh",
    "abc12345",
    "admin123",
    "welcome1",
    "changeme",
];

/// Refuses empty, short, repetitive, common or email-equal passwords (400 `weak_password`).
pub fn validate_password(password: &str, email: &str) -> ApiResult<()> {
    let weak = |reason: &str| {
        Err(ApiError::bad_request(
            "weak_password",
            "the password is too weak",
            reason.to_owned(),
        ))
    };
    let length = password.chars().count();
    if length < 10 {
        return weak("use at least 10 characters");
    }
    if length > 256 {
        return weak("use at most 256 characters");
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return weak("use at least 5 different characters");
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.iter().any(|common| lower.starts_with(common)) || lower == email.to_lowercase() {
        return weak("the password is too common or equals the email address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "dev", "my-ws-1", &"a".repeat(63)] {
            assert!(validate_dns_label("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
            "x'; DROP TABLE",
        ] {
            assert!(validate_dns_label("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse battery", "a@b.co").is_ok());
        for weak in [
            "",
            "short",
            "aaaaaaaaaaaa",
            "password123",
            "Password1234",
            "ababababab",
        ] {
            assert!(validate_password(weak, "a@b.co").is_err(), "{weak}");
        }
        assert!(validate_password("someone@example.com", "Someone@example.com").is_err());
    }

    #[test]
    fn emails() {
        assert!(validate_email("o'brien+x@example.co.uk").is_ok());
        for bad in ["", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.c", "a@c."] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
