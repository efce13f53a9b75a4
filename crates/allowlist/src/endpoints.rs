//! What an install in connected mode reaches: every external endpoint (registries, their token
//! services and blob storage, chart sources), and the in-cluster flows of the port table.
//!
//! The cluster's nodes pull the images, so the registry endpoints are what the nodes' egress
//! must allow; `coder-install` itself reaches the same registries only when it bundles or locks.
//! Licenses are verified offline and nothing checks for updates, so no vendor endpoint is needed.

use std::collections::BTreeMap;

use coder_bundle_spec::{BundleSpec, ChartSource, DOCKER_HUB, ImageLock, ImageReference};
use serde::{Deserialize, Serialize};

use coder_registry::api_host;
use coder_topology::{self as topology, Component};

/// The scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (a registry reached with `--insecure-registry`).
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// What an endpoint serves to the install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointRole {
    /// A registry's distribution API (`/v2/`): manifests, and blobs unless redirected.
    RegistryApi,
    /// The token service a registry's `WWW-Authenticate` challenge names.
    TokenService,
    /// Where a registry redirects blob downloads (object storage or a CDN).
    BlobStorage,
}

impl EndpointRole {
    /// How reports name the role.
    pub fn label(self) -> &'static str {
        match self {
            Self::RegistryApi => "registry API",
            Self::TokenService => "token service",
            Self::BlobStorage => "blob storage",
        }
    }
}

/// How the install learns it needs an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Named by the spec or lock: always contacted.
    Fixed,
    /// Contacted because another endpoint redirects or refers there; documented for the
    /// well-known registries, learnt by `--probe` for any registry.
    Redirect,
}

/// Where the knowledge of an endpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Evidence {
    /// The spec or lock names it.
    Spec,
    /// The registry's operator documents it (a built-in table of well-known registries).
    Documented,
    /// A probe saw it: a redirect of a real blob request, or a token challenge.
    Probed,
}

/// One endpoint outside the cluster that the install needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredEndpoint {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Lower-case host name or IP address; `*.domain` for a documented family of hosts that
    /// varies by region (it cannot be probed, and only a wildcard entry covers it).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The path prefix the install uses, if it is fixed (`/v2/` for a registry API).
    pub path: Option<String>,
    /// What it serves.
    pub role: EndpointRole,
    /// Fixed, or a redirect target.
    pub origin: Origin,
    /// Where this knowledge comes from.
    pub evidence: Evidence,
    /// Which images or charts need it (`image coder-service`, `chart coder`).
    pub needed_by: Vec<String>,
    /// Why, in a sentence.
    pub why: String,
}

impl RequiredEndpoint {
    /// `scheme://host:port/path`, the way reports print it.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{}://{host}:{}{}",
            self.scheme.as_str(),
            self.port,
            self.path.as_deref().unwrap_or("")
        )
    }

    /// Whether the host is a `*.domain` family rather than one host.
    pub fn is_pattern(&self) -> bool {
        self.host.starts_with("*.")
    }

    fn key(&self) -> (Scheme, String, u16) {
        (self.scheme, self.host.clone(), self.port)
    }
}

/// One connection inside the cluster: the port table of the architecture notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InClusterFlow {
    /// Who connects.
    pub from: String,
    /// Who listens.
    pub to: String,
    /// The destination port.
    pub port: u16,
    /// Always `TCP`.
    pub protocol: String,
    /// What it carries.
    pub purpose: String,
}

/// Everything `allowlist generate` prints and `allowlist audit` checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// The bundle spec's name and version these requirements are for.
    pub release: String,
    /// Endpoints outside the cluster, registries first.
    pub endpoints: Vec<RequiredEndpoint>,
    /// Connections inside the cluster (what the rendered NetworkPolicies allow).
    pub in_cluster: Vec<InClusterFlow>,
    /// What else a network team should know.
    pub notes: Vec<String>,
}

/// A well-known registry's other hosts, as its operator documents them.
struct KnownHost {
    registry: &'static str,
    host: &'static str,
    role: EndpointRole,
    origin: Origin,
    why: &'static str,
}

