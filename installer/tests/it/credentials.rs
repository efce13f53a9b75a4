//! Registry credentials go to the registry itself and nowhere else.
//!
//! The real distribution registry cannot be made to name a token realm or an upload `Location` on
//! another host, so the hostile registry here is a STAND-IN: a small loopback HTTP server in the
//! test. The "other host" is a second loopback server on another port (an origin is scheme, host
//! and port), which records every request it gets. The last test checks, against the real
//! registry (TLS and htpasswd), that the registry's own credentials still reach it.

use std::sync::{Arc, Mutex};

use base64::Engine;
use coder_registry::{
    CredentialStore, Credentials, RegistryClient, RegistryError, RegistryOptions, Repository,
};
use coder_testenv::{Registry, RegistryFlavour};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "site-user";
const PASSWORD: &str = "site-secret";

/// One request a stand-in server received: the request line and headers, as sent.
type Seen = Arc<Mutex<Vec<String>>>;

/// Starts a loopback HTTP server that records each request's head and answers it with
/// `answer(head)` (a whole HTTP response). Returns `host:port` and the record.
async fn stand_in(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("address").to_string();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (record, answer) = (record.clone(), answer.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
                // Drain a body announced by Content-Length so the client sees a clean answer.
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = request.len() - (head.len() + 4);
                while body < length {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => body += read,
                    }
                }
                let response = answer(&head);
                if let Ok(mut seen) = record.lock() {
                    seen.push(head);
                }
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (host, seen)
}

fn respond(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn has_authorization(head: &str) -> bool {
    head.lines()
        .any(|line| line.to_ascii_lowercase().starts_with("authorization:"))
}

fn basic_header() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("authorization: basic {}", encoded.to_ascii_lowercase())
}

/// A client that reaches `registry` over plain HTTP (it is an `--insecure-registry`, so its own
/// origin may get credentials over HTTP) and holds credentials for it.
fn client_with_credentials(registry: &str) -> RegistryClient {
    let mut credentials = CredentialStore::default();
    credentials.insert(
        registry,
        Credentials {
            username: USER.to_owned(),
            password: PASSWORD.to_owned(),
        },
    );
    RegistryClient::new(RegistryOptions {
        insecure_registries: vec![registry.to_owned()],
        credentials,
        attempts: 1,
        ..RegistryOptions::default()
    })
    .expect("client")
}

fn repository(registry: &str) -> Repository {
    Repository {
        registry: registry.to_owned(),
        repository: "site/mirror/app".to_owned(),
    }
}

