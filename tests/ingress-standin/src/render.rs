//! A [`Plan`] as an nginx.conf, with every file nginx writes (pid, temporary files) under one
//! writable directory ([`Layout`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::model::{Backend, DEFAULT_CERTIFICATE_FILE, Location, Match, Plan, Server, normalized};

/// The ports nginx listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Plain HTTP (ingress-nginx's `--http-port`, default 80).
    pub http: u16,
    /// HTTPS (`--https-port`, default 443).
    pub https: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self { http: 80, https: 443 }
    }
}

/// The files of one nginx instance, under a writable directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

/// nginx's temporary-file directories (one per module), below `temp/`.
const TEMP_DIRS: [(&str, &str); 5] = [
    ("client_body_temp_path", "client-body"),
    ("proxy_temp_path", "proxy"),
    ("fastcgi_temp_path", "fastcgi"),
    ("uwsgi_temp_path", "uwsgi"),
    ("scgi_temp_path", "scgi"),
];

impl Layout {
    /// The layout under `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory (nginx's prefix, `-p`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The live config, `nginx.conf`.
    pub fn config(&self) -> PathBuf {
        self.root.join("nginx.conf")
    }

    /// Where a new config is checked before it replaces the live one.
    pub fn candidate_config(&self) -> PathBuf {
        self.root.join("nginx.conf.candidate")
    }

    /// The master's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("nginx.pid")
    }

    /// The certificate directory (files mode 0600).
    pub fn ssl_dir(&self) -> PathBuf {
        self.root.join("ssl")
    }

    /// The temporary-file directory.
    pub fn temp_dir(&self) -> PathBuf {
        self.root.join("temp")
    }

    /// Creates the directories (mode 0700).
    pub fn create_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(&self.root)?;
        builder.create(self.ssl_dir())?;
        builder.create(self.temp_dir())
    }
}

/// The nginx.conf for `plan`; its certificate files are expected in `layout`'s ssl directory.
pub fn render(plan: &Plan, layout: &Layout, ports: Ports) -> String {
    let root = layout.root().display();
    let mut conf = String::new();
    let _ = writeln!(
        conf,
        "# Written by ingress-standin, a stand-in for the ingress-nginx controller (coder-testenv).\n\
         daemon off;\n\
         worker_processes 2;\n\
         pid {root}/nginx.pid;\n\
         error_log stderr notice;\n\
         \n\
         events {{\n    worker_connections 4096;\n}}\n\
         \n\
         http {{"
    );
    let temp = layout.temp_dir();
    for (directive, dir) in TEMP_DIRS {
        let _ = writeln!(conf, "    {directive} {};", temp.join(dir).display());
    }
    conf.push_str(concat!(
        "    log_format upstreaminfo '$remote_addr - $remote_user [$time_local] \"$request\" $status ",
        "$body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time ",
        "$host $upstream_addr $upstream_status';\n",
        "    access_log /dev/stdout upstreaminfo;\n",
        "    server_tokens off;\n",
        "    default_type text/plain;\n",
        "    server_names_hash_bucket_size 128;\n",
        "    server_names_hash_max_size 4096;\n",
        "    keepalive_timeout 75s;\n",
        "    ssl_protocols TLSv1.2 TLSv1.3;\n",
        "    ssl_session_cache shared:SSL:10m;\n",
        "    # WebSockets: pass the client's Upgrade on, over HTTP/1.1 to the upstream.\n",
        "    map $http_upgrade $connection_upgrade {\n",
        "        default upgrade;\n",
        "        '' close;\n",
        "    }\n",
        "    # Host as the client sent it (with its port), as ingress-nginx's $best_http_host.\n",
        "    map $http_host $best_http_host {\n",
        "        default $http_host;\n",
        "        '' $host;\n",
        "    }\n",
    ));
    server(&mut conf, &plan.default_server, plan, layout, ports, true);
    for host in &plan.servers {
        server(&mut conf, host, plan, layout, ports, false);
    }
    conf.push_str("}\n");
    conf
}

