//! The installed platform runs: the end-to-end test on a real node (containerd and a kubelet,
//! see `coder_testenv::Cluster`). Nothing in it is simulated: images go upstream → bundle →
//! site registry → containerd; every workload turns Ready by itself; the test logs in through
//! the manager's Service and reaches a workspace through envproxy's.
//!
//! What stands in (there is no internet): the PostgreSQL and workspace images are built from
//! Debian's packages (`coder_testenv::dependency_images`), the ingress controller is disabled
//! (no image of it exists here) and the platform is reached through its Services (kube-proxy),
//! and the cluster's DNS and volumes are the harness's stand-ins.

use std::path::Path;
use std::time::{Duration, Instant};

use coder_testenv::cli::{bundle_args, lock_args};
use coder_testenv::dependency_images::{postgres_image, workspace_image};
use coder_testenv::fixture::{ImageBuilder, LayerBuilder};
use coder_testenv::{Cluster, Registry, RegistryFlavour};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, LogParams};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::apply::{PLATFORM_IMAGES, managed_objects, push_real_platform_image};
use crate::world::{coder_install, success};

const NAMESPACE: &str = "coder";
/// How long the platform may take to come up on the node (image pulls, initdb, migrations).
const READY_TIMEOUT: &str = "6m";

/// The upstream registry with every image the spec names, the site registry, the node.
struct RealWorld {
    cluster: Cluster,
    upstream: Registry,
    site: Registry,
    dir: tempfile::TempDir,
}

