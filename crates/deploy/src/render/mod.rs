//! Charts to manifests: the chart's tera templates rendered with the merged values, image
//! references pinned (and rewritten to the site registry in air-gapped mode), and a check that
//! no container image outside the lock can slip into the output.
//!
//! `template` prints what this produces; `apply` applies exactly the same objects.

mod images;
mod kinds;
mod policies;
pub mod values;

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub use images::{ImageSource, check_images, image_map};
pub use kinds::kind_of;
use kinds::kind_rank;
pub use values::{Values, ValuesError, ValuesLayer};

use coder_bundle::charts::ChartFiles;

/// The label every object `coder-install` manages carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`], also the server-side apply field manager.
pub const MANAGER_NAME: &str = "coder-install";
/// The label that ties cluster-scoped objects to the namespace they were installed for.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Names of the Secrets `apply` creates and keeps across upgrades (not rendered by the chart:
/// `template` users create them themselves).
pub mod secret_names {
    /// The in-cluster database's password (key `password`).
    pub const DATABASE: &str = "coder-db-password";
    /// The envproxy's token for the manager (key `token`).
    pub const ENVPROXY_TOKEN: &str = "coder-envproxy-token";
    /// The first admin's password (key `password`), read by the manager while no admin exists.
    pub const ADMIN_PASSWORD: &str = "coder-admin-password";
    /// The license (key `license`).
    pub const LICENSE: &str = "coder-license";
    /// The site registry's pull credentials (`kubernetes.io/dockerconfigjson`).
    pub const REGISTRY_PULL: &str = "coder-registry-pull";
}

/// Which PodDisruptionBudget API the cluster serves (`policy/v1` from Kubernetes 1.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdbApi {
    /// `policy/v1`.
    V1,
    /// `policy/v1beta1` (Kubernetes 1.20 and older).
    V1Beta1,
}

impl PdbApi {
    /// The apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "policy/v1",
            Self::V1Beta1 => "policy/v1beta1",
        }
    }
}

/// Everything a render needs.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The chart's files (`Chart.yaml`, `values.yaml`, `templates/…`).
    pub chart: &'a ChartFiles,
    /// The checked values.
    pub values: &'a Values,
    /// The target namespace.
    pub namespace: &'a str,
    /// Logical image name → the reference containers use.
    pub images: &'a BTreeMap<String, String>,
    /// The PodDisruptionBudget API.
    pub pdb_api: PdbApi,
    /// An air-gapped install (from a bundle, images in the site registry): the manager is told
    /// (`CODER_AIRGAPPED`) and enforces the air-gap license itself.
    pub airgapped: bool,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The chart is malformed.
    #[error("chart: {0}")]
    Chart(String),
    /// A template failed to render.
    #[error("rendering template {template}: {message}")]
    Template {
        /// Which template.
        template: String,
        /// Tera's message, with its causes.
        message: String,
    },
    /// A template produced YAML that does not parse, or an object without kind/name.
    #[error("template {template} produced an invalid object: {message}")]
    Output {
        /// Which template.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// Container images that are not in the lock.
    #[error(
        "the rendered manifests use images that are not in the lock (every image must be pinned there):\n{}",
        .0.iter().map(|line| format!("  - {line}")).collect::<Vec<_>>().join("\n")
    )]
    UnlistedImages(Vec<String>),
}

/// The rendered objects, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// Each object as JSON.
    pub objects: Vec<Value>,
}

/// The chart's `values.yaml`, as the lowest values layer.
pub fn chart_defaults(chart: &ChartFiles) -> Result<ValuesLayer, RenderError> {
    let (_, bytes) = chart
        .iter()
        .find(|(path, _)| path == "values.yaml")
        .ok_or_else(|| RenderError::Chart("the chart has no values.yaml".to_owned()))?;
    Ok(ValuesLayer {
        source_name: "chart values.yaml".to_owned(),
        text: String::from_utf8(bytes.clone())
            .map_err(|_| RenderError::Chart("values.yaml is not UTF-8".to_owned()))?,
    })
}