/// The well-known registries' token services and blob storage. Anything else is learnt by
/// `--probe`, which follows a real blob request's redirect.
const KNOWN_HOSTS: &[KnownHost] = &[
    KnownHost {
        registry: DOCKER_HUB,
        host: "auth.docker.io",
        role: EndpointRole::TokenService,
        origin: Origin::Redirect,
        why: "Docker Hub's token service: every pull, anonymous too, first asks it for a token",
    },
    KnownHost {
        registry: DOCKER_HUB,
        host: "production.cloudflare.docker.com",
        role: EndpointRole::BlobStorage,
        origin: Origin::Redirect,
        why: "Docker Hub redirects layer downloads to its CDN",
    },
    KnownHost {
        registry: "ghcr.io",
        host: "pkg-containers.githubusercontent.com",
        role: EndpointRole::BlobStorage,
        origin: Origin::Redirect,
        why: "GitHub's registry redirects layer downloads to its package storage",
    },
    KnownHost {
        registry: "registry.k8s.io",
        host: "*.pkg.dev",
        role: EndpointRole::BlobStorage,
        origin: Origin::Redirect,
        why: "registry.k8s.io redirects to the Artifact Registry mirror nearest the client \
              (and, for clients inside AWS, to S3 buckets): run with --probe to learn the hosts \
              this site is sent to",
    },
];

/// What to derive the requirements from.
#[derive(Debug, Clone, Copy)]
pub struct RequirementInputs<'a> {
    /// The bundle spec (images and charts).
    pub spec: &'a BundleSpec,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure_registries: &'a [String],
}

/// The requirements of a spec: every registry of its images and OCI charts, the documented
/// hosts of well-known registries, and the in-cluster flows.
pub fn required(inputs: RequirementInputs<'_>) -> Result<Requirements, coder_bundle_spec::SpecError> {
    let spec = inputs.spec;
    let mut endpoints = EndpointSet::default();
    for (reference, user) in &registry_needs(spec)? {
        add_registry_endpoints(&mut endpoints, reference, user, inputs.insecure_registries);
    }
    Ok(Requirements {
        release: format!("{} {}", spec.name, spec.version),
        endpoints: endpoints.into_sorted(),
        in_cluster: in_cluster_flows(),
        notes: requirement_notes(spec),
    })
}

/// Every image and OCI chart of the spec, each with who needs it (`image NAME`, `chart NAME`).
fn registry_needs(spec: &BundleSpec) -> Result<Vec<(ImageReference, String)>, coder_bundle_spec::SpecError> {
    let mut needs: Vec<(ImageReference, String)> = spec
        .image_references()?
        .into_iter()
        .map(|(name, reference)| (reference, format!("image {name}")))
        .collect();
    for chart in &spec.charts {
        if let ChartSource::Oci(reference) = chart.source()? {
            needs.push((reference, format!("chart {}", chart.name)));
        }
    }
    Ok(needs)
}

