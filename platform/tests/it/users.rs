//! User management and bad input: duplicate emails, weak passwords, malformed or oversized
//! bodies, unknown fields, SQL-significant characters, role checks, and the JSON error shape.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Env, assert_error};

#[tokio::test]
async fn admins_manage_users_and_members_cannot() {
    let env = Env::start().await;
    let (member_id, member) = env.create_member("m1@example.com").await;
    let (other_id, _) = env.create_member("m2@example.com").await;

    let (status, users) = env.get("/api/v0/users", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().map(Vec::len), Some(3));

    // Admin-only endpoints: a uniform 403 naming nothing.
    let (status, body) = env.get("/api/v0/users", &member).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = env
        .post(
            "/api/v0/users",
            &member,
            json!({ "email": "x@example.com", "name": "x", "password": "a-long-enough-pass" }),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Other accounts are 404 to a member, exactly like missing ones.
    let (status, hidden) = env.get(&format!("/api/v0/users/{other_id}"), &member).await;
    assert_error(status, &hidden, StatusCode::NOT_FOUND, "not_found");
    let (_, missing) = env.get("/api/v0/users/ffffffffffffffffffffffff", &member).await;
    assert_eq!(hidden, missing);

    // Members rename themselves; admins change roles and delete.
    let (status, renamed) = env
        .call(
            Method::PATCH,
            "/api/v0/users/me",
            Some(&member),
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Renamed");
    let (status, body) = env
        .call(
            Method::PATCH,
            "/api/v0/users/me",
            Some(&member),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, promoted) = env
        .call(
            Method::PATCH,
            &format!("/api/v0/users/{member_id}"),
            Some(&env.admin_token),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(promoted["role"], "admin");
    let (status, _) = env
        .delete(&format!("/api/v0/users/{other_id}"), &env.admin_token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env
        .get(&format!("/api/v0/users/{other_id}"), &env.admin_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Admin actions are audited.
    let pool = sqlx::PgPool::connect(&env.database_url).await.expect("connect");
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("audit");
    assert_eq!(
        actions,
        [
            "user.create",
            "user.create",
            "user.create",
            "user.update",
            "user.delete"
        ]
    );
}

#[tokio::test]
async fn bad_user_input_is_refused_with_the_right_status() {
    let env = Env::start().await;
    let admin = env.admin_token.as_str();
    let create = |body: serde_json::Value| env.post("/api/v0/users", admin, body);

    let (status, _) =
        create(json!({ "email": "Dup@Example.com", "name": "a", "password": "a-long-enough-pass" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) =
        create(json!({ "email": "dup@example.COM", "name": "b", "password": "a-long-enough-pass" })).await;
    assert_error(status, &body, StatusCode::CONFLICT, "email_taken");

    for password in ["", "short", "aaaaaaaaaaaaaaa", "password12345"] {
        let (status, body) =
            create(json!({ "email": "weak@example.com", "name": "w", "password": password })).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "weak_password");
    }
    let (status, body) =
        create(json!({ "email": "not-an-email", "name": "n", "password": "a-long-enough-pass" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_email");
    let (status, body) =
        create(json!({ "email": "e@example.com", "name": "", "password": "a-long-enough-pass" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, body) = create(
        json!({ "email": "e@example.com", "name": "n", "password": "a-long-enough-pass", "role": "root" }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");
    let (status, body) = create(
        json!({ "email": "e@example.com", "name": "n", "password": "a-long-enough-pass", "is_admin": true }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");
    assert!(
        body["error"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unknown field")),
        "{body}"
    );
    let (status, body) = create(json!({ "email": "e@example.com" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");

    let raw = |content_type: &'static str, body: String| {
        env.http
            .post(format!("{}/api/v0/users", env.base))
            .header("Session-Token", admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw("application/json", "{\"email\": ".to_owned())
        .await
        .expect("request");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    let response = raw("text/plain", "{}".to_owned()).await.expect("request");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(200 * 1024));
    let response = raw("application/json", huge).await.expect("request");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // SQL-significant characters are data, stored and returned verbatim.
    let name = "Robert'); DROP TABLE users;-- \\ % _ \"";
    let email = "o'brien+%_;--@example.com";
    let (status, created) =
        create(json!({ "email": email, "name": name, "password": "a-long-enough-pass" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], name);
    assert_eq!(created["email"], email);
    let (status, users) = env.get("/api/v0/users", admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{users}");
    env.login(email, "a-long-enough-pass").await;
}

#[tokio::test]
async fn meta_endpoints_and_json_errors_for_unknown_routes() {
    let env = Env::start().await;
    let response = env
        .http
        .get(format!("{}/api", env.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("coder-version")
            .and_then(|v| v.to_str().ok()),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(response.headers().contains_key("x-request-id"));
    let (status, _) = env.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = env.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let (status, body) = env.call(Method::GET, "/api/v0/nothing-here", None, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = env
        .call(Method::PUT, "/api/v0/users", Some(&env.admin_token), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    let metrics = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("request");
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain"))
    );
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("coder_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("coder_http_request_duration_seconds_count"),
        "{text}"
    );
}