/// The chart's `appVersion` (or `version`).
pub fn chart_version(chart: &ChartFiles) -> Result<String, RenderError> {
    let (_, bytes) = chart
        .iter()
        .find(|(path, _)| path == "Chart.yaml")
        .ok_or_else(|| RenderError::Chart("the chart has no Chart.yaml".to_owned()))?;
    let text =
        std::str::from_utf8(bytes).map_err(|_| RenderError::Chart("Chart.yaml is not UTF-8".to_owned()))?;
    let metadata: Value =
        serde_saphyr::from_str(text).map_err(|error| RenderError::Chart(format!("Chart.yaml: {error}")))?;
    metadata
        .get("appVersion")
        .or_else(|| metadata.get("version"))
        .and_then(|value| {
            value
                .as_str()
                .map(str::to_owned)
                .or_else(|| Some(value.to_string()))
        })
        .ok_or_else(|| RenderError::Chart("Chart.yaml has neither appVersion nor version".to_owned()))
}

/// Renders the chart.
pub fn render(request: &RenderRequest<'_>) -> Result<Manifests, RenderError> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    let mut templates = Vec::new();
    for (path, bytes) in request.chart {
        let Some(name) = path.strip_prefix("templates/") else {
            continue;
        };
        if !(name.ends_with(".yaml") || name.ends_with(".tera")) {
            continue;
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| RenderError::Chart(format!("{path} is not UTF-8")))?;
        tera.add_raw_template(name, text)
            .map_err(|error| RenderError::Template {
                template: path.clone(),
                message: error_chain(&error),
            })?;
        if !name.starts_with('_') && name.ends_with(".yaml") {
            templates.push(name.to_owned());
        }
    }
    if templates.is_empty() {
        return Err(RenderError::Chart("the chart has no templates/*.yaml".to_owned()));
    }
    templates.sort();

    let mut context = tera::Context::new();
    context.insert("ns", request.namespace);
    context.insert("version", &chart_version(request.chart)?);
    context.insert("values", request.values);
    context.insert("images", request.images);
    context.insert("pdb_api", request.pdb_api.api_version());
    context.insert("airgapped", &request.airgapped);
    context.insert("policies", &policies::network_policies(request.values));
    context.insert("workspace_egress", &policies::workspace_egress(request.values));
    // Every port the templates write comes from the topology (a test checks they write none).
    context.insert("ports", &coder_topology::PORTS);
    // The workspaces' wildcard domain (`*.` in the Ingress), empty when not set.
    context.insert(
        "workspace_domain",
        &request.values.workspace_base_url.host().unwrap_or_default(),
    );
    context.insert(
        "secrets",
        &json!({
            "database": secret_names::DATABASE,
            "envproxy_token": secret_names::ENVPROXY_TOKEN,
            "admin_password": secret_names::ADMIN_PASSWORD,
            "license": secret_names::LICENSE,
        }),
    );

    let mut objects = Vec::new();
    for name in &templates {
        let output = tera
            .render(name, &context)
            .map_err(|error| RenderError::Template {
                template: format!("templates/{name}"),
                message: error_chain(&error),
            })?;
        for document in split_documents(&output) {
            let object: Value = serde_saphyr::from_str(document).map_err(|error| RenderError::Output {
                template: format!("templates/{name}"),
                message: format!("{error}\n--- the document ---\n{document}"),
            })?;
            if object.is_null() {
                continue;
            }
            objects.push(finish_object(object, request.namespace, name)?);
        }
    }
    objects.sort_by_key(|object| kind_rank(kind_of(object)));
    check_images(&objects, request.images).map_err(RenderError::UnlistedImages)?;
    Ok(Manifests { objects })
}