/// Adds the endpoints one reference needs: its registry's API (plain HTTP when the registry is
/// listed as insecure) and the documented hosts of that registry (token, blob storage).
fn add_registry_endpoints(
    endpoints: &mut EndpointSet,
    reference: &ImageReference,
    user: &str,
    insecure_registries: &[String],
) {
    let scheme = if insecure_registries.contains(&reference.registry) {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let (host, port) = registry_api_host(&reference.registry, scheme);
    endpoints.add(RequiredEndpoint {
        scheme,
        host,
        port,
        path: Some("/v2/".to_owned()),
        role: EndpointRole::RegistryApi,
        origin: Origin::Fixed,
        evidence: Evidence::Spec,
        needed_by: vec![user.to_owned()],
        why: format!("the registry of {}", reference.registry),
    });
    for known in KNOWN_HOSTS
        .iter()
        .filter(|known| known.registry == reference.registry)
    {
        endpoints.add(RequiredEndpoint {
            scheme: Scheme::Https,
            host: known.host.to_owned(),
            port: 443,
            path: None,
            role: known.role,
            origin: known.origin,
            evidence: Evidence::Documented,
            needed_by: vec![user.to_owned()],
            why: known.why.to_owned(),
        });
    }
}

/// The notes of the requirements: who pulls the images, that licenses need no endpoint, that
/// blob storage hosts can change, and which charts are carried in the bundle (if any).
fn requirement_notes(spec: &BundleSpec) -> Vec<String> {
    let charts_carried: Vec<&str> = spec
        .charts
        .iter()
        .filter(|chart| matches!(chart.source(), Ok(ChartSource::Path(_))))
        .map(|chart| chart.name.as_str())
        .collect();
    let mut notes = vec![
        "The cluster's nodes pull the images: the registry, token and blob storage endpoints are \
         what the nodes' egress must allow. coder-install reaches them itself only for `lock` and `bundle`."
            .to_owned(),
        "Licenses are verified offline and nothing checks for updates: no vendor endpoint is needed."
            .to_owned(),
        "Blob storage hosts are redirect targets chosen by the registry (often by region) and can \
         change: audit with --probe to see where this site is actually sent, and prefer host \
         entries to IP entries for them."
            .to_owned(),
    ];
    if !charts_carried.is_empty() {
        notes.push(format!(
            "The chart{} {} {} carried inside coder-install and the bundle: no endpoint is needed for {}.",
            if charts_carried.len() == 1 { "" } else { "s" },
            charts_carried.join(", "),
            if charts_carried.len() == 1 { "is" } else { "are" },
            if charts_carried.len() == 1 { "it" } else { "them" },
        ));
    }
    notes
}

/// The host and port a registry's API is reached at.
pub fn registry_api_host(registry: &str, scheme: Scheme) -> (String, u16) {
    url::Url::parse(&format!("{}://{}/", scheme.as_str(), api_host(registry)))
        .ok()
        .and_then(|url| Some((url_host(&url)?, url.port_or_known_default()?)))
        .unwrap_or_else(|| (registry.to_ascii_lowercase(), scheme.default_port()))
}

/// A URL's host as endpoints name it: a lower-case name, or an IP address without brackets.
pub(crate) fn url_host(url: &url::Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Domain(domain) => domain.to_ascii_lowercase(),
        url::Host::Ipv4(addr) => addr.to_string(),
        url::Host::Ipv6(addr) => addr.to_string(),
    })
}

/// The flows of the port table, plus the cluster services every install uses.
fn in_cluster_flows() -> Vec<InClusterFlow> {
    let mut flows: Vec<InClusterFlow> = topology::FLOWS
        .iter()
        .map(|flow| InClusterFlow {
            from: component_label(flow.from),
            to: component_label(flow.to),
            port: flow.port,
            protocol: "TCP".to_owned(),
            purpose: flow.purpose.to_owned(),
        })
        .collect();
    flows.push(InClusterFlow {
        from: component_label(Component::Manager),
        to: "kubernetes API server".to_owned(),
        port: 443,
        protocol: "TCP".to_owned(),
        purpose: "the manager creates, scales and watches workspace Deployments, PVCs and Services \
                  (the `kubernetes` Service's port; the API server itself may listen on 6443)"
            .to_owned(),
    });
    flows
}

fn component_label(component: Component) -> String {
    match component {
        Component::LoadBalancer => "ingress / load balancer".to_owned(),
        other => other.name().to_owned(),
    }
}

/// Endpoints keyed by scheme, host and port, merging who needs them.
#[derive(Debug, Default)]
pub(crate) struct EndpointSet {
    endpoints: BTreeMap<(Scheme, String, u16), RequiredEndpoint>,
}

impl EndpointSet {
    /// Adds an endpoint, or merges its users into the one already there.
    pub(crate) fn add(&mut self, endpoint: RequiredEndpoint) {
        match self.endpoints.get_mut(&endpoint.key()) {
            Some(existing) => {
                for user in endpoint.needed_by {
                    if !existing.needed_by.contains(&user) {
                        existing.needed_by.push(user);
                    }
                }
                // What a probe saw outranks a table: keep the stronger evidence.
                existing.evidence = existing.evidence.max(endpoint.evidence);
            }
            None => {
                self.endpoints.insert(endpoint.key(), endpoint);
            }
        }
    }

