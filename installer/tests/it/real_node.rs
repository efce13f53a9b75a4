//! The installed platform runs: the end-to-end test on a real node (containerd and a kubelet,
//! see `coder_testenv::Cluster`). Nothing in it is simulated: images go upstream → bundle →
//! site registry → containerd; every workload turns Ready by itself; the test reaches the
//! platform as a site does, through the front door: the load balancer's address, the chart's
//! NGINX ingress controller, TLS from the site's private CA, at the access host's name, under
//! the port table's NetworkPolicies, which the node enforces.
//!
//! What stands in (there is no internet): the PostgreSQL, workspace and ingress controller
//! images (`coder_testenv::dependency_images`: Debian's packages and the harness's programs),
//! and the cluster's DNS, volumes, load balancer and NetworkPolicy engine (the harness's).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use coder_testenv::browser::{Browser, BrowserOptions};
use coder_testenv::cli::{bundle_args, lock_args};
use coder_testenv::dependency_images::{
    ingress_certgen_image, ingress_controller_image, postgres_image, workspace_image,
};
use coder_testenv::front_door_walk::FrontDoorWalk;
use coder_testenv::{
    ACCESS_TLS_SECRET, Cluster, Registry, RegistryFlavour, SiteTls, TestCa, WORKSPACE_TLS_SECRET,
};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, LogParams};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::apply::{PLATFORM_IMAGES, managed_objects, push_real_platform_image};
use crate::port_table::{Targets, assert_reachability, component_labels, probe, push_probe_image};
use crate::world::{coder_install, coder_install_command, success};

mod data_rollback;

const NAMESPACE: &str = "coder";
/// How long the platform may take to come up on the node (image pulls, initdb, migrations).
const READY_TIMEOUT: &str = "6m";
/// The access URL's host at the test site (`.test` is reserved: it resolves nowhere else).
const ACCESS_HOST: &str = "coder.example.test";
/// The workspaces' domain: workspace `<id>` is served at `ws-<id>.ws.example.test`.
const WORKSPACE_DOMAIN: &str = "ws.example.test";
/// The chart's ingress controller Service (type LoadBalancer).
const INGRESS_SERVICE: &str = "coder-ingress-nginx-controller";

/// The values that put the platform behind the ingress with the site's TLS Secrets.
fn front_door_values() -> Vec<String> {
    vec![
        format!("accessURL=https://{ACCESS_HOST}"),
        format!("workspaceBaseURL=https://{WORKSPACE_DOMAIN}"),
        format!("ingress.host={ACCESS_HOST}"),
        format!("ingress.tlsSecret={ACCESS_TLS_SECRET}"),
        format!("ingress.workspaceTlsSecret={WORKSPACE_TLS_SECRET}"),
        // The test node has two cores: small requests leave room for two replicas of each
        // component and two workspaces (the limits stay the chart's).
        "manager.resources.requests.cpu=50m".to_owned(),
        "envproxy.resources.requests.cpu=50m".to_owned(),
        "dashboard.resources.requests.cpu=50m".to_owned(),
        "postgres.resources.requests.cpu=50m".to_owned(),
    ]
}

/// The upstream registry with every image the spec names, the site registry, the node.
struct RealWorld {
    cluster: Cluster,
    upstream: Registry,
    site: Registry,
    tls: SiteTls,
    dir: tempfile::TempDir,
}