fn server(conf: &mut String, server: &Server, plan: &Plan, layout: &Layout, ports: Ports, default: bool) {
    let flag = if default { " default_server" } else { "" };
    let certificate = layout
        .ssl_dir()
        .join(server.certificate.as_deref().unwrap_or(DEFAULT_CERTIFICATE_FILE));
    let certificate = certificate.display();
    let _ = writeln!(
        conf,
        "\n    server {{\n        server_name {};\n        listen {}{flag};\n        listen {} ssl{flag};\n        \
         ssl_certificate {certificate};\n        ssl_certificate_key {certificate};",
        server.name, ports.http, ports.https
    );
    if server.certificate.is_some() && plan.settings.ssl_redirect {
        let port = if ports.https == 443 {
            String::new()
        } else {
            format!(":{}", ports.https)
        };
        let _ = writeln!(
            conf,
            "        # ssl-redirect: plain HTTP to a host with TLS goes to HTTPS.\n        \
             if ($scheme = http) {{\n            return 308 https://$host{port}$request_uri;\n        }}"
        );
    }
    let mut has_root = false;
    for location in &server.locations {
        has_root |= location.kind == Match::Prefix && normalized(&location.path, location.kind) == "/";
        match location.kind {
            Match::Exact => location_block(conf, &format!("= {}", location.path), location, plan),
            Match::Prefix => {
                let path = normalized(&location.path, location.kind);
                if path == "/" {
                    location_block(conf, "/", location, plan);
                } else {
                    location_block(conf, &format!("{path}/"), location, plan);
                    // An Exact path of the same name, defined earlier, keeps its own block.
                    let exact_taken = server
                        .locations
                        .iter()
                        .any(|other| other.kind == Match::Exact && other.path == path);
                    if !exact_taken {
                        location_block(conf, &format!("= {path}"), location, plan);
                    }
                }
            }
        }
    }
    if !has_root {
        conf.push_str("\n        location / {\n            return 404;\n        }\n");
    }
    conf.push_str("    }\n");
}

fn location_block(conf: &mut String, matcher: &str, location: &Location, plan: &Plan) {
    let _ = writeln!(
        conf,
        "\n        # {} from ingress {}",
        location.path, location.ingress
    );
    let _ = writeln!(conf, "        location {matcher} {{");
    match &location.backend {
        Backend::Unavailable { service, reason } => {
            let _ = writeln!(conf, "            # {service}: {reason}\n            return 503;");
        }
        Backend::Upstream { service, address } => {
            let settings = &plan.settings;
            let _ = writeln!(
                conf,
                "            # {service}\n            \
                 proxy_pass http://{address};\n            \
                 proxy_http_version 1.1;\n            \
                 proxy_set_header Host $best_http_host;\n            \
                 proxy_set_header Upgrade $http_upgrade;\n            \
                 proxy_set_header Connection $connection_upgrade;\n            \
                 proxy_set_header X-Request-ID $request_id;\n            \
                 proxy_set_header X-Real-IP $remote_addr;\n            \
                 proxy_set_header X-Forwarded-For $remote_addr;\n            \
                 proxy_set_header X-Forwarded-Host $best_http_host;\n            \
                 proxy_set_header X-Forwarded-Port $server_port;\n            \
                 proxy_set_header X-Forwarded-Proto $scheme;\n            \
                 proxy_set_header X-Forwarded-Scheme $scheme;\n            \
                 proxy_set_header X-Scheme $scheme;\n            \
                 proxy_set_header X-Original-URI $request_uri;\n            \
                 proxy_set_header Proxy \"\";\n            \
                 proxy_connect_timeout {}s;\n            \
                 proxy_read_timeout {}s;\n            \
                 proxy_send_timeout {}s;\n            \
                 client_max_body_size {};\n            \
                 proxy_buffering off;\n            \
                 proxy_request_buffering on;\n            \
                 proxy_redirect off;",
                settings.proxy_connect_timeout,
                settings.proxy_read_timeout,
                settings.proxy_send_timeout,
                settings.proxy_body_size,
            );
        }
    }
    conf.push_str("        }\n");
}
