//! The chart's values: the typed model, merging (chart defaults < `--values` files in order <
//! `--set`), and validation that names every bad key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every value the chart reads. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Values {
    /// The URL users reach the platform at.
    #[serde(rename = "accessURL")]
    pub access_url: String,
    /// Where browsers reach workspaces, each on its own origin `ws-<id>.<host>`; empty: nowhere.
    #[serde(rename = "workspaceBaseURL")]
    pub workspace_base_url: WorkspaceBaseUrl,
    /// The manager.
    pub manager: ManagerValues,
    /// The envproxy.
    pub envproxy: ComponentValues,
    /// The dashboard.
    pub dashboard: ComponentValues,
    /// PostgreSQL, in the cluster or external.
    pub postgres: PostgresValues,
    /// The optional NGINX ingress controller and the platform's Ingress.
    pub ingress: IngressValues,
    /// NetworkPolicies.
    pub network_policies: NetworkPolicyValues,
    /// The workspaces users create.
    pub workspaces: WorkspaceValues,
    /// Secrets with registry credentials, attached to every service account.
    pub image_pull_secrets: Vec<String>,
    /// A ConfigMap (key `ca.crt`) of extra CA certificates; empty: none.
    pub ca_bundle_config_map: String,
}

/// Settings of the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManagerValues {
    /// Replicas; with more than one, a PodDisruptionBudget and anti-affinity are rendered.
    #[schemars(range(min = 1, max = 20))]
    pub replicas: u32,
    /// Container resources.
    pub resources: Resources,
    /// The first admin account's email address.
    pub admin_email: String,
    /// CIDR networks (`192.0.2.7/32` for one address) whose `X-Forwarded-For` the manager
    /// believes for its per-address login limit, besides the install's own ingress controller
    /// and dashboard pods (always trusted, followed through the Kubernetes API).
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Settings of the workspaces users create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkspaceValues {
    /// What one user's workspaces may hold in all (the manager refuses more).
    pub per_user: WorkspaceQuotaValues,
    /// Images users may create workspaces from besides the release's own workspace image, which
    /// is always allowed; an entry ending in `*` allows every image that starts with what
    /// precedes it (e.g. `registry.site:5000/workspaces/*`). Empty: that image only.
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// The scratch space one workspace may use on its node, in GB (its container's writable
    /// layer and logs; the home volume is not counted): the kubelet evicts a workspace beyond it.
    #[serde(rename = "ephemeralStorageGB")]
    #[schemars(range(min = 1, max = 10000))]
    pub ephemeral_storage_gb: u32,
}

/// What one user's workspaces may hold in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkspaceQuotaValues {
    /// Workspaces.
    #[schemars(range(min = 1))]
    pub max_workspaces: u32,
    /// CPU cores together.
    #[schemars(range(min = 0.1))]
    pub max_cpu_cores: f64,
    /// Memory together, in GB.
    #[serde(rename = "maxMemoryGB")]
    #[schemars(range(min = 0.25))]
    pub max_memory_gb: f64,
    /// Home volume space together, in GB.
    #[serde(rename = "maxDiskGB")]
    #[schemars(range(min = 1))]
    pub max_disk_gb: u32,
}

/// Settings of a stateless component (envproxy, dashboard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentValues {
    /// Replicas; with more than one, a PodDisruptionBudget and anti-affinity are rendered.
    #[schemars(range(min = 1, max = 20))]
    pub replicas: u32,
    /// Container resources.
    pub resources: Resources,
}

/// Container resource requests and limits (`cpu`, `memory`, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Requests by resource name.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    /// Limits by resource name.
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
}

/// A Kubernetes quantity (`250m`, `1Gi`, `2`); numbers are accepted and kept as text.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Number(number) => number.to_string(),
        };
        let valid = !text.is_empty()
            && text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '.')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a Kubernetes quantity (e.g. 250m, 512Mi, 2)"
            )));
        }
        Ok(Self(text))
    }
}