impl RealWorld {
    async fn start() -> Self {
        let (cluster, upstream, site) = tokio::join!(
            Cluster::start(),
            Registry::start(RegistryFlavour::Plain),
            Registry::start(RegistryFlavour::Tls)
        );
        let cluster = cluster.expect("a real node (see coder_testenv::Cluster for what it needs)");
        let (upstream, site) = (upstream.expect("upstream registry"), site.expect("site registry"));
        push_real_platform_image(&upstream, &platform_image_path("1.0.0"), &[]);
        for (name, path) in &PLATFORM_IMAGES[1..] {
            let image = match name.as_str() {
                "postgres" => postgres_image(),
                "workspace" => workspace_image(),
                "ingress-nginx-controller" => ingress_controller_image(),
                "ingress-nginx-certgen" => ingress_certgen_image(),
                other => panic!("the built-in spec names an image the tests cannot build: {other}"),
            }
            .unwrap_or_else(|error| panic!("the {name} image: {error}"));
            upstream.push_image(path, &image).await.expect("push upstream");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let tls =
            SiteTls::new(dir.path(), ACCESS_HOST, WORKSPACE_DOMAIN).expect("the site's CA and certificates");
        let world = Self {
            cluster,
            upstream,
            site,
            tls,
            dir,
        };
        std::fs::create_dir_all(world.dir.path().join("docker")).expect("docker dir");
        std::fs::write(world.dir.path().join("docker/config.json"), "{}").expect("docker config");
        world.configure_the_node();
        world
    }

    /// The node trusts the site registry (HTTPS, the site's private CA) and resolves Docker Hub
    /// names there, from `node-config`'s files alone.
    fn configure_the_node(&self) {
        let ca = self.site.ca_file().expect("the site registry's CA").to_owned();
        self.configure_the_node_for(&self.site.host(), &ca, "site");
    }

    /// Runs `node-config` for the registry `host` (prefix `coder`, its CA `ca`, Docker Hub
    /// mirrored) into the folder `node-config-NAME` and installs its files on the node.
    fn configure_the_node_for(&self, host: &str, ca: &Path, name: &str) {
        let config = self.path(&format!("node-config-{name}"));
        self.run([
            "node-config",
            "--registry",
            &format!("{host}/coder"),
            "--registry-ca",
            &ca.display().to_string(),
            "--mirror-of",
            "docker.io",
            "-o",
            &config,
        ]);
        self.cluster
            .install_registry_config(&Path::new(&config).join("certs.d"))
            .expect("install node-config's files on the node");
    }

    /// An enterprise license with the air-gap feature, written to the work folder; its path.
    fn airgap_license(&self) -> String {
        let license = self.path("enterprise.license");
        crate::license::write_airgap_license(license.as_ref());
        license
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

    /// `apply --bundle --wait` into the node, behind the front door, with `sets` added; the JSON
    /// report.
    async fn apply(&self, bundle: &str, license: &str, sets: &[&str]) -> Value {
        let site = self.site.host();
        let kubeconfig = self.cluster.api().kubeconfig_path().display().to_string();
        let mut args: Vec<String> = [
            "apply",
            "--bundle",
            bundle,
            "--allow-unsigned",
            "--registry",
            &format!("{site}/coder"),
            "--registry-ca",
            &self
                .site
                .ca_file()
                .expect("the site registry's CA")
                .display()
                .to_string(),
            "--license",
            license,
            "--kubeconfig",
            &kubeconfig,
            "--wait",
            "--timeout",
            READY_TIMEOUT,
            "--backup-dir",
            &self.path("backups"),
            "--output",
            "json",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        for set in front_door_values()
            .iter()
            .map(String::as_str)
            .chain(sets.iter().copied())
        {
            args.extend(["--set".to_owned(), set.to_owned()]);
        }
        let output = coder_install(args, &[("DOCKER_CONFIG", &self.dir.path().join("docker"))]);
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

    /// Through the front door (`http` to `platform`): the admin signs in with the password of the
    /// install's Secret, makes the member dev@example.com, who signs in and makes workspace `dev`
    /// of the workspace image the chart allows (the site registry's copy, pinned by digest).
    async fn member_with_workspace(&self, http: &reqwest::Client, platform: &str) -> Seeded {
        let client = self.cluster.api().client().await.expect("client");
        let admin_password = self.admin_password(NAMESPACE).await;
        let admin = eventually(
            "the admin's login through the front door",
            Duration::from_secs(60),
            || try_login(http, platform, "admin@coder.local", &admin_password),
        )
        .await;
        post(
            http,
            &format!("{platform}/api/v0/users"),
            &admin,
            json!({ "email": "dev@example.com", "name": "Dev", "password": "a long member password", "role": "member" }),
        )
        .await;
        let member = login(http, platform, "dev@example.com", "a long member password").await;
        let config = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, NAMESPACE)
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
            image.starts_with(&format!("{}/coder/", self.site.host())),
            "{image}"
        );
        let workspace = post(
            http,
            &format!("{platform}/api/v0/workspaces"),
            &member,
            json!({ "name": "dev", "image": image, "cpu_cores": 0.5, "memory_gb": 0.5, "disk_gb": 1 }),
        )
        .await;
        let workspace = workspace["id"].as_str().expect("workspace id").to_owned();
        Seeded {
            admin_password,
            admin,
            member,
            image,
            workspace,
        }
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

/// What [`RealWorld::member_with_workspace`] made.
struct Seeded {
    /// The first admin's password.
    admin_password: String,
    /// The admin's session token.
    admin: String,
    /// The member's session token.
    member: String,
    /// The workspace image the chart allows.
    image: String,
    /// The member's workspace's id.
    workspace: String,
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

/// Fails unless no container of `namespace`'s running pods was ever restarted: the platform came
/// up in order (the migration step waited for the database) rather than by crash-looping. Pods
/// of finished Jobs are left out: the ingress controller's certificate `patch` job retries until
/// the `create` job has written the Secret, as ingress-nginx's does (its Job restarts it).
/// A pod of `image` (an upstream name) in the default namespace reaches Running, then is
/// deleted.
async fn runs_from_the_mirror(cluster: &Cluster, client: &kube::Client, image: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "upstream-name" },
        "spec": { "containers": [{ "name": "main", "image": image }], "restartPolicy": "Never" },
    }))
    .expect("a pod");
    pods.create(&Default::default(), &pod)
        .await
        .expect("create the pod");
    let running = eventually(
        "the pod named by its upstream reference",
        Duration::from_secs(120),
        || async {
            let status = pods
                .get("upstream-name")
                .await
                .map_err(|error| error.to_string())?
                .status
                .unwrap_or_default();
            match status.phase.as_deref() {
                Some("Running") => Ok(true),
                Some(phase @ ("Failed" | "Succeeded")) => Ok(phase == "Running"),
                phase => Err(format!(
                    "{phase:?} {:?}",
                    status
                        .container_statuses
                        .iter()
                        .flatten()
                        .filter_map(|container| container.state.as_ref()?.waiting.as_ref()?.message.clone())
                        .collect::<Vec<_>>()
                )),
            }
        },
    )
    .await;
    assert!(running, "{image}: {}", cluster.describe_pods("default").await);
    pods.delete("upstream-name", &Default::default())
        .await
        .expect("delete the pod");
}

async fn assert_no_restarts(cluster: &Cluster, namespace: &str) {
    let client = cluster.api().client().await.expect("client");
    for pod in Api::<Pod>::namespaced(client, namespace)
        .list(&ListParams::default())
        .await
        .expect("pods")
    {
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() == Some("Succeeded") {
            continue;
        }
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
async fn login(http: &reqwest::Client, platform: &str, email: &str, password: &str) -> String {
    try_login(http, platform, email, password)
        .await
        .unwrap_or_else(|reason| panic!("login as {email}: {reason}"))
}

/// A session token for `email`, or why not.
async fn try_login(
    http: &reqwest::Client,
    platform: &str,
    email: &str,
    password: &str,
) -> Result<String, String> {
    let response = http
        .post(format!("{platform}/auth/basic/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| error.to_string())?;
    match body["session_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => Err(format!("{status} {body}")),
    }
}

/// The walk in headless Chromium (names mapped to the load balancer, the site's CA trusted):
/// the admin signs in and makes a member; the member signs in, creates a workspace, opens its
/// editor on the workspace's own origin, types in its terminal, stops it and signs out.
/// Screenshots go to `$CODER_TEST_SCREENSHOTS` when set, else into the world's folder.
async fn browser_walk(
    world: &RealWorld,
    load_balancer: std::net::Ipv4Addr,
    admin_password: &str,
    image: &str,
) {
    let screenshots = screenshot_dir(world);
    let browser = front_door_browser(world, load_balancer).await;
    let walk = FrontDoorWalk::new(&browser, &format!("https://{ACCESS_HOST}"), &screenshots);
    walk.login("admin@coder.local", admin_password).await;
    walk.create_member("walker@example.com", "Walker", "a long walker password")
        .await;
    walk.logout().await;
    walk.login("walker@example.com", "a long walker password").await;
    let id = walk.create_workspace("walk", image).await;
    let (origin, page) = walk.open_editor("walk").await;
    assert!(
        origin.starts_with(&format!("https://ws-{id}.{WORKSPACE_DOMAIN}/")),
        "the editor is on the workspace's own origin: {origin}"
    );
    assert!(page.contains("workspace stand-in"), "{page}");
    let output = walk.terminal(&id, "echo walked-$((40+2))", "walked-42").await;
    assert!(output.contains("walked-42"), "{output}");
    walk.stop_workspace("walk").await;
    walk.logout().await;
    browser.quit().await;
}

/// Where the walks' screenshots go: `$CODER_TEST_SCREENSHOTS` when set, else the world's folder.
fn screenshot_dir(world: &RealWorld) -> std::path::PathBuf {
    std::env::var_os("CODER_TEST_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| world.dir.path().join("screenshots"))
}

/// Headless Chromium as a site's user has it: the platform's names resolve to the load
/// balancer, and the site's CA is trusted.
async fn front_door_browser(world: &RealWorld, load_balancer: std::net::Ipv4Addr) -> Browser {
    let options = BrowserOptions::new()
        .arg(world.tls.host_resolver_rules(IpAddr::V4(load_balancer)))
        .home(
            world
                .tls
                .chromium_home()
                .expect("a Chromium home trusting the site's CA"),
        );
    Browser::start_with(options).await.expect("headless Chromium")
}

/// Waits (up to 2 minutes) until the dashboard's login page, its workspace list (the dashboard
/// calling the manager with `token` as the session cookie) and the manager's API (with `token`)
/// each answer 200 through the front door five times in a row.
async fn settle_front_door(http: &reqwest::Client, platform: &str, token: &str) {
    let in_a_row = std::cell::Cell::new(0u32);
    eventually(
        "the front door after the rollout",
        Duration::from_secs(120),
        || {
            let in_a_row = &in_a_row;
            async move {
                for path in ["/login", "/", "/api/v0/workspaces"] {
                    let status = http
                        .get(format!("{platform}{path}"))
                        .bearer_auth(token)
                        .header("cookie", format!("__Host-coder_session={token}"))
                        .send()
                        .await
                        .map(|response| response.status().as_u16())
                        .map_err(|error| error.to_string())?;
                    if status != 200 {
                        in_a_row.set(0);
                        return Err(format!("{path} answered {status}"));
                    }
                }
                in_a_row.set(in_a_row.get() + 1);
                if in_a_row.get() >= 5 {
                    Ok(())
                } else {
                    Err(format!("{} good rounds so far", in_a_row.get()))
                }
            }
        },
    )
    .await;
}

/// Prints the last lines of every container of the namespace (what the dashboard, the manager
/// and the ingress controller said).
async fn print_logs(client: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for container in pod.spec.iter().flat_map(|spec| spec.containers.iter()) {
            let params = LogParams {
                container: Some(container.name.clone()),
                tail_lines: Some(30),
                ..LogParams::default()
            };
            let log = pods
                .logs(&name, &params)
                .await
                .unwrap_or_else(|error| error.to_string());
            eprintln!("--- {name}/{}:\n{log}", container.name);
        }
    }
}

/// The member signs in in Chromium right after the rollout. The test world's front door can lag
/// a rollout (its stand-ins learn new pods a moment late; see the README's front door section):
/// a first failure prints every container's log, waits for the front door to settle again and
/// tries once more; a second failure prints the logs again and fails.
async fn sign_in_after_the_rollout(
    client: &kube::Client,
    walk: &FrontDoorWalk<'_>,
    http: &reqwest::Client,
    platform: &str,
    token: &str,
) {
    use futures_util::FutureExt;
    let attempt = || {
        std::panic::AssertUnwindSafe(walk.login("dev@example.com", "a long member password")).catch_unwind()
    };
    if attempt().await.is_ok() {
        return;
    }
    eprintln!("the first sign-in after the rollout failed; the namespace's logs:");
    print_logs(client).await;
    settle_front_door(http, platform, token).await;
    if let Err(panic) = attempt().await {
        print_logs(client).await;
        std::panic::resume_unwind(panic);
    }
}

/// `--set`s for two replicas of the manager, envproxy and dashboard.
const TWO_REPLICAS: [&str; 3] = [
    "manager.replicas=2",
    "envproxy.replicas=2",
    "dashboard.replicas=2",
];

/// Opens the workspace's terminal through the front door, runs `echo WORD` and waits for it.
async fn terminal_round_trip(tls: &SiteTls, front: SocketAddr, id: &str, token: &str, word: &str) {
    let bearer = format!("Bearer {token}");
    let mut terminal = tls
        .websocket(
            front,
            &format!("wss://{ACCESS_HOST}/proxy/workspaces/{id}/terminal"),
            &[("authorization", &bearer)],
        )
        .await
        .expect("the terminal through the front door");
    terminal
        .send(Message::binary(format!("echo {word}\n").into_bytes()))
        .await
        .expect("send");
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains(&format!("{word}\n")) {
        let message = tokio::time::timeout(Duration::from_secs(20), terminal.next())
            .await
            .expect("the shell answers")
            .expect("an open terminal")
            .expect("a message");
        output.extend_from_slice(&message.into_data());
    }
}

/// The address of workspace `id`'s pod, once it has one.
async fn workspace_pod_ip(client: &kube::Client, id: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the workspace pod's address", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("com.coder.resource=true"))
                .await
                .map_err(|error| error.to_string())?;
            list.items
                .into_iter()
                .filter(|pod| {
                    pod.metadata
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get("com.coder.workspace.id"))
                        .is_some_and(|value| value == id)
                })
                .find_map(|pod| pod.status.and_then(|status| status.pod_ip))
                .ok_or_else(|| format!("no pod of workspace {id} with an address"))
        }
    })
    .await
}

/// The port table, probed from pods: a stranger (no platform labels), a workspace and the
/// envproxy each reach what the table lists and nothing else; with the node's enforcement off,
/// the stranger reaches PostgreSQL (so the probe can tell open from closed).
async fn check_port_table(world: &RealWorld, workspace_ip: &str, load_balancer: &str) {
    let client = world.cluster.api().client().await.expect("client");
    let image = push_probe_image(&world.site).await;
    let targets = Targets::find(&client, NAMESPACE, workspace_ip, load_balancer).await;
    let [code_server, shell, ssh] = &targets.workspace;
    let all = [
        &targets.postgres,
        &targets.manager,
        &targets.envproxy,
        &targets.dashboard,
        code_server,
        shell,
        ssh,
        &targets.load_balancer,
        &targets.kubernetes_api,
    ];
    let run = |name: &'static str, labels| probe(&world.cluster, NAMESPACE, &image, name, labels, &all);

    let stranger = run(
        "probe-stranger",
        std::collections::BTreeMap::from([("app", "probe")]),
    )
    .await;
    assert_reachability(
        "a pod without the platform's labels",
        &stranger,
        &[
            (&targets.postgres, false),
            (&targets.manager, false),
            (&targets.envproxy, false),
            (&targets.dashboard, false),
            (code_server, false),
            (shell, false),
            (ssh, false),
            (&targets.load_balancer, true),
        ],
    );
    let workspace = run(
        "probe-workspace",
        std::collections::BTreeMap::from([("com.coder.resource", "true")]),
    )
    .await;
    assert_reachability(
        "a workspace pod",
        &workspace,
        &[
            (&targets.postgres, false),
            (&targets.manager, false),
            (&targets.envproxy, false),
            (&targets.kubernetes_api, false),
            (&targets.load_balancer, true),
        ],
    );
    let envproxy = run("probe-envproxy", component_labels("envproxy")).await;
    assert_reachability(
        "the envproxy",
        &envproxy,
        &[
            (code_server, true),
            (shell, true),
            (ssh, true),
            (&targets.manager, true),
            (&targets.postgres, false),
            (&targets.dashboard, false),
        ],
    );

    // The same stranger with the node's policy engine off: everything opens.
    world
        .cluster
        .set_network_policy_enforcement(false)
        .await
        .expect("enforcement off");
    let unpoliced = run(
        "probe-unpoliced",
        std::collections::BTreeMap::from([("app", "probe")]),
    )
    .await;
    world
        .cluster
        .set_network_policy_enforcement(true)
        .await
        .expect("enforcement back on");
    assert_reachability(
        "a pod without the platform's labels, with the policies not enforced",
        &unpoliced,
        &[
            (&targets.postgres, true),
            (&targets.manager, true),
            (code_server, true),
        ],
    );
}

/// Deletes every pod of each of `components`, one at a time, each after the one before was
/// replaced and its Deployment is available again; `check` must pass between deletions and at
/// the end (a session kept in PostgreSQL survives the pods that served it).
async fn replace_every_pod<F, Fut>(cluster: &Cluster, components: &[&str], mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let client = cluster.api().client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, NAMESPACE);
    for component in components {
        let selector = format!("app.kubernetes.io/name=coder,app.kubernetes.io/component={component}");
        let originals: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("pods")
            .items
            .into_iter()
            // The pods serving now: an upgrade's old pods may still be terminating.
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| pod.metadata.name)
            .collect();
        assert!(
            originals.len() >= 2,
            "{component}: {originals:?} (two replicas expected)"
        );
        for name in originals {
            match pods.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => panic!("deleting {name}: {error}"),
            }
            eventually(
                &format!("the session while {name} is replaced"),
                Duration::from_secs(30),
                &mut check,
            )
            .await;
            let name_for_wait = name.clone();
            eventually(
                &format!("{component} available again after {name}"),
                Duration::from_secs(120),
                || {
                    let (pods, deployments, selector, name) = (
                        pods.clone(),
                        deployments.clone(),
                        selector.clone(),
                        name_for_wait.clone(),
                    );
                    async move {
                        let listed = pods
                            .list(&ListParams::default().labels(&selector))
                            .await
                            .map_err(|error| error.to_string())?;
                        if listed
                            .items
                            .iter()
                            .any(|pod| pod.metadata.name.as_deref() == Some(name.as_str()))
                        {
                            return Err(format!("{name} is still there"));
                        }
                        let deployment = deployments
                            .get(&format!("coder-{component}"))
                            .await
                            .map_err(|error| error.to_string())?;
                        let status = deployment.status.unwrap_or_default();
                        if status.available_replicas.unwrap_or(0) >= 2
                            && status.updated_replicas.unwrap_or(0) >= 2
                        {
                            Ok(())
                        } else {
                            Err(format!("{status:?}"))
                        }
                    }
                },
            )
            .await;
        }
    }
    eventually(
        "the session after every pod was replaced",
        Duration::from_secs(30),
        &mut check,
    )
    .await;
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

