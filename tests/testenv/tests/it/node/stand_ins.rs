//! The node's NetworkPolicy and load-balancer stand-ins, on one real node: busybox pods serve
//! HTTP on two named ports, policies are created step by step, and each step's traffic is
//! tried for real.
//!
//! A pod's traffic is tried from inside that pod's network namespace (`nsenter --net`, the
//! host's bash and busybox): the packets leave the pod's own interface with the pod's address
//! and cross the bridge exactly as the pod's own would, while the test decides what to try and
//! when (the pods themselves only sleep or serve).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use coder_testenv::{Cluster, LOAD_BALANCER_CIDR, NODE_ADDRESS};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

/// How long a connection attempt may take before it counts as dropped.
const CONNECT_TIMEOUT_SECONDS: &str = "2";

async fn create<K>(api: &Api<K>, object: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object).await.expect("create");
}

/// A pod on the node: its name, address and network namespace.
struct TestPod {
    name: String,
    ip: Ipv4Addr,
    network: PathBuf,
}

/// Where the traffic of a try starts.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// The host (the node itself).
    Host,
    /// Inside a pod's network namespace.
    Pod(&'a TestPod),
}

impl Origin<'_> {
    fn name(&self) -> String {
        match self {
            Origin::Host => "the host".to_owned(),
            Origin::Pod(pod) => pod.name.clone(),
        }
    }

    /// `program args...`, run in this place's network namespace, with a time limit.
    fn command(&self, program: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command.arg("5");
        if let Origin::Pod(pod) = self {
            command
                .arg("nsenter")
                .arg(format!("--net={}", pod.network.display()));
        }
        command.args(program);
        command
    }

    /// Whether a TCP connection to `ip:port` opens within [`CONNECT_TIMEOUT_SECONDS`].
    fn connects(&self, ip: Ipv4Addr, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        self.command(&["timeout", CONNECT_TIMEOUT_SECONDS, "bash", "-c", &script])
            .output()
            .expect("run bash")
            .status
            .success()
    }

    /// The body of `http://ip:port/`, or `None` when the request fails.
    fn http_get(&self, ip: Ipv4Addr, port: u16) -> Option<String> {
        let url = format!("http://{ip}:{port}/");
        let output = self
            .command(&[
                "timeout",
                CONNECT_TIMEOUT_SECONDS,
                "busybox",
                "wget",
                "-q",
                "-O-",
                &url,
            ])
            .output()
            .expect("run busybox wget");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Whether the node's DNS (UDP, port 53) answers a name.
    fn resolves(&self, name: &str) -> bool {
        let node = Ipv4Addr::from(NODE_ADDRESS).to_string();
        self.command(&["busybox", "nslookup", name, &node])
            .output()
            .expect("run busybox nslookup")
            .status
            .success()
    }
}

/// Asserts that `from` reaches (or does not reach) `ip:port` over TCP.
fn expect_connect(step: &str, from: Origin<'_>, to: &str, ip: Ipv4Addr, port: u16, allowed: bool) {
    let connected = from.connects(ip, port);
    assert_eq!(
        connected,
        allowed,
        "{step}: {} -> {to} ({ip}:{port}) should be {}",
        from.name(),
        if allowed { "allowed" } else { "dropped" }
    );
}

