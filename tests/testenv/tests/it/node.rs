//! The real node: a pod pulls its image from a test registry over plain HTTP, gets a volume from
//! the provisioner stand-in, and serves a Service that a second pod finds by its DNS name
//! (dnsmasq stand-in) and reaches through kube-proxy; the test itself reaches the same Service
//! by its cluster IP. Nothing in it is simulated.

mod stand_ins;

use std::time::{Duration, Instant};

use coder_testenv::fixture::ImageBuilder;
use coder_testenv::{Cluster, Registry, RegistryFlavour};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::Api;
use kube::api::{LogParams, PostParams};
use serde_json::json;

/// A cluster (API server and node) and a plain-HTTP registry it trusts, holding busybox: the
/// image's reference.
async fn cluster_with_busybox() -> (Cluster, Registry, String) {
    let (cluster, registry) = tokio::join!(Cluster::start(), Registry::start(RegistryFlavour::Plain));
    let cluster = cluster.expect("start the cluster (API server and node)");
    let registry = registry.expect("start the registry");
    cluster
        .trust_plain_http_registry(&registry.host())
        .expect("trust the registry");
    let busybox = ImageBuilder::busybox().expect("busybox").build().expect("build");
    registry
        .push_image("testenv/busybox:1", &busybox)
        .await
        .expect("push");
    let image = format!("{}/testenv/busybox:1", registry.host());
    (cluster, registry, image)
}

async fn create<K>(api: &Api<K>, object: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object).await.expect("create");
}

/// Waits until `pod`'s phase is `phase`, or fails with every pod's state.
async fn wait_for_phase(cluster: &Cluster, pods: &Api<Pod>, pod: &str, ready: bool, phase: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(found) = pods.get(pod).await {
            let status = found.status.unwrap_or_default();
            let is_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True");
            if status.phase.as_deref() == Some(phase) && (!ready || is_ready) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "pod {pod} did not reach {phase}:\n{}\nlogs in {}",
        cluster.describe_pods("default").await,
        cluster.log_dir().display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_pulls_from_the_test_registry_gets_a_volume_and_serves_a_service_by_name() {
    let (cluster, _registry, image) = cluster_with_busybox().await;

    let client = cluster.api().client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    create(
        &claims,
        json!({
            "metadata": { "name": "data" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
        }),
    )
    .await;
    create(
        &services,
        json!({
            "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
        }),
    )
    .await;
    create(&pods, json!({
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "securityContext": { "runAsUser": 999, "runAsNonRoot": true },
            "containers": [{
                "name": "web",
                "image": image,
                "args": ["sh", "-c", "echo hello-from-the-volume > /data/index.html && exec httpd -f -p 8080 -h /data"],
                "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 },
            }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }],
        },
    }))
    .await;
    wait_for_phase(&cluster, &pods, "web", true, "Running").await;

    create(&pods, json!({
        "metadata": { "name": "client" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": image,
                "args": ["sh", "-c", "wget -q -O- http://web.default.svc.cluster.local/index.html && wget -q -O- http://web/index.html"],
            }],
        },
    }))
    .await;
    wait_for_phase(&cluster, &pods, "client", false, "Succeeded").await;
    let logs = pods
        .logs("client", &LogParams::default())
        .await
        .expect("the client's log");
    assert_eq!(logs, "hello-from-the-volume\nhello-from-the-volume\n");

    let service = services.get("web").await.expect("service");
    let cluster_ip = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("a cluster IP");
    assert!(cluster_ip.starts_with("198.19."), "{cluster_ip}");
    let page = reqwest::get(format!("http://{cluster_ip}/index.html"))
        .await
        .expect("the Service from the host")
        .text()
        .await
        .expect("page");
    assert_eq!(page, "hello-from-the-volume\n");
}