impl RealWorld {
    async fn start() -> Self {
        let (cluster, upstream, site) = tokio::join!(
            Cluster::start(),
            Registry::start(RegistryFlavour::Plain),
            Registry::start(RegistryFlavour::Plain)
        );
        let cluster = cluster.expect("a real node (see coder_testenv::Cluster for what it needs)");
        let (upstream, site) = (upstream.expect("upstream registry"), site.expect("site registry"));
        cluster
            .trust_plain_http_registry(&site.host())
            .expect("let the node pull from the site registry");
        push_real_platform_image(&upstream, &platform_image_path("1.0.0"), &[]);
        for (name, path) in &PLATFORM_IMAGES[1..] {
            let image = match name.as_str() {
                "postgres" => postgres_image().expect("the PostgreSQL image"),
                "workspace" => workspace_image().expect("the workspace image"),
                // Never run: the ingress controller is disabled (no image of it exists here).
                _ => ImageBuilder::new()
                    .label("org.opencontainers.image.description", "stand-in, never run")
                    .layer(LayerBuilder::new().random_file("stand-in.bin", 4096, 1))
                    .build()
                    .expect("stand-in image"),
            };
            upstream.push_image(path, &image).await.expect("push upstream");
        }
        let world = Self {
            cluster,
            upstream,
            site,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(world.dir.path().join("docker")).expect("docker dir");
        std::fs::write(world.dir.path().join("docker/config.json"), "{}").expect("docker config");
        world
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> String {
        success(coder_install(
            args,
            &[("DOCKER_CONFIG", &self.dir.path().join("docker"))],
        ))
    }

    /// Writes the spec of release `version` (its platform image tagged `version`), locks and
    /// bundles it, and verifies the bundle.
    fn bundle(&self, version: &str) -> String {
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/coder");
        let mut spec = format!("name: coder\nversion: {version}\nplatforms: [linux/amd64]\nimages:\n");
        for (name, path) in PLATFORM_IMAGES.iter() {
            let path = match name.as_str() {
                "coder-service" => platform_image_path(version),
                _ => path.to_owned(),
            };
            spec.push_str(&format!(
                "  - name: {name}\n    ref: {}/{path}\n",
                self.upstream.host()
            ));
        }
        spec.push_str(&format!("charts:\n  - name: coder\n    path: {chart}\n"));
        let (spec_path, lock, bundle) = (
            self.path(&format!("coder-{version}.yaml")),
            self.path(&format!("images-{version}.lock")),
            self.path(&format!("coder-{version}.bundle")),
        );
        std::fs::write(&spec_path, spec).expect("spec");
        let upstream = self.upstream.host();
        self.run(lock_args(Path::new(&spec_path), Path::new(&lock), &upstream));
        self.run(bundle_args(
            Path::new(&spec_path),
            Path::new(&lock),
            Path::new(&self.path("cache")),
            Path::new(&bundle),
            &upstream,
        ));
        self.run(["verify", "--allow-unsigned", &bundle]);
        bundle
    }

    /// `apply --bundle --wait` into the node; the JSON report.
    async fn apply(&self, bundle: &str, license: &str) -> Value {
        let site = self.site.host();
        let kubeconfig = self.cluster.api().kubeconfig_path().display().to_string();
        let output = coder_install(
            [
                "apply",
                "--bundle",
                bundle,
                "--allow-unsigned",
                "--registry",
                &format!("{site}/coder"),
                "--insecure-registry",
                &site,
                "--license",
                license,
                "--kubeconfig",
                &kubeconfig,
                "--set",
                "ingress.enable=false",
                "--wait",
                "--timeout",
                READY_TIMEOUT,
                "--output",
                "json",
            ],
            &[("DOCKER_CONFIG", &self.dir.path().join("docker"))],
        );
        if !output.status.success() {
            panic!(
                "apply failed:\n{}\npods:\n{}\nnode logs in {}",
                String::from_utf8_lossy(&output.stderr),
                self.cluster.describe_pods(NAMESPACE).await,
                self.cluster.log_dir().display()
            );
        }
        serde_json::from_slice(&output.stdout).expect("apply's JSON report")
    }

    /// `http://CLUSTER-IP:PORT` of a Service, reached from here through kube-proxy.
    async fn service_url(&self, namespace: &str, name: &str) -> String {
        let client = self.cluster.api().client().await.expect("client");
        let service = Api::<Service>::namespaced(client, namespace)
            .get(name)
            .await
            .expect("service");
        let spec = service.spec.expect("spec");
        let port = spec.ports.expect("ports")[0].port;
        format!("http://{}:{port}", spec.cluster_ip.expect("a cluster IP"))
    }

    /// The first admin's password, from the Secret `apply` generated; checks that no manager
    /// log holds it.
    async fn admin_password(&self, namespace: &str) -> String {
        let client = self.cluster.api().client().await.expect("client");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = secrets
            .get("coder-admin-password")
            .await
            .expect("apply creates the admin password Secret");
        let data = secret.data.expect("data");
        let password = String::from_utf8(data["password"].0.clone()).expect("UTF-8 password");
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let managers = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=manager"))
            .await
            .expect("manager pods");
        assert!(!managers.items.is_empty(), "no manager pod");
        for pod in managers {
            let name = pod.metadata.name.unwrap_or_default();
            let params = LogParams {
                container: Some("manager".to_owned()),
                ..LogParams::default()
            };
            let log = pods.logs(&name, &params).await.expect("the manager's log");
            assert!(log.contains("\"level\""), "the manager logs JSON:\n{log}");
            assert!(!log.contains(&password), "{name}'s log holds the admin password");
        }
        password
    }
}

/// Where release `version`'s platform image is upstream.
fn platform_image_path(version: &str) -> String {
    format!("coderenvs/coder-service:{version}")
}

/// The image of the manager's Deployment.
async fn manager_image(client: &kube::Client, namespace: &str) -> String {
    let deployment = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), namespace)
        .get("coder-manager")
        .await
        .expect("the manager's Deployment");
    deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .map(|spec| spec.containers[0].image.clone().unwrap_or_default())
        .unwrap_or_default()
}

/// Fails unless no container of `namespace`'s pods was ever restarted: the platform came up in
/// order (the migration step waited for the database) rather than by crash-looping.
async fn assert_no_restarts(cluster: &Cluster, namespace: &str) {
    let client = cluster.api().client().await.expect("client");
    for pod in Api::<Pod>::namespaced(client, namespace)
        .list(&ListParams::default())
        .await
        .expect("pods")
    {
        let status = pod.status.unwrap_or_default();
        let statuses = status
            .init_container_statuses
            .into_iter()
            .flatten()
            .chain(status.container_statuses.into_iter().flatten());
        for container in statuses {
            assert_eq!(
                container.restart_count,
                0,
                "{} restarted:\n{}",
                container.name,
                cluster.describe_pods(namespace).await
            );
        }
    }
}

/// A session token for `email`.
async fn login(http: &reqwest::Client, manager: &str, email: &str, password: &str) -> String {
    let response = http
        .post(format!("{manager}/auth/basic/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login");
    let status = response.status();
    let body: Value = response.json().await.expect("login JSON");
    assert!(status.is_success(), "login as {email}: {status} {body}");
    body["session_token"]
        .as_str()
        .expect("a session token")
        .to_owned()
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "POST {url}: {status} {body}");
    body
}