/// `coder-install check --output json` against the install (the site's CA given, the access
/// host sent to the load balancer's address it reads itself): its report and whether it exited 0.
fn run_check(world: &RealWorld) -> (Value, bool) {
    let output = coder_install(check_args(world, "json"), &[]);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "check's JSON report ({error}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

/// `check`'s arguments for the install, the site's CA written beside, with `--output FORMAT`.
fn check_args(world: &RealWorld, format: &str) -> Vec<String> {
    let ca = world.path("site-ca.pem");
    std::fs::write(&ca, world.tls.ca_pem()).expect("write the site's CA");
    let kubeconfig = world.cluster.api().kubeconfig_path().display().to_string();
    [
        "check",
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "--ca",
        &ca,
        "--output",
        format,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
}

/// `check` in text, interrupted (SIGINT, as Ctrl-C) once its throwaway workspace exists: it
/// exits non-zero saying so, after its cleanup hop passed.
async fn interrupted_check(world: &RealWorld, client: &kube::Client, before: &[String]) {
    let child = coder_install_command(check_args(world, "text"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start check");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the check's workspace", Duration::from_secs(120), || {
        let deployments = deployments.clone();
        async move {
            let listed = deployments
                .list(&ListParams::default().labels("com.coder.resource=true"))
                .await
                .map_err(|error| error.to_string())?;
            listed
                .items
                .into_iter()
                .filter_map(|deployment| deployment.metadata.name)
                .find(|name| !before.contains(&format!("deployment {name}")))
                .ok_or_else(|| "no workspace of the check's yet".to_owned())
        }
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("interrupt check");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("check's output");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "an interrupted check passed:\n{text}");
    assert!(text.contains("interrupted (Ctrl-C)"), "{text}");
    assert!(
        text.lines().any(|line| line.starts_with("pass  cleanup ")),
        "{text}"
    );
    assert!(
        text.lines().last().is_some_and(|line| line.contains(" failed, ")),
        "{text}"
    );
}

/// Each hop's verdict in a check report, by hop name, in order.
fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|hop| {
            (
                hop["name"].as_str().unwrap_or_default().to_owned(),
                hop["verdict"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The hop `name` of a check report.
fn hop<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .find(|hop| hop["name"] == name)
        .unwrap_or_else(|| panic!("no hop {name} in {report:#}"))
}

/// What a check could leave behind: the users (the admin lists them), and the namespace's
/// pods, Deployments, Services and volume claims.
async fn footprint(
    client: &kube::Client,
    http: &reqwest::Client,
    platform: &str,
    admin: &str,
) -> Vec<String> {
    // One page holds them all (the list is paginated: no `Link` to a next page).
    let response = http
        .get(format!("{platform}/api/v0/users?limit=1000"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("users");
    assert!(response.headers().get("link").is_none(), "more than 1,000 users");
    let users: Value = response.json().await.expect("users JSON");
    let mut found: Vec<String> = users
        .as_array()
        .expect("a list of users")
        .iter()
        .map(|user| format!("user {}", user["email"]))
        .collect();
    let params = ListParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&params).await.expect("pods") {
        if pod.metadata.deletion_timestamp.is_none() {
            found.push(format!("pod {}", pod.metadata.name.unwrap_or_default()));
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for deployment in deployments.list(&params).await.expect("deployments") {
        found.push(format!(
            "deployment {}",
            deployment.metadata.name.unwrap_or_default()
        ));
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    for service in services.list(&params).await.expect("services") {
        found.push(format!("service {}", service.metadata.name.unwrap_or_default()));
    }
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), NAMESPACE);
    for claim in claims.list(&params).await.expect("claims") {
        found.push(format!("claim {}", claim.metadata.name.unwrap_or_default()));
    }
    found.sort();
    found
}

/// Sets the envproxy Deployment's replicas and waits until that many are available and no
/// other envproxy pod is left.
async fn scale_envproxy(client: &kube::Client, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .patch(
            "coder-envproxy",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .expect("scale the envproxy");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        &format!("the envproxy at {replicas} replicas"),
        Duration::from_secs(180),
        || {
            let (deployments, pods) = (deployments.clone(), pods.clone());
            async move {
                let status = deployments
                    .get("coder-envproxy")
                    .await
                    .map_err(|error| error.to_string())?
                    .status
                    .unwrap_or_default();
                let running = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=envproxy"))
                    .await
                    .map_err(|error| error.to_string())?
                    .items
                    .len();
                let available = status.available_replicas.unwrap_or(0);
                if available == replicas && running == usize::try_from(replicas).unwrap_or(0) {
                    Ok(())
                } else {
                    Err(format!("{available} available, {running} pods"))
                }
            }
        },
    )
    .await;
}

/// The chart's workspace NetworkPolicy with `port` taken out of (or, with `restore`, back to)
/// its rules; the ports it had.
async fn edit_workspace_policy(client: &kube::Client, restore: Option<Value>) -> Value {
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), NAMESPACE);
    let policy = policies
        .get("coder-allow-to-workspace")
        .await
        .expect("the workspace policy");
    let mut object = serde_json::to_value(&policy).expect("JSON");
    let original = object["spec"]["ingress"].clone();
    object["spec"]["ingress"] = match restore {
        Some(ingress) => ingress,
        None => {
            let mut ingress = original.clone();
            for rule in ingress.as_array_mut().expect("rules") {
                if let Some(ports) = rule["ports"].as_array_mut() {
                    ports.retain(|port| port["port"] != coder_topology::ENVAGENT_SHELL_PORT);
                }
            }
            ingress
        }
    };
    let edited = serde_json::from_value(object).expect("a policy");
    policies
        .replace("coder-allow-to-workspace", &Default::default(), &edited)
        .await
        .expect("replace the workspace policy");
    original
}

/// `coder-install check` on the running install: every hop passes and nothing is left behind;
/// with the envproxy scaled to zero it fails naming the envproxy (its workspace hops skipped);
/// with the workspace policy no longer listing the shell's port it fails naming the terminal.
async fn check_the_install(
    world: &RealWorld,
    http: &reqwest::Client,
    platform: &str,
    admin: &str,
    id: &str,
    member: &str,
) {
    let client = world.cluster.api().client().await.expect("client");
    let before = footprint(&client, http, platform, admin).await;
    let (report, passed) = run_check(world);
    let expected = [
        "load-balancer",
        "ingress",
        "dashboard",
        "manager",
        "member",
        "workspace",
        "envproxy",
        "probe-pods",
        "postgres-from-manager",
        "postgres-from-stranger",
        "postgres-from-workspace",
        "editor",
        "terminal",
        "ssh-proxy",
        "cleanup",
    ];
    let all_pass: Vec<(String, String)> = expected
        .iter()
        .map(|name| ((*name).to_owned(), "pass".to_owned()))
        .collect();
    assert_eq!(verdicts(&report), all_pass, "{report:#}");
    assert!(passed && report["passed"] == true, "{report:#}");
    assert_eq!(
        hop(&report, "terminal")["port"],
        coder_topology::ENVAGENT_SHELL_PORT
    );
    assert_eq!(hop(&report, "postgres-from-stranger")["expect_open"], false);
    let load_balancer = world
        .cluster
        .load_balancer_address(NAMESPACE, INGRESS_SERVICE)
        .await
        .expect("address");
    assert_eq!(
        report["address"],
        format!("{load_balancer}:{}", coder_topology::INGRESS_HTTPS_PORT)
    );
    let after = footprint(&client, http, platform, admin).await;
    assert_eq!(
        before, after,
        "check left something behind, or took something away"
    );
    interrupted_check(world, &client, &before).await;
    assert_eq!(
        before,
        footprint(&client, http, platform, admin).await,
        "an interrupted check left something behind"
    );

    scale_envproxy(&client, 0).await;
    let (report, passed) = run_check(world);
    assert!(!passed, "check passed with no envproxy: {report:#}");
    let failed: Vec<String> = verdicts(&report)
        .into_iter()
        .filter(|(_, verdict)| verdict == "fail")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(failed, ["envproxy"], "{report:#}");
    for name in ["editor", "terminal", "ssh-proxy"] {
        assert_eq!(hop(&report, name)["verdict"], "skip", "{report:#}");
    }
    let look_at = hop(&report, "envproxy")["look_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        look_at.contains("0 available replicas") && look_at.contains("get deploy coder-envproxy"),
        "{look_at}"
    );
    assert_eq!(hop(&report, "cleanup")["verdict"], "pass", "{report:#}");
    scale_envproxy(&client, 1).await;
    eventually(
        "the workspace through the envproxy again",
        Duration::from_secs(120),
        || workspace_page(http, platform, id, member),
    )
    .await;

    // The envproxy's pod was replaced: what is there now is the footprint to keep.
    let before = footprint(&client, http, platform, admin).await;
    let original = edit_workspace_policy(&client, None).await;
    world
        .cluster
        .sync_stand_ins()
        .await
        .expect("the node's policy rules follow the edit");
    let (report, passed) = run_check(world);
    edit_workspace_policy(&client, Some(original)).await;
    assert!(!passed, "check passed with the shell's port closed: {report:#}");
    let failed: Vec<String> = verdicts(&report)
        .into_iter()
        .filter(|(_, verdict)| verdict == "fail")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(failed, ["terminal"], "{report:#}");
    assert_eq!(hop(&report, "editor")["verdict"], "pass", "{report:#}");
    assert_eq!(hop(&report, "ssh-proxy")["verdict"], "pass", "{report:#}");
    let look_at = hop(&report, "terminal")["look_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        look_at.contains("coder-allow-to-workspace") && look_at.contains("26337"),
        "{look_at}"
    );
    assert_eq!(
        before,
        footprint(&client, http, platform, admin).await,
        "a failed check left something behind"
    );
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
    let license = world.airgap_license();

    // Installed and Ready for real: apply --wait returns once the kubelet reports every
    // Deployment and the StatefulSet ready and every Job complete (the ingress controller's
    // certificate jobs among them). The site's TLS Secrets exist first, as at a site.
    let client = world.cluster.api().client().await.expect("client");
    world
        .tls
        .create_secrets(&client, NAMESPACE)
        .await
        .expect("the site's TLS Secrets");
    let report = world.apply(&bundle, &license, &[]).await;
    assert_eq!(report["mode"], "air-gapped", "{report}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&ListParams::default()).await.expect("pods") {
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() == Some("Succeeded") {
            continue; // the ingress controller's certificate jobs
        }
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

    // The front door: the load balancer's address (the harness's stand-in allocates it, as
    // MetalLB would), the chart's ingress controller, the site's certificate.
    let load_balancer = world
        .cluster
        .load_balancer_address(NAMESPACE, INGRESS_SERVICE)
        .await
        .expect("the ingress controller's load-balancer address");
    let front = SocketAddr::new(IpAddr::V4(load_balancer), coder_topology::INGRESS_HTTPS_PORT);
    let http = world
        .tls
        .http_client(front.ip(), &[])
        .expect("a client that trusts the site's CA");
    let platform = format!("https://{ACCESS_HOST}");
    let plain = http
        .get(format!("http://{ACCESS_HOST}/login"))
        .send()
        .await
        .expect("plain HTTP to the front door");
    assert_eq!(plain.status().as_u16(), 308, "plain HTTP is redirected to HTTPS");
    assert_eq!(
        plain.headers()["location"].to_str().unwrap_or_default(),
        format!("https://{ACCESS_HOST}/login")
    );

    // The admin logs in at the access URL, makes a member, who makes a workspace.
    let Seeded {
        admin_password,
        admin,
        member,
        image,
        workspace: id,
    } = world.member_with_workspace(&http, &platform).await;

    // Through the front door and envproxy: the editor's page (13337), a terminal round trip
    // (26337), the SSH proxy's bytes (12212).
    let page = eventually(
        "the workspace's editor through the front door",
        Duration::from_secs(180),
        || workspace_page(&http, &platform, &id, &member),
    )
    .await;
    assert!(page.contains("workspace stand-in"), "{page}");
    terminal_round_trip(&world.tls, front, &id, &member, "hello-from-the-node").await;
    let bearer = format!("Bearer {member}");
    let mut ssh = world
        .tls
        .websocket(
            front,
            &format!("wss://{ACCESS_HOST}/proxy/workspaces/{id}/ssh"),
            &[("authorization", &bearer)],
        )
        .await
        .expect("the SSH proxy through the front door");
    ssh.send(Message::binary(b"SSH-2.0-test\r\n".to_vec()))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(20), ssh.next())
        .await
        .expect("bytes come back")
        .expect("an open stream")
        .expect("a message");
    assert_eq!(echoed.into_data().as_ref(), b"SSH-2.0-test\r\n");
    drop(ssh);

    // A person's walk in Chromium, at the access URL through the load balancer.
    browser_walk(&world, load_balancer, &admin_password, &image).await;

    // The port table, enforced by the node: what it lists opens, nothing else does.
    let workspace_ip = workspace_pod_ip(&client, &id).await;
    check_port_table(&world, &workspace_ip, &load_balancer.to_string()).await;

    // `coder-install check` walks the same table from the user's side: it passes and leaves
    // nothing behind; it names the envproxy when the envproxy is scaled to zero, and the terminal
    // when the workspace NetworkPolicy no longer lets the envproxy in on the shell's port.
    check_the_install(&world, &http, &platform, &admin, &id, &member).await;

    // An image named by its upstream reference (Docker Hub, which no test can reach) runs from
    // the site registry's copy, through node-config's mirror.
    let upstream_name = image.replacen(&format!("{}/coder/", world.site.host()), "docker.io/", 1);
    runs_from_the_mirror(&world.cluster, &client, &upstream_name).await;

    // A second apply changes nothing.
    let before = managed_objects(&client, NAMESPACE).await;
    let again = world.apply(&bundle, &license, &[]).await;
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

    // An upgrade to release 2.0.0 (a new platform image), with two replicas of each of the
    // manager, envproxy and dashboard, keeps the users, the sessions and the workspace (it backs
    // up 1.0's database first: data_rollback's test looks at that backup).
    push_real_platform_image(
        &world.upstream,
        &platform_image_path("2.0.0"),
        &["--version", "2.0.0"],
    );
    let first_image = manager_image(&client, NAMESPACE).await;
    let upgraded = world.apply(&world.bundle("2.0.0"), &license, &TWO_REPLICAS).await;
    assert_eq!(upgraded["mode"], "air-gapped", "{upgraded}");
    let second_image = manager_image(&client, NAMESPACE).await;
    assert_ne!(
        first_image, second_image,
        "the upgrade deployed the same platform image"
    );
    // Right after a rollout the front door can answer 504 for a while (a connection sent to a
    // pod that is gone, or not yet let through; see the note in the README's front door
    // section): wait until the dashboard and the manager answer through it five times in a row.
    settle_front_door(&http, &platform, &member).await;
    // A session that survived answers; a lost one answers 401, and a lost workspace 404, which
    // are not retried.
    eventually(
        "the member's session and workspace after the upgrade",
        Duration::from_secs(60),
        || async {
            let response = http
                .get(format!("{platform}/api/v0/workspaces/{id}"))
                .bearer_auth(&member)
                .send()
                .await
                .map_err(|error| error.to_string())?;
            match response.status().as_u16() {
                200 => Ok(()),
                status @ (401 | 404) => {
                    panic!("the member's session or the workspace is gone after the upgrade: {status}")
                }
                status => Err(format!("{status}")),
            }
        },
    )
    .await;
    eventually(
        "the workspace after the upgrade",
        Duration::from_secs(120),
        || workspace_page(&http, &platform, &id, &member),
    )
    .await;

    // Sessions live in PostgreSQL: the member signed in in Chromium, every pod that served them
    // is replaced, one at a time; their next page (the browser's session cookie) and API calls
    // (their token) keep working throughout, and so does a reconnected terminal.
    let browser = front_door_browser(&world, load_balancer).await;
    let screenshots = screenshot_dir(&world).join("replicas");
    let walk = FrontDoorWalk::new(&browser, &platform, &screenshots);
    sign_in_after_the_rollout(&client, &walk, &http, &platform, &member).await;
    replace_every_pod(&world.cluster, &["manager", "envproxy", "dashboard"], || async {
        walk.browser().goto(&format!("{platform}/")).await;
        if !walk.browser().exists("tr[data-workspace='dev']").await {
            return Err(format!(
                "the member's next page lost the session: {}",
                walk.browser().text("body").await
            ));
        }
        let response = http
            .get(format!("{platform}/api/v0/workspaces/{id}"))
            .bearer_auth(&member)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the member's token answered {}", response.status()))
        }
    })
    .await;
    settle_front_door(&http, &platform, &member).await;
    let output = walk
        .terminal(
            &id,
            "echo after-the-pods-were-$((1+1))-times-replaced",
            "after-the-pods-were-2-times-replaced",
        )
        .await;
    assert!(
        output.contains("after-the-pods-were-2-times-replaced"),
        "{output}"
    );
    terminal_round_trip(
        &world.tls,
        front,
        &id,
        &member,
        "hello-after-the-pods-were-replaced",
    )
    .await;
    browser.quit().await;

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

#[tokio::test(flavor = "multi_thread")]
async fn on_a_real_node_the_platform_runs_from_serve_without_a_site_registry() {
    let world = RealWorld::start().await;
    let bundle = world.bundle("1.0.0");
    let license = world.airgap_license();

    // `serve` in front of the bundle, HTTPS from a private CA, one htpasswd user.
    let dir = world.dir.path();
    let ca = TestCa::new().expect("the serve host's CA");
    let ca_file = dir.join("serve-ca.crt");
    ca.write_cert(&ca_file).expect("CA file");
    let cert = ca.issue_server_cert(dir, "serve").expect("serve's certificate");
    let (user, password) = ("puller", "a pull password for serve");
    let htpasswd = crate::serve::htpasswd_file(dir, &[(user, password)]);
    let served = crate::serve::Served::start(
        Path::new(&bundle),
        &[
            "--allow-unsigned",
            "--prefix",
            "coder",
            "--tls-cert",
            &cert.cert.display().to_string(),
            "--tls-key",
            &cert.key.display().to_string(),
            "--htpasswd",
            &htpasswd.display().to_string(),
        ],
    );
    let host = served.host();
    world.configure_the_node_for(&host, &ca_file, "serve");

    // No push: the nodes pull every image from `serve`, with the pull Secret apply makes.
    let kubeconfig = world.cluster.api().kubeconfig_path().display().to_string();
    let mut command = crate::world::coder_install_command([
        "apply",
        "--bundle",
        &bundle,
        "--allow-unsigned",
        "--registry",
        &format!("{host}/coder"),
        "--no-push",
        "--registry-ca",
        &ca_file.display().to_string(),
        "--registry-username",
        user,
        "--registry-password-stdin",
        "--license",
        &license,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "ingress.enable=false",
        "--wait",
        "--timeout",
        READY_TIMEOUT,
        "--output",
        "json",
    ]);
    command
        .env("DOCKER_CONFIG", dir.join("docker"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run apply");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .expect("the password");
    }
    let output = child.wait_with_output().expect("apply");
    if !output.status.success() {
        panic!(
            "apply from serve failed:\n{}\npods:\n{}\nnode logs in {}",
            String::from_utf8_lossy(&output.stderr),
            world.cluster.describe_pods(NAMESPACE).await,
            world.cluster.log_dir().display()
        );
    }
    let report: Value = serde_json::from_slice(&output.stdout).expect("apply's JSON report");
    assert_eq!(report["mode"], "air-gapped", "{report}");

    // Every workload Ready (apply --wait), each container's image from `serve`.
    let client = world.cluster.api().client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let listed = pods.list(&ListParams::default()).await.expect("pods");
    assert!(!listed.items.is_empty(), "no pods");
    for pod in listed {
        for container in pod.spec.into_iter().flat_map(|spec| spec.containers) {
            let image = container.image.unwrap_or_default();
            assert!(
                image.starts_with(&format!("{host}/coder/")),
                "pulled from elsewhere: {image}"
            );
        }
    }
    assert_no_restarts(&world.cluster, NAMESPACE).await;

    // Broken: the manager crash-loops (a listen address it cannot parse). A support bundle of
    // the namespace holds the crash's log lines, and no value of any of its Secrets.
    support_bundle_of_a_crash_loop(&world, &client, password).await;

    let stopped = served.stop();
    assert!(
        stopped["stopped"]["blob_bytes"].as_u64().unwrap_or(0) > 1 << 20,
        "the node pulled nothing from serve: {stopped}"
    );
}

/// Breaks the manager, waits until a manager container has crashed, takes a support bundle and
/// searches its bytes.
async fn support_bundle_of_a_crash_loop(world: &RealWorld, client: &kube::Client, pull_password: &str) {
    const BAD_ADDRESS: &str = "bogus-listen-address";
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "manager", "env": [{ "name": "CODER_LISTEN", "value": BAD_ADDRESS }] }
    ] } } } });
    deployments
        .patch(
            "coder-manager",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .expect("break the manager");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        "a crashed manager container",
        Duration::from_secs(120),
        || async {
            let listed = pods
                .list(&ListParams::default())
                .await
                .map_err(|error| error.to_string())?;
            let restarted = listed
                .iter()
                .flat_map(|pod| pod.status.iter())
                .flat_map(|status| status.container_statuses.iter().flatten())
                .any(|container| container.name == "manager" && container.restart_count > 0);
            if restarted {
                Ok(())
            } else {
                Err("no manager container has restarted yet".to_owned())
            }
        },
    )
    .await;

    let archive = world.path("support.tar.gz");
    let kubeconfig = world.cluster.api().kubeconfig_path().display().to_string();
    let report: Value = serde_json::from_str(&world.run([
        "support-bundle",
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "-o",
        &archive,
        "--output",
        "json",
    ]))
    .expect("support-bundle's JSON");
    let mut files = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&archive).expect("the archive"),
    ));
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().expect("a path").display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read an entry");
        files.insert(path, bytes);
    }
    assert!(files.contains_key("support/manifest.json"), "{:?}", files.keys());
    let crash_logged = files.iter().any(|(path, bytes)| {
        path.starts_with("support/logs/") && String::from_utf8_lossy(bytes).contains(BAD_ADDRESS)
    });
    assert!(
        crash_logged,
        "the crash's log lines are not in the bundle: {report}"
    );
    // Every value of every Secret of the namespace, searched in every byte of the bundle.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let everything: Vec<u8> = files.values().flatten().copied().collect();
    let mut searched = 0;
    let mut names = Vec::new();
    for secret in secrets.list(&ListParams::default()).await.expect("the Secrets") {
        names.extend(secret.metadata.name.clone());
        for (key, value) in secret.data.unwrap_or_default() {
            let value = String::from_utf8_lossy(&value.0).trim().to_owned();
            if value.len() < 6 {
                continue;
            }
            searched += 1;
            assert!(
                !everything
                    .windows(value.len())
                    .any(|window| window == value.as_bytes()),
                "{}/{key} is in the support bundle",
                secret.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }
    assert!(
        searched >= 4,
        "the namespace's Secrets were not found ({searched} values)"
    );
    assert!(
        !everything
            .windows(pull_password.len())
            .any(|window| window == pull_password.as_bytes()),
        "the registry password is in the support bundle"
    );
    // The admin password and the pull Secret (the serve user's password) among them.
    for name in ["coder-admin-password", "coder-registry-pull"] {
        assert!(names.iter().any(|found| found == name), "{names:?}");
    }
}
