//! Objects → plan → nginx.conf, each config checked by the host's real `nginx -t`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

use crate::certs;
use crate::model::{Backend, Settings, Snapshot, plan};
use crate::nginx::{DEFAULT_NGINX, test_in_scratch};
use crate::render::{Layout, Ports, render};

fn ingress(value: serde_json::Value) -> Ingress {
    serde_json::from_value(value).expect("an Ingress")
}

fn service(name: &str, ip: &str, port: i32) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "coder"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": port}]},
    }))
    .expect("a Service")
}

fn tls_secret(name: &str, hosts: &[&str]) -> Secret {
    let ca = certs::webhook_certificates(&hosts.iter().map(|host| (*host).to_owned()).collect::<Vec<_>>())
        .expect("certificates");
    use base64::Engine;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "coder"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": encode(&ca.server.cert), "tls.key": encode(&ca.server.key)},
    }))
    .expect("a Secret")
}

/// The chart's Ingress (60-ingress.yaml) with a host, a workspace domain and TLS for both.
fn chart_snapshot() -> Snapshot {
    let backend = |name: &str, port: i32| json!({"service": {"name": name, "port": {"number": port}}});
    let coder = ingress(json!({
        "metadata": {"name": "coder", "namespace": "coder", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "ingressClassName": "coder-nginx-coder",
            "tls": [
                {"secretName": "coder-tls", "hosts": ["coder.example.com"]},
                {"secretName": "workspace-tls", "hosts": ["*.ws.example.com"]},
            ],
            "rules": [
                {"host": "*.ws.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("coder-envproxy", 8081)},
                ]}},
                {"host": "coder.example.com", "http": {"paths": [
                    {"path": "/api/", "pathType": "Prefix", "backend": backend("coder-manager", 8080)},
                    {"path": "/auth/", "pathType": "Prefix", "backend": backend("coder-manager", 8080)},
                    {"path": "/proxy/", "pathType": "Prefix", "backend": backend("coder-envproxy", 8081)},
                    {"path": "/", "pathType": "Prefix", "backend": backend("coder-dashboard", 3000)},
                    {"path": "/healthz", "pathType": "Exact", "backend": backend("coder-missing", 80)},
                ]}},
            ],
        },
    }));
    let config_map: BTreeMap<String, String> =
        [("proxy-read-timeout", "3600"), ("proxy-send-timeout", "3600")]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
    Snapshot {
        ingresses: vec![coder],
        services: vec![
            service("coder-manager", "198.19.0.10", 8080),
            service("coder-envproxy", "198.19.0.11", 8081),
            service("coder-dashboard", "198.19.0.12", 3000),
        ],
        secrets: vec![
            tls_secret("coder-tls", &["coder.example.com"]),
            tls_secret("workspace-tls", &["*.ws.example.com"]),
        ],
        settings: Settings::from_config_map(&config_map).0,
    }
}

fn default_certificate() -> Vec<u8> {
    certs::default_certificate()
        .expect("default certificate")
        .combined()
}

/// Renders `snapshot` into a scratch directory and runs the real `nginx -t` on it.
async fn nginx_accepts(snapshot: &Snapshot) -> Result<String, String> {
    let scratch = tempfile::tempdir().expect("scratch");
    let plan = plan(snapshot, &default_certificate());
    let mut rendered = String::new();
    let result = test_in_scratch(Path::new(DEFAULT_NGINX), scratch.path(), |layout| {
        rendered = render(&plan, layout, Ports::default());
        (rendered.clone(), plan.certificates.clone())
    })
    .await;
    result.map(|()| rendered).map_err(|error| error.to_string())
}

/// The lines of `conf` between `server_name NAME;` and the server's end (`    }`).
fn server_block<'a>(conf: &'a str, name: &str) -> &'a str {
    let start = conf
        .find(&format!("server_name {name};"))
        .unwrap_or_else(|| panic!("no server {name} in:\n{conf}"));
    let rest = &conf[start..];
    let end = rest.find("\n    }\n").unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test]
async fn the_charts_ingress_renders_a_config_nginx_accepts() {
    let conf = nginx_accepts(&chart_snapshot())
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let coder = server_block(&conf, "coder.example.com");
    assert!(coder.contains("listen 443 ssl;"), "{coder}");
    assert!(coder.contains("return 308 https://$host$request_uri;"), "{coder}");
    assert!(coder.contains("location /api/ {\n            # coder/coder-manager:8080\n            proxy_pass http://198.19.0.10:8080;"), "{coder}");
    assert!(coder.contains("location = /api {"), "{coder}");
    assert!(coder.contains("location /proxy/ {"), "{coder}");
    assert!(coder.contains("location / {\n            # coder/coder-dashboard:3000\n            proxy_pass http://198.19.0.12:3000;"), "{coder}");
    assert!(coder.contains("location = /healthz {\n            # coder/coder-missing:80: service not found\n            return 503;"), "{coder}");
    assert!(
        coder.contains("ssl_certificate /") && coder.contains("/ssl/coder-coder-tls-"),
        "{coder}"
    );
    for directive in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $best_http_host;",
        "proxy_set_header X-Forwarded-Port $server_port;",
        "client_max_body_size 1m;",
    ] {
        assert!(coder.contains(directive), "{directive} missing in:\n{coder}");
    }

    let workspaces = server_block(&conf, "*.ws.example.com");
    assert!(
        workspaces.contains("proxy_pass http://198.19.0.11:8081;"),
        "{workspaces}"
    );
    assert!(workspaces.contains("/ssl/coder-workspace-tls-"), "{workspaces}");
    assert!(workspaces.contains("return 308"), "{workspaces}");

    let default = server_block(&conf, "_");
    assert!(default.contains("listen 80 default_server;"), "{default}");
    assert!(default.contains("listen 443 ssl default_server;"), "{default}");
    assert!(
        default.contains("location / {\n            return 404;"),
        "{default}"
    );
    assert!(default.contains("default-fake-certificate.pem"), "{default}");
    assert!(!default.contains("return 308"), "{default}");
    assert!(conf.contains("map $http_upgrade $connection_upgrade {"), "{conf}");
}