/// The workspace's editor page (code-server's port) through envproxy, or why not.
async fn workspace_page(
    http: &reqwest::Client,
    envproxy: &str,
    id: &str,
    token: &str,
) -> Result<String, String> {
    let response = http
        .get(format!("{envproxy}/proxy/workspaces/{id}/ide/"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|error| error.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// Retries `check` every second until it returns `Some` or `timeout` passes.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) if started.elapsed() > timeout => panic!("{what}: {reason}"),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_real_node_the_air_gapped_install_serves_a_workspace_and_the_free_tier_comes_up_connected() {
    let world = RealWorld::start().await;
    let bundle = world.bundle("1.0.0");
    let license = world.path("enterprise.license");
    std::fs::write(
        &license,
        crate::license::signed(&crate::license::claims(coder_license::Tier::Enterprise, true)),
    )
    .expect("license");

    // Installed and Ready for real: apply --wait returns once the kubelet reports every
    // Deployment and the StatefulSet ready.
    let report = world.apply(&bundle, &license).await;
    assert_eq!(report["mode"], "air-gapped", "{report}");
    let client = world.cluster.api().client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&ListParams::default()).await.expect("pods") {
        let status = pod.status.unwrap_or_default();
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "{}",
            world.cluster.describe_pods(NAMESPACE).await
        );
        for container in status.container_statuses.into_iter().flatten() {
            assert!(
                container.ready,
                "{}",
                world.cluster.describe_pods(NAMESPACE).await
            );
        }
        for container in pod.spec.into_iter().flat_map(|spec| spec.containers) {
            let image = container.image.unwrap_or_default();
            assert!(
                image.starts_with(&format!("{}/coder/", world.site.host())),
                "pulled from elsewhere: {image}"
            );
        }
    }

    assert_no_restarts(&world.cluster, NAMESPACE).await;

    // The admin logs in through the manager's Service, makes a member, who makes a workspace.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http");
    let manager = world.service_url(NAMESPACE, "coder-manager").await;
    let admin = login(
        &http,
        &manager,
        "admin@coder.local",
        &world.admin_password(NAMESPACE).await,
    )
    .await;
    post(
        &http,
        &format!("{manager}/api/v0/users"),
        &admin,
        json!({ "email": "dev@example.com", "name": "Dev", "password": "a long member password", "role": "member" }),
    )
    .await;
    let member = login(&http, &manager, "dev@example.com", "a long member password").await;
    // The workspace image as the chart allows it (the site registry's copy, pinned by digest).
    let config = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get("coder-config")
        .await
        .expect("the platform's ConfigMap");
    let image = config
        .data
        .unwrap_or_default()
        .get("CODER_ALLOWED_IMAGES")
        .cloned()
        .expect("allowed images");
    assert!(
        image.starts_with(&format!("{}/coder/", world.site.host())),
        "{image}"
    );
    let workspace = post(
        &http,
        &format!("{manager}/api/v0/workspaces"),
        &member,
        json!({ "name": "dev", "image": image, "cpu_cores": 0.5, "memory_gb": 0.5, "disk_gb": 1 }),
    )
    .await;
    let id = workspace["id"].as_str().expect("workspace id").to_owned();

    // Through envproxy: the editor's page (13337), a terminal round trip (26337), the SSH
    // proxy's bytes (12212).
    let envproxy = world.service_url(NAMESPACE, "coder-envproxy").await;
    let page = eventually(
        "the workspace's editor through envproxy",
        Duration::from_secs(180),
        || workspace_page(&http, &envproxy, &id, &member),
    )
    .await;
    assert!(page.contains("workspace stand-in"), "{page}");

    let websocket = |path: &str| {
        let mut request = format!("{}{path}", envproxy.replacen("http", "ws", 1))
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {member}").parse().expect("header"),
        );
        request
    };
    let (mut terminal, _) =
        tokio_tungstenite::connect_async(websocket(&format!("/proxy/workspaces/{id}/terminal")))
            .await
            .expect("the terminal through envproxy");
    terminal
        .send(Message::binary(b"echo hello-from-the-node\n".to_vec()))
        .await
        .expect("send");
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains("hello-from-the-node\n") {
        let message = tokio::time::timeout(Duration::from_secs(20), terminal.next())
            .await
            .expect("the shell answers")
            .expect("an open terminal")
            .expect("a message");
        output.extend_from_slice(&message.into_data());
    }
    let (mut ssh, _) = tokio_tungstenite::connect_async(websocket(&format!("/proxy/workspaces/{id}/ssh")))
        .await
        .expect("the SSH proxy through envproxy");
    ssh.send(Message::binary(b"SSH-2.0-test\r\n".to_vec()))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(20), ssh.next())
        .await
        .expect("bytes come back")
        .expect("an open stream")
        .expect("a message");
    assert_eq!(echoed.into_data().as_ref(), b"SSH-2.0-test\r\n");

    // A second apply changes nothing.
    let before = managed_objects(&client, NAMESPACE).await;
    let again = world.apply(&bundle, &license).await;
    assert_eq!(again["revision"], report["revision"], "{again}");
    let after = managed_objects(&client, NAMESPACE).await;
    let versions = |objects: &std::collections::BTreeMap<String, Value>| {
        objects
            .iter()
            .map(|(key, object)| (key.clone(), object["metadata"]["resourceVersion"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions(&before),
        versions(&after),
        "a second apply rewrote objects"
    );

    // An upgrade to release 2.0.0 (a new platform image) keeps the users and the workspace.
    push_real_platform_image(
        &world.upstream,
        &platform_image_path("2.0.0"),
        &["--version", "2.0.0"],
    );
    let first_image = manager_image(&client, NAMESPACE).await;
    let upgraded = world.apply(&world.bundle("2.0.0"), &license).await;
    assert_eq!(upgraded["mode"], "air-gapped", "{upgraded}");
    let second_image = manager_image(&client, NAMESPACE).await;
    assert_ne!(
        first_image, second_image,
        "the upgrade deployed the same platform image"
    );
    let member = login(&http, &manager, "dev@example.com", "a long member password").await;
    let kept = http
        .get(format!("{manager}/api/v0/workspaces/{id}"))
        .bearer_auth(&member)
        .send()
        .await
        .expect("the workspace after the upgrade");
    assert!(
        kept.status().is_success(),
        "the workspace is gone after the upgrade: {}",
        kept.status()
    );
    eventually(
        "the workspace after the upgrade",
        Duration::from_secs(120),
        || workspace_page(&http, &envproxy, &id, &member),
    )
    .await;

    // Uninstall leaves nothing of the platform.
    world.run([
        "uninstall",
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &world.cluster.api().kubeconfig_path().display().to_string(),
    ]);
    assert!(
        managed_objects(&client, NAMESPACE).await.is_empty(),
        "uninstall left objects behind"
    );

    // Connected, free tier: no bundle, no license; the node pulls straight from upstream by the
    // lock's digests, and the manager comes up without a license file.
    world
        .cluster
        .trust_plain_http_registry(&world.upstream.host())
        .expect("trust upstream");
    let free = "coder-free";
    let kubeconfig = world.cluster.api().kubeconfig_path().display().to_string();
    let output = coder_install(
        [
            "apply",
            "--spec",
            &world.path("coder-1.0.0.yaml"),
            "--lock",
            &world.path("images-1.0.0.lock"),
            "--namespace",
            free,
            "--kubeconfig",
            &kubeconfig,
            "--set",
            "ingress.enable=false",
            "--wait",
            "--timeout",
            READY_TIMEOUT,
            "--output",
            "json",
        ],
        &[("DOCKER_CONFIG", &world.dir.path().join("docker"))],
    );
    assert!(
        output.status.success(),
        "connected apply failed:\n{}\npods:\n{}",
        String::from_utf8_lossy(&output.stderr),
        world.cluster.describe_pods(free).await
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("apply's JSON report");
    assert_eq!(report["mode"], "connected", "{report}");
    assert_no_restarts(&world.cluster, free).await;
    let manager = world.service_url(free, "coder-manager").await;
    let admin = login(
        &http,
        &manager,
        "admin@coder.local",
        &world.admin_password(free).await,
    )
    .await;
    let license: Value = http
        .get(format!("{manager}/api/v0/license"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("license")
        .json()
        .await
        .expect("license JSON");
    assert_eq!(license["tier"], "free", "{license}");
}
