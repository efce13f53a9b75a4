//! The manager's API objects (users, workspaces, API keys, the license summary), one set of types for both sides of the wire: the manager
//! serializes them, its client ([`crate::manager_client`], used by the envproxy and the
//! dashboard) deserializes them. Also the headers both sides name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The header Coder v1's clients send their token in (`Authorization: Bearer` works too).
pub const SESSION_TOKEN_HEADER: &str = "Session-Token";

/// The header the envproxy sends its own token in (the manager's `/api/private/envproxy` routes).
pub const ENVPROXY_TOKEN_HEADER: &str = "Coder-Envproxy-Token";

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

    /// Reads the `users.role` column (`None`: a value no role has).
    pub fn from_column(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// A user account (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
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

impl User {
    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// What `GET /api/v0/license` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
    /// `free` when no valid license is installed.
    pub tier: String,
    /// The license id, if one is installed.
    pub license_id: Option<String>,
    /// The customer, if a license is installed.
    pub account_name: Option<String>,
    /// Whether the license allows air-gapped installs.
    pub airgap: bool,
    /// Accounts that exist.
    pub seats_used: i64,
    /// Accounts the license allows (`None`: no limit, free tier without a license).
    pub seats_allowed: Option<u32>,
    /// End of term (RFC 3339), if a license is installed.
    pub expires_at: Option<String>,
    /// End of grace (RFC 3339): when the license stops working.
    pub grace_until: Option<String>,
    /// The grace-period warning, or why the newest uploaded license is not in force.
    pub warning: Option<String>,
    /// Whether the install is air-gapped (the manager's `--airgapped`, set by the chart).
    pub airgapped: bool,
    /// Why the platform is read-only (air-gapped without a license that allows it), or `None`.
    pub read_only: Option<String>,
}

/// `POST /api/private/envproxy/tickets/redeem`: the envproxy records a workspace ticket's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRedemption {
    /// The ticket's random nonce (lowercase hex).
    pub nonce: String,
    /// The ticket's expiry, Unix seconds.
    pub expires: i64,
}

/// The answer to a [`TicketRedemption`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRedeemed {
    /// True for exactly one redemption of a nonce: the first, while the ticket is unexpired.
    pub redeemed: bool,
}

/// Keyset pagination of the list endpoints (`GET /api/v0/users`, `/api/v0/workspaces`,
/// `/api/v0/api-keys`): `?limit=N` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and
/// `?after=CURSOR`. The body stays a bare JSON array of one page, in creation order; when more
/// rows follow, the answer carries `Link: <PATH?limit=N&after=CURSOR>; rel="next"` (a path on
/// the same server), and the last page carries none. The cursor is opaque: the position
/// (creation time, id) of the page's last row, so rows inserted meanwhile never shift a walk.
pub mod paging {
    /// Rows in a page when `limit` is not given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The largest `limit` accepted.
    pub const MAX_LIMIT: u32 = 1000;

    /// The `Link` header's value pointing at the next page, `path_and_query` (`/api/v0/...?...`).
    pub fn next_link(path_and_query: &str) -> String {
        format!("<{path_and_query}>; rel=\"next\"")
    }

    /// The next page's path and query in a `Link` header's value, if it names one. Only a path
    /// on the same server (starting with `/`, not `//`) is taken: a client following it never
    /// sends its token to another host.
    pub fn parse_next_link(value: &str) -> Option<&str> {
        value.split(',').find_map(|link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let next = params.split(';').any(|param| {
                let param = param.trim().replace(' ', "");
                param.eq_ignore_ascii_case("rel=\"next\"") || param.eq_ignore_ascii_case("rel=next")
            });
            (next && target.starts_with('/') && !target.starts_with("//")).then_some(target)
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn next_links_round_trip_and_other_hosts_are_not_followed() {
            let link = next_link("/api/v0/users?limit=5&after=00ab");
            assert_eq!(parse_next_link(&link), Some("/api/v0/users?limit=5&after=00ab"));
            assert_eq!(
                parse_next_link("</a?x=1>; rel=\"prev\", </b?x=2>; rel=next"),
                Some("/b?x=2")
            );
            for refused in [
                "<https://elsewhere.test/api/v0/users>; rel=\"next\"",
                "<//elsewhere.test/x>; rel=\"next\"",
                "</a>; rel=\"prev\"",
                "/a; rel=\"next\"",
                "",
            ] {
                assert_eq!(parse_next_link(refused), None, "{refused}");
            }
        }
    }
}
