//! What a node's container runtime needs to pull from the site registry (or from `serve`):
//! containerd's registry host configuration (`config_path` layout: one folder per registry
//! host, each with a `hosts.toml`), trusting the site's CA, and mirrors for the upstream
//! registries the bundle's images came from, so that an image named by its upstream reference
//! (`docker.io/library/postgres:13`) is pulled from the site registry, where `push` put it
//! (`SITE/PREFIX/library/postgres`). The upstream itself is never tried: the mirror is the
//! upstream name's `server`.
//!
//! Every path in the files is relative to the folder of the `hosts.toml` that names it, as
//! containerd resolves them, so the tree can be copied to any node's `config_path`.

use serde::Serialize;

use crate::SiteRegistry;

/// What to write.
#[derive(Debug, Clone)]
pub struct NodeConfigRequest {
    /// The site registry (or `serve`) and its path prefix.
    pub site: SiteRegistry,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// The CA certificate (PEM) the site registry's certificate is issued by, when it is not
    /// one the nodes trust already.
    pub ca_pem: Option<String>,
    /// Upstream registry hosts (`docker.io`, `registry.k8s.io`, `host:port`) whose images are
    /// pulled from the site registry instead.
    pub mirror_of: Vec<String>,
}

/// One file of the configuration, relative to the output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfigFile {
    /// The path (`certs.d/HOST/hosts.toml`, `README.md`).
    pub path: String,
    /// The bytes.
    #[serde(skip)]
    pub contents: String,
}

/// The folder under the output that is copied to the nodes' `config_path`.
pub const CONFIG_DIR: &str = "certs.d";

/// Why a request cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// An upstream host that is not a host.
    #[error(
        "--mirror-of {0:?} is not a registry host; give a host with an optional port, e.g. docker.io or registry.example.com:5000"
    )]
    BadUpstream(String),
    /// The CA is not a PEM certificate.
    #[error("the registry CA is not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)")]
    BadCa,
}

/// The files: `certs.d/<site host>/hosts.toml` (and its `ca.crt`), one folder per upstream,
/// and a `README.md` for the operator.
pub fn node_config(request: &NodeConfigRequest) -> Result<Vec<NodeConfigFile>, NodeConfigError> {
    if let Some(ca) = &request.ca_pem
        && !ca.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(NodeConfigError::BadCa);
    }
    let mut upstreams: Vec<String> = Vec::new();
    for upstream in &request.mirror_of {
        let host = normalized_upstream(upstream)?;
        if host != request.site.host && !upstreams.contains(&host) {
            upstreams.push(host);
        }
    }
    let mut files = Vec::new();
    for (host, mirror) in std::iter::once((request.site.host.clone(), false))
        .chain(upstreams.iter().map(|host| (host.clone(), true)))
    {
        // containerd looks `host:port` up as written (and as `host_port_`, for systems
        // without `:` in file names).
        let dir = format!("{CONFIG_DIR}/{host}");
        files.push(NodeConfigFile {
            path: format!("{dir}/hosts.toml"),
            contents: hosts_toml(request, &host, mirror),
        });
        if let Some(ca) = &request.ca_pem {
            files.push(NodeConfigFile {
                path: format!("{dir}/ca.crt"),
                contents: ca.clone(),
            });
        }
    }
    files.push(NodeConfigFile {
        path: "README.md".to_owned(),
        contents: readme(request, &upstreams),
    });
    Ok(files)
}

/// `docker.io` for Docker Hub however it is written; a host with an optional port otherwise.
fn normalized_upstream(upstream: &str) -> Result<String, NodeConfigError> {
    let host = upstream.trim().trim_end_matches('/');
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    };
    let valid = !host.is_empty()
        && !host.contains("://")
        && !host.contains('/')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if valid {
        Ok(host.to_owned())
    } else {
        Err(NodeConfigError::BadUpstream(upstream.to_owned()))
    }
}

/// The site registry's API root, with the prefix when `mirror` (an upstream name's pulls go
/// to `PREFIX/<repository>`, `override_path`), the registry itself otherwise.
fn hosts_toml(request: &NodeConfigRequest, host: &str, mirror: bool) -> String {
    let scheme = if request.plain_http { "http" } else { "https" };
    let site = &request.site;
    let (url, override_path) = match (mirror, site.prefix.is_empty()) {
        (true, true) | (false, _) => (format!("{scheme}://{}", site.host), false),
        (true, false) => (format!("{scheme}://{}/v2/{}", site.host, site.prefix), true),
    };
    let ca = if request.ca_pem.is_some() {
        "ca = \"ca.crt\"\n"
    } else {
        ""
    };
    let override_line = if override_path {
        "override_path = true\n"
    } else {
        ""
    };
    let what = if mirror {
        format!(
            "# Images named {host}/... are pulled from the site registry {} (where `coder-install push`\n\
             # put them), never from {host} itself.\n",
            site
        )
    } else {
        format!("# The site registry {site}.\n")
    };
    let settings = format!("capabilities = [\"pull\", \"resolve\"]\n{ca}{override_line}");
    let indented: String = settings.lines().map(|line| format!("  {line}\n")).collect();
    format!(
        "# Written by coder-install node-config.\n{what}server = \"{url}\"\n{settings}\n[host.\"{url}\"]\n{indented}"
    )
}

