//! The database going away and coming back: 503 with a clear body, then recovery.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::harness::{Env, assert_error, eventually};

#[tokio::test]
async fn a_database_outage_is_a_503_and_the_manager_recovers() {
    let mut env = Env::start().await;
    let token = env.admin_token.clone();
    let (status, _) = env.get("/api/v0/users/me", &token).await;
    assert_eq!(status, StatusCode::OK);

    env.postgres.stop();
    let (status, body) = env.get("/api/v0/users/me", &token).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("database")),
        "{body}"
    );
    let (status, body) = env.call(Method::GET, "/readyz", None, None).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    );
    let (status, _) = env.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on the database");

    env.postgres.restart().await.expect("restart PostgreSQL");
    eventually("the manager to recover", Duration::from_secs(20), || async {
        let (status, _) = env.get("/api/v0/users/me", &token).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let (status, _) = env.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