#[tokio::test]
async fn a_host_without_tls_is_not_redirected_and_a_hostless_rule_goes_to_the_default_server() {
    let mut snapshot = chart_snapshot();
    snapshot.ingresses = vec![ingress(json!({
        "metadata": {"name": "plain", "namespace": "coder"},
        "spec": {"rules": [
            {"host": "plain.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "coder-dashboard", "port": {"name": "http"}}}},
            ]}},
            {"http": {"paths": [
                {"path": "/only", "pathType": "Exact", "backend": {"service": {"name": "coder-manager", "port": {"number": 8080}}}},
            ]}},
        ]},
    }))];
    snapshot.settings = Settings::default();
    let conf = nginx_accepts(&snapshot)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let plain = server_block(&conf, "plain.example.com");
    assert!(!plain.contains("return 308"), "{plain}");
    assert!(plain.contains("proxy_pass http://198.19.0.12:3000;"), "{plain}");
    assert!(plain.contains("proxy_read_timeout 60s;"), "{plain}");
    let default = server_block(&conf, "_");
    assert!(default.contains("location = /only {"), "{default}");
    assert!(
        default.contains("location / {\n            return 404;"),
        "{default}"
    );
}

#[tokio::test]
async fn conflicts_and_invalid_parts_are_left_out_and_reported() {
    let mut snapshot = chart_snapshot();
    let backend = json!({"service": {"name": "coder-manager", "port": {"number": 8080}}});
    snapshot.ingresses.push(ingress(json!({
        "metadata": {"name": "later", "namespace": "coder", "creationTimestamp": "2026-02-01T00:00:00Z"},
        "spec": {"rules": [{"host": "coder.example.com", "http": {"paths": [
            {"path": "/api", "pathType": "Prefix", "backend": backend},
            {"path": "/bad path{", "pathType": "Prefix", "backend": backend},
            {"path": "/new", "pathType": "Prefix", "backend": backend},
        ]}}]},
    })));
    let made = plan(&snapshot, &default_certificate());
    let problems: Vec<String> = made.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("already defined by ingress coder/coder"),
        "{problems:?}"
    );
    assert!(problems[1].contains("\"/bad path{\""), "{problems:?}");
    let coder = made
        .servers
        .iter()
        .find(|server| server.name == "coder.example.com")
        .expect("the host");
    let api = coder
        .locations
        .iter()
        .find(|location| location.path.starts_with("/api"))
        .expect("/api");
    assert_eq!(api.ingress, "coder/coder");
    assert!(coder.locations.iter().any(|location| location.path == "/new"
        && matches!(&location.backend, Backend::Upstream { address, .. } if address == "198.19.0.10:8080")));
    nginx_accepts(&snapshot)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}

#[tokio::test]
async fn a_secret_that_is_not_a_certificate_makes_nginx_t_fail() {
    let mut snapshot = chart_snapshot();
    use base64::Engine;
    let garbage = base64::engine::general_purpose::STANDARD
        .encode("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    snapshot.secrets[0] = serde_json::from_value(json!({
        "metadata": {"name": "coder-tls", "namespace": "coder"},
        "data": {"tls.crt": garbage, "tls.key": garbage},
    }))
    .expect("a Secret");
    let error = nginx_accepts(&snapshot).await.expect_err("nginx -t must refuse");
    assert!(
        error.contains("nginx -t refused") && error.contains("coder-coder-tls"),
        "{error}"
    );
}

#[test]
fn a_changed_certificate_changes_the_config() {
    let snapshot = chart_snapshot();
    let layout = Layout::new("/state");
    let first = render(&plan(&snapshot, b"fake"), &layout, Ports::default());
    let mut changed = snapshot.clone();
    changed.secrets[0] = tls_secret("coder-tls", &["coder.example.com"]);
    let second = render(&plan(&changed, b"fake"), &layout, Ports::default());
    assert_ne!(first, second);
    assert_eq!(
        first,
        render(&plan(&snapshot, b"fake"), &layout, Ports::default())
    );
}
