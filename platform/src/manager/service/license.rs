//! The installed license: the newest uploaded one that still verifies, its seat limit, and
//! uploads by admins. Licenses are verified exactly as `coder-install license verify` does
//! (same crate, same compiled-in keys); without a valid license the platform runs as free tier,
//! with no seat limit.

use coder_license::error::SALES_CONTACT;
use coder_license::{LicenseError, VerifiedLicense, check_airgap, verify};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::api_types::LicenseSummary;
use crate::manager::actor::Actor;
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::service::audit;

/// `POST /api/v0/license`: the license file's content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadLicense {
    /// The license token, as `license-issuer issue` writes it.
    pub license: String,
}

/// Why an air-gapped platform is read-only: no license in force allows air-gapped use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirgapRestriction {
    /// The problem's stable kind: `no_license`, or the license error's kind (`expired`,
    /// `airgap_not_allowed_for_tier`, `airgap_feature_missing`, ...).
    pub kind: &'static str,
    /// What is wrong with the license in force.
    pub reason: String,
}

impl AirgapRestriction {
    /// The whole message: what is wrong, what still works, and what to do.
    pub fn message(&self) -> String {
        format!(
            "this installation is air-gapped and {}; it is read-only (sign-in and reading work, \
             changes are refused) until an admin uploads an enterprise license with the air-gap \
             feature (dashboard: License, or POST /api/v0/license)",
            self.reason
        )
    }
}

impl From<AirgapRestriction> for ApiError {
    fn from(restriction: AirgapRestriction) -> Self {
        ApiError::AirgapLicenseRequired {
            message: restriction.message(),
            detail: restriction.kind.to_owned(),
        }
    }
}

/// Whether the license in force allows air-gapped use (the same rule as `coder-install apply
/// --bundle`: [`check_airgap`] on a license that verifies now); if not, why.
pub async fn airgap_restriction(executor: impl sqlx::PgExecutor<'_>) -> ApiResult<Option<AirgapRestriction>> {
    let refusal = |error: LicenseError| AirgapRestriction {
        kind: error.kind().as_str(),
        reason: format!("the installed license does not allow it: {error}"),
    };
    Ok(match newest(executor).await? {
        None => Some(AirgapRestriction {
            kind: "no_license",
            reason: format!(
                "no license is installed (the free tier), and air-gapped installs need an \
                 enterprise license with the air-gap feature: contact {SALES_CONTACT}"
            ),
        }),
        Some(Err(error)) => Some(refusal(error)),
        Some(Ok(license)) => check_airgap(&license.claims).err().map(refusal),
    })
}

/// The newest stored license token.
async fn newest_token(executor: impl sqlx::PgExecutor<'_>) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT raw_token FROM licenses ORDER BY id DESC LIMIT 1")
        .fetch_optional(executor)
        .await
}

/// The newest stored license and whether it verifies now.
async fn newest(
    executor: impl sqlx::PgExecutor<'_>,
) -> ApiResult<Option<Result<VerifiedLicense, LicenseError>>> {
    Ok(newest_token(executor)
        .await?
        .map(|token| verify(token.trim().as_bytes())))
}

/// Verifies a license for installation; a refusal is a 400 `invalid_license` with its kind.
fn verified(token: &str) -> ApiResult<VerifiedLicense> {
    verify(token.as_bytes()).map_err(|error| ApiError::BadRequest {
        code: "invalid_license",
        message: error.to_string(),
        detail: error.kind().as_str().to_owned(),
    })
}

