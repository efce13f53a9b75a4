//! Login, token use, logout and revocation, API keys, rate limiting, the first admin.

use std::time::Duration;

use coder_service::cli::ManagerArgs;
use coder_service::manager::Manager;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN_EMAIL, Env, MEMBER_PASSWORD, Options, assert_error, eventually};

#[tokio::test]
async fn login_token_use_logout_and_revocation() {
    let env = Env::start().await;
    let (member_id, token) = env.create_member("member@example.com").await;

    // Both header styles authenticate.
    let (status, me) = env.get("/api/v0/users/me", &token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], member_id.as_str());
    assert_eq!(me["role"], "member");
    assert!(me.get("password_hash").is_none(), "{me}");
    let bearer = env
        .http
        .get(format!("{}/api/v0/users/me", env.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status(), StatusCode::OK);

    // The token is stored hashed: its secret appears nowhere in the database.
    let pool = sqlx::PgPool::connect(&env.database_url).await.expect("connect");
    let (id, secret) = token.split_once('-').expect("token format");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("row");
    assert_ne!(stored, secret.as_bytes());
    assert_eq!(stored.len(), 32);

    // Login is case-insensitive in the email.
    env.login("MEMBER@example.com", MEMBER_PASSWORD).await;

    let (status, _) = env.call(Method::POST, "/auth/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = env.get("/api/v0/users/me", &token).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Missing, malformed and forged tokens.
    let (status, body) = env.call(Method::GET, "/api/v0/users/me", None, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = env.get("/api/v0/users/me", "not-a-token").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let forged = format!("{id}-{}", "0".repeat(32));
    let (status, body) = env.get("/api/v0/users/me", &forged).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_answer() {
    let env = Env::start().await;
    let attempt = |email: &'static str, password: &'static str| {
        env.call(
            Method::POST,
            "/auth/basic/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
    };
    let (status, wrong) = attempt(ADMIN_EMAIL, "not-the-admin-password").await;
    assert_error(status, &wrong, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, unknown) = attempt("nobody@example.com", "not-the-admin-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    let (status, body) = attempt("x' OR '1'='1", "' OR '1'='1").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_and_per_address() {
    let env = Env::start_with(Options {
        tweak: |args| {
            args.login_burst = 3;
            args.login_per_minute = 1;
        },
        ..Options::default()
    })
    .await; // the harness's own admin login used one attempt
    let body = json!({ "email": "victim@example.com", "password": "guess-guess-guess" });
    for _ in 0..2 {
        let (status, _) = env
            .call(Method::POST, "/auth/basic/login", None, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = env
        .http
        .post(format!("{}/auth/basic/login", env.base))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let error: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "rate_limited");

    // From other addresses: the account has one attempt left (2 of 3 used), then none.
    let login = format!("{}/auth/basic/login", env.base);
    let login_from = async |last_octet: u8, body: &serde_json::Value| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
            .build()
            .expect("client")
            .post(&login)
            .json(body)
            .send()
            .await
            .expect("request")
            .status()
    };
    let status = login_from(2, &body).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a fresh address may still try this account once"
    );
    let status = login_from(3, &body).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the account itself is now limited"
    );
    // Another account from a fresh address is unaffected.
    let other = json!({ "email": ADMIN_EMAIL, "password": crate::harness::ADMIN_PASSWORD });
    let status = login_from(4, &other).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_address_is_limited_and_others_cannot_spoof_it() {
    let env = Env::start_with(Options {
        tweak: |args| {
            args.login_burst = 2;
            args.login_per_minute = 1;
            args.trusted_proxies = "127.0.0.10".parse().expect("trusted proxies");
        },
        ..Options::default()
    })
    .await;
    let login = format!("{}/auth/basic/login", env.base);
    let mut attempt = 0;
    // Each attempt names a new account, so that only the per-address limit is in play.
    let mut login_from = async |peer: u8, forwarded_for: &str| {
        attempt += 1;
        let body =
            json!({ "email": format!("nobody-{attempt}@example.com"), "password": "guess-guess-guess" });
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, peer]))
            .build()
            .expect("client")
            .post(&login)
            .header("x-forwarded-for", forwarded_for)
            .json(&body)
            .send()
            .await
            .expect("request")
            .status()
    };
    // Through the trusted proxy, each forwarded client has its own bucket.
    assert_eq!(login_from(10, "198.51.100.1").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_from(10, "203.0.113.5, 198.51.100.1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(10, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login_from(10, "198.51.100.2").await, StatusCode::UNAUTHORIZED);
    // A peer the manager does not trust is its own client, whatever it forwards.
    assert_eq!(login_from(11, "192.0.2.1").await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_from(11, "192.0.2.2").await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_from(11, "192.0.2.3").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn api_keys_are_created_used_listed_and_revoked() {
    let env = Env::start().await;
    let (_, member) = env.create_member("keys@example.com").await;
    let name = "ci'; DELETE FROM api_keys;--";
    let (status, created) = env
        .post("/api/v0/api-keys", &member, json!({ "name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let key_id = created["api_key"]["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with(&format!("{key_id}-")));

    let (status, me) = env.get("/api/v0/users/me", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "keys@example.com");
    let (_, listed) = env.get("/api/v0/api-keys", &member).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["name"], name);
    assert!(
        listed[0].get("key").is_none(),
        "the secret is shown only at creation"
    );

    // Another user cannot see or delete it: 404, as for a key that does not exist.
    let (_, other) = env.create_member("other@example.com").await;
    let (status, body) = env.delete(&format!("/api/v0/api-keys/{key_id}"), &other).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    let (status, _) = env.delete(&format!("/api/v0/api-keys/{key_id}"), &member).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.get("/api/v0/users/me", &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = env
        .post(
            "/api/v0/api-keys",
            &member,
            json!({ "name": "x", "expires_in_days": 0 }),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_expiry");
}

/// The first admin's password hash and how many admins there are.
async fn admins(manager: &Manager) -> (i64, Option<String>) {
    let pool = &manager.state().pool;
    let count = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(pool)
        .await
        .expect("count");
    let hash = sqlx::query_scalar("SELECT password_hash FROM users WHERE role = 'admin'")
        .fetch_optional(pool)
        .await
        .expect("hash");
    (count, hash)
}

#[tokio::test]
async fn the_first_admin_comes_from_the_password_file_once_and_is_never_generated() {
    let postgres = coder_testenv::Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let files = tempfile::tempdir().expect("temp dir");
    let password_file = files.path().join("password");
    let start = |file: std::path::PathBuf| {
        let mut args = ManagerArgs::for_database(&url);
        args.admin_password_file = Some(file);
        Manager::start(args.into(), None)
    };

    // No file (the optional Secret is absent) and no flag: the manager starts, without an admin.
    let without_file = start(password_file.clone())
        .await
        .expect("start without the file");
    assert_eq!(admins(&without_file).await, (0, None));
    let without_flag = Manager::start(ManagerArgs::for_database(&url).into(), None)
        .await
        .expect("start without the flag");
    assert_eq!(admins(&without_flag).await.0, 0);

    std::fs::write(&password_file, "first-admin-password-1\n").expect("write");
    let first = start(password_file.clone()).await.expect("first start");
    let (count, hash) = admins(&first).await;
    let hash = hash.expect("the admin exists");
    assert_eq!(count, 1);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("first-admin-password-1"));
    assert!(coder_service::manager::credentials::verify_password(
        "first-admin-password-1",
        &hash
    ));

    // Later starts leave the admin alone, even when the file changes.
    std::fs::write(&password_file, "another-password-2\n").expect("write");
    let second = start(password_file).await.expect("second start");
    assert_eq!(admins(&second).await, (1, Some(hash)));
}

#[tokio::test]
async fn a_starting_manager_deletes_dead_session_tokens_and_keeps_api_keys() {
    let env = Env::start().await;
    let (_, live) = env.create_member("sessions@example.com").await;
    let expired = env.login("sessions@example.com", MEMBER_PASSWORD).await;
    let logged_out = env.login("sessions@example.com", MEMBER_PASSWORD).await;
    let (status, _) = env
        .call(Method::POST, "/auth/logout", Some(&logged_out), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, created) = env
        .post("/api/v0/api-keys", &live, json!({ "name": "old key" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let old_key = created["api_key"]["id"].as_str().expect("id").to_owned();
    let id = |token: &str| token.split_once('-').expect("token format").0.to_owned();
    let pool = sqlx::PgPool::connect(&env.database_url).await.expect("connect");
    for dead in [id(&expired), old_key.clone()] {
        sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = $1")
            .bind(dead)
            .execute(&pool)
            .await
            .expect("expire");
    }

    // A manager starting on this database purges at once (and every hour after).
    let _second = Manager::start(ManagerArgs::for_database(&env.database_url).into(), None)
        .await
        .expect("start another manager");
    let remaining = eventually("the dead sessions to go", Duration::from_secs(10), || async {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM api_keys ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("list tokens");
        (!ids.contains(&id(&expired)) && !ids.contains(&id(&logged_out))).then_some(ids)
    })
    .await;
    assert!(remaining.contains(&id(&live)), "a live session was deleted");
    assert!(remaining.contains(&old_key), "an expired API key was deleted");
    let (status, _) = env.get("/api/v0/users/me", &live).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn changing_a_password_needs_the_current_one_and_revokes_every_other_credential() {
    let env = Env::start().await;
    let (member_id, member) = env.create_member("changer@example.com").await;
    let other_session = env.login("changer@example.com", MEMBER_PASSWORD).await;
    let (status, created) = env
        .post("/api/v0/api-keys", &member, json!({ "name": "ci" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_key = created["key"].as_str().expect("key").to_owned();
    let change = |token: String, body: serde_json::Value| {
        let env = &env;
        async move {
            env.call(Method::PATCH, "/api/v0/users/me", Some(&token), Some(body))
                .await
        }
    };

    // A session (or API key) alone cannot change the password: the current one is needed.
    let (status, body) = change(member.clone(), json!({ "password": "a brand new password" })).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "current_password_required",
    );
    let (status, body) = change(
        api_key.clone(),
        json!({ "password": "a brand new password", "current_password": "not the password" }),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    for token in [&member, &other_session, &api_key] {
        assert_eq!(env.get("/api/v0/users/me", token).await.0, StatusCode::OK);
    }

    let (status, body) = change(
        member.clone(),
        json!({ "password": "a brand new password", "current_password": MEMBER_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The caller's session goes on; every other session and every API key is revoked.
    assert_eq!(env.get("/api/v0/users/me", &member).await.0, StatusCode::OK);
    for token in [&other_session, &api_key] {
        assert_eq!(
            env.get("/api/v0/users/me", token).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let renewed = env.login("changer@example.com", "a brand new password").await;

    // An admin's reset of another account needs no current password and revokes all of its
    // credentials, the member's own session included.
    let (status, body) = env
        .call(
            Method::PATCH,
            &format!("/api/v0/users/{member_id}"),
            Some(&env.admin_token),
            Some(json!({ "password": "reset by the admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for token in [&member, &renewed] {
        assert_eq!(
            env.get("/api/v0/users/me", token).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    env.login("changer@example.com", "reset by the admin").await;
    assert_eq!(
        env.get("/api/v0/users/me", &env.admin_token).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_change_made_with_an_api_key_revokes_that_key_too() {
    let env = Env::start().await;
    let (_, session) = env.create_member("keyholder@example.com").await;
    let mut keys = Vec::new();
    for name in ["ci", "laptop"] {
        let (status, created) = env
            .post("/api/v0/api-keys", &session, json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        keys.push(created["key"].as_str().expect("key").to_owned());
    }
    // The change is authenticated by an API key, as `Authorization: Bearer`.
    let response = env
        .http
        .patch(format!("{}/api/v0/users/me", env.base))
        .bearer_auth(&keys[0])
        .json(&json!({ "password": "changed with a key", "current_password": MEMBER_PASSWORD }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    // No credential that existed before the change survives it: the key used to make it is an
    // API key, not a session, so it is revoked like the others.
    for token in [&keys[0], &keys[1], &session] {
        assert_eq!(
            env.get("/api/v0/users/me", token).await.0,
            StatusCode::UNAUTHORIZED,
            "a credential made before the password change still works"
        );
    }
    // The account's listing of live keys is empty.
    let renewed = env.login("keyholder@example.com", "changed with a key").await;
    let (status, listed) = env.get("/api/v0/api-keys", &renewed).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!([]), "{listed}");
}