#[tokio::test]
async fn a_token_realm_on_another_host_gets_no_credentials() {
    // The other host: a token service that hands out a token to anyone.
    let (realm_host, realm_seen) =
        stand_in(|_| respond("200 OK", "", r#"{"token":"anonymous-token"}"#)).await;
    // STAND-IN registry: challenges with a Bearer realm on the other host.
    let challenge =
        format!("WWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"stand-in\"\r\n");
    let (registry, registry_seen) = stand_in(move |head| {
        if head.contains("Bearer anonymous-token") {
            respond("404 Not Found", "", "")
        } else {
            respond("401 Unauthorized", &challenge, "")
        }
    })
    .await;

    let client = client_with_credentials(&registry);
    let digest = format!("sha256:{}", "a".repeat(64));
    let exists = client
        .blob_exists(&repository(&registry), &digest)
        .await
        .expect("an anonymous token still works");
    assert!(!exists);

    let realm_requests = realm_seen.lock().expect("record").clone();
    assert_eq!(realm_requests.len(), 1, "{realm_requests:?}");
    assert!(
        !realm_requests.iter().any(|head| has_authorization(head)),
        "the registry's credentials went to a token realm on another host: {realm_requests:?}"
    );
    // The token it gave still goes to the registry itself.
    let registry_requests = registry_seen.lock().expect("record").clone();
    assert!(
        registry_requests
            .last()
            .is_some_and(|head| head.contains("Bearer anonymous-token")),
        "{registry_requests:?}"
    );
}

#[tokio::test]
async fn a_token_realm_on_another_host_that_wants_credentials_is_refused_clearly() {
    let (realm_host, realm_seen) = stand_in(|_| respond("401 Unauthorized", "", "")).await;
    let challenge = format!("WWW-Authenticate: Bearer realm=\"http://{realm_host}/token\"\r\n");
    let (registry, _) = stand_in(move |_| respond("401 Unauthorized", &challenge, "")).await;

    let client = client_with_credentials(&registry);
    let digest = format!("sha256:{}", "b".repeat(64));
    let error = client
        .blob_exists(&repository(&registry), &digest)
        .await
        .expect_err("the realm refuses anonymous tokens");
    assert!(
        matches!(error, RegistryError::CredentialsWithheld { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&realm_host) && text.contains("only to the registry itself"),
        "{text}"
    );
    assert!(
        !realm_seen
            .lock()
            .expect("record")
            .iter()
            .any(|head| has_authorization(head)),
        "credentials leaked to the realm"
    );
}

#[tokio::test]
async fn an_upload_location_on_another_host_gets_no_cached_authorization() {
    // The other host: takes uploads without asking for credentials, or asks for them on /ask.
    let (storage, storage_seen) = stand_in(|head| {
        if head.contains("/ask") {
            respond(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"storage\"\r\n",
                "",
            )
        } else {
            respond("201 Created", "", "")
        }
    })
    .await;
    // STAND-IN registry: Basic auth, and upload sessions that live on the other host.
    let expected = basic_header();
    let location_host = storage.clone();
    let ask = Arc::new(Mutex::new(false));
    let asking = ask.clone();
    let (registry, _) = stand_in(move |head| {
        let authorized = head.to_ascii_lowercase().lines().any(|line| line == expected);
        if !authorized {
            return respond(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"registry\"\r\n",
                "",
            );
        }
        let path = if asking.lock().is_ok_and(|ask| *ask) {
            "ask"
        } else {
            "upload"
        };
        respond(
            "202 Accepted",
            &format!("Location: http://{location_host}/{path}/1\r\n"),
            "",
        )
    })
    .await;

    let client = client_with_credentials(&registry);
    client
        .push_small_blob(&repository(&registry), b"probe")
        .await
        .expect("the upload completes on the other host without credentials");
    let storage_requests = storage_seen.lock().expect("record").clone();
    assert_eq!(storage_requests.len(), 1, "{storage_requests:?}");
    assert!(
        !has_authorization(&storage_requests[0]),
        "the registry's credentials went to an upload location on another host: {storage_requests:?}"
    );

    // A location elsewhere that asks for credentials is refused, naming it.
    *ask.lock().expect("flag") = true;
    let error = client
        .push_small_blob(&repository(&registry), b"probe 2")
        .await
        .expect_err("credentials are never sent to the other host");
    assert!(
        matches!(error, RegistryError::CredentialsWithheld { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&storage), "{error}");
    assert!(
        !storage_seen
            .lock()
            .expect("record")
            .iter()
            .any(|head| has_authorization(head)),
        "credentials leaked to the upload location"
    );
}

#[tokio::test]
async fn the_real_registry_still_gets_its_own_credentials() {
    let target = Registry::start(RegistryFlavour::TlsBasicAuth)
        .await
        .expect("registry");
    let (user, password) = target.credentials().expect("credentials");
    let mut credentials = CredentialStore::default();
    credentials.insert(
        &target.host(),
        Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        },
    );
    let client = RegistryClient::new(RegistryOptions {
        ca_files: target
            .ca_file()
            .map(std::path::Path::to_path_buf)
            .into_iter()
            .collect(),
        credentials,
        attempts: 1,
        ..RegistryOptions::default()
    })
    .expect("client");
    let repository = repository(&target.host());
    let digest = client
        .push_small_blob(&repository, b"credentials scoped to the registry")
        .await
        .expect("push with the registry's own credentials");
    assert!(client.blob_exists(&repository, &digest).await.expect("HEAD"));
}
