//! The audit log of admin actions.

use serde_json::Value;

/// Records that `actor_id` did `action` to `target`, in the caller's transaction.
pub async fn record(
    connection: &mut sqlx::PgConnection,
    actor_id: &str,
    action: &str,
    target: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (actor_id, action, target, details) VALUES ($1, $2, $3, $4)")
        .bind(actor_id)
        .bind(action)
        .bind(target)
        .bind(details)
        .execute(connection)
        .await?;
    Ok(())
}
