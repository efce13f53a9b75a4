//! The client half that every call shares: how it connects (plain HTTP hosts, CAs, credentials),
//! the repository a call is about, and how a request is sent: authorised (Basic, or a Bearer token
//! from the registry's challenge, credentials only to the registry's own origin), retried with
//! backoff on connection errors and 5xx, and answered with errors that tell 401 from 403 from 404.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use coder_progress::SharedProgress;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::Mutex;

use crate::auth;
use crate::{Challenge, CredentialStore, Credentials, RegistryError};

/// The largest manifest or index accepted (the distribution registry's own limit is 4 MiB).
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Token services on another host that well-known registries document, trusted with those
/// registries' credentials (over HTTPS only): `(registry, realm host)`.
const WELL_KNOWN_TOKEN_REALMS: &[(&str, &str)] = &[(coder_bundle_spec::DOCKER_HUB, "auth.docker.io")];

/// How a registry client connects: which hosts speak plain HTTP, extra CAs, credentials.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM files) to trust, beside the system's.
    pub ca_files: Vec<PathBuf>,
    /// Credentials per host.
    pub credentials: CredentialStore,
    /// Attempts per request on connection errors and 5xx answers.
    pub attempts: u32,
    /// Whether redirects are followed (downloads) or handed back (learning where blobs live).
    pub redirects: Redirects,
    /// Where warnings go (retries, credentials withheld from another host): stderr unless set.
    pub progress: SharedProgress,
    /// Upload blobs in chunks of this many bytes (`PATCH` with `Content-Range`) instead of one
    /// `PUT` each. Without it blobs go whole until a 413 answer switches to chunks.
    pub upload_chunk_size: Option<u64>,
}

/// What the client does with a redirect answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redirects {
    /// Follow it, as downloads need (registries send blobs to their storage or CDN).
    #[default]
    Follow,
    /// Hand it back to the caller: see [`RegistryClient::blob_redirect`].
    Report,
}

/// Where a piece of content lives: registry host and repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Registry host with port, as written in references (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path.
    pub repository: String,
}

