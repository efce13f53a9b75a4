//! `apply`, `template`, `preflight`, `status`, `rollback` and `uninstall` against a real
//! kube-apiserver (with etcd) and real registries. The API server runs no controllers or
//! kubelets, so readiness is simulated by patching status (labelled where it is done).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::LazyLock;

use coder_testenv::cli::{bundle_args, lock_args};
use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{KubeApiServer, Registry, RegistryFlavour};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::world::{coder_install, failure, success};

/// The images the platform chart refers to, by logical name, and their upstream paths: the
/// built-in spec's, without their registry host (tests put them in a registry of their own).
pub static PLATFORM_IMAGES: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let spec = coder_bundle_spec::BundleSpec::from_yaml(coder_bundle_spec::DEFAULT_SPEC, "built-in")
        .expect("the built-in spec");
    spec.images
        .into_iter()
        .map(|image| {
            let (_host, path) = image
                .reference
                .split_once('/')
                .expect("the built-in spec names each image's registry");
            (image.name, path.to_owned())
        })
        .collect()
});

/// An upstream registry holding stand-ins for the platform's images, a spec naming them with
/// the real chart, its lock, and an API server.
pub struct Platform {
    pub upstream: Registry,
    pub cluster: KubeApiServer,
    pub dir: tempfile::TempDir,
}

impl Platform {
    pub async fn start() -> Self {
        let (upstream, cluster) =
            tokio::join!(Registry::start(RegistryFlavour::Plain), KubeApiServer::start());
        let upstream = upstream.expect("upstream registry");
        let cluster = cluster.expect("API server");
        push_stand_in_images(&upstream).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = Self {
            upstream,
            cluster,
            dir,
        };
        std::fs::write(platform.spec(), platform.spec_text("1.0.0")).expect("spec");
        platform.lock_spec();
        platform
    }

    /// Locks the spec against the upstream registry.
    pub fn lock_spec(&self) {
        success(self.run(lock_args(&self.spec(), &self.lock(), &self.upstream.host())));
    }

    /// Bundles the spec and lock into `name` (in the work folder, through its cache); returns
    /// the bundle's path.
    pub fn bundle(&self, name: &str) -> PathBuf {
        self.bundle_with(name, &[])
    }

    /// `bundle` into `name` with `extra` flags (e.g. `--part-size`).
    pub fn bundle_with(&self, name: &str, extra: &[&str]) -> PathBuf {
        let bundle = self.path(name);
        let mut args = bundle_args(
            &self.spec(),
            &self.lock(),
            &self.path("cache"),
            &bundle,
            &self.upstream.host(),
        );
        args.extend(extra.iter().map(Into::into));
        success(self.run(args));
        bundle
    }

    /// An enterprise license with the air-gap entitlement, written to the work folder.
    pub fn airgap_license(&self) -> PathBuf {
        let license = self.path("enterprise.license");
        crate::license::write_airgap_license(license.as_ref());
        license
    }

    /// Replaces the `coder-service` stand-in upstream with the real platform image and locks
    /// the spec again.
    pub fn publish_real_platform_image(&self) {
        push_real_platform_image(&self.upstream, &PLATFORM_IMAGES[0].1, &[]);
        self.lock_spec();
    }

    pub fn spec_text(&self, version: &str) -> String {
        platform_spec_text(&self.upstream.host(), version)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn spec(&self) -> PathBuf {
        self.path("coder.yaml")
    }

    pub fn lock(&self) -> PathBuf {
        self.path("images.lock")
    }

    pub fn text(&self, path: &Path) -> String {
        path.display().to_string()
    }

    /// Runs coder-install with an empty Docker config.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Output {
        let docker = self.path("docker");
        std::fs::create_dir_all(&docker).expect("docker dir");
        std::fs::write(docker.join("config.json"), "{}").expect("docker config");
        coder_install(args, &[("DOCKER_CONFIG", &docker)])
    }

