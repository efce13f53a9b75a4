//! Preflight: whether an apply can succeed, checked before anything changes. Each failed check
//! says what to fix. `coder-install preflight` runs these alone.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde_json::Value;

use coder_bundle::read::OpenedBundle;

use coder_mirror::{
    MirrorOptions, MirrorReport, SiteRegistry, check_bundle_present, check_registry_writable,
};
use coder_registry::RegistryOptions;

use crate::cluster::{Cluster, OLDEST_SUPPORTED};
use crate::objects::ObjectKey;
use crate::record::{InstallRecord, RecordStore};

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Pass,
    /// Worth knowing; does not stop an apply.
    Warn,
    /// Stops an apply.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A failing check with its fix.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A warning with advice.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// All checks of a preflight run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PreflightReport {
    /// In the order they ran.
    pub checks: Vec<Check>,
    /// What the namespace already holds, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_install: Option<InstallRecord>,
}

impl PreflightReport {
    /// Whether nothing failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.outcome != Outcome::Fail)
    }

    /// The failures as one error message.
    pub fn failure_message(&self) -> String {
        let mut message = String::from("preflight failed:");
        for check in self.checks.iter().filter(|check| check.outcome == Outcome::Fail) {
            message.push_str(&format!("\n  - {}: {}", check.name, check.detail));
            if let Some(fix) = &check.fix {
                message.push_str(&format!("\n    fix: {fix}"));
            }
        }
        message
    }
}

/// One permission to check: a verb on a resource, in a namespace or cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    group: String,
    resource: String,
    namespace: String,
    verb: &'static str,
}

/// The verbs an apply uses on every kind it manages.
const VERBS: [&str; 4] = ["get", "create", "patch", "delete"];

/// The site registry's check with `--no-push`: the registry (`coder-install serve` of the same
/// bundle, or one it was pushed into before) serves every image and chart of the bundle by
/// digest; nothing is written. When it passes, the report says what to deploy by.
pub async fn check_site_serves_bundle(
    bundle: &OpenedBundle,
    site: &SiteRegistry,
    options: &RegistryOptions,
) -> (Check, Option<MirrorReport>) {
    let mirror = MirrorOptions {
        registry: options.clone(),
        ..MirrorOptions::default()
    };
    match check_bundle_present(bundle, site, &mirror).await {
        Ok(report) => (
            Check::pass(
                "site registry",
                format!(
                    "{site}: serves every image and chart of the bundle ({} manifests; --no-push: nothing is pushed)",
                    report.manifests_present
                ),
            ),
            Some(report),
        ),
        Err(error) => (
            Check::fail(
                "site registry",
                coder_progress::error_chain(&error),
                "start `coder-install serve --bundle FILE --prefix PREFIX` on the site (the --registry prefix), check \
                 --registry and its TLS (--registry-ca or --insecure-registry) and credentials, or drop --no-push to push",
            ),
            None,
        ),
    }
}

/// The site registry's check: reachable, credentials accepted, pushes allowed.
pub async fn check_site_registry(site: &SiteRegistry, options: &RegistryOptions) -> Check {
    match check_registry_writable(site, options).await {
        Ok(check) => Check::pass("site registry", check.summary),
        Err(error) => Check::fail(
            "site registry",
            format!("{site}: {error}"),
            "check --registry, the credentials (--registry-username with --registry-password-stdin, or the \
             Docker config), and --registry-ca or --insecure-registry for its TLS",
        ),
    }
}

/// Runs the cluster checks for applying `objects` into `namespace`: the API server, the kinds it
/// serves, the credentials' permissions, what the namespace already holds, and the storage class.
pub async fn check_cluster(
    cluster: &Cluster,
    namespace: &str,
    objects: &[Value],
    storage_class: Option<&str>,
) -> PreflightReport {
    let mut report = PreflightReport::default();
    report.checks.push(Check::pass(
        "API server",
        format!(
            "Kubernetes {} (supported: {OLDEST_SUPPORTED} and newer)",
            cluster.version
        ),
    ));
    let (permissions, kinds_check) = needed_permissions(cluster, namespace, objects);
    report.checks.push(kinds_check);
    report.checks.push(permissions_check(cluster, permissions).await);
    let (install_checks, existing) = existing_install_checks(cluster, namespace).await;
    report.checks.extend(install_checks);
    report.existing_install = existing;
    if let Some(storage_class) = storage_class {
        report
            .checks
            .push(storage_class_check(cluster, storage_class).await);
    }
    report
}