/// `workspaceBaseURL`: empty, or `http(s)://HOST[:PORT]` with a DNS name, no path. Workspace
/// `<id>` is served at `ws-<id>.HOST`, so HOST needs a wildcard DNS record (and certificate).
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct WorkspaceBaseUrl(pub String);

impl WorkspaceBaseUrl {
    /// The wildcard domain (`ws-<id>.` goes in front), when set.
    pub fn host(&self) -> Option<String> {
        url::Url::parse(&self.0).ok().and_then(|url| {
            url.host_str()
                .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
        })
    }
}

impl<'de> Deserialize<'de> for WorkspaceBaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?.trim().to_owned();
        if text.is_empty() {
            return Ok(Self(text));
        }
        let refuse = |reason: &str| {
            serde::de::Error::custom(format!(
                "{text:?}: {reason} (expected e.g. https://ws.example-apps.com, serving \
                 https://ws-<id>.ws.example-apps.com)"
            ))
        };
        let url = url::Url::parse(&text).map_err(|error| refuse(&error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("the scheme must be http or https"));
        }
        let Some(url::Host::Domain(domain)) = url.host() else {
            return Err(refuse("the host must be a DNS name, not an address"));
        };
        if domain.is_empty() || url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(refuse("a domain without path, query or user"));
        }
        Ok(Self(text))
    }
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PostgresValues {
    /// External database host; empty: run PostgreSQL in the cluster.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Database name.
    pub database: String,
    /// External database only: the Secret (key `password`) with the password.
    pub password_secret: String,
    /// `disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub ssl_mode: SslMode,
    /// The in-cluster database's volume.
    pub storage: Storage,
    /// The in-cluster database's resources.
    pub resources: Resources,
}

/// PostgreSQL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A volume request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    /// Size, e.g. `10Gi`.
    pub size: Quantity,
    /// StorageClass; empty: the cluster default.
    pub storage_class: String,
}

/// Ingress settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressValues {
    /// Deploy the NGINX ingress controller and the platform's Ingress.
    pub enable: bool,
    /// Host the Ingress answers for; empty: any.
    pub host: String,
    /// TLS Secret for the host; empty: plain HTTP.
    pub tls_secret: String,
    /// TLS Secret with a wildcard certificate for `*.<workspaceBaseURL host>`; empty: none.
    pub workspace_tls_secret: String,
    /// The IngressClass name; empty: `coder-nginx-<namespace>`.
    pub class_name: String,
}

/// NetworkPolicy settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicyValues {
    /// Render the policies.
    pub enable: bool,
    /// Networks (CIDR) workspaces may open connections to on any port, besides the platform
    /// through the load balancer and name lookups: a site's git server, package mirror or proxy.
    #[serde(rename = "workspaceEgressCIDRs")]
    #[schemars(with = "Vec<String>")]
    pub workspace_egress_cidrs: Vec<ipnet::IpNet>,
}

/// Why values were refused.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// A values file or the chart defaults could not be parsed.
    #[error("{source_name}: not valid YAML: {message}")]
    Parse {
        /// Which file.
        source_name: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A `--set` argument is malformed.
    #[error("--set {argument:?}: {reason}; write it as key.path=value, e.g. --set manager.replicas=2")]
    BadSet {
        /// The argument.
        argument: String,
        /// What is wrong.
        reason: String,
    },
    /// One or more keys are unknown or have the wrong type.
    #[error("the values do not match the chart's schema (charts/coder/values.schema.json):\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// One line per bad key: its path and what is wrong.
        problems: Vec<String>,
    },
}

/// Where a layer of values came from, for messages.
#[derive(Debug, Clone)]
pub struct ValuesLayer {
    /// A file name, or `--set`.
    pub source_name: String,
    /// The YAML text.
    pub text: String,
}

/// Parses YAML values text into a JSON tree (an empty document is an empty map).
pub fn parse_layer(layer: &ValuesLayer) -> Result<Value, ValuesError> {
    if layer.text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_saphyr::from_str(&layer.text).map_err(|error| ValuesError::Parse {
        source_name: layer.source_name.clone(),
        message: error.to_string(),
    })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        _ => Err(ValuesError::Parse {
            source_name: layer.source_name.clone(),
            message: "the top level must be a map of keys".to_owned(),
        }),
    }
}