/// The operator's instructions.
fn readme(request: &NodeConfigRequest, upstreams: &[String]) -> String {
    let mirrors = if upstreams.is_empty() {
        "No upstream registry is mirrored: images are pulled by their site registry names, as \
         `coder-install apply` renders them."
            .to_owned()
    } else {
        format!(
            "Images named by these upstream registries are pulled from the site registry instead, \
             under its prefix (the upstream itself is never tried): {}.",
            upstreams.join(", ")
        )
    };
    format!(
        "# Registry configuration for the nodes\n\n\
         Written by `coder-install node-config` for the site registry `{site}` ({scheme}{ca}).\n\n\
         {mirrors}\n\n\
         ## Install on every node\n\n\
         1. Copy the folders of `{CONFIG_DIR}/` into containerd's registry configuration folder,\n   \
            usually `/etc/containerd/certs.d/`:\n\n   \
            ```sh\n   \
            sudo mkdir -p /etc/containerd/certs.d\n   \
            sudo cp -r {CONFIG_DIR}/. /etc/containerd/certs.d/\n   \
            ```\n\n\
         2. Make sure containerd reads that folder: `/etc/containerd/config.toml` must have\n\n   \
            ```toml\n   \
            [plugins.\"io.containerd.grpc.v1.cri\".registry]\n     \
              config_path = \"/etc/containerd/certs.d\"\n   \
            ```\n\n   \
            (then `sudo systemctl restart containerd` once; later changes to the folder need no\n   \
            restart).\n\n\
         3. Check from a node: `sudo crictl pull {site}/<repository>:<tag>` for an image the\n   \
            site registry holds.\n\n\
         Credentials are not part of these files: when the site registry needs a login, give it to\n\
         `coder-install apply` (`--registry-username`, `--registry-password-stdin`), which makes\n\
         the image pull Secret the platform's pods use.\n",
        site = request.site,
        scheme = if request.plain_http { "plain HTTP" } else { "HTTPS" },
        ca = if request.ca_pem.is_some() {
            ", certificates from the CA in `ca.crt`"
        } else {
            ", certificates the nodes already trust"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prefix: &str, mirror_of: &[&str]) -> NodeConfigRequest {
        NodeConfigRequest {
            site: format!("registry.site:5000{prefix}").parse().expect("site"),
            plain_http: false,
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned()),
            mirror_of: mirror_of.iter().map(|host| (*host).to_owned()).collect(),
        }
    }

    fn file<'a>(files: &'a [NodeConfigFile], path: &str) -> &'a str {
        &files
            .iter()
            .find(|file| file.path == path)
            .unwrap_or_else(|| panic!("no {path} in {files:?}"))
            .contents
    }

    #[test]
    fn the_site_registry_and_each_upstream_get_a_hosts_file_and_the_ca() {
        let files = node_config(&request(
            "/coder",
            &["docker.io", "index.docker.io", "registry.k8s.io"],
        ))
        .expect("files");
        let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "certs.d/registry.site:5000/hosts.toml",
                "certs.d/registry.site:5000/ca.crt",
                "certs.d/docker.io/hosts.toml",
                "certs.d/docker.io/ca.crt",
                "certs.d/registry.k8s.io/hosts.toml",
                "certs.d/registry.k8s.io/ca.crt",
                "README.md",
            ]
        );
        let site = file(&files, "certs.d/registry.site:5000/hosts.toml");
        assert!(
            site.contains("server = \"https://registry.site:5000\"\n"),
            "{site}"
        );
        assert!(
            site.contains("ca = \"ca.crt\"") && !site.contains("override_path"),
            "{site}"
        );
        let docker = file(&files, "certs.d/docker.io/hosts.toml");
        assert!(
            docker.contains("server = \"https://registry.site:5000/v2/coder\"\n")
                && docker.contains("[host.\"https://registry.site:5000/v2/coder\"]")
                && docker.contains("override_path = true"),
            "{docker}"
        );
    }

    #[test]
    fn without_a_prefix_the_mirror_is_the_registry_itself_and_plain_http_says_so() {
        let mut plain = request("", &["quay.io"]);
        plain.plain_http = true;
        plain.ca_pem = None;
        let files = node_config(&plain).expect("files");
        let quay = file(&files, "certs.d/quay.io/hosts.toml");
        assert!(
            quay.contains("server = \"http://registry.site:5000\"\n"),
            "{quay}"
        );
        assert!(
            !quay.contains("override_path") && !quay.contains("ca ="),
            "{quay}"
        );
        assert!(!files.iter().any(|file| file.path.ends_with("ca.crt")));
    }

    #[test]
    fn bad_upstreams_and_cas_are_refused() {
        for bad in ["https://docker.io", "docker.io/library", "", "a b"] {
            let error = node_config(&request("", &[bad])).expect_err(bad).to_string();
            assert!(error.contains("--mirror-of"), "{error}");
        }
        let mut not_pem = request("", &[]);
        not_pem.ca_pem = Some("not a certificate".to_owned());
        assert!(matches!(node_config(&not_pem), Err(NodeConfigError::BadCa)));
    }
}
