//! From Kubernetes objects to a routing plan: which servers (hosts) nginx has, their TLS
//! certificates, and each path's backend.
//!
//! The rules follow ingress-nginx where the chart relies on them: rules of every Ingress of the
//! class merge per host (the oldest Ingress wins a host and path that two define), a rule
//! without a host belongs to the default server, a TLS entry applies to the hosts it lists (one
//! without hosts to the default server), and a backend is the Service's cluster IP and port
//! (ingress-nginx's `service-upstream` mode; ingress-nginx's default is the pod endpoints).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressRule, IngressTLS};
use sha2::{Digest, Sha256};

/// The name of the default server, as nginx's `server_name` (it matches no real host).
pub const DEFAULT_SERVER_NAME: &str = "_";

/// The file name of the default ("fake") certificate among the plan's certificates.
pub const DEFAULT_CERTIFICATE_FILE: &str = "default-fake-certificate.pem";

/// Settings from the controller's ConfigMap (ingress-nginx's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `proxy-connect-timeout`, seconds (default 5).
    pub proxy_connect_timeout: u32,
    /// `proxy-read-timeout`, seconds (default 60).
    pub proxy_read_timeout: u32,
    /// `proxy-send-timeout`, seconds (default 60).
    pub proxy_send_timeout: u32,
    /// `proxy-body-size`, an nginx size (default `1m`; `0` is unlimited).
    pub proxy_body_size: String,
    /// `ssl-redirect`: whether plain HTTP to a host with TLS is redirected (default true).
    pub ssl_redirect: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            proxy_connect_timeout: 5,
            proxy_read_timeout: 60,
            proxy_send_timeout: 60,
            proxy_body_size: "1m".to_owned(),
            ssl_redirect: true,
        }
    }
}

impl Settings {
    /// The settings a ConfigMap's `data` gives, and a warning per value that was not usable
    /// (its default is kept). Keys this stand-in does not implement are ignored.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut warnings = Vec::new();
        for (key, value) in data {
            let value = value.trim();
            let seconds = |warnings: &mut Vec<String>| match value.parse::<u32>() {
                Ok(seconds) => Some(seconds),
                Err(_) => {
                    warnings.push(format!(
                        "ConfigMap key {key}: {value:?} is not a number of seconds"
                    ));
                    None
                }
            };
            match key.as_str() {
                "proxy-connect-timeout" => {
                    if let Some(seconds) = seconds(&mut warnings) {
                        settings.proxy_connect_timeout = seconds;
                    }
                }
                "proxy-read-timeout" => {
                    if let Some(seconds) = seconds(&mut warnings) {
                        settings.proxy_read_timeout = seconds;
                    }
                }
                "proxy-send-timeout" => {
                    if let Some(seconds) = seconds(&mut warnings) {
                        settings.proxy_send_timeout = seconds;
                    }
                }
                "proxy-body-size" => {
                    if is_nginx_size(value) {
                        settings.proxy_body_size = value.to_owned();
                    } else {
                        warnings.push(format!("ConfigMap key {key}: {value:?} is not an nginx size"));
                    }
                }
                "ssl-redirect" => match value {
                    "true" => settings.ssl_redirect = true,
                    "false" => settings.ssl_redirect = false,
                    _ => warnings.push(format!("ConfigMap key {key}: {value:?} is not true or false")),
                },
                _ => {}
            }
        }
        (settings, warnings)
    }
}

/// Whether `value` is an nginx size: digits with an optional `k`, `m` or `g` (any case).
fn is_nginx_size(value: &str) -> bool {
    let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    value.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Everything the controller reads from the cluster, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The Ingresses of the controller's class (others are filtered out before).
    pub ingresses: Vec<Ingress>,
    /// The Services of the watched namespace.
    pub services: Vec<Service>,
    /// The Secrets of the watched namespace.
    pub secrets: Vec<Secret>,
    /// The ConfigMap's settings.
    pub settings: Settings,
}

