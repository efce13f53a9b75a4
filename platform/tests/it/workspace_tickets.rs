//! Workspace tickets are single-use across envproxy replicas and restarts: each replica asks the
//! manager to record a ticket's nonce in PostgreSQL before it takes the ticket, and a database
//! that cannot record it refuses the ticket.

use std::time::Duration;

use coder_service::cli::EnvproxyArgs;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

use crate::envproxy::{ProxyEnv, start_proxy};
use crate::harness::{Env, unix_now};
use crate::workspace_origin::{error_code, no_redirects};

/// The wildcard domain of these tests (never resolved: requests name it in `Host`).
const DOMAIN: &str = "tickets.test";

/// Another envproxy replica of `env`'s manager: the same token file and workspace domain.
fn replica_args(env: &Env) -> EnvproxyArgs {
    let mut args = EnvproxyArgs::for_manager(&env.base);
    args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
    args.workspace_base_url = format!("http://{DOMAIN}");
    args
}

/// A fresh ticket for the member's workspace from the replica at `proxy_url`: the workspace's
/// host (from the redirect) and the exchange path (`/__coder/auth?ticket=...`).
pub async fn mint_ticket(http: &reqwest::Client, proxy_url: &str, proxy: &ProxyEnv) -> (String, String) {
    let opened = http
        .get(format!("{proxy_url}/proxy/workspaces/{}/open", proxy.workspace))
        .header("Session-Token", &proxy.member)
        .send()
        .await
        .expect("open");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    let location = opened.headers()[LOCATION].to_str().expect("location").to_owned();
    let (_, origin_and_path) = location.split_once("://").expect("an absolute URL");
    let (host, path) = origin_and_path.split_at(origin_and_path.find('/').expect("a path"));
    assert!(
        host.starts_with(&format!("ws-{}.", proxy.workspace)),
        "{location}"
    );
    (host.to_owned(), path.to_owned())
}

/// Exchanges the ticket at the replica at `proxy_url`: the status and the error code, if any.
async fn exchange(http: &reqwest::Client, proxy_url: &str, host: &str, path: &str) -> (StatusCode, String) {
    let response = http
        .get(format!("{proxy_url}{path}"))
        .header("Host", host)
        .send()
        .await
        .expect("exchange");
    error_code(response).await
}

#[tokio::test]
async fn workspace_ticket_exchanged_at_one_replica_is_refused_at_another_and_after_a_restart() {
    let mut proxy = ProxyEnv::start(|args| args.workspace_base_url = format!("http://{DOMAIN}")).await;
    let (replica_b, _stop_b, _stopped_b) = start_proxy(replica_args(&proxy.env)).await;
    let http = no_redirects();
    let refused = (StatusCode::UNAUTHORIZED, "invalid_ticket".to_owned());

    // Minted at A, exchanged at A, replayed at B: refused.
    let (host, path) = mint_ticket(&http, &proxy.proxy, &proxy).await;
    assert_eq!(
        exchange(&http, &proxy.proxy, &host, &path).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        exchange(&http, &replica_b, &host, &path).await,
        refused,
        "replayed at B"
    );

    // Minted at A, exchanged at B (replicas share the key), replayed at A: refused.
    let (host, second) = mint_ticket(&http, &proxy.proxy, &proxy).await;
    assert_eq!(
        exchange(&http, &replica_b, &host, &second).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        exchange(&http, &proxy.proxy, &host, &second).await,
        refused,
        "replayed at A"
    );

    // A restarted replica A (a new process: nothing kept in memory) refuses both.
    proxy.begin_shutdown();
    if let Some(stopped) = proxy.stopped.take() {
        let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
    }
    let (restarted, _stop, _stopped) = start_proxy(replica_args(&proxy.env)).await;
    for ticket in [&path, &second] {
        assert_eq!(
            exchange(&http, &restarted, &host, ticket).await,
            refused,
            "replayed at the restarted A"
        );
    }
}