/// Waits until `name` in `namespace` runs and is ready; returns its address and network.
async fn running_pod(cluster: &Cluster, pods: &Api<Pod>, namespace: &str, name: &str) -> TestPod {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(pod) = pods.get(name).await {
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True");
            if let (true, Some(ip)) = (ready, status.pod_ip.as_deref()) {
                let ip: Ipv4Addr = ip.parse().expect("an IPv4 pod address");
                let network = network_namespace_of(cluster, ip);
                return TestPod {
                    name: format!("{namespace}/{name}"),
                    ip,
                    network,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "pod {namespace}/{name} is not ready:\n{}\nlogs in {}",
        cluster.describe_pods(namespace).await,
        cluster.log_dir().display()
    );
}

/// The network namespace (a mount under the node's directory) whose `eth0` has `ip`.
fn network_namespace_of(cluster: &Cluster, ip: Ipv4Addr) -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let namespaces = mountinfo
        .lines()
        .filter(|line| line.contains(" nsfs "))
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(cluster.log_dir()));
    for namespace in namespaces {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", namespace.display()))
            .args(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .expect("run nsenter");
        if String::from_utf8_lossy(&output.stdout).contains(&format!(" {ip}/")) {
            return namespace;
        }
    }
    panic!(
        "no network namespace under {} holds {ip}",
        cluster.log_dir().display()
    );
}

/// A busybox pod serving its name over HTTP on 8080 (`http`) and 9090 (`metrics`).
fn server_pod(name: &str, app: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "server",
                "image": image,
                "args": ["sh", "-c", format!(
                    "mkdir -p /www && echo {name} > /www/index.html && httpd -p 9090 -h /www && exec httpd -f -p 8080 -h /www"
                )],
                "ports": [
                    { "name": "http", "containerPort": 8080 },
                    { "name": "metrics", "containerPort": 9090 },
                ],
                "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 },
            }],
        },
    })
}