/// Where a path's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A Service's cluster IP and port: `proxy_pass http://ADDRESS`.
    Upstream {
        /// `namespace/name:port` of the Service, for logs.
        service: String,
        /// `IP:PORT`.
        address: String,
    },
    /// No usable Service: nginx answers 503, as ingress-nginx does for a backend without
    /// endpoints.
    Unavailable {
        /// `namespace/name:port` of the Service, for logs.
        service: String,
        /// Why.
        reason: String,
    },
}

/// How a location matches request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// `pathType: Exact`: `location = /p`.
    Exact,
    /// `pathType: Prefix` (and `ImplementationSpecific`): `location /p/` plus `location = /p`,
    /// so `/p`, `/p/` and `/p/x` match and `/px` does not; the longest prefix wins.
    Prefix,
}

/// One path of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The path as written in the Ingress (validated: `/` and `[A-Za-z0-9-._~/]`).
    pub path: String,
    /// How it matches.
    pub kind: Match,
    /// Where it goes.
    pub backend: Backend,
    /// `namespace/name` of the Ingress that defines it.
    pub ingress: String,
}

/// One nginx `server`: a host (or the default server) with its paths and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `server_name`: a host, a wildcard `*.domain`, or [`DEFAULT_SERVER_NAME`].
    pub name: String,
    /// The file name (in the plan's certificates) of its certificate and key, if it has TLS
    /// from an Ingress; a server without one serves the default certificate on HTTPS.
    pub certificate: Option<String>,
    /// Its paths, in the order they were defined.
    pub locations: Vec<Location>,
}

/// The whole routing plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The default server (requests for unknown hosts, and rules without a host).
    pub default_server: Server,
    /// The host servers, sorted by name.
    pub servers: Vec<Server>,
    /// Certificate files by name: each a PEM certificate chain followed by its key. The names
    /// carry a hash of the contents, so a changed certificate changes the nginx config.
    pub certificates: BTreeMap<String, Vec<u8>>,
    /// The settings the plan was made with.
    pub settings: Settings,
    /// Objects or parts skipped, one message each (logged by the controller, refused by the
    /// admission webhook when they concern the Ingress under review).
    pub problems: Vec<Problem>,
}

/// A part of an Ingress that the plan leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// What is wrong.
    pub message: String,
    /// Whether the admission webhook refuses the Ingress for it (an invalid host or path, a
    /// conflict); a missing Secret or Service is only reported, as ingress-nginx does.
    pub refuses: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ingress {}: {}", self.ingress, self.message)
    }
}

impl Plan {
    /// One line per route (`host path -> backend`), for logging what changed.
    pub fn routes(&self) -> Vec<String> {
        let mut routes = Vec::new();
        for server in std::iter::once(&self.default_server).chain(&self.servers) {
            let tls = if server.certificate.is_some() {
                " (tls)"
            } else {
                ""
            };
            for location in &server.locations {
                let kind = match location.kind {
                    Match::Exact => "=",
                    Match::Prefix => "",
                };
                let backend = match &location.backend {
                    Backend::Upstream { service, address } => format!("{service} ({address})"),
                    Backend::Unavailable { service, reason } => format!("{service} (503: {reason})"),
                };
                routes.push(format!(
                    "{}{tls} {kind}{} -> {backend}",
                    server.name, location.path
                ));
            }
        }
        routes
    }
}

/// Makes the plan for `snapshot`; `default_certificate` is the PEM certificate and key that
/// servers without TLS present on HTTPS.
pub fn plan(snapshot: &Snapshot, default_certificate: &[u8]) -> Plan {
    let mut certificates = BTreeMap::new();
    certificates.insert(DEFAULT_CERTIFICATE_FILE.to_owned(), default_certificate.to_vec());
    let mut plan = Plan {
        default_server: Server {
            name: DEFAULT_SERVER_NAME.to_owned(),
            certificate: None,
            locations: Vec::new(),
        },
        servers: Vec::new(),
        certificates,
        settings: snapshot.settings.clone(),
        problems: Vec::new(),
    };
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    let mut ingresses: Vec<&Ingress> = snapshot.ingresses.iter().collect();
    ingresses.sort_by_key(|ingress| {
        (
            ingress.metadata.creation_timestamp.as_ref().map(|time| time.0),
            ingress.metadata.namespace.clone(),
            ingress.metadata.name.clone(),
        )
    });
    for ingress in ingresses {
        add_ingress(&mut plan, &mut servers, ingress, snapshot);
    }
    plan.servers = servers.into_values().collect();
    plan
}

