//! Registry authentication: credentials from the Docker config or the command line, and the
//! `WWW-Authenticate` challenges (Basic, and Bearer with a token server) of the distribution spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::RegistryError;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials per registry host, as `docker login` stores them.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    by_host: HashMap<String, Credentials>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl CredentialStore {
    /// Loads `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`; a missing file is no error.
    pub fn from_docker_config() -> Result<Self, RegistryError> {
        let path = docker_config_path();
        match path.as_deref().map(std::fs::read) {
            Some(Ok(bytes)) => {
                Self::parse_docker_config(&bytes, path.as_deref().unwrap_or(Path::new("config.json")))
            }
            _ => Ok(Self::default()),
        }
    }

    fn parse_docker_config(bytes: &[u8], path: &Path) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::Config {
            what: path.display().to_string(),
            reason,
        };
        let config: DockerConfig =
            serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        let mut store = Self::default();
        for (key, entry) in config.auths {
            let credentials = match (entry.auth, entry.username, entry.password) {
                (Some(encoded), _, _) if !encoded.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|error| invalid(format!("auths.{key}.auth is not base64: {error}")))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|_| invalid(format!("auths.{key}.auth is not UTF-8")))?;
                    let (username, password) = decoded
                        .split_once(':')
                        .ok_or_else(|| invalid(format!("auths.{key}.auth is not user:password")))?;
                    Credentials {
                        username: username.to_owned(),
                        password: password.to_owned(),
                    }
                }
                (_, Some(username), Some(password)) => Credentials { username, password },
                _ => continue,
            };
            store.by_host.insert(normalise_config_key(&key), credentials);
        }
        Ok(store)
    }

    /// Sets the credentials for `host`, replacing any from the Docker config.
    pub fn insert(&mut self, host: &str, credentials: Credentials) {
        self.by_host.insert(host.to_owned(), credentials);
    }

    /// The credentials for registry `host` (e.g. `docker.io`, `registry.example.com:5000`).
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        self.by_host.get(host)
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// Docker config keys are hosts or URLs (`https://index.docker.io/v1/` for Docker Hub).
fn normalise_config_key(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" => coder_bundle_spec::DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`: send the credentials with every request.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`: fetch a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter, if given.
        service: Option<String>,
        /// The `scope` parameter, if given.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Self::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `key="value", key2=value2`: quoted values may contain commas.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// A token server's answer (`token`, or the OAuth2 `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn docker_config_entries_are_read_by_host() {
        let config = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"r.example.com:5000":{"username":"u","password":"p"},"empty.example.com":{}}}"#;
        let store = CredentialStore::parse_docker_config(config, Path::new("config.json")).expect("parse");
        assert_eq!(store.get("docker.io").map(|c| c.username.as_str()), Some("user"));
        assert_eq!(store.get("docker.io").map(|c| c.password.as_str()), Some("pass"));
        assert_eq!(
            store.get("r.example.com:5000").map(|c| c.password.as_str()),
            Some("p")
        );
        assert!(store.get("empty.example.com").is_none());
    }

    #[test]
    fn a_malformed_docker_config_names_the_entry() {
        let error =
            CredentialStore::parse_docker_config(br#"{"auths":{"h":{"auth":"!!"}}}"#, Path::new("c.json"))
                .expect_err("bad base64")
                .to_string();
        assert!(error.contains("auths.h.auth"), "{error}");
    }
}