    /// `apply --bundle --allow-unsigned` arguments for `bundle` into this cluster, its images
    /// pushed to (or served by) the plain-HTTP site registry `registry` (`host:port/prefix`).
    pub fn air_gapped_apply(&self, bundle: &Path, registry: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "apply".to_owned(),
            "--bundle".to_owned(),
            self.text(bundle),
            "--allow-unsigned".to_owned(),
            "--registry".to_owned(),
            registry.to_owned(),
            "--insecure-registry".to_owned(),
            registry.split('/').next().unwrap_or_default().to_owned(),
            "--kubeconfig".to_owned(),
            self.text(self.cluster.kubeconfig_path()),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    /// Connected-mode arguments for `command` (apply, template, preflight) in `namespace`.
    pub fn connected(&self, command: &str, namespace: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            command.to_owned(),
            "--spec".to_owned(),
            self.text(&self.spec()),
            "--lock".to_owned(),
            self.text(&self.lock()),
            "--namespace".to_owned(),
            namespace.to_owned(),
        ];
        if command != "template" {
            args.push("--kubeconfig".to_owned());
            args.push(self.text(self.cluster.kubeconfig_path()));
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    pub fn target(&self, command: &str, namespace: &str) -> Vec<String> {
        vec![
            command.to_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--kubeconfig".to_owned(),
            self.text(self.cluster.kubeconfig_path()),
        ]
    }

    pub async fn client(&self) -> kube::Client {
        self.cluster.client().await.expect("client")
    }
}

/// Pushes a small stand-in image for each of [`PLATFORM_IMAGES`] to `upstream`.
pub async fn push_stand_in_images(upstream: &Registry) {
    for (index, (_, path)) in PLATFORM_IMAGES.iter().enumerate() {
        let image = ImageBuilder::new()
            .layer(LayerBuilder::new().random_file("base.bin", 64 * 1024, 7))
            .layer(LayerBuilder::new().random_file("app.bin", 16 * 1024, index as u64))
            .build()
            .expect("fixture image");
        upstream.push_image(path, &image).await.expect("push fixture");
    }
}

/// A spec of release `version` naming [`PLATFORM_IMAGES`] in the registry at `upstream_host`,
/// with the real chart.
pub fn platform_spec_text(upstream_host: &str, version: &str) -> String {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/coder");
    let mut text = format!("name: coder\nversion: {version}\nplatforms: [linux/amd64]\nimages:\n");
    for (name, path) in PLATFORM_IMAGES.iter() {
        text.push_str(&format!("  - name: {name}\n    ref: {upstream_host}/{path}\n"));
    }
    text.push_str(&format!("charts:\n  - name: coder\n    path: {chart}\n"));
    text
}

/// Pushes the real platform image to `registry` at `path`, packed by the `platform-image` tool
/// (built beside this test by the workspace build) from the static dev build of coder-service
/// that `scripts/test.sh` makes first, as the quick start does. `extra` goes to
/// `platform-image build` (e.g. `--version 2.0.0` for a second release's image).
pub fn push_real_platform_image(registry: &Registry, path: &str, extra: &[&str]) {
    push_platform_image_built_with(registry, path, &[], extra);
}

/// [`push_real_platform_image`] of a coder-service built with the TEST-ONLY extra migration
/// (`--test-schema-2`): a release whose schema differs from the others'.
pub fn push_schema_2_platform_image(registry: &Registry, path: &str, extra: &[&str]) {
    push_platform_image_built_with(registry, path, &["--test-schema-2"], extra);
}

fn push_platform_image_built_with(registry: &Registry, path: &str, build: &[&str], extra: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-platform-image.sh");
    let output = std::process::Command::new(script)
        .args(["--profile", "dev", "--test-keys", "--print-binary"])
        .args(build)
        .output()
        .expect("run scripts/build-platform-image.sh");
    assert!(
        output.status.success(),
        "building the static coder-service failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The script prints the path relative to the workspace root.
    let binary = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join(String::from_utf8_lossy(&output.stdout).trim())
        .display()
        .to_string();
    let tool = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("platform-image")))
        .filter(|tool| tool.exists())
        .expect("target/debug/platform-image: run the suite as scripts/test.sh does (a workspace build)");
    let reference = format!("{}/{path}", registry.host());
    let output = std::process::Command::new(tool)
        .args([
            "build",
            "--binary",
            &binary,
            "--push",
            &reference,
            "--insecure-registry",
        ])
        .arg(registry.host())
        .args(extra)
        .output()
        .expect("run platform-image");
    assert!(
        output.status.success(),
        "building the platform image failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every object with coder-install's managed-by label in `namespace`, by `Kind/name`, with its
/// resourceVersion and content.
pub async fn managed_objects(client: &kube::Client, namespace: &str) -> BTreeMap<String, Value> {
    let kinds = [
        ("", "v1", "ConfigMap", "configmaps"),
        ("", "v1", "Service", "services"),
        ("", "v1", "ServiceAccount", "serviceaccounts"),
        ("", "v1", "Secret", "secrets"),
        ("apps", "v1", "Deployment", "deployments"),
        ("apps", "v1", "StatefulSet", "statefulsets"),
        ("batch", "v1", "Job", "jobs"),
        ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
        ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        ("policy", "v1beta1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ];
    let mut objects = BTreeMap::new();
    for (group, version, kind, plural) in kinds {
        let resource = ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let list = api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=coder-install"))
            .await
            .expect("list");
        for item in list {
            let name = item.metadata.name.clone().unwrap_or_default();
            objects.insert(
                format!("{kind}/{name}"),
                serde_json::to_value(item).expect("json"),
            );
        }
    }
    objects
}

fn resource_versions(objects: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|(key, object)| {
            (
                key.clone(),
                object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

pub fn stdout_json(output: Output) -> Value {
    serde_json::from_str(&success(output)).expect("JSON output")
}

/// Marks every Deployment and StatefulSet ready and every Job complete in `namespace`:
/// simulated, as a kubelet and the controllers would report (the test API server runs none).
pub async fn simulate_readiness(client: &kube::Client, namespace: &str) {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::batch::v1::Job;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for deployment in deployments
        .list(&ListParams::default())
        .await
        .expect("deployments")
    {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        coder_testenv::mark_deployment_available(client, namespace, &name)
            .await
            .expect("mark deployment");
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    for set in sets.list(&ListParams::default()).await.expect("statefulsets") {
        let name = set.metadata.name.clone().unwrap_or_default();
        let replicas = set.spec.and_then(|spec| spec.replicas).unwrap_or(1);
        let status = json!({ "status": { "observedGeneration": set.metadata.generation, "replicas": replicas,
            "readyReplicas": replicas, "updatedReplicas": replicas, "currentReplicas": replicas } });
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("mark statefulset");
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    for job in jobs.list(&ListParams::default()).await.expect("jobs") {
        let name = job.metadata.name.clone().unwrap_or_default();
        let status = json!({ "status": { "succeeded": 1 } });
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("mark job");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connected_apply_installs_everything_once_and_template_shows_exactly_that() {
    let platform = Platform::start().await;
    let report = stdout_json(platform.run(platform.connected("apply", "coder", &["--output", "json"])));
    assert_eq!(report["revision"], 1);
    assert_eq!(report["mode"], "connected");
    assert!(
        report["secrets"]["created"]
            .as_array()
            .is_some_and(|created| created.contains(&json!("coder-admin-password"))),
        "{report}"
    );
    let client = platform.client().await;
    let objects = managed_objects(&client, "coder").await;
    for expected in [
        "Deployment/coder-manager",
        "Deployment/coder-envproxy",
        "Deployment/coder-dashboard",
        "Deployment/coder-ingress-nginx-controller",
        "StatefulSet/coder-postgres",
        "Service/coder-manager",
        "Ingress/coder",
        "NetworkPolicy/coder-default-deny",
        "NetworkPolicy/coder-allow-to-workspace",
        "Role/coder-manager",
        "Job/coder-ingress-nginx-admission-create",
        "Secret/coder-db-password",
        "Secret/coder-envproxy-token",
        "Secret/coder-admin-password",
        "ConfigMap/coder-install",
    ] {
        assert!(
            objects.contains_key(expected),
            "{expected} missing; have {:?}",
            objects.keys()
        );
    }
    // Images: the upstream references, pinned by the lock's digests; init containers too.
    let lock: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(platform.lock()).expect("lock")).expect("lock");
    let digest_of = |name: &str| {
        lock["images"]
            .as_array()
            .and_then(|images| images.iter().find(|image| image["name"] == name))
            .and_then(|image| image["digest"].as_str())
            .expect("locked")
            .to_owned()
    };
    let manager = &objects["Deployment/coder-manager"]["spec"]["template"]["spec"];
    let expected_image = format!(
        "{}/coderenvs/coder-service@{}",
        platform.upstream.host(),
        digest_of("coder-service")
    );
    assert_eq!(manager["containers"][0]["image"], expected_image.as_str());
    assert_eq!(manager["initContainers"][0]["image"], expected_image.as_str());
    assert_eq!(manager["initContainers"][0]["args"], json!(["migrate"]));

    // The record lists exactly what was applied.
    let record: Value = serde_json::from_str(
        objects["ConfigMap/coder-install"]["data"]["record.json"]
            .as_str()
            .expect("record"),
    )
    .expect("record JSON");
    assert_eq!(record["revision"], 1);
    assert_eq!(record["version"], "1.0.0");
    assert!(record["pending"].is_null());

    // A second apply with the same inputs changes nothing: no resourceVersion moves.
    let before = resource_versions(&objects);
    let second = platform.run(platform.connected("apply", "coder", &["--timings"]));
    let text = success(second);
    assert!(text.contains("no changes"), "{text}");
    // --timings: connected mode has no verify or push (its license step loads the spec and lock);
    // without --wait, no wait either.
    let timings = text
        .split_once("timings:\n")
        .map(|(_, table)| table)
        .expect(&text);
    let steps: Vec<&str> = timings
        .lines()
        .filter_map(|line| line.trim().split("  ").next())
        .collect();
    assert_eq!(
        steps,
        ["license", "preflight", "render", "server-side apply", "total"],
        "{text}"
    );
    assert!(
        !text.contains("coder-admin-password"),
        "the admin password Secret is kept, its instructions shown once: {text}"
    );
    let after = resource_versions(&managed_objects(&client, "coder").await);
    assert_eq!(before, after, "a second apply must not write anything");
    // The run that generates the admin password says how to read it (it is never logged).
    let fresh =
        success(platform.run(platform.connected("apply", "coder-fresh", &["--set", "ingress.enable=false"])));
    assert!(
        fresh.contains(
            "kubectl -n coder-fresh get secret coder-admin-password -o jsonpath='{.data.password}' | base64 -d"
        ),
        "{fresh}"
    );

    // `template` with the same inputs prints exactly the objects apply applied.
    let template =
        success(platform.run(platform.connected("template", "coder", &["--kube-version", "1.20"])));
    let rendered = coder_deploy::render::Manifests::from_yaml(&template)
        .expect("template output parses")
        .objects;
    let applied: Vec<String> = record["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|key| {
            format!(
                "{}/{}",
                key["kind"].as_str().unwrap_or_default(),
                key["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let templated: Vec<String> = rendered
        .iter()
        .map(|object| {
            format!(
                "{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(templated, applied);
    for object in &rendered {
        let key = format!(
            "{}/{}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        // Every field the template sets is live as set (the server adds defaults only).
        if let Some(live) = objects.get(&key)
            && object.get("spec").is_some()
            && object["kind"] != "Service"
        {
            assert_subset(&object["spec"], &live["spec"], &key);
        }
    }

    // status reports the install; workloads are not ready (no kubelets) until simulated.
    let status = platform.run(platform.target("status", "coder"));
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let error = failure(status);
    assert!(
        text.contains("revision 1") && text.contains("NOT READY"),
        "{text}"
    );
    assert!(
        error.contains("not healthy: 7 of 7 workloads not ready"),
        "{error}"
    );
    simulate_readiness(&client, "coder").await;
    let text = success(platform.run(platform.target("status", "coder")));
    assert!(text.contains("healthy") && !text.contains("NOT READY"), "{text}");
}

/// Asserts every leaf of `expected` is present with the same value in `actual`.
fn assert_subset(expected: &Value, actual: &Value, at: &str) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let child = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} missing live"));
                assert_subset(value, child, &format!("{at}.{key}"));
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(expected.len(), actual.len(), "{at}: list length");
            for (index, (value, child)) in expected.iter().zip(actual).enumerate() {
                assert_subset(value, child, &format!("{at}[{index}]"));
            }
        }
        (expected, actual) => assert_eq!(expected, actual, "{at}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_prunes_what_is_gone_keeps_secrets_and_rollback_restores_it() {
    let platform = Platform::start().await;
    success(platform.run(platform.connected("apply", "coder", &[])));
    let client = platform.client().await;
    let before = managed_objects(&client, "coder").await;
    let password = before["Secret/coder-db-password"]["data"]["password"].clone();
    assert!(password.is_string());

    // "Version 2": the site switches to its own ingress and scales the manager.
    std::fs::write(platform.spec(), platform.spec_text("1.1.0")).expect("spec");
    platform.lock_spec();
    let upgrade = stdout_json(platform.run(platform.connected(
        "apply",
        "coder",
        &[
            "--set",
            "ingress.enable=false",
            "--set",
            "manager.replicas=2",
            // No node here: the database never runs, so the version change cannot back it up.
            "--no-backup",
            "--output",
            "json",
        ],
    )));
    assert_eq!(upgrade["revision"], 2);
    let pruned: Vec<&str> = upgrade["pruned"]
        .as_array()
        .expect("pruned")
        .iter()
        .filter_map(|key| key["name"].as_str())
        .collect();
    assert!(
        pruned.contains(&"coder") && pruned.contains(&"coder-ingress-nginx-controller"),
        "{pruned:?}"
    );
    let after = managed_objects(&client, "coder").await;
    assert!(!after.contains_key("Ingress/coder"));
    assert!(!after.contains_key("Deployment/coder-ingress-nginx-controller"));
    assert!(
        after.contains_key("PodDisruptionBudget/coder-manager"),
        "two replicas bring a PDB (policy/v1beta1 on 1.20)"
    );
    assert_eq!(
        after["Secret/coder-db-password"]["data"]["password"], password,
        "secrets survive upgrades"
    );
    assert_eq!(after["Deployment/coder-manager"]["spec"]["replicas"], 2);

    // Rollback re-applies revision 1's manifests as revision 3.
    let rollback = stdout_json(platform.run(&{
        let mut args = platform.target("rollback", "coder");
        args.extend(["--output".to_owned(), "json".to_owned()]);
        args
    }));
    assert_eq!(rollback["revision"], 3);
    assert_eq!(rollback["version"], "1.0.0");
    let restored = managed_objects(&client, "coder").await;
    assert!(restored.contains_key("Ingress/coder"));
    assert!(!restored.contains_key("PodDisruptionBudget/coder-manager"));
    assert_eq!(restored["Deployment/coder-manager"]["spec"]["replicas"], 1);

    // Uninstall keeping data leaves the database password and the first admin's password (the
    // admin lives in the database); without, removes everything.
    success(platform.run(&{
        let mut args = platform.target("uninstall", "coder");
        args.push("--keep-data".to_owned());
        args
    }));
    let left = managed_objects(&client, "coder").await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["Secret/coder-admin-password", "Secret/coder-db-password"],
        "only the kept data remains"
    );
    let again = failure(platform.run(platform.target("uninstall", "coder")));
    assert!(again.contains("nothing is installed"), "{again}");
    // `check` of a namespace without an install says so and exits non-zero.
    let check = failure(platform.run(platform.target("check", "coder")));
    assert!(
        check.contains("nothing is installed in namespace coder"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_and_diff_change_nothing() {
    let platform = Platform::start().await;
    // Into a namespace that does not exist: nothing is created, not even the namespace.
    let report =
        stdout_json(platform.run(platform.connected("apply", "fresh", &["--dry-run", "--output", "json"])));
    assert_eq!(report["dry_run"], true);
    assert!(report["objects"].as_array().expect("objects").len() > 20);
    let client = platform.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("fresh").await.expect("get").is_none());

    success(platform.run(platform.connected("apply", "coder", &[])));
    let before = resource_versions(&managed_objects(&client, "coder").await);
    let diff = success(platform.run(platform.connected(
        "apply",
        "coder",
        &["--dry-run", "--diff", "--set", "envproxy.replicas=3"],
    )));
    assert!(
        diff.contains("-  replicas: 1") && diff.contains("+  replicas: 3"),
        "{diff}"
    );
    assert!(
        diff.contains("would update") && diff.contains("Deployment coder/coder-envproxy"),
        "{diff}"
    );
    assert!(diff.contains("dry run: nothing was changed"), "{diff}");
    assert_eq!(
        before,
        resource_versions(&managed_objects(&client, "coder").await)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_refused_before_anything_is_written() {
    let platform = Platform::start().await;
    let client = platform.client().await;

    let error = failure(platform.run(platform.connected(
        "apply",
        "coder",
        &["--set", "manager.replica=2", "--set", "postgres.port=many"],
    )));
    assert!(
        error.contains("manager.replica") && error.contains("postgres.port"),
        "{error}"
    );

    let values = platform.path("values.yaml");
    std::fs::write(&values, "ingress: [1, 2\n").expect("values");
    let error =
        failure(platform.run(platform.connected("apply", "coder", &["--values", &platform.text(&values)])));
    assert!(error.contains("values.yaml") && error.contains("YAML"), "{error}");

    let mut args = platform.connected("apply", "coder", &[]);
    let position = args.iter().position(|arg| arg == "--kubeconfig").expect("flag");
    args[position + 1] = platform.text(&platform.path("missing-kubeconfig"));
    let error = failure(platform.run(&args));
    assert!(
        error.contains("kubeconfig") && error.contains("missing-kubeconfig"),
        "{error}"
    );

    // An API server that is not there.
    let kubeconfig = std::fs::read_to_string(platform.cluster.kubeconfig_path()).expect("kubeconfig");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let elsewhere = platform.path("kubeconfig-elsewhere");
    std::fs::write(
        &elsewhere,
        kubeconfig.replace(
            &platform.cluster.url(),
            &format!("https://127.0.0.1:{closed_port}"),
        ),
    )
    .expect("write");
    args[position + 1] = platform.text(&elsewhere);
    let error = failure(platform.run(&args));
    assert!(
        error.contains("unreachable") && error.contains(&closed_port.to_string()),
        "{error}"
    );

    // Credentials that may do nothing: preflight names what is denied.
    args[position + 1] = platform.text(platform.cluster.restricted_kubeconfig_path());
    let error = failure(platform.run(&args));
    assert!(
        error.contains("preflight failed") && error.contains("create apps/deployments in namespace coder"),
        "{error}"
    );

    // `preflight` alone runs the same checks: it names the same denial, and passes with the
    // cluster admin's credentials.
    let mut preflight = platform.connected("preflight", "coder", &[]);
    preflight[position + 1] = platform.text(platform.cluster.restricted_kubeconfig_path());
    let output = platform.run(&preflight);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("[FAIL]") && text.contains("create apps/deployments in namespace coder"),
        "{text}"
    );
    let report = stdout_json(platform.run(platform.connected("preflight", "coder", &["--output", "json"])));
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        !checks.is_empty() && checks.iter().all(|check| check["outcome"] != "fail"),
        "{report}"
    );

    // Nothing was written by any of the above.
    assert!(managed_objects(&client, "coder").await.is_empty());

    // A second apply while one holds the namespace's lease is refused, naming the holder.
    success(platform.run(platform.connected("apply", "coder", &[])));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "coder");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "coder-install-lock" },
        "spec": { "holderIdentity": "coder-install pid 1 on other-host", "leaseDurationSeconds": 120,
                  "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string() }
    });
    leases
        .patch(
            "coder-install-lock",
            &PatchParams::apply("test"),
            &Patch::Apply(&lease),
        )
        .await
        .expect("hold the lease");
    let error =
        failure(platform.run(platform.connected("apply", "coder", &["--set", "envproxy.replicas=2"])));
    assert!(
        error.contains("other-host") && error.contains("wait for it"),
        "{error}"
    );
    let objects = managed_objects(&client, "coder").await;
    assert_eq!(objects["Deployment/coder-envproxy"]["spec"]["replicas"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_names_what_is_not_ready_and_returns_once_it_is() {
    let platform = Platform::start().await;
    let error = failure(platform.run(platform.connected("apply", "coder", &["--wait", "--timeout", "3s"])));
    assert!(
        error.contains("not ready after 3s") && error.contains("Deployment coder/coder-manager"),
        "{error}"
    );
    assert!(error.contains("0/1 replicas available"), "{error}");

    let client = platform.client().await;
    let simulated = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            simulate_readiness(&client, "coder").await;
        })
    };
    let started = std::time::Instant::now();
    success(platform.run(platform.connected("apply", "coder", &["--wait", "--timeout", "2m"])));
    simulated.await.expect("simulation");
    assert!(started.elapsed() < std::time::Duration::from_secs(110));
}

/// Every container image of every workload in `objects`.
pub(crate) fn container_images(objects: &BTreeMap<String, Value>) -> Vec<String> {
    let mut images = Vec::new();
    for object in objects.values() {
        let spec = &object["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for container in spec[list].as_array().into_iter().flatten() {
                images.push(container["image"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    images
}

#[tokio::test(flavor = "multi_thread")]
async fn air_gapped_apply_refuses_free_licenses_then_pushes_and_deploys_from_the_site_registry() {
    use coder_license::Tier;

    let platform = Platform::start().await;
    // The real platform image travels the whole way: upstream, bundle, site registry, Deployments.
    platform.publish_real_platform_image();
    let site = Registry::start(RegistryFlavour::Plain)
        .await
        .expect("site registry");
    let bundle = platform.bundle("coder.bundle");
    let site_registry = format!("{}/mirror", site.host());
    let license = |tier: Tier, airgap: bool| {
        let path = platform.path(&format!("{tier:?}-{airgap}.license"));
        std::fs::write(
            &path,
            crate::license::signed(&crate::license::claims(tier, airgap)),
        )
        .expect("license");
        platform.text(&path)
    };
    let apply = |extra: &[&str]| platform.run(platform.air_gapped_apply(&bundle, &site_registry, extra));
    let catalog = || crate::world::catalog(&site);
    let client = platform.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());

    // Free and trial licenses, an enterprise license without the entitlement, and no license at
    // all are refused offline, before anything is pushed or written, each with its exit code.
    for (license, code, fragment) in [
        (Some(license(Tier::Free, false)), 21, "free"),
        (Some(license(Tier::Trial, true)), 21, "trial"),
        (Some(license(Tier::Enterprise, false)), 22, "air-gap"),
        (None, 21, "no --license given"),
    ] {
        let mut extra = Vec::new();
        if let Some(license) = &license {
            extra.extend(["--license", license.as_str()]);
        }
        let output = apply(&extra);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let error = failure(output);
        assert!(
            error.contains(fragment) && error.contains("enterprise"),
            "{error}"
        );
    }
    assert!(
        catalog().await.is_empty(),
        "nothing may be pushed for a refused license"
    );
    assert!(
        namespaces.get_opt("coder").await.expect("get").is_none(),
        "nothing may be written"
    );

    // An enterprise license with the air-gap entitlement: push, then deploy.
    let enterprise = license(Tier::Enterprise, true);
    let report = stdout_json(apply(&["--license", &enterprise, "--output", "json"]));
    assert_eq!(report["mode"], "air-gapped");
    assert_eq!(report["revision"], 1);
    let objects = managed_objects(&client, "coder").await;
    let images = container_images(&objects);
    assert!(images.len() >= 6, "{images:?}");
    for image in &images {
        assert!(
            image.starts_with(&format!("{site_registry}/")) && image.contains("@sha256:"),
            "{image} is not from the site registry by digest"
        );
    }
    let lock: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(platform.lock()).expect("lock")).expect("lock");
    let service_digest = lock["images"][0]["digest"].as_str().expect("digest");
    assert!(
        images.contains(&format!(
            "{site_registry}/coderenvs/coder-service@{service_digest}"
        )),
        "{images:?}"
    );
    // What the Deployments run is the real platform image, as the site registry holds it.
    let manifest: Value = reqwest::Client::new()
        .get(format!(
            "{}/v2/mirror/coderenvs/coder-service/manifests/{service_digest}",
            site.url()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET manifest")
        .json()
        .await
        .expect("manifest JSON");
    let config: Value = reqwest::get(format!(
        "{}/v2/mirror/coderenvs/coder-service/blobs/{}",
        site.url(),
        manifest["config"]["digest"].as_str().expect("config digest")
    ))
    .await
    .expect("GET config")
    .json()
    .await
    .expect("config JSON");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/coder-service"]),
        "{config:#}"
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    // Every image the manifests use is really in the site registry.
    for image in &images {
        let (repository, digest) = image.split_once('@').expect("pinned");
        let path = repository.trim_start_matches(&format!("{}/", site.host()));
        let url = format!("{}/v2/{path}/manifests/{digest}", site.url());
        let status = reqwest::Client::new()
            .head(&url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
            .send()
            .await
            .expect("HEAD")
            .status();
        assert!(status.is_success(), "{image}: {status}");
    }
    // The license is installed for the manager.
    let secret = &objects["Secret/coder-license"];
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["license"].as_str().expect("license data"))
        .expect("base64");
    assert_eq!(stored, std::fs::read(&enterprise).expect("license file"));

    // The migrations, run as the rendered manager init container runs them (its URL from the
    // ConfigMap, its password from the generated Secret), against a real PostgreSQL: simulated
    // here because the test API server runs no pods.
    let postgres = coder_testenv::Postgres::start().await.expect("postgres");
    let config = &objects["ConfigMap/coder-config"]["data"];
    let rendered_url = config["CODER_PG_URL"].as_str().expect("CODER_PG_URL");
    assert_eq!(
        rendered_url,
        "postgres://coder@coder-postgres.coder.svc:5432/coder?sslmode=disable"
    );
    let password = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(
                objects["Secret/coder-db-password"]["data"]["password"]
                    .as_str()
                    .expect("password"),
            )
            .expect("base64"),
    )
    .expect("utf-8");
    let admin = sqlx::PgPool::connect(&postgres.url())
        .await
        .expect("admin connection");
    assert!(
        password.len() == 64 && password.chars().all(|c| c.is_ascii_hexdigit()),
        "a generated hex password"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE coder LOGIN PASSWORD '{password}'"
    )))
    .execute(&admin)
    .await
    .expect("role");
    sqlx::query("CREATE DATABASE coder OWNER coder")
        .execute(&admin)
        .await
        .expect("database");
    let password_file = platform.path("db-password");
    std::fs::write(&password_file, &password).expect("password file");
    let mut db = coder_service::db::DbConfig::from_url(rendered_url.replace(
        "coder-postgres.coder.svc:5432",
        &format!("127.0.0.1:{}", postgres.port()),
    ));
    db.password_file = Some(password_file);
    let pool = db.pool().expect("pool");
    coder_service::db::migrate(&pool)
        .await
        .expect("migrate as the init container does");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        applied,
        i64::try_from(coder_service::db::MIGRATOR.iter().count()).expect("count")
    );

    // A second apply pushes nothing and changes nothing.
    let before = resource_versions(&managed_objects(&client, "coder").await);
    let output = apply(&["--license", &enterprise]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = success(output);
    assert!(text.contains("no changes"), "{text}");
    assert!(stderr.contains("0 uploaded"), "{stderr}");
    assert_eq!(
        before,
        resource_versions(&managed_objects(&client, "coder").await)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bundles_of_other_products_or_newer_formats_are_refused() {
    let platform = Platform::start().await;
    let other = platform
        .spec_text("1.0.0")
        .replace("name: coder\nversion", "name: other\nversion");
    std::fs::write(platform.spec(), other).expect("spec");
    platform.lock_spec();
    let bundle = platform.bundle("other.bundle");
    let license = platform.airgap_license();
    let error = failure(platform.run([
        "apply",
        "--bundle",
        &platform.text(&bundle),
        "--allow-unsigned",
        "--registry",
        "127.0.0.1:1",
        "--license",
        &platform.text(&license),
        "--kubeconfig",
        &platform.text(platform.cluster.kubeconfig_path()),
    ]));
    assert!(
        error.contains("\"other\"") && error.contains("coder bundles only"),
        "{error}"
    );
}

/// Environment variables the network-namespace test passes to its inner half.
const NETNS_BUNDLE: &str = "CODER_IT_NETNS_BUNDLE";
const NETNS_LICENSE: &str = "CODER_IT_NETNS_LICENSE";
const NETNS_UPSTREAM: &str = "CODER_IT_NETNS_UPSTREAM";

#[tokio::test(flavor = "multi_thread")]
async fn air_gapped_apply_needs_nothing_but_the_api_server_and_the_site_registry() {
    // Outside: the upstream registry and a bundle of it.
    let platform = Platform::start().await;
    let bundle = platform.bundle("coder.bundle");
    let license = platform.airgap_license();

    // Inside a new network namespace with only loopback: the inner half of this test starts the
    // site registry and the API server there and applies the bundle. The upstream registry (and
    // everything else) is out of reach from there.
    let test_binary = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" --exact \"$1\" --ignored --nocapture",
        ])
        .arg(&test_binary)
        .arg("apply::inside_a_network_namespace_apply_the_bundle")
        .env(NETNS_BUNDLE, &bundle)
        .env(NETNS_LICENSE, &license)
        .env(NETNS_UPSTREAM, platform.upstream.host())
        .output()
        .expect("run unshare (util-linux); the test needs root or user namespaces");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "inner test failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the inner test did not run:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the inner half of air_gapped_apply_needs_nothing_but_the_api_server_and_the_site_registry, run inside a network namespace"]
async fn inside_a_network_namespace_apply_the_bundle() {
    let bundle = std::env::var(NETNS_BUNDLE).expect("run by the outer test");
    let license = std::env::var(NETNS_LICENSE).expect("run by the outer test");
    let upstream = std::env::var(NETNS_UPSTREAM).expect("run by the outer test");
    // The upstream registry must be unreachable from here, or the test proves nothing.
    assert!(
        std::net::TcpStream::connect(&upstream).is_err(),
        "the upstream registry {upstream} is reachable: not isolated"
    );
    let (site, cluster) = tokio::join!(Registry::start(RegistryFlavour::Plain), KubeApiServer::start());
    let site = site.expect("site registry");
    let cluster = cluster.expect("API server");
    let docker = tempfile::tempdir().expect("docker config dir");
    std::fs::write(docker.path().join("config.json"), "{}").expect("docker config");
    let output = coder_install(
        [
            "apply",
            "--bundle",
            &bundle,
            "--allow-unsigned",
            "--registry",
            &site.host(),
            "--insecure-registry",
            &site.host(),
            "--license",
            &license,
            "--kubeconfig",
            &cluster.kubeconfig_path().display().to_string(),
            "--output",
            "json",
        ],
        &[("DOCKER_CONFIG", docker.path())],
    );
    let report: Value = serde_json::from_str(&success(output)).expect("report");
    assert_eq!(report["mode"], "air-gapped");
    assert_eq!(report["revision"], 1);
    let client = cluster.client().await.expect("client");
    let objects = managed_objects(&client, "coder").await;
    for image in container_images(&objects) {
        assert!(image.starts_with(&format!("{}/", site.host())), "{image}");
    }
}