/// Merges `overlay` into `base`: maps merge key by key, anything else replaces.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies one `--set key.path=value`. The value is typed as YAML types a scalar (`true`, `2`,
/// `null`, otherwise text); quote it (`'"2"'`) to force text.
pub fn apply_set(tree: &mut Value, argument: &str) -> Result<(), ValuesError> {
    let bad = |reason: &str| ValuesError::BadSet {
        argument: argument.to_owned(),
        reason: reason.to_owned(),
    };
    let (path, raw) = argument.split_once('=').ok_or_else(|| bad("there is no `=`"))?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(bad("the key path has an empty part"));
    }
    let value: Value = if raw.is_empty() {
        Value::String(String::new())
    } else {
        serde_saphyr::from_str::<Value>(raw)
            .ok()
            .filter(|value| !matches!(value, Value::Object(_) | Value::Array(_)))
            .unwrap_or_else(|| Value::String(raw.to_owned()))
    };
    let mut node = tree;
    let parts: Vec<&str> = path.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Object(map) => map,
            _ => return Err(bad(&format!("{} is not a map", parts[..index].join(".")))),
        };
        if index + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return Ok(());
        }
        node = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Merges the layers over the chart defaults, applies `--set`, and checks the result. Every
/// unknown key and every bad value is reported, not just the first.
pub fn resolve(
    defaults: &ValuesLayer,
    files: &[ValuesLayer],
    sets: &[String],
) -> Result<Values, ValuesError> {
    let defaults = parse_layer(defaults)?;
    let mut tree = defaults.clone();
    for file in files {
        merge(&mut tree, parse_layer(file)?);
    }
    for set in sets {
        apply_set(&mut tree, set)?;
    }
    check(tree, &defaults)
}

/// Deserialises `tree`, collecting every problem: an unknown key is recorded and removed, a bad
/// value recorded and replaced by the chart's default, and the check repeated, so one run names
/// them all.
fn check(mut tree: Value, defaults: &Value) -> Result<Values, ValuesError> {
    let mut problems = Vec::new();
    for _ in 0..64 {
        let error = match serde_path_to_error::deserialize::<_, Values>(&tree) {
            Ok(values) if problems.is_empty() => return Ok(values),
            Ok(_) => return Err(ValuesError::Invalid { problems }),
            Err(error) => error,
        };
        let mut path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let message = error.inner().to_string();
        // Make sure an unknown field's path names the key itself.
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        if let Some(unknown) = unknown
            && path.last().map(String::as_str) != Some(unknown)
        {
            path.push(unknown.to_owned());
        }
        let shown = if path.is_empty() {
            "(top level)".to_owned()
        } else {
            path.join(".")
        };
        problems.push(format!("{shown}: {message}"));
        let replacement = if unknown.is_some() {
            None
        } else {
            lookup(defaults, &path).cloned()
        };
        if path.is_empty() || !replace_path(&mut tree, &path, replacement) {
            break;
        }
    }
    Err(ValuesError::Invalid { problems })
}

/// The value at `path`, if any.
fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, part| node.get(part.as_str()))
}

/// Removes the key at `path`, or puts `replacement` there; false when nothing changed.
fn replace_path(tree: &mut Value, path: &[String], replacement: Option<Value>) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for part in parents {
        match node.get_mut(part.as_str()) {
            Some(child) => node = child,
            None => return false,
        }
    }
    let Value::Object(map) = node else {
        return false;
    };
    match replacement {
        Some(value) => map.insert(last.clone(), value).is_some(),
        None => map.remove(last.as_str()).is_some(),
    }
}

