//! The manager on a real node's API server: whom it trusts as a proxy follows the install's
//! dashboard and ingress controller pods as they really run and go (their addresses come from
//! the node's CNI, not from a test).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use coder_service::cli::ManagerArgs;
use coder_service::manager::Manager;
use coder_testenv::{Cluster, NODE_ADDRESS, PAUSE_IMAGE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::harness::eventually;

/// The selector the chart gives the manager (`CODER_TRUSTED_PROXY_PODS`).
const PROXY_PODS: &str =
    "app.kubernetes.io/name=coder,app.kubernetes.io/component in (dashboard,ingress-nginx)";
const WAIT: Duration = Duration::from_secs(120);

/// Starts a pause pod labelled as `component` and returns its address once it runs.
async fn running_pod(pods: &Api<Pod>, name: &str, component: &str) -> IpAddr {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": { "app.kubernetes.io/name": "coder", "app.kubernetes.io/component": component },
        },
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "containers": [{ "name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "Never" }],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    eventually(&format!("pod {name} to run"), WAIT, || async {
        let pod = pods.get(name).await.ok()?;
        let status = pod.status?;
        (status.phase.as_deref() == Some("Running"))
            .then_some(())
            .and(status.pod_ip)
            .and_then(|ip| ip.parse().ok())
    })
    .await
}

fn forwarded(chain: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(chain).expect("header"));
    headers
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manager_trusts_exactly_the_running_dashboard_and_ingress_pods_as_proxies() {
    let cluster = Cluster::start().await.expect("start the cluster");
    let client = cluster.api().client().await.expect("client");
    let postgres = coder_testenv::Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dashboard = running_pod(&pods, "coder-dashboard-1", "dashboard").await;
    let envproxy = running_pod(&pods, "coder-envproxy-1", "envproxy").await;

    let mut args = ManagerArgs::for_database(&url);
    args.namespace = "default".to_owned();
    args.trusted_proxy_pods = PROXY_PODS.to_owned();
    let manager = Manager::start(args.into(), Some(client))
        .await
        .expect("start the manager");
    let state = manager.state();
    eventually("the dashboard pod to be trusted", WAIT, || async {
        (state.proxy_pods.addresses() == [dashboard]).then_some(())
    })
    .await;

    // The dashboard names the client; a workspace-facing pod or the node itself cannot.
    let chain = forwarded("203.0.113.5");
    let client_ip: IpAddr = "203.0.113.5".parse().expect("address");
    assert_eq!(state.client_address(dashboard, &chain), client_ip);
    assert_eq!(state.client_address(envproxy, &chain), envproxy);
    let node = IpAddr::from(NODE_ADDRESS);
    assert_eq!(state.client_address(node, &chain), node);

    // A new ingress controller pod is trusted as it comes, a deleted dashboard pod no longer.
    let ingress = running_pod(&pods, "coder-ingress-nginx-1", "ingress-nginx").await;
    eventually("the ingress pod to be trusted", WAIT, || async {
        state.proxy_pods.addresses().contains(&ingress).then_some(())
    })
    .await;
    pods.delete("coder-dashboard-1", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the deleted dashboard pod to be forgotten", WAIT, || async {
        (state.proxy_pods.addresses() == [ingress]).then_some(())
    })
    .await;
    assert_eq!(state.client_address(dashboard, &chain), dashboard);
}