/// Splits rendered text on YAML document separators, dropping empty documents.
fn split_documents(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n---")
        .map(|document| document.strip_prefix("---").unwrap_or(document))
        .filter(|document| {
            document
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
}

/// Checks identity fields and adds the labels every managed object carries.
fn finish_object(mut object: Value, namespace: &str, template: &str) -> Result<Value, RenderError> {
    let invalid = |message: &str| RenderError::Output {
        template: format!("templates/{template}"),
        message: message.to_owned(),
    };
    for field in ["apiVersion", "kind"] {
        if !object.get(field).is_some_and(Value::is_string) {
            return Err(invalid(&format!("an object has no {field}")));
        }
    }
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid("an object has no metadata"))?;
    if !metadata.get("name").is_some_and(Value::is_string) {
        return Err(invalid("an object has no metadata.name"));
    }
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| invalid("metadata.labels is not a map"))?;
    labels.insert(MANAGED_BY_LABEL.to_owned(), json!(MANAGER_NAME));
    labels.insert(INSTANCE_LABEL.to_owned(), json!(namespace));
    labels.insert("app.kubernetes.io/part-of".to_owned(), json!("coder"));
    Ok(object)
}

impl Manifests {
    /// The objects as one multi-document YAML stream, as `template` prints it.
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        for object in &self.objects {
            out.push_str("---\n");
            let text = serde_saphyr::to_string(object).map_err(|error| RenderError::Output {
                template: "(output)".to_owned(),
                message: error.to_string(),
            })?;
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// Parses a multi-document YAML stream of objects, as [`Manifests::to_yaml`] writes it (and
    /// `template` prints it, and each revision is stored).
    pub fn from_yaml(yaml: &str) -> Result<Self, serde_saphyr::Error> {
        let mut objects = Vec::new();
        for document in yaml.split("\n---") {
            let document = document.strip_prefix("---").unwrap_or(document);
            if document.trim().is_empty() {
                continue;
            }
            let object: Value = serde_saphyr::from_str(document)?;
            if !object.is_null() {
                objects.push(object);
            }
        }
        Ok(Self { objects })
    }
}

/// An error with its causes, as tera nests them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Made-up site references for each image of the chart, for tests that render it.
#[cfg(test)]
pub(crate) fn fixture_images() -> BTreeMap<String, String> {
    [
        "coder-service",
        "postgres",
        "ingress-nginx-controller",
        "ingress-nginx-certgen",
        "workspace",
    ]
    .iter()
    .map(|name| {
        (
            name.to_string(),
            format!("site.test/{name}@sha256:{}", "a".repeat(64)),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_bundle::charts::embedded_chart;

    fn images() -> BTreeMap<String, String> {
        fixture_images()
    }

    fn rendered(sets: &[&str]) -> Manifests {
        rendered_with_file("", sets)
    }

    /// Rendered with a values file (YAML text) and then `--set`s.
    fn rendered_with_file(file: &str, sets: &[&str]) -> Manifests {
        let chart = embedded_chart("coder").expect("chart");
        let defaults = chart_defaults(&chart).expect("defaults");
        let sets: Vec<String> = sets.iter().map(|set| set.to_string()).collect();
        let file = values::ValuesLayer {
            source_name: "site.yaml".to_owned(),
            text: file.to_owned(),
        };
        let values = values::resolve(&defaults, &[file], &sets).expect("values");
        let images = images();
        render(&RenderRequest {
            chart: &chart,
            values: &values,
            namespace: "coder",
            images: &images,
            pdb_api: PdbApi::V1Beta1,
            airgapped: false,
        })
        .expect("render")
    }

    fn names(manifests: &Manifests, kind: &str) -> Vec<String> {
        manifests
            .objects
            .iter()
            .filter(|object| kind_of(object) == kind)
            .map(|object| object["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The ports are facts of the topology: a template that wrote one itself could drift from the
    /// NetworkPolicies, the allowlist report and the manager's workspace objects.
    #[test]
    fn no_template_writes_a_port_number_itself() {
        let ports = serde_json::to_value(coder_topology::PORTS).expect("ports");
        let ports: Vec<u64> = ports
            .as_object()
            .expect("a table")
            .values()
            .filter_map(Value::as_u64)
            .collect();
        let chart = embedded_chart("coder").expect("chart");
        let templates: Vec<_> = chart
            .iter()
            .filter(|(path, _)| path.starts_with("templates/") && !path.ends_with(".md"))
            .collect();
        assert!(templates.len() > 5, "the chart's templates are found");
        for (path, bytes) in templates {
            let text = String::from_utf8_lossy(bytes);
            for (line, content) in text.lines().enumerate() {
                let literal = content
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|number| number.parse::<u64>().ok())
                    .find(|number| ports.contains(number));
                assert!(
                    literal.is_none(),
                    "{path}:{}: writes the port {} itself; use {{{{ ports.<name> }}}}: {content}",
                    line + 1,
                    literal.unwrap_or_default()
                );
            }
        }
    }

    /// What the templates render for ports is what the topology says.
    #[test]
    fn services_and_containers_listen_on_the_topology_ports() {
        let manifests = rendered(&[]);
        let service_port = |name: &str| {
            manifests
                .objects
                .iter()
                .find(|o| kind_of(o) == "Service" && o["metadata"]["name"] == name)
                .map(|service| service["spec"]["ports"][0]["port"].clone())
                .expect("service")
        };
        assert_eq!(service_port("coder-manager"), coder_topology::MANAGER_PORT);
        assert_eq!(service_port("coder-envproxy"), coder_topology::ENVPROXY_PORT);
        assert_eq!(service_port("coder-dashboard"), coder_topology::DASHBOARD_PORT);
        assert_eq!(service_port("coder-postgres"), coder_topology::POSTGRES_PORT);
    }

    #[test]
    fn workspaces_are_allowed_the_release_image_and_the_listed_ones_and_bounded_scratch_space() {
        let config = |manifests: &Manifests, key: &str| {
            manifests
                .objects
                .iter()
                .find(|o| kind_of(o) == "ConfigMap" && o["metadata"]["name"] == "coder-config")
                .map(|map| map["data"][key].clone())
                .expect("coder-config")
        };
        let workspace_image = images()["workspace"].clone();
        let plain = rendered(&[]);
        assert_eq!(config(&plain, "CODER_ALLOWED_IMAGES"), workspace_image.as_str());
        assert_eq!(config(&plain, "CODER_WORKSPACE_EPHEMERAL_STORAGE_GB"), "10");

        let site = "workspaces:\n  allowedImages: [registry.site:5000/workspaces/*, registry.site:5000/tools/go:1.22]\n  ephemeralStorageGB: 40\n";
        let manifests = rendered_with_file(site, &[]);
        assert_eq!(
            config(&manifests, "CODER_ALLOWED_IMAGES"),
            format!("{workspace_image},registry.site:5000/workspaces/*,registry.site:5000/tools/go:1.22")
                .as_str()
        );
        assert_eq!(config(&manifests, "CODER_WORKSPACE_EPHEMERAL_STORAGE_GB"), "40");
    }

    #[test]
    fn workspaces_get_their_own_wildcard_host_in_the_ingress_and_the_envproxy() {
        let find = |manifests: &Manifests, kind: &str, name: &str| {
            manifests
                .objects
                .iter()
                .find(|o| kind_of(o) == kind && o["metadata"]["name"] == name)
                .cloned()
                .expect("object")
        };
        let base_url = |manifests: &Manifests| {
            let envproxy = find(manifests, "Deployment", "coder-envproxy");
            envproxy["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .expect("env")
                .iter()
                .find(|e| e["name"] == "CODER_WORKSPACE_BASE_URL")
                .map(|e| e["value"].clone())
        };
        // Unset: no variable (the API server would drop an empty value, and a re-apply must
        // find the live object equal to the rendered one).
        let plain = rendered(&[]);
        assert_eq!(base_url(&plain), None);
        let ingress = find(&plain, "Ingress", "coder");
        assert_eq!(ingress["spec"]["rules"].as_array().expect("rules").len(), 1);

        let manifests = rendered(&[
            "workspaceBaseURL=https://ws.apps.example",
            "ingress.host=coder.example.com",
            "ingress.tlsSecret=coder-tls",
            "ingress.workspaceTlsSecret=ws-wildcard-tls",
        ]);
        assert_eq!(base_url(&manifests), Some("https://ws.apps.example".into()));
        let ingress = find(&manifests, "Ingress", "coder");
        let rules = ingress["spec"]["rules"].as_array().expect("rules");
        assert_eq!(rules[0]["host"], "*.ws.apps.example");
        let paths = rules[0]["http"]["paths"].as_array().expect("paths");
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0]["path"], "/");
        assert_eq!(paths[0]["backend"]["service"]["name"], "coder-envproxy");
        assert_eq!(rules[1]["host"], "coder.example.com");
        let tls = ingress["spec"]["tls"].as_array().expect("tls");
        assert_eq!(tls[0]["secretName"], "coder-tls");
        assert_eq!(tls[1]["secretName"], "ws-wildcard-tls");
        assert_eq!(tls[1]["hosts"][0], "*.ws.apps.example");
    }

    #[test]
    fn the_default_render_holds_the_whole_platform() {
        let manifests = rendered(&[]);
        assert_eq!(
            names(&manifests, "Deployment"),
            [
                "coder-manager",
                "coder-envproxy",
                "coder-dashboard",
                "coder-ingress-nginx-controller"
            ]
        );
        assert_eq!(names(&manifests, "StatefulSet"), ["coder-postgres"]);
        assert_eq!(names(&manifests, "Ingress"), ["coder"]);
        assert!(
            names(&manifests, "PodDisruptionBudget").is_empty(),
            "one replica: no PDB"
        );
        for object in &manifests.objects {
            assert_eq!(
                object["metadata"]["labels"][MANAGED_BY_LABEL], MANAGER_NAME,
                "{object}"
            );
        }
        // Every object parses back from the YAML stream `template` prints.
        let yaml = manifests.to_yaml().expect("yaml");
        assert_eq!(yaml.matches("\n---\n").count() + 1, manifests.objects.len());
    }

    #[test]
    fn network_policies_encode_the_port_table() {
        let manifests = rendered(&[]);
        let policy = |name: &str| {
            manifests
                .objects
                .iter()
                .find(|object| kind_of(object) == "NetworkPolicy" && object["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("policy {name}"))
                .clone()
        };
        assert_eq!(policy("coder-default-deny")["spec"]["podSelector"], json!({}));
        let workspace = policy("coder-allow-to-workspace");
        assert_eq!(
            workspace["spec"]["podSelector"]["matchLabels"],
            json!({"com.coder.resource": "true"})
        );
        let rules = workspace["spec"]["ingress"].as_array().expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "envproxy"
        );
        let ports: Vec<u64> = rules[0]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|port| port["port"].as_u64().unwrap_or_default())
            .collect();
        assert_eq!(ports, [13337, 26337, 12212]);
        let postgres = policy("coder-allow-to-postgres");
        let sources: Vec<&str> = postgres["spec"]["ingress"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|rule| {
                rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    .as_str()
                    .unwrap_or("any")
            })
            .collect();
        assert_eq!(sources, ["manager"], "the migrations run in the manager pod");
    }

    #[test]
    fn workspaces_may_open_only_the_load_balancer_dns_and_the_site_s_networks() {
        let egress = |file: &str, sets: &[&str]| {
            rendered_with_file(file, sets)
                .objects
                .into_iter()
                .find(|object| object["metadata"]["name"] == "coder-workspace-egress")
                .expect("the workspaces' egress policy")
        };
        let policy = egress("", &[]);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"],
            json!({"com.coder.resource": "true"})
        );
        let rules = policy["spec"]["egress"].as_array().expect("rules").clone();
        assert_eq!(rules.len(), 2, "{policy}");
        assert!(
            rules[0].get("to").is_none(),
            "DNS goes wherever the cluster's DNS is: {policy}"
        );
        assert_eq!(
            rules[0]["ports"],
            json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
        );
        assert_eq!(
            rules[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "ingress-nginx"
        );
        assert_eq!(
            rules[1]["ports"],
            json!([{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}])
        );

        // The site's own ingress: the load balancer is anywhere on 80/443; listed networks on
        // every port.
        let policy = egress(
            "networkPolicies: {workspaceEgressCIDRs: [203.0.113.0/24]}",
            &["ingress.enable=false"],
        );
        let rules = policy["spec"]["egress"].as_array().expect("rules").clone();
        assert_eq!(rules[1]["to"], json!([{"ipBlock": {"cidr": "0.0.0.0/0"}}]));
        assert_eq!(rules[2]["to"], json!([{"ipBlock": {"cidr": "203.0.113.0/24"}}]));
        assert!(rules[2].get("ports").is_none(), "{policy}");
    }

    #[test]
    fn replicas_bring_disruption_budgets_and_an_external_database_removes_postgres() {
        let manifests = rendered(&[
            "manager.replicas=2",
            "postgres.host=db.example",
            "ingress.enable=false",
        ]);
        assert_eq!(names(&manifests, "PodDisruptionBudget"), ["coder-manager"]);
        assert!(names(&manifests, "StatefulSet").is_empty());
        assert!(names(&manifests, "Ingress").is_empty());
        assert!(!names(&manifests, "NetworkPolicy").contains(&"coder-allow-to-postgres".to_owned()));
        let pdb = manifests
            .objects
            .iter()
            .find(|object| kind_of(object) == "PodDisruptionBudget")
            .expect("pdb");
        assert_eq!(pdb["apiVersion"], "policy/v1beta1");
    }

    #[test]
    fn the_manager_believes_forwarded_addresses_only_from_the_trusted_proxies() {
        let manifests = rendered(&[]);
        let manager = manifests
            .objects
            .iter()
            .find(|object| kind_of(object) == "Deployment" && object["metadata"]["name"] == "coder-manager")
            .expect("manager");
        let env = manager["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env");
        // No network by default: only the install's own proxy pods, by their labels.
        assert!(
            env.iter()
                .all(|variable| variable["name"] != "CODER_TRUSTED_PROXIES"),
            "{env:?}"
        );
        let pods = env
            .iter()
            .find(|variable| variable["name"] == "CODER_TRUSTED_PROXY_PODS")
            .expect("CODER_TRUSTED_PROXY_PODS");
        assert_eq!(
            pods["value"],
            "app.kubernetes.io/name=coder,app.kubernetes.io/component in (dashboard,ingress-nginx)"
        );
        let config = manifests
            .objects
            .iter()
            .find(|object| kind_of(object) == "ConfigMap" && object["metadata"]["name"] == "coder-config")
            .expect("config");
        assert_eq!(config["data"]["CODER_MAX_WORKSPACES_PER_USER"], "10");
        assert_eq!(config["data"]["CODER_MAX_DISK_GB_PER_USER"], "500");

        let chart = embedded_chart("coder").expect("chart");
        let defaults = chart_defaults(&chart).expect("defaults");
        let layer = values::ValuesLayer {
            source_name: "site.yaml".to_owned(),
            text: "manager:\n  trustedProxies: [10.0.0.0/8, proxy.local]\n".to_owned(),
        };
        let error = values::resolve(&defaults, &[layer], &[]).expect_err("refused");
        assert!(error.to_string().contains("manager.trustedProxies.1"), "{error}");
    }
}