/// The JSON Schema of the values, as committed in `charts/coder/values.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Values);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ValuesLayer {
        let chart = coder_bundle::charts::embedded_chart("coder").expect("chart");
        crate::render::chart_defaults(&chart).expect("defaults")
    }

    fn sets(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn layers_merge_in_order_and_set_wins() {
        let files = [
            ValuesLayer {
                source_name: "a.yaml".to_owned(),
                text: "manager:\n  replicas: 3\ningress:\n  host: a.example\n".to_owned(),
            },
            ValuesLayer {
                source_name: "b.yaml".to_owned(),
                text: "ingress:\n  host: b.example\n".to_owned(),
            },
        ];
        let values = resolve(
            &defaults(),
            &files,
            &sets(&["manager.replicas=2", "postgres.port=6543"]),
        )
        .expect("valid");
        assert_eq!(values.manager.replicas, 2);
        assert_eq!(values.ingress.host, "b.example");
        assert_eq!(values.postgres.port, 6543);
        // Untouched keys keep the chart defaults.
        assert_eq!(values.envproxy.replicas, 1);
        assert!(values.ingress.enable);
    }

    #[test]
    fn every_bad_key_is_named_in_one_error() {
        let error = resolve(
            &defaults(),
            &[],
            &sets(&[
                "manager.replica=2",
                "ingress.enable=maybe",
                "postgres.sslMode=sometimes",
                "nosuch=1",
            ]),
        )
        .expect_err("invalid");
        let ValuesError::Invalid { problems } = &error else {
            panic!("unexpected error {error}");
        };
        let text = error.to_string();
        for key in ["manager.replica", "ingress.enable", "postgres.sslMode", "nosuch"] {
            assert!(
                problems
                    .iter()
                    .any(|problem| problem.starts_with(&format!("{key}:"))),
                "{key} missing in:\n{text}"
            );
        }
        assert_eq!(problems.len(), 4, "{text}");
        assert!(text.contains("values.schema.json"), "{text}");
    }

    #[test]
    fn set_arguments_are_typed_and_checked() {
        let mut tree = serde_json::json!({});
        apply_set(&mut tree, "a.b=true").expect("bool");
        apply_set(&mut tree, "a.c=2").expect("number");
        apply_set(&mut tree, "a.d=text").expect("text");
        apply_set(&mut tree, "a.e=").expect("empty");
        assert_eq!(
            tree,
            serde_json::json!({"a": {"b": true, "c": 2, "d": "text", "e": ""}})
        );
        for bad in ["novalue", "=1", "a..b=1"] {
            let error = apply_set(&mut tree, bad).expect_err(bad).to_string();
            assert!(error.contains("key.path=value"), "{error}");
        }
        let error = apply_set(&mut tree, "a.b.c=1")
            .expect_err("through a scalar")
            .to_string();
        assert!(error.contains("a.b is not a map"), "{error}");
    }

    #[test]
    fn the_workspace_base_url_names_a_wildcard_domain() {
        let values = resolve(&defaults(), &[], &[]).expect("defaults");
        assert_eq!(values.workspace_base_url.host(), None);
        let values = resolve(
            &defaults(),
            &[],
            &sets(&["workspaceBaseURL=https://WS.apps.example:8443"]),
        )
        .expect("valid");
        assert_eq!(
            values.workspace_base_url.host().as_deref(),
            Some("ws.apps.example")
        );
        for bad in [
            "ftp://ws.apps.example",
            "https://10.0.0.1",
            "https://ws.apps.example/path",
            "not a url",
        ] {
            let error = resolve(&defaults(), &[], &sets(&[&format!("workspaceBaseURL={bad}")]))
                .expect_err(bad)
                .to_string();
            assert!(error.contains("workspaceBaseURL"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_values_file_that_is_not_a_map_is_refused_with_its_name() {
        let layer = ValuesLayer {
            source_name: "site.yaml".to_owned(),
            text: "- a\n- b\n".to_owned(),
        };
        let error = resolve(&defaults(), &[layer], &[]).expect_err("list").to_string();
        assert!(error.contains("site.yaml") && error.contains("map"), "{error}");
    }

    #[test]
    fn the_committed_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../charts/coder/values.schema.json"
        );
        let schema = json_schema();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &schema).expect("write schema");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == schema,
            "charts/coder/values.schema.json is stale: run `UPDATE_SCHEMA=1 cargo test -p coder-deploy --lib values`"
        );
    }
}
