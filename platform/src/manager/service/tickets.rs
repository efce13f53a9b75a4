//! Workspace tickets, single-use across every envproxy replica and restart. The envproxy seals
//! its tickets itself (`envproxy::workspace_origin::ticket`) and never reaches PostgreSQL;
//! before it takes one it asks the manager to record the ticket's nonce ([`redeem`]). The
//! insert-if-absent on the primary key makes exactly one redemption of a nonce win, whichever
//! replica asks and however many ask at once.
//!
//! A row is kept until [`CLOCK_SKEW_MARGIN_SECS`] after its ticket's expiry (the envproxy's clock
//! sets the expiry, the database's decides when a row goes), then deleted by a later
//! redemption, [`PURGE_BATCH`] rows at a time. No unexpired row is ever deleted, and nothing
//! bounds the table but time: a ticket lives a minute.

use sqlx::PgPool;

use crate::api_types::TicketRedemption;
use crate::manager::error::{ApiError, ApiResult};

/// How far past its expiry a ticket's row is kept: clocks that disagree by less cannot make a
/// ticket the envproxy still takes look expired to the database.
pub const CLOCK_SKEW_MARGIN_SECS: i32 = 300;
/// The latest expiry accepted, from now (the envproxy's tickets live a minute): it bounds how
/// long a row can stay.
pub const MAX_TICKET_LIFETIME_SECS: i64 = 600;
/// Expired rows deleted by one redemption at most (each redemption adds one).
const PURGE_BATCH: i64 = 100;
/// The longest nonce accepted (the envproxy's are 32 hex digits).
const MAX_NONCE_LEN: usize = 128;

/// Records the use of the ticket `request` names; `true` when this call is the first (`false`:
/// used already, or expired longer ago than the margin, when its row could be gone). The
/// envproxy checks the expiry itself, on its own clock. A database that cannot record the use is
/// an error ([`ApiError::DatabaseUnavailable`]): the caller must refuse the ticket.
pub async fn redeem(pool: &PgPool, request: &TicketRedemption) -> ApiResult<bool> {
    check(request)?;
    purge_expired(pool).await?;
    let first: Option<String> = sqlx::query_scalar(
        "INSERT INTO used_workspace_tickets (nonce, expires_at)
         SELECT $1, to_timestamp($2)
         WHERE to_timestamp($2) > now() - make_interval(secs => $3)
         ON CONFLICT (nonce) DO NOTHING
         RETURNING nonce",
    )
    .bind(&request.nonce)
    .bind(request.expires)
    .bind(f64::from(CLOCK_SKEW_MARGIN_SECS))
    .fetch_optional(pool)
    .await?;
    Ok(first.is_some())
}

/// Refuses a malformed nonce and an expiry further away than [`MAX_TICKET_LIFETIME_SECS`].
fn check(request: &TicketRedemption) -> ApiResult<()> {
    let nonce = &request.nonce;
    let well_formed = !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_body",
            "invalid ticket nonce",
            format!("nonce: 1 to {MAX_NONCE_LEN} lowercase hex digits"),
        ));
    }
    if request.expires > now_secs().saturating_add(MAX_TICKET_LIFETIME_SECS) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "ticket expiry too far away",
            format!("expires: at most {MAX_TICKET_LIFETIME_SECS} seconds from now"),
        ));
    }
    Ok(())
}

/// Deletes up to [`PURGE_BATCH`] rows whose tickets expired more than the margin ago.
async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM used_workspace_tickets WHERE nonce IN (
             SELECT nonce FROM used_workspace_tickets
             WHERE expires_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(f64::from(CLOCK_SKEW_MARGIN_SECS))
    .bind(PURGE_BATCH)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Now, Unix seconds (the manager's clock).
fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redemption(nonce: &str, expires: i64) -> TicketRedemption {
        TicketRedemption {
            nonce: nonce.to_owned(),
            expires,
        }
    }

    #[test]
    fn nonces_are_hex_and_expiries_near() {
        let soon = now_secs() + 60;
        assert!(check(&redemption("00ff", soon)).is_ok());
        assert!(
            check(&redemption("00ff", now_secs() - 3600)).is_ok(),
            "expired: not refused here"
        );
        for bad in ["", "00FF", "not hex", &"a".repeat(MAX_NONCE_LEN + 1)] {
            assert!(check(&redemption(bad, soon)).is_err(), "{bad}");
        }
        assert!(check(&redemption("00ff", now_secs() + MAX_TICKET_LIFETIME_SECS + 60)).is_err());
    }
}
