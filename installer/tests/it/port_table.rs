//! The architecture's port table, enforced: probe pods with chosen labels try to open TCP
//! connections inside the installed platform's namespace, and report which opened.
//!
//! Each probe is a busybox pod whose command tries every target once (`nc` with a 3 s connect
//! timeout: refused or dropped is "closed", connected is "open") and prints one line per target;
//! the test reads its log. A probe that wears a component's labels (envproxy's) could be adopted
//! by that component's ReplicaSet or put behind its Service: it carries a controller reference to
//! a ConfigMap of its own (a ReplicaSet adopts only pods without a controller) and a readiness
//! probe that never passes (a Service sends traffic only to ready pods).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coder_testenv::fixture::ImageBuilder;
use coder_testenv::{Cluster, Registry};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;

/// Where the probe image goes in the registry the node pulls from.
const PROBE_IMAGE_PATH: &str = "coder-tests/probe:1";

/// One connection a probe tries: a name for messages, an address and a port.
#[derive(Debug, Clone)]
pub struct Target {
    /// What it is ("postgres", "workspace code-server", ...).
    pub name: String,
    /// An IP address.
    pub address: String,
    /// A TCP port.
    pub port: u16,
}

impl Target {
    fn key(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

/// The addresses a probe can try: the platform's Services (cluster IPs), a workspace pod, the
/// ingress controller's load-balancer address, and the Kubernetes API.
pub struct Targets {
    /// PostgreSQL's Service.
    pub postgres: Target,
    /// The manager's Service.
    pub manager: Target,
    /// The envproxy's Service.
    pub envproxy: Target,
    /// The dashboard's Service.
    pub dashboard: Target,
    /// A running workspace pod's code-server, envagent shell and envagent SSH ports.
    pub workspace: [Target; 3],
    /// The ingress controller through its load-balancer address, HTTPS.
    pub load_balancer: Target,
    /// The Kubernetes API through the `kubernetes` Service (DNAT to the node's API server).
    pub kubernetes_api: Target,
}

impl Targets {
    /// Looks the addresses up; `workspace_pod_ip` is a running workspace's pod address.
    pub async fn find(
        client: &kube::Client,
        namespace: &str,
        workspace_pod_ip: &str,
        load_balancer: &str,
    ) -> Self {
        let workspace = |name: &str, port: u16| Target {
            name: format!("workspace {name}"),
            address: workspace_pod_ip.to_owned(),
            port,
        };
        Self {
            postgres: service_target(client, namespace, "coder-postgres").await,
            manager: service_target(client, namespace, "coder-manager").await,
            envproxy: service_target(client, namespace, "coder-envproxy").await,
            dashboard: service_target(client, namespace, "coder-dashboard").await,
            workspace: [
                workspace("code-server", coder_topology::CODE_SERVER_PORT),
                workspace("envagent shell", coder_topology::ENVAGENT_SHELL_PORT),
                workspace("envagent SSH", coder_topology::ENVAGENT_SSH_PORT),
            ],
            load_balancer: Target {
                name: "the ingress controller's load balancer (HTTPS)".to_owned(),
                address: load_balancer.to_owned(),
                port: coder_topology::INGRESS_HTTPS_PORT,
            },
            kubernetes_api: service_target(client, "default", "kubernetes").await,
        }
    }
}

/// Service `name` as a probe target: its cluster IP and first port, or for a headless Service
/// (PostgreSQL's, for its StatefulSet) its pod's address.
async fn service_target(client: &kube::Client, namespace: &str, name: &str) -> Target {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|error| panic!("Service {namespace}/{name}: {error}"));
    let spec = service.spec.expect("spec");
    let port = spec.ports.expect("ports")[0].port;
    let address = match spec.cluster_ip.as_deref() {
        Some("None") | None => endpoint_address(client, namespace, name).await,
        Some(ip) => ip.to_owned(),
    };
    Target {
        name: name.to_owned(),
        address,
        port: u16::try_from(port).expect("a port"),
    }
}

/// The first ready address of Service `name`'s endpoints.
async fn endpoint_address(client: &kube::Client, namespace: &str, name: &str) -> String {
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|error| panic!("Endpoints {namespace}/{name}: {error}"));
    endpoints
        .subsets
        .into_iter()
        .flatten()
        .flat_map(|subset| subset.addresses.into_iter().flatten())
        .map(|address| address.ip)
        .next()
        .unwrap_or_else(|| panic!("Service {namespace}/{name} has no ready endpoint"))
}