/// `namespace/name` of an object's metadata.
fn qualified_name(ingress: &Ingress) -> String {
    format!(
        "{}/{}",
        ingress.metadata.namespace.as_deref().unwrap_or_default(),
        ingress.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Adds an Ingress to the plan: its TLS entries (the certificates of the servers they name, or
/// of the default server), its default backend, then its rules' paths. What is wrong with it
/// becomes a problem of the plan (refused by the webhook or only reported).
fn add_ingress(
    plan: &mut Plan,
    servers: &mut BTreeMap<String, Server>,
    ingress: &Ingress,
    snapshot: &Snapshot,
) {
    let name = qualified_name(ingress);
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    let Some(spec) = &ingress.spec else { return };
    let mut problem = |message: String| {
        let refuses = !(message.starts_with("TLS Secret") || message.contains("without secretName"));
        plan.problems.push(Problem {
            ingress: name.clone(),
            message,
            refuses,
        })
    };

    // TLS first, so that the servers it names exist with their certificate.
    for tls in spec.tls.iter().flatten() {
        add_tls_entry(
            &mut plan.default_server,
            &mut plan.certificates,
            servers,
            tls,
            snapshot,
            namespace,
            &mut problem,
        );
    }

    if let Some(backend) = &spec.default_backend {
        let backend = resolve_backend(snapshot, namespace, backend);
        add_location(
            &mut plan.default_server,
            "/",
            Match::Prefix,
            backend,
            &name,
            &mut problem,
        );
    }

    for rule in spec.rules.iter().flatten() {
        let server = match rule.host.as_deref() {
            None | Some("") => &mut plan.default_server,
            Some(host) => {
                if let Err(message) = check_host(host) {
                    problem(message);
                    continue;
                }
                servers.entry(host.to_owned()).or_insert_with(|| Server {
                    name: host.to_owned(),
                    certificate: None,
                    locations: Vec::new(),
                })
            }
        };
        add_rule_paths(server, rule, snapshot, namespace, &name, &mut problem);
    }
}

/// Adds one TLS entry of an Ingress: its Secret's certificate goes to the servers of its hosts
/// (see [`add_certificate_to_hosts`]), or, without hosts, to the default server unless it has
/// one. An entry without a Secret, or whose Secret is missing or unusable, is a problem.
fn add_tls_entry(
    default_server: &mut Server,
    certificates: &mut BTreeMap<String, Vec<u8>>,
    servers: &mut BTreeMap<String, Server>,
    tls: &IngressTLS,
    snapshot: &Snapshot,
    namespace: &str,
    problem: &mut impl FnMut(String),
) {
    let Some(secret_name) = tls.secret_name.as_deref() else {
        problem("a TLS entry without secretName".to_owned());
        return;
    };
    let certificate = match certificate_file(snapshot, namespace, secret_name) {
        Ok(certificate) => certificate,
        Err(message) => {
            problem(message);
            return;
        }
    };
    let hosts = tls.hosts.clone().unwrap_or_default();
    let (file, contents) = certificate;
    if hosts.is_empty() {
        if default_server.certificate.is_none() {
            default_server.certificate = Some(file.clone());
            certificates.insert(file, contents);
        }
        return;
    }
    add_certificate_to_hosts(servers, certificates, hosts, (file, contents), problem);
}

/// Gives each host of a TLS entry its server (made if new) and, unless it has one from an older
/// entry, the entry's certificate `file` (with its `contents` among the plan's
/// `certificates`). An invalid host is a problem.
fn add_certificate_to_hosts(
    servers: &mut BTreeMap<String, Server>,
    certificates: &mut BTreeMap<String, Vec<u8>>,
    hosts: Vec<String>,
    (file, contents): (String, Vec<u8>),
    problem: &mut impl FnMut(String),
) {
    for host in hosts {
        if let Err(message) = check_host(&host) {
            problem(message);
            continue;
        }
        let server = servers.entry(host.clone()).or_insert_with(|| Server {
            name: host.clone(),
            certificate: None,
            locations: Vec::new(),
        });
        if server.certificate.is_none() {
            server.certificate = Some(file.clone());
            certificates.insert(file.clone(), contents.clone());
        }
    }
}

/// Adds a location to `server` for each path of the rule, with its backend resolved; a path of
/// an unknown type or an invalid path is a problem.
fn add_rule_paths(
    server: &mut Server,
    rule: &IngressRule,
    snapshot: &Snapshot,
    namespace: &str,
    ingress: &str,
    problem: &mut impl FnMut(String),
) {
    for path in rule.http.iter().flat_map(|http| &http.paths) {
        let written = path.path.as_deref().unwrap_or("/");
        let kind = match path.path_type.as_str() {
            "Exact" => Match::Exact,
            "Prefix" | "ImplementationSpecific" => Match::Prefix,
            other => {
                problem(format!("path {written}: unknown pathType {other:?}"));
                continue;
            }
        };
        if let Err(message) = check_path(written) {
            problem(message);
            continue;
        }
        let backend = resolve_backend(snapshot, namespace, &path.backend);
        add_location(server, written, kind, backend, ingress, problem);
    }
}

/// Adds a location unless the server already has one for the same path and kind (the older
/// Ingress keeps it, as in ingress-nginx).
fn add_location(
    server: &mut Server,
    path: &str,
    kind: Match,
    backend: Backend,
    ingress: &str,
    problem: &mut impl FnMut(String),
) {
    let key = normalized(path, kind);
    if let Some(existing) = server
        .locations
        .iter()
        .find(|location| location.kind == kind && normalized(&location.path, kind) == key)
    {
        if existing.ingress != ingress || existing.path != path {
            problem(format!(
                "host {} path {path} is already defined by ingress {}; ignored",
                server.name, existing.ingress
            ));
        }
        return;
    }
    server.locations.push(Location {
        path: path.to_owned(),
        kind,
        backend,
        ingress: ingress.to_owned(),
    });
}

/// The path a location matches on: a prefix path without its trailing slash (Kubernetes
/// ignores it), `/` stays `/`.
pub fn normalized(path: &str, kind: Match) -> &str {
    match kind {
        Match::Exact => path,
        Match::Prefix => match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        },
    }
}

/// A host is lower-case letters, digits, `-` and `.`, optionally after `*.`.
fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['.', '-'])
        && !name.contains("..");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "host {host:?} is not a valid host name; its rules are ignored"
        ))
    }
}