fn policy(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({ "metadata": { "name": name }, "spec": spec })
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policies_and_load_balancers_are_enforced_and_served_on_the_real_node() {
    let (cluster, _registry, image) = super::cluster_with_busybox().await;
    let client = cluster.api().client().await.expect("client");

    // Namespace shop (team=red): web, client, other. Namespace lab (team=blue): client.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (namespace, team) in [("shop", "red"), ("lab", "blue")] {
        create(
            &namespaces,
            json!({ "metadata": { "name": namespace, "labels": { "team": team } } }),
        )
        .await;
    }
    let shop_pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let lab_pods: Api<Pod> = Api::namespaced(client.clone(), "lab");
    // The ServiceAccount admission plugin refuses pods until the namespace's account exists.
    for (pods, name, app) in [
        (&shop_pods, "web", "web"),
        (&shop_pods, "client", "client"),
        (&shop_pods, "other", "other"),
        (&lab_pods, "client", "client"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pod: Pod = serde_json::from_value(server_pod(name, app, &image)).expect("a pod");
        while let Err(error) = pods.create(&PostParams::default(), &pod).await {
            assert!(Instant::now() < deadline, "creating pod {name}: {error}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let web = running_pod(&cluster, &shop_pods, "shop", "web").await;
    let shop_client = running_pod(&cluster, &shop_pods, "shop", "client").await;
    let other = running_pod(&cluster, &shop_pods, "shop", "other").await;
    let lab_client = running_pod(&cluster, &lab_pods, "lab", "client").await;
    let api_server = cluster.api().addr();
    let node = Ipv4Addr::from(NODE_ADDRESS);
    assert_eq!(
        api_server.ip(),
        std::net::IpAddr::V4(node),
        "the API server listens on the node"
    );

    // No policy: everything is open.
    let step = "no policy";
    assert_eq!(
        Origin::Pod(&shop_client).http_get(web.ip, 8080).as_deref(),
        Some("web"),
        "{step}"
    );
    expect_connect(step, Origin::Pod(&lab_client), "web", web.ip, 8080, true);
    expect_connect(
        step,
        Origin::Pod(&lab_client),
        "the API server",
        node,
        api_server.port(),
        true,
    );

    let shop_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "shop");
    let lab_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "lab");

    // Default deny of ingress for every pod of shop.
    create(
        &shop_policies,
        policy(
            "default-deny",
            json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
        ),
    )
    .await;
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let step = "default deny";
    expect_connect(step, Origin::Pod(&shop_client), "web", web.ip, 8080, false);
    expect_connect(step, Origin::Pod(&lab_client), "web", web.ip, 8080, false);
    expect_connect(step, Origin::Pod(&web), "client", shop_client.ip, 9090, false);
    // The node itself is not policed (kubelet probes: the pods stay ready).
    assert_eq!(
        Origin::Host.http_get(web.ip, 8080).as_deref(),
        Some("web"),
        "{step}: from the host"
    );
    // A pod selected by no policy is open.
    expect_connect(step, Origin::Pod(&web), "lab's client", lab_client.ip, 8080, true);

    // web: 8080 from shop's clients (podSelector and a port number).
    create(
        &shop_policies,
        policy(
            "web-from-clients",
            json!({
                "podSelector": { "matchLabels": { "app": "web" } },
                "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "app": "client" } } }], "ports": [{ "port": 8080 }] }],
            }),
        ),
    )
    .await;
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let step = "podSelector and port";
    assert_eq!(
        Origin::Pod(&shop_client).http_get(web.ip, 8080).as_deref(),
        Some("web"),
        "{step}: shop/client -> web:8080 allowed, and the replies pass although shop/client's own ingress is denied"
    );
    expect_connect(step, Origin::Pod(&shop_client), "web", web.ip, 9090, false);
    expect_connect(step, Origin::Pod(&other), "web", web.ip, 8080, false);
    expect_connect(
        step,
        Origin::Pod(&lab_client),
        "web (another namespace)",
        web.ip,
        8080,
        false,
    );

    // web: the port named metrics from namespace lab, picked by the name label 1.21 adds.
    create(
        &shop_policies,
        policy(
            "web-metrics-from-lab",
            json!({
                "podSelector": { "matchExpressions": [{ "key": "app", "operator": "In", "values": ["web"] }] },
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "lab" } } }],
                    "ports": [{ "port": "metrics" }],
                }],
            }),
        ),
    )
    .await;
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let step = "namespaceSelector and named port";
    assert_eq!(
        Origin::Pod(&lab_client).http_get(web.ip, 9090).as_deref(),
        Some("web"),
        "{step}"
    );
    expect_connect(step, Origin::Pod(&lab_client), "web", web.ip, 8080, false);
    expect_connect(step, Origin::Pod(&shop_client), "web", web.ip, 9090, false);

    // web: 9090 from the pod network except shop/other (ipBlock with except).
    create(
        &shop_policies,
        policy(
            "web-metrics-from-block",
            json!({
                "podSelector": { "matchLabels": { "app": "web" } },
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "ipBlock": { "cidr": "198.18.0.0/24", "except": [format!("{}/32", other.ip)] } }],
                    "ports": [{ "port": 9090, "protocol": "TCP" }],
                }],
            }),
        ),
    )
    .await;
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let step = "ipBlock with except";
    expect_connect(step, Origin::Pod(&shop_client), "web", web.ip, 9090, true);
    expect_connect(step, Origin::Pod(&other), "web (excepted)", web.ip, 9090, false);
    expect_connect(step, Origin::Pod(&other), "web", web.ip, 8080, false);

    // lab's client: egress to DNS only; the node's API server port is closed to it.
    create(
        &lab_policies,
        policy(
            "client-egress-dns-only",
            json!({
                "podSelector": { "matchLabels": { "app": "client" } },
                "policyTypes": ["Egress"],
                "egress": [{ "ports": [{ "port": 53, "protocol": "UDP" }, { "port": 53, "protocol": "TCP" }] }],
            }),
        ),
    )
    .await;
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let step = "egress: DNS only";
    assert!(
        Origin::Pod(&lab_client).resolves("kubernetes.default.svc.cluster.local"),
        "{step}: lab/client resolves names at the node (UDP 53)"
    );
    expect_connect(
        step,
        Origin::Pod(&lab_client),
        "the API server",
        node,
        api_server.port(),
        false,
    );
    expect_connect(step, Origin::Pod(&lab_client), "web", web.ip, 9090, false);
    expect_connect(
        step,
        Origin::Pod(&shop_client),
        "the API server",
        node,
        api_server.port(),
        true,
    );
    // Ingress to lab's client is not restricted (Egress only): its replies and other pods pass.
    expect_connect(step, Origin::Pod(&web), "lab's client", lab_client.ip, 8080, true);

    // A LoadBalancer Service in front of web, externalTrafficPolicy Local.
    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    create(
        &services,
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "selector": { "app": "web" },
                "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
            },
        }),
    )
    .await;
    let address = cluster
        .load_balancer_address("shop", "web")
        .await
        .expect("a load-balancer address");
    let range: Vec<&str> = LOAD_BALANCER_CIDR.split('.').collect();
    assert!(
        address
            .to_string()
            .starts_with(&format!("{}.{}.{}.", range[0], range[1], range[2])),
        "{address} is in {LOAD_BALANCER_CIDR}"
    );
    let step = "load balancer";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut from_host = None;
    while from_host.is_none() && Instant::now() < deadline {
        // kube-proxy writes its rules for the address a moment after the status changes.
        from_host = Origin::Host.http_get(address, 80);
        if from_host.is_none() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(from_host.as_deref(), Some("web"), "{step}: from the host");
    assert_eq!(
        Origin::Pod(&shop_client).http_get(address, 80).as_deref(),
        Some("web"),
        "{step}: from a pod the policies allow"
    );
    // Policies see the pod behind the address (after kube-proxy's DNAT).
    expect_connect(step, Origin::Pod(&other), "the load balancer", address, 80, false);

    // The addresses are stable and freed with their Service.
    for name in ["second", "third"] {
        create(
            &services,
            json!({ "metadata": { "name": name }, "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] } }),
        )
        .await;
    }
    let second = cluster
        .load_balancer_address("shop", "second")
        .await
        .expect("second");
    let third = cluster
        .load_balancer_address("shop", "third")
        .await
        .expect("third");
    assert!(
        address != second && second != third && address != third,
        "{address} {second} {third}"
    );
    services
        .delete("second", &DeleteParams::default())
        .await
        .expect("delete second");
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    assert_eq!(
        cluster.load_balancer_address("shop", "web").await.expect("web"),
        address
    );
    assert_eq!(
        cluster
            .load_balancer_address("shop", "third")
            .await
            .expect("third"),
        third
    );
    create(
        &services,
        json!({ "metadata": { "name": "fourth" }, "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] } }),
    )
    .await;
    assert_eq!(
        cluster
            .load_balancer_address("shop", "fourth")
            .await
            .expect("fourth"),
        second,
        "the deleted Service's address is free again"
    );

    // With enforcement off, what the policies dropped passes.
    cluster
        .set_network_policy_enforcement(false)
        .await
        .expect("enforcement off");
    let step = "enforcement off";
    expect_connect(step, Origin::Pod(&other), "web", web.ip, 8080, true);
    expect_connect(step, Origin::Pod(&lab_client), "web", web.ip, 8080, true);
    expect_connect(
        step,
        Origin::Pod(&lab_client),
        "the API server",
        node,
        api_server.port(),
        true,
    );
    expect_connect(step, Origin::Pod(&other), "the load balancer", address, 80, true);

    // And on again.
    cluster
        .set_network_policy_enforcement(true)
        .await
        .expect("enforcement on");
    let step = "enforcement on again";
    expect_connect(step, Origin::Pod(&other), "web", web.ip, 8080, false);
    expect_connect(
        step,
        Origin::Pod(&lab_client),
        "the API server",
        node,
        api_server.port(),
        false,
    );
    expect_connect(step, Origin::Pod(&shop_client), "web", web.ip, 8080, true);

    // The watcher's log counts what each pod's policies dropped.
    cluster.sync_stand_ins().await.expect("the stand-ins follow");
    let log = std::fs::read_to_string(cluster.log_dir().join("watcher.log")).unwrap_or_default();
    assert!(
        log.contains("NetworkPolicy stand-in dropped")
            && log.contains("shop/web: ingress no NetworkPolicy allows"),
        "watcher.log:\n{log}"
    );
}