/// Pushes the probe image (static busybox) to `registry`, which the node pulls from; the image
/// reference to give [`probe`].
pub async fn push_probe_image(registry: &Registry) -> String {
    let image = ImageBuilder::busybox()
        .expect("the busybox image")
        .build()
        .expect("build");
    registry
        .push_image(PROBE_IMAGE_PATH, &image)
        .await
        .expect("push the probe image");
    format!("{}/{PROBE_IMAGE_PATH}", registry.host())
}

/// Runs a probe pod named `name` with `labels` in `namespace`, has it try every target, and
/// returns which opened (`true`) and which did not, by target name. The pod is deleted after.
pub async fn probe(
    cluster: &Cluster,
    namespace: &str,
    image: &str,
    name: &str,
    labels: BTreeMap<&str, &str>,
    targets: &[&Target],
) -> BTreeMap<String, bool> {
    let client = cluster.api().client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let owner = owners
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("{name}-owner")}}))
                .expect("configmap"),
        )
        .await
        .expect("the probe's owner ConfigMap");
    let mut script = String::from(
        "probe() { timeout 8 nc -w 3 \"$1\" \"$2\" </dev/null >/dev/null 2>&1; \
         if [ $? -eq 1 ]; then echo \"closed $1:$2\"; else echo \"open $1:$2\"; fi; }\n",
    );
    for target in targets {
        script.push_str(&format!("probe {} {}\n", target.address, target.port));
    }
    script.push_str("echo done\nexec sleep 3600\n");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": format!("{name}-owner"),
                "uid": owner.metadata.uid.expect("uid"), "controller": true
            }]
        },
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "probe",
                "image": image,
                "args": ["sh", "-c", script],
                // Never ready: a Service that selects these labels never sends it traffic.
                "readinessProbe": {"exec": {"command": ["/bin/busybox", "false"]}, "periodSeconds": 3600},
                "securityContext": {"runAsUser": 65532, "runAsNonRoot": true, "allowPrivilegeEscalation": false}
            }]
        }
    }))
    .expect("probe pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create the probe pod");
    let log = wait_for_log(&pods, name, targets.len()).await;
    let _ = pods.delete(name, &DeleteParams::default()).await;
    let _ = owners
        .delete(&format!("{name}-owner"), &DeleteParams::default())
        .await;
    wait_until_gone(&pods, name).await;
    let mut results = BTreeMap::new();
    for target in targets {
        let open = log.lines().any(|line| line == format!("open {}", target.key()));
        let closed = log.lines().any(|line| line == format!("closed {}", target.key()));
        assert!(
            open || closed,
            "the probe {name} did not try {}:\n{log}",
            target.key()
        );
        results.insert(target.name.clone(), open);
    }
    results
}

/// The probe's log once it printed `done`.
async fn wait_for_log(pods: &Api<Pod>, name: &str, targets: usize) -> String {
    // Each target takes at most the 8 s timeout; image pulls and start take some more.
    let deadline = Instant::now() + Duration::from_secs(90 + 8 * targets as u64);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(log) = pods.logs(name, &LogParams::default()).await {
            if log.lines().any(|line| line == "done") {
                return log;
            }
            last = log;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the probe {name} did not finish; its log so far:\n{last}");
}

async fn wait_until_gone(pods: &Api<Pod>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let remaining = pods
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map(|list| list.items.len())
            .unwrap_or(1);
        if remaining == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Labels as the chart gives them to `component`'s pods.
pub fn component_labels(component: &'static str) -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("app.kubernetes.io/name", "coder"),
        ("app.kubernetes.io/component", component),
    ])
}

/// Fails with every difference between what opened and what the port table allows.
pub fn assert_reachability(who: &str, results: &BTreeMap<String, bool>, expected: &[(&Target, bool)]) {
    let mut wrong = Vec::new();
    for (target, open) in expected {
        let got = results.get(&target.name).copied();
        if got != Some(*open) {
            wrong.push(format!(
                "  {} ({}): {} but the port table says {}",
                target.name,
                target.key(),
                match got {
                    Some(true) => "open",
                    Some(false) => "closed",
                    None => "not tried",
                },
                if *open { "open" } else { "closed" }
            ));
        }
    }
    assert!(wrong.is_empty(), "from {who}:\n{}", wrong.join("\n"));
}