/// A path starts with `/` and has only `A-Za-z0-9-._~/` (ingress-nginx's strict path check).
fn check_path(path: &str) -> Result<(), String> {
    let valid = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "path {path:?} is not an absolute path of the characters A-Za-z0-9-._~/; ignored"
        ))
    }
}

/// The certificate file (name and contents) for Secret `namespace/name`, or why there is none.
fn certificate_file(snapshot: &Snapshot, namespace: &str, name: &str) -> Result<(String, Vec<u8>), String> {
    let secret = snapshot
        .secrets
        .iter()
        .find(|secret| {
            secret.metadata.namespace.as_deref() == Some(namespace)
                && secret.metadata.name.as_deref() == Some(name)
        })
        .ok_or_else(|| {
            format!("TLS Secret {namespace}/{name} not found; its hosts use the default certificate")
        })?;
    let data = secret.data.as_ref();
    let field = |key: &str| {
        data.and_then(|data| data.get(key))
            .map(|bytes| bytes.0.clone())
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| {
                format!("TLS Secret {namespace}/{name} has no {key}; its hosts use the default certificate")
            })
    };
    let (cert, key) = (field("tls.crt")?, field("tls.key")?);
    let looks_pem = |bytes: &[u8], what: &str| {
        if String::from_utf8_lossy(bytes).contains("-----BEGIN ") {
            Ok(())
        } else {
            Err(format!("TLS Secret {namespace}/{name}: {what} is not PEM"))
        }
    };
    looks_pem(&cert, "tls.crt")?;
    looks_pem(&key, "tls.key")?;
    let mut contents = cert;
    if !contents.ends_with(b"\n") {
        contents.push(b'\n');
    }
    contents.extend_from_slice(&key);
    let hash = hex::encode(Sha256::digest(&contents));
    Ok((format!("{namespace}-{name}-{}.pem", &hash[..16]), contents))
}