/// The permissions an apply of `objects` needs (every verb it uses on every kind it writes,
/// plus its Secrets, record ConfigMaps and Lease, and reading the namespace), and the check of
/// whether the server serves every kind.
fn needed_permissions(
    cluster: &Cluster,
    namespace: &str,
    objects: &[Value],
) -> (BTreeSet<Permission>, Check) {
    let mut permissions = BTreeSet::new();
    let mut unserved = Vec::new();
    let mut kinds: Vec<ObjectKey> = objects.iter().map(ObjectKey::of).collect();
    for (api_version, kind) in [
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
        ("coordination.k8s.io/v1", "Lease"),
    ] {
        kinds.push(ObjectKey {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: String::new(),
        });
    }
    for key in &kinds {
        let Some((resource, namespaced)) = cluster.resolve(&key.api_version, &key.kind) else {
            unserved.push(format!("{} {}", key.api_version, key.kind));
            continue;
        };
        for verb in VERBS {
            permissions.insert(Permission {
                group: resource.group.clone(),
                resource: resource.plural.clone(),
                namespace: if namespaced {
                    namespace.to_owned()
                } else {
                    String::new()
                },
                verb,
            });
        }
    }
    permissions.insert(Permission {
        group: String::new(),
        resource: "namespaces".to_owned(),
        namespace: String::new(),
        verb: "get",
    });
    unserved.sort();
    unserved.dedup();
    let check = if unserved.is_empty() {
        Check::pass("API kinds", "the server serves every kind the charts use")
    } else {
        Check::fail(
            "API kinds",
            format!("the server does not serve: {}", unserved.join(", ")),
            "use a Kubernetes release that serves these APIs (1.20 or newer) or enable them",
        )
    };
    (permissions, check)
}

/// Whether the credentials hold every one of `permissions` (asked with access reviews).
async fn permissions_check(cluster: &Cluster, permissions: BTreeSet<Permission>) -> Check {
    match denied_permissions(cluster, permissions.into_iter().collect()).await {
        Ok(denied) if denied.is_empty() => Check::pass(
            "permissions",
            "the credentials may get, create, patch and delete everything the install manages",
        ),
        Ok(denied) => Check::fail(
            "permissions",
            format!("denied: {}", denied.join(", ")),
            "grant these verbs to the kubeconfig's user (e.g. a RoleBinding to `admin` in the namespace \
             plus the cluster-scoped kinds listed), or run as a cluster administrator",
        ),
        Err(error) => Check::fail(
            "permissions",
            format!("could not ask the API server: {error}"),
            "check that the credentials are valid (SelfSubjectAccessReview must be allowed)",
        ),
    }
}

/// What the namespace already holds: the install record's checks (and an unfinished apply's
/// warning), and the record itself.
async fn existing_install_checks(cluster: &Cluster, namespace: &str) -> (Vec<Check>, Option<InstallRecord>) {
    match RecordStore::new(cluster.client.clone(), namespace).load().await {
        Ok(Some(record)) => {
            let mut checks = vec![Check::pass(
                "existing install",
                format!(
                    "namespace {namespace} has revision {} (version {}, applied {})",
                    record.revision, record.version, record.applied_at
                ),
            )];
            if let Some(pending) = &record.pending {
                checks.push(Check::warn(
                    "unfinished apply",
                    format!(
                        "an apply of version {} started {} did not finish",
                        pending.version, pending.started_at
                    ),
                    "re-running apply converges and prunes what that run left",
                ));
            }
            (checks, Some(record))
        }
        Ok(None) => (
            vec![Check::pass(
                "existing install",
                format!("none in namespace {namespace}"),
            )],
            None,
        ),
        Err(error) => (
            vec![Check::fail(
                "existing install",
                error.to_string(),
                "fix or delete the damaged record ConfigMap",
            )],
            None,
        ),
    }
}

/// Whether the StorageClass the database's volume asks for exists.
async fn storage_class_check(cluster: &Cluster, storage_class: &str) -> Check {
    let api: Api<StorageClass> = Api::all(cluster.client.clone());
    match api.get_opt(storage_class).await {
        Ok(Some(_)) => Check::pass("storage class", format!("{storage_class} exists")),
        Ok(None) => Check::fail(
            "storage class",
            format!("StorageClass {storage_class} does not exist"),
            "create it, or set postgres.storage.storageClass to one that exists (kubectl get storageclass)",
        ),
        Err(error) => Check::warn(
            "storage class",
            format!("could not read StorageClass {storage_class}: {error}"),
            "make sure it exists",
        ),
    }
}

/// The permissions the credentials lack, as `verb group/resource [in namespace]` lines.
async fn denied_permissions(
    cluster: &Cluster,
    permissions: Vec<Permission>,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let answers: Vec<Result<(Permission, bool), kube::Error>> = futures_util::stream::iter(permissions)
        .map(|permission| {
            let api = api.clone();
            async move {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(permission.group.clone()),
                            resource: Some(permission.resource.clone()),
                            namespace: (!permission.namespace.is_empty())
                                .then(|| permission.namespace.clone()),
                            verb: Some(permission.verb.to_owned()),
                            ..ResourceAttributes::default()
                        }),
                        ..SelfSubjectAccessReviewSpec::default()
                    },
                    ..SelfSubjectAccessReview::default()
                };
                let answer = api.create(&PostParams::default(), &review).await?;
                let allowed = answer.status.is_some_and(|status| status.allowed);
                Ok((permission, allowed))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut denied = Vec::new();
    for answer in answers {
        let (permission, allowed) = answer?;
        if !allowed {
            let group = if permission.group.is_empty() {
                "core".to_owned()
            } else {
                permission.group
            };
            let place = if permission.namespace.is_empty() {
                "cluster-wide".to_owned()
            } else {
                format!("in namespace {}", permission.namespace)
            };
            denied.push(format!(
                "{} {group}/{} {place}",
                permission.verb, permission.resource
            ));
        }
    }
    denied.sort();
    Ok(denied)
}
