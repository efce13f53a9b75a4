use coder_testenv::KubeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const FIELD_MANAGER: &str = "coder-install";

#[tokio::test]
async fn server_side_apply_of_a_config_map_round_trips() {
    let server = KubeApiServer::start()
        .await
        .expect("start etcd and kube-apiserver");
    let client = server
        .client()
        .await
        .expect("load the kubeconfig the harness wrote");

    let version = client.apiserver_version().await.expect("version");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "20"));

    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "smoke", "labels": { "app.kubernetes.io/managed-by": "coder-install" } },
        "data": { "greeting": "hello" },
    });
    let params = PatchParams::apply(FIELD_MANAGER);
    let applied = config_maps
        .patch("smoke", &params, &Patch::Apply(&manifest))
        .await
        .expect("server-side apply");

    let read_back = config_maps.get("smoke").await.expect("get");
    assert_eq!(
        read_back
            .data
            .as_ref()
            .and_then(|data| data.get("greeting"))
            .map(String::as_str),
        Some("hello")
    );
    let managers: Vec<_> = read_back
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| (entry.manager.as_deref(), entry.operation.as_deref()))
        .collect();
    assert_eq!(managers, vec![(Some(FIELD_MANAGER), Some("Apply"))]);

    // The same apply again changes nothing: the resourceVersion stays put.
    let again = config_maps
        .patch("smoke", &params, &Patch::Apply(&manifest))
        .await
        .expect("re-apply");
    assert_eq!(again.metadata.resource_version, applied.metadata.resource_version);
}

#[tokio::test]
async fn deployment_readiness_is_simulated_by_patching_status() {
    let server = KubeApiServer::start()
        .await
        .expect("start etcd and kube-apiserver");
    let client = server.client().await.expect("client");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "127.0.0.1:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000000" }] },
            },
        },
    });
    deployments
        .patch(
            "web",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&manifest),
        )
        .await
        .expect("apply");

    // No kubelet or controller-manager runs: nothing ever becomes available on its own.
    let created = deployments.get("web").await.expect("get");
    assert_eq!(created.status.and_then(|status| status.available_replicas), None);

    coder_testenv::mark_deployment_available(&client, "default", "web")
        .await
        .expect("simulate readiness");
    let ready = deployments.get("web").await.expect("get");
    assert_eq!(ready.status.and_then(|status| status.available_replicas), Some(1));
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let server = KubeApiServer::start()
        .await
        .expect("start etcd and kube-apiserver");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let status = http
        .get(format!("{}/api/v1/namespaces", server.url()))
        .send()
        .await
        .expect("request")
        .status();
    // Anonymous requests are authenticated as system:anonymous, which RBAC forbids.
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
}
