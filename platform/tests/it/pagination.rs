//! The list endpoints' pages (`?limit=N&after=CURSOR`, `Link: <...>; rel="next"`): a walk sees
//! every row once, in creation order, with rows inserted between its pages; limits, cursors and
//! unknown parameters are checked; the queries use their indexes at size (their plans are printed:
//! `--no-capture`); the typed client and
//! the dashboard follow the pages and list every row.

use coder_service::api_types::User;
use coder_service::api_types::paging::parse_next_link;
use coder_service::cli::DashboardArgs;
use coder_service::manager_client::{Caller, ManagerClient};
use reqwest::StatusCode;
use reqwest::header::LINK;
use serde_json::Value;
use sqlx::PgPool;

use crate::dashboard::start_dashboard;
use crate::harness::{Env, assert_error};
use crate::seed;

/// One page: its rows' ids and the next page's path, if any.
async fn page(env: &Env, path: &str, token: &str) -> (Vec<String>, Option<String>) {
    let response = env
        .http
        .get(format!("{}{path}", env.base))
        .header("Session-Token", token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let next = response.headers().get(LINK).map(|value| {
        parse_next_link(value.to_str().expect("ascii"))
            .expect("a next link")
            .to_owned()
    });
    let rows: Vec<Value> = response.json().await.expect("a JSON array");
    let ids = rows
        .iter()
        .map(|row| row["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, next)
}

/// Walks a list `limit` rows at a time, calling `between` after each page but the last; every
/// page holds `limit` rows but the last, which holds at most that and no link.
async fn walk(
    env: &Env,
    path: &str,
    token: &str,
    limit: usize,
    mut between: impl AsyncFnMut(),
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next = Some(format!("{path}?limit={limit}"));
    while let Some(path) = next {
        let (ids, following) = page(env, &path, token).await;
        assert!(ids.len() <= limit, "{path}: {} rows", ids.len());
        if following.is_some() {
            assert_eq!(ids.len(), limit, "{path}: a page before the last is full");
            between().await;
        }
        seen.extend(ids);
        next = following;
    }
    seen
}

/// The ids `sql` selects, with `bind` as `$1` if given.
async fn ids_in_order(pool: &PgPool, sql: &'static str, bind: Option<&str>) -> Vec<String> {
    let mut query = sqlx::query_scalar(sql);
    if let Some(value) = bind {
        query = query.bind(value);
    }
    query.fetch_all(pool).await.expect("ids")
}

#[tokio::test]
async fn paginated_lists_walk_every_row_once_while_rows_are_inserted() {
    let env = Env::start().await;
    let pool = PgPool::connect(&env.database_url).await.expect("database");
    let admin_id = env.get("/api/v0/users/me", &env.admin_token).await.1["id"]
        .as_str()
        .expect("admin id")
        .to_owned();
    let (member_id, member) = env.create_member("walker@example.com").await;
    let owners = seed::users(&pool, "owner", 23, seed::NO_LOGIN_HASH).await;
    seed::workspaces(&pool, &owners, "ws", 2).await;
    seed::workspaces(&pool, std::slice::from_ref(&member_id), "mine", 9).await;
    seed::api_keys(&pool, &admin_id, "key", 17).await;
    let before = ids_in_order(&pool, "SELECT id FROM users ORDER BY created_at, id", None).await;

    // Users: a walk with a new account inserted after every page sees the accounts that were
    // there, and those added, each once, in creation order.
    let mut added = 0;
    let users = walk(&env, "/api/v0/users", &env.admin_token, 4, async || {
        added += 1;
        seed::users(&pool, &format!("added{added}-"), 1, seed::NO_LOGIN_HASH).await;
    })
    .await;
    let all = ids_in_order(&pool, "SELECT id FROM users ORDER BY created_at, id", None).await;
    assert_eq!(users, all, "the walk is the table in creation order");
    assert!(before.iter().all(|id| users.contains(id)));
    assert_eq!(users.len(), before.len() + added);

    // Workspaces: everyone's for the admin (with inserts), the member's own for the member.
    let workspaces = walk(&env, "/api/v0/workspaces", &env.admin_token, 7, async || {
        seed::workspaces(
            &pool,
            std::slice::from_ref(&owners[0]),
            &format!("late{}", unique()),
            1,
        )
        .await;
    })
    .await;
    let all = ids_in_order(&pool, "SELECT id FROM workspaces ORDER BY created_at, id", None).await;
    assert_eq!(workspaces, all);
    let own = walk(&env, "/api/v0/workspaces", &member, 2, async || {}).await;
    let owned = ids_in_order(
        &pool,
        "SELECT id FROM workspaces WHERE owner_id = $1 ORDER BY created_at, id",
        Some(&member_id),
    )
    .await;
    assert_eq!((own.len(), &own), (9, &owned));

    // API keys: the caller's own.
    let keys = walk(&env, "/api/v0/api-keys", &env.admin_token, 5, async || {
        seed::api_keys(&pool, &admin_id, &format!("later{}", unique()), 1).await;
    })
    .await;
    let all = ids_in_order(
        &pool,
        "SELECT id FROM api_keys WHERE user_id = $1 AND kind = 'api_key' ORDER BY created_at, id",
        Some(&admin_id),
    )
    .await;
    assert_eq!(keys, all);
    assert_eq!(
        walk(&env, "/api/v0/api-keys", &member, 5, async || {}).await,
        Vec::<String>::new()
    );

    // Without a limit: the first 100, and a link to the rest.
    seed::users(&pool, "many", 120, seed::NO_LOGIN_HASH).await;
    let (first, next) = page(&env, "/api/v0/users", &env.admin_token).await;
    assert_eq!(first.len(), 100);
    let next = next.expect("more than 100 users: a next page");
    assert!(next.starts_with("/api/v0/users?limit=100&after="), "{next}");
}

/// A distinct number for names made in a loop.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn bad_limits_cursors_and_parameters_are_refused() {
    let env = Env::start().await;
    let token = &env.admin_token;
    for list in ["/api/v0/users", "/api/v0/workspaces", "/api/v0/api-keys"] {
        for (query, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("limit=", "invalid_limit"),
            ("limit=99999999999999999999", "invalid_limit"),
            ("after=not-a-cursor", "invalid_cursor"),
            ("after=0011", "invalid_cursor"),
            ("after=", "invalid_cursor"),
            ("offset=10", "invalid_query"),
            ("limit=1&limit=2", "invalid_query"),
        ] {
            let (status, body) = env.get(&format!("{list}?{query}"), token).await;
            assert_error(status, &body, StatusCode::BAD_REQUEST, code);
        }
        let (status, body) = env.get(&format!("{list}?limit=1000"), token).await;
        assert_eq!(status, StatusCode::OK, "{list}: {body}");
        assert!(body.is_array(), "still a bare array: {body}");
    }
}

#[tokio::test]
async fn list_queries_use_their_indexes_at_a_sites_size() {
    let env = Env::start().await;
    let pool = PgPool::connect(&env.database_url).await.expect("database");
    let owners = seed::users(&pool, "site", 1000, seed::NO_LOGIN_HASH).await;
    seed::workspaces(&pool, &owners, "ws", 10).await;
    seed::api_keys(&pool, &owners[0], "key", 1000).await;
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    // One owner beyond the default quota of 10 (a raised quota, or an admin's many).
    seed::workspaces(&pool, std::slice::from_ref(&owners[1]), "many", 1000).await;
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    // Parameters, as the manager sends them: its statements are prepared, so after five runs
    // PostgreSQL may use one generic plan for any cursor. Both plans are checked, for a cursor
    // before every row (the most rows after it).
    let cursor = "($1::timestamptz, $2::text)";
    let page = "ORDER BY created_at, id LIMIT 101";
    let mut connection = pool.acquire().await.expect("a connection");
    // (query, the index it must use, whether it may sort: only an owner's few rows)
    let cases = [
        (
            format!("SELECT * FROM users WHERE TRUE AND (created_at, id) > {cursor} {page}"),
            "users_created_at_id_idx",
            false,
        ),
        (
            format!("SELECT * FROM workspaces WHERE TRUE AND (created_at, id) > {cursor} {page}"),
            "workspaces_created_at_id_idx",
            false,
        ),
        (
            format!(
                "SELECT * FROM workspaces WHERE owner_id = '{}' AND (created_at, id) > {cursor} {page}",
                owners[1]
            ),
            "workspaces_owner_created_at_id_idx",
            false,
        ),
        (
            format!(
                "SELECT * FROM workspaces WHERE owner_id = '{}' AND (created_at, id) > {cursor} {page}",
                owners[500]
            ),
            "workspaces_owner",
            true,
        ),
        (
            format!(
                "SELECT * FROM api_keys WHERE kind = 'api_key' AND NOT revoked AND expires_at > now() \
                 AND user_id = '{}' AND (created_at, id) > {cursor} {page}",
                owners[0]
            ),
            "api_keys_user_created_at_id_idx",
            false,
        ),
    ];
    for (query, index, may_sort) in cases {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE page_query AS {query}")))
            .execute(&mut *connection)
            .await
            .expect("prepare");
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
                .execute(&mut *connection)
                .await
                .expect("plan mode");
            let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE page_query('2000-01-01', 'x')")
                .fetch_all(&mut *connection)
                .await
                .expect("explain");
            let plan = plan.join("\n");
            println!("{mode}: {query}\n{plan}\n");
            assert!(plan.contains(index), "{mode}: {query}\n{plan}");
            assert!(!plan.contains("Seq Scan"), "{mode}: {query}\n{plan}");
            assert!(may_sort || !plan.contains("Sort"), "{mode}: {query}\n{plan}");
        }
        sqlx::raw_sql("DEALLOCATE page_query")
            .execute(&mut *connection)
            .await
            .expect("deallocate");
    }
}

#[tokio::test]
async fn the_client_and_the_dashboard_list_every_row_across_pages() {
    let env = Env::start().await;
    let pool = PgPool::connect(&env.database_url).await.expect("database");
    let (member_id, _) = env.create_member("lister@example.com").await;
    // More than one page of the client's (1,000 rows): the admin's lists need two.
    let owners = seed::users(&pool, "crowd", 1005, seed::NO_LOGIN_HASH).await;
    seed::workspaces(&pool, std::slice::from_ref(&member_id), "ws", 1003).await;

    let client = ManagerClient::new(&env.base, None).expect("client");
    let users: Vec<User> = client
        .list_all("/api/v0/users", Caller::user(&env.admin_token, None))
        .await
        .expect("every user");
    assert_eq!(users.len(), 1005 + 2, "the seeded, the member and the admin");
    assert!(owners.iter().all(|id| users.iter().any(|user| &user.id == id)));

    let port = start_dashboard(DashboardArgs::for_manager(&env.base)).await;
    let http = reqwest::Client::new();
    let cookie = format!(
        "__Host-coder_session={token}; coder_session={token}",
        token = env.admin_token
    );
    let page = async |path: &str| {
        let response = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("a dashboard page");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.expect("html")
    };
    assert_eq!(page("/").await.matches("<tr data-workspace=").count(), 1003);
    assert_eq!(
        page("/admin/users").await.matches("@example.com</td>").count(),
        1005 + 1
    );
}
