//! `coder-service migrate`: up on an empty database, idempotent, and serialised across replicas.

use std::time::Duration;

use coder_service::db;
use coder_testenv::Postgres;
use sqlx::migrate::Migrate;
use sqlx::{Connection, PgPool};

async fn applied_versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .expect("ledger")
}

fn embedded_versions() -> Vec<i64> {
    db::MIGRATOR.iter().map(|migration| migration.version).collect()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_a_rerun_is_a_no_op() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let pool = db::DbConfig::from_url(&url).pool().expect("pool");

    assert!(
        !db::migrations_current(&pool).await.expect("query"),
        "nothing applied yet"
    );
    db::migrate(&pool).await.expect("first run");
    assert!(db::migrations_current(&pool).await.expect("query"));
    let first = applied_versions(&pool).await;
    assert_eq!(first, embedded_versions());
    db::migrate(&pool).await.expect("second run");
    assert_eq!(applied_versions(&pool).await, first, "a rerun applies nothing");
    // A newer release's migration (the schema after a rollback) does not stop the older one.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer release', TRUE, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .expect("a newer release's migration");
    db::migrate(&pool).await.expect("a run after a rollback");
    assert!(db::migrations_current(&pool).await.expect("query"));

    for table in [
        "users",
        "api_keys",
        "workspaces",
        "licenses",
        "audit_log",
        "used_workspace_tickets",
    ] {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(table)
            .fetch_one(&pool)
            .await
            .expect("query");
        assert_eq!(exists.as_deref(), Some(table));
    }
    // Emails are unique regardless of case, and only argon2id PHC strings are accepted.
    let insert =
        "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, 'n', 'member', $3)";
    sqlx::query(insert)
        .bind("a")
        .bind("Ann@Example.com")
        .bind("$argon2id$v=19$x")
        .execute(&pool)
        .await
        .expect("insert");
    let duplicate = sqlx::query(insert)
        .bind("b")
        .bind("ann@example.COM")
        .bind("$argon2id$v=19$x")
        .execute(&pool)
        .await;
    assert!(duplicate.is_err(), "case-insensitive duplicate accepted");
    let plain = sqlx::query(insert)
        .bind("c")
        .bind("c@example.com")
        .bind("hunter2")
        .execute(&pool)
        .await;
    assert!(plain.is_err(), "a non-argon2id hash accepted");
}

#[tokio::test]
async fn two_concurrent_migrate_processes_both_succeed_and_apply_once() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
            .args(["migrate", "--pg-url", &url])
            .env("RUST_LOG", "warn")
            .output()
    };
    let (a, b) = tokio::join!(run(), run());
    for output in [a.expect("run a"), b.expect("run b")] {
        assert!(
            output.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pool = PgPool::connect(&url).await.expect("connect");
    assert_eq!(applied_versions(&pool).await, embedded_versions());
}

#[tokio::test]
async fn a_migration_run_waits_for_the_replica_holding_the_lock() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    // Another "replica" holds the migrator's advisory lock, as it does while migrating.
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    holder.lock().await.expect("take the migration lock");

    let pool = db::DbConfig::from_url(&url).pool().expect("pool");
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { db::migrate(&pool).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "the second run must wait for the lock");
    let blocked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            .fetch_one(&mut holder)
            .await
            .expect("pg_locks");
    assert_eq!(blocked, 1, "the waiting run blocks on the advisory lock");
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('users')::text")
        .fetch_one(&mut holder)
        .await
        .expect("query");
    assert_eq!(table, None, "nothing is applied while the lock is held");

    holder.unlock().await.expect("release");
    waiting.await.expect("join").expect("the waiting run completes");
    assert!(db::migrations_current(&pool).await.expect("query"));
}

/// A database that is not there yet (a new install's PostgreSQL initialising itself) is waited
/// for: the address refuses connections for two seconds, then leads to the real server.
#[tokio::test]
async fn the_migration_step_waits_for_a_database_that_comes_up_later() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let real_port = postgres.port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let opens_at = std::time::Instant::now() + Duration::from_secs(2);
    tokio::spawn(async move {
        tokio::time::sleep_until(opens_at.into()).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", real_port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let late_url = url.replace(&format!(":{real_port}/"), &format!(":{port}/"));
    assert_ne!(late_url, url, "the URL names the port: {url}");
    let pool = db::DbConfig::from_url(&late_url).pool().expect("pool");

    db::wait_until_reachable(&pool, Duration::from_secs(30))
        .await
        .expect("reachable in time");
    assert!(
        std::time::Instant::now() >= opens_at,
        "it answered before it existed"
    );
    db::migrate(&pool).await.expect("migrate");
    assert!(db::migrations_current(&pool).await.expect("query"));

    // Never there: the wait ends with the last error, after the time given.
    let absent = db::DbConfig::from_url(url.replace(&format!(":{real_port}/"), ":1/"))
        .pool()
        .expect("pool");
    let started = std::time::Instant::now();
    let error = db::wait_until_reachable(&absent, Duration::from_secs(2))
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() >= Duration::from_secs(2), "gave up early");
    assert!(error.to_string().contains("database"), "{error}");
}