impl Repository {
    /// The repository of a parsed reference.
    pub fn of(reference: &coder_bundle_spec::ImageReference) -> Self {
        Self {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
        }
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

#[derive(Debug, Clone)]
enum Authorization {
    Basic(Credentials),
    Bearer(String),
}

/// A registry client shared by every task of a run.
pub struct RegistryClient {
    pub(crate) http: reqwest::Client,
    pub(crate) options: RegistryOptions,
    /// Authorization per `registry|repository|action`, learnt from challenges.
    authorizations: Mutex<HashMap<String, Authorization>>,
    /// Whole blobs or chunks, for every upload of the client (a 413 changes it for all).
    pub(crate) chunks: crate::chunked::ChunkPolicy,
    /// Set once a registry answered a one-request upload (`POST ?digest=` with the bytes) by
    /// opening a session instead: the client's later small blobs go by `POST` + `PUT` at once.
    pub(crate) single_post_refused: std::sync::atomic::AtomicBool,
}

/// The host a registry's API is served from, as written in references with its port: Docker
/// Hub's differs from its name.
pub fn api_host(registry: &str) -> &str {
    if registry == coder_bundle_spec::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("coder-install/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32);
        if options.redirects == Redirects::Report {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        for path in &options.ca_files {
            let pem = std::fs::read(path).map_err(|error| RegistryError::Config {
                what: format!("CA file {}", path.display()),
                reason: error.to_string(),
            })?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| RegistryError::Config {
                    what: format!("CA file {}", path.display()),
                    reason: format!("not a PEM certificate bundle: {error}"),
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|error| RegistryError::Config {
            what: "HTTP client".to_owned(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            http,
            chunks: crate::chunked::ChunkPolicy::new(options.upload_chunk_size),
            single_post_refused: std::sync::atomic::AtomicBool::new(false),
            options: RegistryOptions {
                attempts: options.attempts.max(1),
                ..options
            },
            authorizations: Mutex::default(),
        })
    }

    /// Tells the user that a request is being retried, and why.
    pub(crate) fn report_retry(&self, url: &str, attempt: u32, reason: &str, delay: Duration) {
        self.options.progress.warning(&format!(
            "retrying {url} in {delay:?} (attempt {attempt} failed: {reason})"
        ));
    }

    /// `scheme://host` of the registry's API (Docker Hub's API host differs from its name).
    pub fn base_url(&self, registry: &str) -> String {
        let host = api_host(registry);
        let scheme = if self
            .options
            .insecure_registries
            .iter()
            .any(|insecure| insecure == registry)
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// Whether credentials for `registry` (Basic credentials or a token it issued) may be sent
    /// to `target`: only to the registry's own origin (scheme, host and port), or to the same
    /// host and port over HTTPS. Plain HTTP only when the registry is an `--insecure-registry`
    /// (its own origin is then `http://`). `Err` says why not.
    fn credential_scope(&self, registry: &str, target: &str) -> Result<(), String> {
        let own = url::Url::parse(&self.base_url(registry))
            .map_err(|error| format!("the registry's URL does not parse: {error}"))?;
        let target = url::Url::parse(target).map_err(|error| format!("the URL does not parse: {error}"))?;
        if target.origin() == own.origin() {
            return Ok(());
        }
        let same_host_and_port = target.host_str() == own.host_str() && target.port() == own.port();
        if same_host_and_port && target.scheme() == "https" {
            return Ok(());
        }
        if same_host_and_port {
            return Err(format!(
                "plain {}:// to a registry reached over {}://",
                target.scheme(),
                own.scheme()
            ));
        }
        Err(format!(
            "another origin than {}",
            own.origin().ascii_serialization()
        ))
    }

    /// Whether Basic credentials for `registry` may go to the token `realm`: the registry's own
    /// host (see [`Self::credential_scope`]), or the documented token service of a well-known
    /// registry over HTTPS.
    fn realm_scope(&self, registry: &str, realm: &str) -> Result<(), String> {
        let own = self.credential_scope(registry, realm);
        if own.is_ok() {
            return own;
        }
        let well_known = url::Url::parse(realm).is_ok_and(|url| {
            url.scheme() == "https"
                && url.port().is_none()
                && WELL_KNOWN_TOKEN_REALMS
                    .iter()
                    .any(|(name, host)| *name == registry && url.host_str() == Some(host))
        });
        if well_known { Ok(()) } else { own }
    }

    /// Sends a request to `/v2/<repository>/<path>`, answering authentication challenges and
    /// retrying connection errors and 5xx answers with backoff. 401 and 403 become errors; other
    /// statuses are the caller's to interpret.
    pub(crate) async fn request(
        &self,
        method: Method,
        repository: &Repository,
        path: &str,
        headers: HeaderMap,
        action: &'static str,
    ) -> Result<Response, RegistryError> {
        let url = self.api_url(repository, path);
        self.send_authorized(Call {
            method,
            url,
            repository,
            headers,
            action,
            body: None,
            also_pull_from: None,
            attempts: self.options.attempts,
        })
        .await
    }

    /// `scheme://host/v2/<repository>/<path>`.
    pub(crate) fn api_url(&self, repository: &Repository, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.base_url(&repository.registry),
            repository.repository
        )
    }

    /// Sends `call`, answering one authentication challenge (the authorization learnt is kept
    /// for later calls on the same repository and action). 401 and 403 become errors.
    pub(crate) async fn send_authorized(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        let repository = call.repository;
        let key = format!(
            "{}|{}|{}|{}",
            repository.registry,
            repository.repository,
            call.action,
            call.also_pull_from.unwrap_or_default()
        );
        let mut authorization = self.authorizations.lock().await.get(&key).cloned();
        let mut answered_challenge = false;
        loop {
            let response = self.send_with_retries(&call, authorization.as_ref()).await?;
            match response.status() {
                StatusCode::UNAUTHORIZED if !answered_challenge => {
                    if let Err(reason) = self.credential_scope(&repository.registry, &call.url) {
                        return Err(RegistryError::CredentialsWithheld {
                            registry: repository.registry.clone(),
                            target: call.url.clone(),
                            reason,
                        });
                    }
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|value| value.to_str().ok())
                        .and_then(Challenge::parse);
                    let Some(challenge) = challenge else {
                        return Err(self.unauthorized(repository));
                    };
                    let new = self
                        .answer_challenge(challenge, repository, call.action, call.also_pull_from)
                        .await?;
                    self.authorizations.lock().await.insert(key.clone(), new.clone());
                    authorization = Some(new);
                    answered_challenge = true;
                }
                StatusCode::UNAUTHORIZED => return Err(self.unauthorized(repository)),
                StatusCode::FORBIDDEN => return Err(forbidden(repository, call.action)),
                _ => return Ok(response),
            }
        }
    }

    fn unauthorized(&self, repository: &Repository) -> RegistryError {
        RegistryError::Unauthorized {
            registry: repository.registry.clone(),
            repository: repository.repository.clone(),
            with_credentials: self.options.credentials.get(&repository.registry).is_some(),
        }
    }

    async fn answer_challenge(
        &self,
        challenge: Challenge,
        repository: &Repository,
        action: &'static str,
        also_pull_from: Option<&str>,
    ) -> Result<Authorization, RegistryError> {
        let credentials = self.options.credentials.get(&repository.registry).cloned();
        match challenge {
            Challenge::Basic => credentials
                .map(Authorization::Basic)
                .ok_or_else(|| self.unauthorized(repository)),
            Challenge::Bearer {
                realm,
                service,
                scope: _,
            } => {
                let mut query = vec![("scope", bearer_scope(&repository.repository, action))];
                if let Some(from) = also_pull_from {
                    // A cross-repository mount reads the source repository too.
                    query.push(("scope", bearer_scope(from, "pull")));
                }
                if let Some(service) = &service {
                    query.push(("service", service.clone()));
                }
                let mut request = self.http.get(&realm).query(&query);
                // A realm elsewhere gets an anonymous token request: the credentials are the
                // registry's, and a registry must not be able to send them to another host.
                let withheld = self.realm_scope(&repository.registry, &realm).err();
                match (&credentials, &withheld) {
                    (Some(credentials), None) => {
                        request = request.basic_auth(&credentials.username, Some(&credentials.password));
                    }
                    (Some(_), Some(reason)) => self.options.progress.warning(&format!(
                        "warning: {}: not sending its credentials to the token service {realm} ({reason}); asking for an anonymous token",
                        repository.registry
                    )),
                    (None, _) => {}
                }
                let response = request.send().await.map_err(|source| RegistryError::Transport {
                    url: realm.clone(),
                    source,
                })?;
                match response.status() {
                    StatusCode::UNAUTHORIZED if credentials.is_some() && withheld.is_some() => {
                        return Err(RegistryError::CredentialsWithheld {
                            registry: repository.registry.clone(),
                            target: realm,
                            reason: withheld.unwrap_or_default(),
                        });
                    }
                    StatusCode::UNAUTHORIZED => return Err(self.unauthorized(repository)),
                    StatusCode::FORBIDDEN => return Err(forbidden(repository, action)),
                    _ => {}
                }
                let response = expect_success(response).await?;
                let body = read_limited(response, 1 << 20, &realm).await?;
                let token: auth::TokenResponse = serde_json::from_slice(&body)
                    .map_err(|_| RegistryError::TokenResponse { realm: realm.clone() })?;
                token
                    .token
                    .or(token.access_token)
                    .filter(|token| !token.is_empty())
                    .map(Authorization::Bearer)
                    .ok_or(RegistryError::TokenResponse { realm })
            }
        }
    }

    async fn send_with_retries(
        &self,
        call: &Call<'_>,
        authorization: Option<&Authorization>,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(call.method.clone(), &call.url)
                .headers(call.headers.clone());
            if let Some(body) = call.body {
                request = request.body(body());
            }
            // Cached authorization goes only to the registry itself, never to an upload
            // location (or a redirect) on another host or downgraded to plain HTTP.
            let in_scope = authorization.is_some()
                && self
                    .credential_scope(&call.repository.registry, &call.url)
                    .is_ok();
            match authorization.filter(|_| in_scope) {
                Some(Authorization::Basic(credentials)) => {
                    request = request.basic_auth(&credentials.username, Some(&credentials.password));
                }
                Some(Authorization::Bearer(token)) => {
                    request = request.header(AUTHORIZATION, format!("Bearer {token}"))
                }
                None => {}
            }
            let retryable = match request.send().await {
                Ok(response) if response.status().is_server_error() && attempt < call.attempts => {
                    format!("HTTP {}", response.status())
                }
                Ok(response) => return Ok(response),
                Err(error)
                    if attempt < call.attempts
                        && (error.is_connect() || error.is_timeout() || error.is_request()) =>
                {
                    coder_progress::error_chain(&error)
                }
                Err(source) => {
                    return Err(RegistryError::Transport {
                        url: call.url.clone(),
                        source,
                    });
                }
            };
            let delay = Duration::from_millis(250 * 4u64.pow(attempt - 1));
            self.report_retry(&call.url, attempt, &retryable, delay);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// Makes a request body again for each attempt (a streamed body can be sent only once).
pub(crate) type BodyFactory<'a> = &'a (dyn Fn() -> reqwest::Body + Send + Sync);

/// One registry request, as [`RegistryClient::send_authorized`] sends it.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// The full URL (upload locations are full URLs the registry chose).
    pub(crate) url: String,
    /// The repository the call acts on, for authentication and error messages.
    pub(crate) repository: &'a Repository,
    pub(crate) headers: HeaderMap,
    /// `pull`, or `push,pull`.
    pub(crate) action: &'static str,
    pub(crate) body: Option<BodyFactory<'a>>,
    /// For a cross-repository mount: the source repository, whose pull scope the token needs.
    pub(crate) also_pull_from: Option<&'a str>,
    /// Attempts on connection errors and 5xx answers.
    pub(crate) attempts: u32,
}

/// The token scope `repository:<path>:<actions>`.
pub(crate) fn bearer_scope(repository: &str, action: &str) -> String {
    format!("repository:{repository}:{action}")
}

pub(crate) fn forbidden(repository: &Repository, action: &'static str) -> RegistryError {
    RegistryError::Forbidden {
        registry: repository.registry.clone(),
        repository: repository.repository.clone(),
        action,
    }
}

pub(crate) fn header_value(text: &str) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(text).map_err(|error| RegistryError::Config {
        what: format!("header value {text:?}"),
        reason: error.to_string(),
    })
}

/// Turns a non-2xx response into [`RegistryError::Status`] with the start of its body.
pub(crate) async fn expect_success(response: Response) -> Result<Response, RegistryError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    let status = response.status().as_u16();
    let body = error_body(response).await;
    Err(RegistryError::Status {
        url,
        status,
        body: body.chars().take(300).collect(),
    })
}

/// How much of an error answer's body is read: plenty for a registry's error JSON.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// The start of an error answer's body, as text: at most [`ERROR_BODY_LIMIT`] bytes are read
/// and the rest is never downloaded (the connection is dropped), however large or endless it is.
pub(crate) async fn error_body(mut response: Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_LIMIT - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads a small body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transport {
            url: url.to_owned(),
            source,
        })?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(RegistryError::InvalidManifest {
                reference: url.to_owned(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure: &[&str]) -> RegistryClient {
        RegistryClient::new(RegistryOptions {
            insecure_registries: insecure.iter().map(|host| (*host).to_owned()).collect(),
            ..RegistryOptions::default()
        })
        .expect("client")
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_origin() {
        let secure = client(&[]);
        let own = "registry.site:5000";
        assert!(
            secure
                .credential_scope(own, "https://registry.site:5000/v2/a/blobs/uploads/1")
                .is_ok()
        );
        // Another port, another host, or a downgrade to plain HTTP is another origin.
        for elsewhere in [
            "https://registry.site:5001/upload",
            "https://storage.example.com/upload",
            "http://registry.site:5000/v2/a/blobs/uploads/1",
        ] {
            assert!(secure.credential_scope(own, elsewhere).is_err(), "{elsewhere}");
        }
        // Plain HTTP only for an --insecure-registry, and then HTTPS on the same host too.
        let insecure = client(&[own]);
        assert!(
            insecure
                .credential_scope(own, "http://registry.site:5000/v2/")
                .is_ok()
        );
        assert!(
            insecure
                .credential_scope(own, "https://registry.site:5000/token")
                .is_ok()
        );
        assert!(
            insecure
                .credential_scope(own, "http://registry.site:5001/token")
                .is_err()
        );
    }

    #[test]
    fn token_realms_elsewhere_get_no_credentials_except_documented_ones_over_https() {
        let secure = client(&[]);
        assert!(
            secure
                .realm_scope("registry.site", "https://registry.site/token")
                .is_ok()
        );
        assert!(
            secure
                .realm_scope("registry.site", "https://auth.example.com/token")
                .is_err()
        );
        assert!(
            secure
                .realm_scope("docker.io", "https://auth.docker.io/token")
                .is_ok()
        );
        assert!(
            secure
                .realm_scope("docker.io", "http://auth.docker.io/token")
                .is_err()
        );
        assert!(
            secure
                .realm_scope("registry.site", "https://auth.docker.io/token")
                .is_err()
        );
    }
}