#[tokio::test]
async fn workspace_ticket_is_refused_while_the_database_cannot_record_its_use() {
    // The caller's verdict stays cached, so only the ticket's record needs the database.
    let mut proxy = ProxyEnv::start(|args| {
        args.workspace_base_url = format!("http://{DOMAIN}");
        args.auth_cache_ttl = Duration::from_secs(120);
    })
    .await;
    let http = no_redirects();
    let (host, path) = mint_ticket(&http, &proxy.proxy, &proxy).await;
    proxy.env.postgres.stop();
    assert_eq!(
        exchange(&http, &proxy.proxy, &host, &path).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ticket_check_unavailable".to_owned()
        ),
        "fails closed"
    );
    proxy.env.postgres.restart().await.expect("restart PostgreSQL");
    crate::harness::eventually(
        "the manager to reach the database",
        Duration::from_secs(20),
        || async {
            let (status, _) = proxy.env.get("/api/v0/users/me", &proxy.member).await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    // Not recorded while the database was down, so it is still good once (within its minute).
    assert_eq!(
        exchange(&http, &proxy.proxy, &host, &path).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        exchange(&http, &proxy.proxy, &host, &path).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn workspace_ticket_redeem_endpoint_records_each_nonce_once_and_deletes_only_expired_ones() {
    let env = Env::start().await;
    let redeem = |nonce: &str, expires: i64, token: &str| {
        env.http
            .post(format!("{}/api/private/envproxy/tickets/redeem", env.base))
            .header("Coder-Envproxy-Token", token.to_owned())
            .json(&json!({ "nonce": nonce, "expires": expires }))
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.json::<Value>().await.unwrap_or_default())
    };
    let token = env.envproxy_token.clone();
    let soon = unix_now() + 60;

    let (status, body) = answer(redeem("00ff", soon, &token).await.expect("r")).await;
    assert_eq!(
        (status, &body["redeemed"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body) = answer(redeem("00ff", soon, &token).await.expect("r")).await;
    assert_eq!(
        (status, &body["redeemed"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    // Concurrent redemptions of one nonce: exactly one wins.
    let many = futures::future::join_all((0..8).map(|_| redeem("abcd", soon, &token))).await;
    let mut winners = 0;
    for response in many {
        let (status, body) = answer(response.expect("r")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        winners += usize::from(body["redeemed"] == json!(true));
    }
    assert_eq!(winners, 1);
    // Expired long ago (its row could be gone already): never taken.
    let (_, body) = answer(redeem("0123", unix_now() - 3600, &token).await.expect("r")).await;
    assert_eq!(body["redeemed"], json!(false), "{body}");
    // Only the envproxy may ask; the body is checked.
    let (status, _) = answer(redeem("4567", soon, "wrong").await.expect("r")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (nonce, expires) in [("", soon), ("not hex!", soon), ("89ab", unix_now() + 86_400)] {
        let (status, body) = answer(redeem(nonce, expires, &token).await.expect("r")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{nonce} {expires}: {body}");
    }

    // Rows long expired are deleted on a later redemption; live ones stay, and so do those just
    // expired (a margin for clocks that disagree).
    let pool = sqlx::PgPool::connect(&env.database_url).await.expect("connect");
    sqlx::query(
        "INSERT INTO used_workspace_tickets (nonce, expires_at)
         SELECT 'dead' || i, now() - interval '1 hour' FROM generate_series(1, 50) i
         UNION ALL SELECT 'recent', now() - interval '1 second'",
    )
    .execute(&pool)
    .await
    .expect("expired rows");
    let (_, body) = answer(redeem("cdef", soon, &token).await.expect("r")).await;
    assert_eq!(body["redeemed"], json!(true), "{body}");
    let left: Vec<String> = sqlx::query_scalar("SELECT nonce FROM used_workspace_tickets ORDER BY nonce")
        .fetch_all(&pool)
        .await
        .expect("rows");
    assert_eq!(left, ["00ff", "abcd", "cdef", "recent"]);
}
