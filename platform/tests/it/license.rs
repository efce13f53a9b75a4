//! The license endpoint: free tier without one, admin-only uploads verified with the same keys as
//! the installer, and the seat limit enforced when accounts are created.

use coder_license::Tier;
use coder_license::test_keys;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Env, assert_error};

/// An enterprise license signed with the test key, air-gap allowed, with `user_limit` seats.
pub(crate) fn license(user_limit: u32, expires_in_days: i64) -> String {
    let claims = test_keys::claims(Tier::Enterprise, true, user_limit, expires_in_days);
    test_keys::sign(&claims).expect("sign test license")
}

#[tokio::test]
async fn the_license_shows_seats_and_only_admins_replace_it() {
    let env = Env::start().await;
    let (_, member) = env.create_member("m1@example.com").await;

    let (status, free) = env.get("/api/v0/license", &member).await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert_eq!(free["tier"], "free");
    assert_eq!(free["seats_used"], 2);
    assert_eq!(free["seats_allowed"], serde_json::Value::Null);

    let token = license(3, 365);
    let (status, body) = env
        .post("/api/v0/license", &member, json!({ "license": token }))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let (status, body) = env
        .post(
            "/api/v0/license",
            &env.admin_token,
            json!({ "license": tampered }),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_license");

    let (status, installed) = env
        .post("/api/v0/license", &env.admin_token, json!({ "license": token }))
        .await;
    assert_eq!(status, StatusCode::OK, "{installed}");
    let (_, shown) = env.get("/api/v0/license", &member).await;
    assert_eq!(shown["tier"], "enterprise");
    assert_eq!(shown["account_name"], "Example Corp");
    assert_eq!(shown["seats_allowed"], 3);
    assert_eq!(shown["seats_used"], 2);
    assert_eq!(shown["airgap"], true);
    assert_eq!(shown["warning"], serde_json::Value::Null);
}

#[tokio::test]
async fn accounts_beyond_the_user_limit_are_refused() {
    let env = Env::start().await;
    let (status, body) = env
        .post(
            "/api/v0/license",
            &env.admin_token,
            json!({ "license": license(2, 365) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.create_member("m1@example.com").await;
    let (status, body) = env
        .post(
            "/api/v0/users",
            &env.admin_token,
            json!({ "email": "m2@example.com", "name": "m2", "password": "a-long-enough-pass" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "user_limit_reached");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allows 2 users")),
        "{body}"
    );
}

#[tokio::test]
async fn a_license_in_its_grace_period_carries_the_warning() {
    let env = Env::start().await;
    let (status, body) = env
        .post(
            "/api/v0/license",
            &env.admin_token,
            json!({ "license": license(10, -1) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let warning = body["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("STOPS WORKING ON"), "{body}");
}

/// Where this test process writes the license file the manager reads at start-up (a plain
/// function, since the harness takes a `fn` to adjust the configuration).
fn license_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("coder-license-test-{}.jwt", std::process::id()))
}

#[tokio::test]
async fn the_manager_installs_the_mounted_license_at_start_up() {
    std::fs::write(license_file(), license(25, 365)).expect("write license file");
    let env = Env::start_with(crate::harness::Options {
        tweak: |args| args.license_file = Some(license_file()),
        ..Default::default()
    })
    .await;
    let _ = std::fs::remove_file(license_file());
    let (status, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["tier"], "enterprise");
    assert_eq!(shown["seats_allowed"], 25);
}

#[tokio::test]
async fn a_missing_license_file_is_the_free_tier_not_a_failed_start() {
    // The chart mounts the license Secret as optional: a connected free-tier install has none.
    let env = Env::start_with(crate::harness::Options {
        tweak: |args| {
            args.license_file = Some(std::path::PathBuf::from("/nonexistent/coder-license/license"))
        },
        ..Default::default()
    })
    .await;
    let (status, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["tier"], "free", "{shown}");
}

/// An enterprise license (air-gap allowed) with its own id and `seats`, issued `issued_days_ago`.
fn issued(id: &str, seats: u32, issued_days_ago: i64) -> String {
    let mut claims = test_keys::claims(Tier::Enterprise, true, seats, 365);
    claims.license_id = id.to_owned();
    claims.iat = crate::harness::unix_now() - issued_days_ago * 86_400;
    claims.nbf = claims.iat;
    test_keys::sign(&claims).expect("sign test license")
}

/// Starts a second manager on the environment's database with `token` as its mounted license
/// file, as a restarted (or another) manager pod does; the start must succeed.
async fn restart_with_mounted(env: &Env, token: &str) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), token).expect("write license file");
    let mut args = coder_service::cli::ManagerArgs::for_database(&env.database_url);
    args.license_file = Some(file.path().to_owned());
    args.db.pg_acquire_timeout_secs = 1;
    let manager = coder_service::manager::Manager::start(args.into(), None)
        .await
        .expect("the manager starts whatever the mounted license is");
    drop(manager);
}

#[tokio::test]
async fn a_restart_keeps_a_newer_uploaded_license_and_an_expired_mounted_one_never_stops_the_start() {
    let env = Env::start().await;
    let seats = |body: &serde_json::Value| body["seats_allowed"].clone();
    // An admin uploads a license issued a day ago, after the one in the chart's Secret.
    upload(&env, issued("lic-uploaded", 50, 1)).await;

    // The pod restarts with the Secret's license, issued ten days ago: the upload stays.
    restart_with_mounted(&env, &issued("lic-mounted-old", 25, 10)).await;
    let (_, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(shown["license_id"], "lic-uploaded", "{shown}");
    assert_eq!(seats(&shown), 50, "{shown}");

    // An expired mounted license is logged and left out; the start goes on.
    let mut expired = test_keys::claims(Tier::Enterprise, true, 5, -60);
    expired.license_id = "lic-expired".to_owned();
    restart_with_mounted(&env, &test_keys::sign(&expired).expect("sign")).await;
    let (_, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(shown["license_id"], "lic-uploaded", "{shown}");

    // A mounted license issued after the upload (a renewal put into the Secret) is installed.
    restart_with_mounted(&env, &issued("lic-renewed", 60, 0)).await;
    let (_, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(shown["license_id"], "lic-renewed", "{shown}");
    assert_eq!(seats(&shown), 60, "{shown}");
}

/// A license of `tier` (air-gap feature as `airgap`), 50 seats, valid for a year.
fn of_tier(tier: Tier, airgap: bool) -> String {
    test_keys::sign(&test_keys::claims(tier, airgap, 50, 365)).expect("sign test license")
}

/// Installs `token` as the admin (which stays allowed while read-only); returns the summary.
async fn upload(env: &Env, token: String) -> serde_json::Value {
    let (status, body) = env
        .post("/api/v0/license", &env.admin_token, json!({ "license": token }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Asserts a change was refused by the air-gap license gate, naming the problem `kind`.
fn assert_read_only(status: StatusCode, body: &serde_json::Value, kind: &str) {
    assert_error(status, body, StatusCode::FORBIDDEN, "airgap_license_required");
    assert_eq!(body["error"]["detail"], kind, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("air-gapped") && message.contains("read-only") && message.contains("upload"),
        "{body}"
    );
}

#[tokio::test]
async fn an_air_gapped_manager_without_a_license_allowing_it_is_read_only_until_one_is_uploaded() {
    let env = Env::start_with(crate::harness::Options {
        tweak: |args| args.airgapped = true,
        ..Default::default()
    })
    .await;
    // Signing in works (the harness logged the admin in), and so does reading.
    let (status, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["airgapped"], true, "{shown}");
    let reason = shown["read_only"].as_str().unwrap_or_default();
    assert!(reason.contains("no license is installed"), "{shown}");
    let (status, users) = env.get("/api/v0/users", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let (status, body) = env.get("/api/v0/workspaces", &env.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every change is refused with the license problem: accounts, keys, workspaces, passwords.
    let new_user = json!({ "email": "m1@example.com", "name": "m1", "password": "a-long-enough-pass" });
    let (status, body) = env
        .post("/api/v0/users", &env.admin_token, new_user.clone())
        .await;
    assert_read_only(status, &body, "no_license");
    let (status, body) = env
        .post("/api/v0/api-keys", &env.admin_token, json!({ "name": "ci" }))
        .await;
    assert_read_only(status, &body, "no_license");
    let (status, body) = env
        .post(
            "/api/v0/workspaces",
            &env.admin_token,
            json!({ "name": "dev", "image": "codercom/enterprise-base:ubuntu" }),
        )
        .await;
    assert_read_only(status, &body, "no_license");
    let (status, body) = env
        .call(
            reqwest::Method::PATCH,
            "/api/v0/users/me",
            Some(&env.admin_token),
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_read_only(status, &body, "no_license");
    let (_, users_after) = env.get("/api/v0/users", &env.admin_token).await;
    assert_eq!(users_after, users, "nothing changed");

    // A license that does not allow air-gapped use is accepted as a license, and the platform
    // stays read-only, now naming that license's problem.
    let body = upload(&env, of_tier(Tier::Trial, true)).await;
    assert!(
        body["read_only"]
            .as_str()
            .is_some_and(|reason| reason.contains("trial")),
        "{body}"
    );
    let (status, body) = env
        .post("/api/v0/users", &env.admin_token, new_user.clone())
        .await;
    assert_read_only(status, &body, "airgap_not_allowed_for_tier");
    upload(&env, of_tier(Tier::Enterprise, false)).await;
    let (status, body) = env
        .post("/api/v0/users", &env.admin_token, new_user.clone())
        .await;
    assert_read_only(status, &body, "airgap_feature_missing");

    // An enterprise license with the air-gap feature lifts the restriction at once.
    let body = upload(&env, of_tier(Tier::Enterprise, true)).await;
    assert_eq!(body["read_only"], serde_json::Value::Null, "{body}");
    let (status, body) = env.post("/api/v0/users", &env.admin_token, new_user).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Signing out always works.
    let (status, _) = env
        .call(
            reqwest::Method::POST,
            "/auth/logout",
            Some(&env.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_connected_manager_without_a_license_is_the_free_tier_and_fully_usable() {
    let env = Env::start().await;
    let (_, shown) = env.get("/api/v0/license", &env.admin_token).await;
    assert_eq!(shown["airgapped"], false, "{shown}");
    assert_eq!(shown["read_only"], serde_json::Value::Null, "{shown}");
    env.create_member("m1@example.com").await;
    let (status, body) = env
        .post("/api/v0/api-keys", &env.admin_token, json!({ "name": "ci" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_read_only_manager_still_allows_revoking_keys_resetting_passwords_deleting_users_and_stopping_workspaces()
 {
    let env = Env::start_with(crate::harness::Options {
        kubernetes: true,
        tweak: |args| args.airgapped = true,
    })
    .await;
    // Set up with a license that allows air-gapped use: a member with an API key and a
    // workspace, and another member.
    upload(&env, of_tier(Tier::Enterprise, true)).await;
    let (member_id, member) = env.create_member("m1@example.com").await;
    let (leaver_id, _) = env.create_member("m2@example.com").await;
    let (status, key) = env
        .post("/api/v0/api-keys", &member, json!({ "name": "ci" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key_id = key["api_key"]["id"].as_str().expect("key id").to_owned();
    let (status, workspace) = env
        .post(
            "/api/v0/workspaces",
            &member,
            json!({ "name": "dev", "image": "codercom/enterprise-base:ubuntu" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workspace}");
    let workspace_id = workspace["id"].as_str().expect("id").to_owned();

    // A license without the air-gap feature makes the platform read-only again.
    let body = upload(&env, of_tier(Tier::Enterprise, false)).await;
    assert!(body["read_only"].is_string(), "{body}");
    let patch = |token: String, path: String, body: serde_json::Value| {
        let env = &env;
        async move {
            env.call(reqwest::Method::PATCH, &path, Some(&token), Some(body))
                .await
        }
    };
    let member_path = format!("/api/v0/users/{member_id}");

    // Other changes stay refused, a password change that also changes something else included.
    let refused = [
        env.post("/api/v0/api-keys", &member, json!({ "name": "more" }))
            .await,
        env.post(
            &format!("/api/v0/workspaces/{workspace_id}/start"),
            &member,
            json!({}),
        )
        .await,
        env.post(
            &format!("/api/v0/workspaces/{workspace_id}/rebuild"),
            &member,
            json!({}),
        )
        .await,
        env.delete(&format!("/api/v0/workspaces/{workspace_id}"), &member)
            .await,
        patch(
            member.clone(),
            "/api/v0/users/me".into(),
            json!({ "name": "Renamed" }),
        )
        .await,
        patch(
            env.admin_token.clone(),
            member_path.clone(),
            json!({ "password": "reset by the admin", "role": "admin" }),
        )
        .await,
        patch(
            env.admin_token.clone(),
            member_path.clone(),
            json!({ "password": "reset by the admin", "email": "new@example.com" }),
        )
        .await,
    ];
    for (status, body) in refused {
        assert_read_only(status, &body, "airgap_feature_missing");
    }

    // The security writes work: stopping a workspace, revoking an API key, a member's own
    // password change, an admin's reset, deleting an account.
    let (status, body) = env
        .post(
            &format!("/api/v0/workspaces/{workspace_id}/stop"),
            &member,
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "stopping a workspace while read-only: {body}"
    );
    let (status, body) = env.delete(&format!("/api/v0/api-keys/{key_id}"), &member).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "revoking an API key while read-only: {body}"
    );
    let (status, body) = patch(
        member.clone(),
        "/api/v0/users/me".into(),
        json!({ "password": "changed while read-only", "current_password": crate::harness::MEMBER_PASSWORD }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "own password change while read-only: {body}"
    );
    let (status, body) = patch(
        env.admin_token.clone(),
        member_path.clone(),
        json!({ "password": "reset by the admin" }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "admin password reset while read-only: {body}"
    );
    env.login("m1@example.com", "reset by the admin").await;
    let (status, body) = env
        .delete(&format!("/api/v0/users/{leaver_id}"), &env.admin_token)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "deleting a user while read-only: {body}"
    );
    let (status, _) = env
        .get(&format!("/api/v0/users/{leaver_id}"), &env.admin_token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