/// The backend of `backend` in `namespace`.
fn resolve_backend(snapshot: &Snapshot, namespace: &str, backend: &IngressBackend) -> Backend {
    let Some(service) = &backend.service else {
        return Backend::Unavailable {
            service: "(resource backend)".to_owned(),
            reason: "resource backends are not supported".to_owned(),
        };
    };
    let port = service.port.as_ref();
    let port_label = port
        .and_then(|port| {
            port.name
                .clone()
                .or_else(|| port.number.map(|number| number.to_string()))
        })
        .unwrap_or_else(|| "?".to_owned());
    let label = format!("{namespace}/{}:{port_label}", service.name);
    let unavailable = |reason: &str| Backend::Unavailable {
        service: label.clone(),
        reason: reason.to_owned(),
    };
    let Some(found) = snapshot.services.iter().find(|candidate| {
        candidate.metadata.namespace.as_deref() == Some(namespace)
            && candidate.metadata.name.as_deref() == Some(service.name.as_str())
    }) else {
        return unavailable("service not found");
    };
    let Some(spec) = &found.spec else {
        return unavailable("service has no spec");
    };
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => return unavailable("service has no cluster IP"),
        Some(ip) => ip,
    };
    let service_port = spec.ports.iter().flatten().find(|candidate| match port {
        Some(port) if port.number.is_some() => port.number == Some(candidate.port),
        Some(port) => port.name.is_some() && port.name == candidate.name,
        None => true,
    });
    let Some(service_port) = service_port else {
        return unavailable("service has no such port");
    };
    let address = if cluster_ip.contains(':') {
        format!("[{cluster_ip}]:{}", service_port.port)
    } else {
        format!("{cluster_ip}:{}", service_port.port)
    };
    Backend::Upstream {
        service: label,
        address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_values_are_read_and_bad_ones_reported() {
        let data: BTreeMap<String, String> = [
            ("proxy-read-timeout", "3600"),
            ("proxy-send-timeout", "soon"),
            ("proxy-body-size", "8m"),
            ("allow-snippet-annotations", "false"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let (settings, warnings) = Settings::from_config_map(&data);
        assert_eq!(settings.proxy_read_timeout, 3600);
        assert_eq!(settings.proxy_send_timeout, 60);
        assert_eq!(settings.proxy_body_size, "8m");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(is_nginx_size("0") && is_nginx_size("10K") && !is_nginx_size("1mm") && !is_nginx_size("m"));
    }

    #[test]
    fn hosts_and_paths_are_checked() {
        assert!(check_host("*.ws.example.com").is_ok());
        assert!(check_host("coder.example.com").is_ok());
        assert!(check_host("a;b").is_err());
        assert!(check_host("*.").is_err());
        assert!(check_path("/api/v1_x.y~z-").is_ok());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a{").is_err());
        assert!(check_path("api").is_err());
        assert_eq!(normalized("/api/", Match::Prefix), "/api");
        assert_eq!(normalized("/", Match::Prefix), "/");
    }
}