    /// Registry APIs first, then token services, then blob storage; by host within each.
    pub(crate) fn into_sorted(self) -> Vec<RequiredEndpoint> {
        let mut endpoints: Vec<RequiredEndpoint> = self.endpoints.into_values().collect();
        endpoints.sort_by(|a, b| (a.role, &a.host, a.port).cmp(&(b.role, &b.host, b.port)));
        endpoints
    }
}

impl From<Vec<RequiredEndpoint>> for EndpointSet {
    fn from(endpoints: Vec<RequiredEndpoint>) -> Self {
        let mut set = Self::default();
        for endpoint in endpoints {
            set.add(endpoint);
        }
        set
    }
}

/// The lock's digest of a manifest (not an index) of `name`, to request a blob of it: the
/// first platform's child of an index, or the top-level digest.
pub(crate) fn locked_manifest_digest(lock: &ImageLock, name: &str) -> Option<String> {
    let locked = lock.image(name)?;
    Some(
        locked
            .platforms
            .first()
            .map_or_else(|| locked.digest.clone(), |platform| platform.digest.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n\
        - name: coder-service\n  ref: docker.io/coderenvs/coder-service:1.0.0\n\
        - name: postgres\n  ref: docker.io/library/postgres:13\n\
        - name: controller\n  ref: registry.k8s.io/ingress-nginx/controller:v1.11.2\n\
        - name: local\n  ref: localhost:5000/fixture/app:1\n\
        - name: v6\n  ref: '[::1]:5001/fixture/app:1'\n\
        charts:\n  - name: coder\n    path: charts/coder\n";

    fn requirements(insecure: &[String]) -> Requirements {
        let spec = BundleSpec::from_yaml(SPEC, "test").expect("spec");
        required(RequirementInputs {
            spec: &spec,
            insecure_registries: insecure,
        })
        .expect("requirements")
    }

    #[test]
    fn registries_token_services_and_blob_storage_are_listed_once_each() {
        let requirements = requirements(&["localhost:5000".to_owned()]);
        let urls: Vec<String> = requirements.endpoints.iter().map(RequiredEndpoint::url).collect();
        assert_eq!(
            urls,
            [
                "https://[::1]:5001/v2/",
                "http://localhost:5000/v2/",
                "https://registry-1.docker.io:443/v2/",
                "https://registry.k8s.io:443/v2/",
                "https://auth.docker.io:443",
                "https://*.pkg.dev:443",
                "https://production.cloudflare.docker.com:443",
            ]
        );
        let docker = &requirements.endpoints[2];
        assert_eq!(docker.needed_by, ["image coder-service", "image postgres"]);
        assert_eq!((docker.origin, docker.evidence), (Origin::Fixed, Evidence::Spec));
        let cdn = &requirements.endpoints[6];
        assert_eq!(
            (cdn.origin, cdn.evidence),
            (Origin::Redirect, Evidence::Documented)
        );
        assert!(
            requirements
                .notes
                .iter()
                .any(|note| note.contains("The chart coder is carried"))
        );
    }

    #[test]
    fn the_in_cluster_flows_are_the_port_table() {
        let requirements = requirements(&[]);
        let flows: Vec<(&str, &str, u16)> = requirements
            .in_cluster
            .iter()
            .map(|flow| (flow.from.as_str(), flow.to.as_str(), flow.port))
            .collect();
        for expected in [
            ("envproxy", "workspace", 13337),
            ("envproxy", "workspace", 26337),
            ("envproxy", "workspace", 12212),
            ("manager", "postgres", 5432),
            ("ingress / load balancer", "manager", 8080),
        ] {
            assert!(flows.contains(&expected), "{expected:?} missing from {flows:?}");
        }
    }
}
