//! Rows written straight into the manager's tables (the schema the migrations made), many in one
//! statement: users, workspaces and API keys at a site's size in a second, for the pagination
//! tests and `benches/manager.rs` (which includes this file). Rows made by one call are created
//! two per millisecond, going back from now: pairs share a `created_at` (the id orders them).

use sqlx::PgPool;

/// A password hash the `users` table accepts for accounts nobody logs in to.
pub const NO_LOGIN_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm8tbG9naW4$bm8tbG9naW4";

/// Adds `count` members, `<prefix><n>@example.com` (n from 1), each with `password_hash`; their
/// ids in creation order.
pub async fn users(pool: &PgPool, prefix: &str, count: i32, password_hash: &str) -> Vec<String> {
    insert(
        pool,
        "INSERT INTO users (id, email, name, role, password_hash, created_at)
         SELECT substr(md5(random()::text || n), 1, 24), $1 || n || '@example.com', 'User ' || n,
                'member', $2, now() - (n / 2) * interval '1 ms'
         FROM generate_series(1, $3) AS n",
        [prefix, password_hash],
        count,
    )
    .await;
    sqlx::query_scalar("SELECT id FROM users WHERE email LIKE $1 || '%' ORDER BY created_at, id")
        .bind(prefix)
        .fetch_all(pool)
        .await
        .expect("seeded users")
}

/// Adds `per_owner` workspaces (`<prefix>-<n>`, state `OFF`) to each of `owners`.
pub async fn workspaces(pool: &PgPool, owners: &[String], prefix: &str, per_owner: i32) {
    sqlx::query(
        "INSERT INTO workspaces (id, owner_id, name, image, state, cpu_cores, memory_gb, disk_gb, created_at)
         SELECT substr(md5(random()::text || owner || n), 1, 24), owner, $2 || '-' || n,
                'codercom/enterprise-base:ubuntu', 'OFF', 1, 2, 10,
                now() - ((row_number() OVER ()) / 2) * interval '1 ms'
         FROM unnest($1::text[]) AS owner CROSS JOIN generate_series(1, $3) AS n",
    )
    .bind(owners)
    .bind(prefix)
    .bind(per_owner)
    .execute(pool)
    .await
    .expect("seed workspaces");
}

/// Adds `count` live API keys (`<prefix><n>`) to `user_id`.
pub async fn api_keys(pool: &PgPool, user_id: &str, prefix: &str, count: i32) {
    insert(
        pool,
        "INSERT INTO api_keys (id, secret_hash, user_id, kind, name, created_at, expires_at)
         SELECT substr(md5(random()::text || n), 1, 10), sha256(convert_to(random()::text, 'UTF8')),
                $1, 'api_key', $2 || n, now() - (n / 2) * interval '1 ms', now() + interval '30 days'
         FROM generate_series(1, $3) AS n",
        [user_id, prefix],
        count,
    )
    .await;
}

/// Runs one seeding `INSERT` whose `$1`, `$2` are `texts` and `$3` the row count.
async fn insert(pool: &PgPool, sql: &'static str, texts: [&str; 2], count: i32) {
    sqlx::query(sql)
        .bind(texts[0])
        .bind(texts[1])
        .bind(count)
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("seeding: {error}\n{sql}"));
}