/// The license summary, seats included; `airgapped` is the install's mode.
pub async fn summary(pool: &PgPool, airgapped: bool) -> ApiResult<LicenseSummary> {
    let seats_used: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?;
    let read_only = if airgapped {
        airgap_restriction(pool)
            .await?
            .map(|restriction| restriction.message())
    } else {
        None
    };
    let free = |warning: Option<String>| LicenseSummary {
        tier: "free".to_owned(),
        license_id: None,
        account_name: None,
        airgap: false,
        seats_used,
        seats_allowed: None,
        expires_at: None,
        grace_until: None,
        warning,
        airgapped,
        read_only: read_only.clone(),
    };
    Ok(match newest(pool).await? {
        None => free(None),
        Some(Err(error)) => free(Some(format!("the installed license is not in force: {error}"))),
        Some(Ok(license)) => LicenseSummary {
            tier: license.claims.tier.as_str().to_owned(),
            license_id: Some(license.claims.license_id.clone()),
            account_name: Some(license.claims.account_name.clone()),
            airgap: license.claims.features.airgap,
            seats_used,
            seats_allowed: Some(license.claims.features.user_limit),
            expires_at: Some(coder_license::time::format_unix_time(
                license.claims.license_expires,
            )),
            grace_until: Some(coder_license::time::format_unix_time(license.claims.grace_until)),
            warning: license.grace_warning(),
            airgapped,
            read_only,
        },
    })
}

/// Installs a new license (admins only), after verifying it; returns the new summary.
pub async fn upload(
    pool: &PgPool,
    airgapped: bool,
    actor: &Actor,
    request: UploadLicense,
) -> ApiResult<LicenseSummary> {
    actor.require_admin()?;
    let token = request.license.trim();
    let license = verified(token)?;
    store(pool, token, &license, &actor.user.id, "license.upload").await?;
    summary(pool, airgapped).await
}

/// Stores a verified license as the newest one, with its audit record, in one transaction.
async fn store(
    pool: &PgPool,
    token: &str,
    license: &VerifiedLicense,
    actor_id: &str,
    action: &str,
) -> ApiResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO licenses (raw_token) VALUES ($1)")
        .bind(token)
        .execute(&mut *tx)
        .await?;
    let details =
        json!({ "tier": license.claims.tier.as_str(), "user_limit": license.claims.features.user_limit });
    audit::record(&mut tx, actor_id, action, &license.claims.license_id, details).await?;
    tx.commit().await?;
    Ok(())
}

/// What start-up did with the mounted license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountedLicense {
    /// It is the newest stored license already: nothing to do.
    AlreadyInstalled,
    /// It was issued after the newest stored license (or that one is no longer in force), so it
    /// was stored and is now the license in force.
    Installed,
    /// A license issued later (an admin's upload) is in force: the mounted one was left out,
    /// so a restart never replaces a newer license with the Secret's older one.
    OlderThanInstalled {
        /// The mounted license's id and issue time (Unix seconds).
        mounted: (String, i64),
        /// The stored license's id and issue time (Unix seconds).
        installed: (String, i64),
    },
}

/// Installs the license the deployment mounts when it was issued (`iat`) after the newest
/// stored one, or when the stored one is no longer in force. A mounted license that does not
/// verify is refused with the reason (the caller logs it and starts anyway).
pub async fn install_at_start(pool: &PgPool, token: &str) -> ApiResult<MountedLicense> {
    let token = token.trim();
    let license = verified(token)?;
    if let Some(warning) = license.grace_warning() {
        tracing::warn!("{warning}");
    }
    if let Some(stored) = newest_token(pool).await? {
        let stored = stored.trim();
        if stored == token {
            return Ok(MountedLicense::AlreadyInstalled);
        }
        // A stored license still in force that was issued at or after the mounted one wins.
        if let Ok(in_force) = verify(stored.as_bytes())
            && in_force.claims.iat >= license.claims.iat
        {
            return Ok(MountedLicense::OlderThanInstalled {
                mounted: (license.claims.license_id, license.claims.iat),
                installed: (in_force.claims.license_id, in_force.claims.iat),
            });
        }
    }
    store(pool, token, &license, "system", "license.install").await?;
    Ok(MountedLicense::Installed)
}

/// Refuses a new account when the license in force has no seat left.
pub async fn ensure_seat_available(connection: &mut sqlx::PgConnection) -> ApiResult<()> {
    let Some(Ok(license)) = newest(&mut *connection).await? else {
        return Ok(());
    };
    let limit = license.claims.features.user_limit;
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *connection)
        .await?;
    if used >= i64::from(limit) {
        return Err(ApiError::Conflict {
            code: "user_limit_reached",
            message: format!(
                "the license allows {limit} users and {used} exist; delete an account or upload a license with more seats"
            ),
        });
    }
    Ok(())
}
