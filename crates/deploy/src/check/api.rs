//! The platform's API as the check uses it, through the front door: sign in and out, make and
//! remove the throwaway member and workspace, and follow the workspace until it runs.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::front_door::FrontDoor;

/// An answer that was not the one expected: the status and what the server said.
fn unexpected(what: &str, status: reqwest::StatusCode, body: &str) -> String {
    let body = body.trim();
    let body = if body.len() > 300 {
        &body[..body.floor_char_boundary(300)]
    } else {
        body
    };
    format!(
        "{what} answered {status}{}{body}",
        if body.is_empty() { "" } else { ": " }
    )
}

/// Sends `request` and returns the status and body text.
async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<(reqwest::StatusCode, String), String> {
    let response = request
        .send()
        .await
        .map_err(|error| format!("{what}: {}", error_chain(&error)))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| format!("{what}: {}", error_chain(&error)))?;
    Ok((status, text))
}

/// An error with its causes, which reqwest keeps apart.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    coder_progress::error_chain(error)
}

/// Sends `request`, expecting a success with a JSON body.
async fn json_call(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let (status, text) = send(request, what).await?;
    if !status.is_success() {
        return Err(unexpected(what, status, &text));
    }
    serde_json::from_str(&text).map_err(|error| format!("{what}: not JSON ({error}): {text}"))
}

/// A GET of `path`: the status and body.
pub async fn get(
    door: &FrontDoor,
    path: &str,
    token: Option<&str>,
) -> Result<(reqwest::StatusCode, String), String> {
    send(door.request(Method::GET, path, token), &format!("GET {path}")).await
}

/// Signs `email` in; the session token.
pub async fn login(door: &FrontDoor, email: &str, password: &str) -> Result<String, String> {
    let request = door
        .request(Method::POST, "/auth/basic/login", None)
        .json(&json!({ "email": email, "password": password }));
    let body = json_call(request, "POST /auth/basic/login").await?;
    body["session_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the login answer has no session_token: {body}"))
}

/// Ends the session of `token`.
pub async fn logout(door: &FrontDoor, token: &str) -> Result<(), String> {
    let (status, text) = send(
        door.request(Method::POST, "/auth/logout", Some(token)),
        "POST /auth/logout",
    )
    .await?;
    match status.is_success() {
        true => Ok(()),
        false => Err(unexpected("POST /auth/logout", status, &text)),
    }
}

/// Makes a member (as the admin of `token`); the new user's id.
pub async fn create_member(
    door: &FrontDoor,
    token: &str,
    email: &str,
    password: &str,
) -> Result<String, String> {
    let request = door
        .request(Method::POST, "/api/v0/users", Some(token))
        .json(&json!({
            "email": email, "name": "coder-install check", "password": password, "role": "member"
        }));
    let body = json_call(request, "POST /api/v0/users").await?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the new user has no id: {body}"))
}

/// Makes a small workspace named `name` of `image` (as the member of `token`); its id.
pub async fn create_workspace(
    door: &FrontDoor,
    token: &str,
    name: &str,
    image: &str,
) -> Result<String, String> {
    let request = door
        .request(Method::POST, "/api/v0/workspaces", Some(token))
        .json(&json!({
            "name": name, "image": image, "cpu_cores": 0.1, "memory_gb": 0.5, "disk_gb": 1
        }));
    let body = json_call(request, "POST /api/v0/workspaces").await?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the new workspace has no id: {body}"))
}

/// Waits until workspace `id` is `ON` (its Deployment available), at most `timeout`.
pub async fn wait_running(door: &FrontDoor, token: &str, id: &str, timeout: Duration) -> Result<(), String> {
    let path = format!("/api/v0/workspaces/{id}");
    let started = Instant::now();
    loop {
        let body = json_call(
            door.request(Method::GET, &path, Some(token)),
            &format!("GET {path}"),
        )
        .await?;
        let state = body["state"].as_str().unwrap_or_default().to_owned();
        if state == "ON" {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!("still {state} after {} s", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Deletes `path` (a workspace or a user); a 404 counts as gone.
pub async fn delete(door: &FrontDoor, token: &str, path: &str) -> Result<(), String> {
    let what = format!("DELETE {path}");
    let (status, text) = send(door.request(Method::DELETE, path, Some(token)), &what).await?;
    match status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
        true => Ok(()),
        false => Err(unexpected(&what, status, &text)),
    }
}
