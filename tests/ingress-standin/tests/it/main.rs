//! The stand-in images on the real node, deployed the way the chart deploys ingress-nginx
//! (70-ingress-nginx.yaml: same args, ServiceAccounts, RBAC, securityContext, certgen jobs), in
//! this test's own namespace, in front of the workspace stand-in. The test reaches the
//! controller's Service by its cluster IP from the host.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_testenv::dependency_images::{ingress_certgen_image, ingress_controller_image, workspace_image};
use coder_testenv::{Cluster, Registry, RegistryFlavour, TestCa};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const NS: &str = "ingress-test";
const NAME: &str = "ingress";
const CLUSTER_NAME: &str = "ingress-ingress-test";
const CLASS: &str = "test-nginx";
const HOST: &str = "app.ingress.test";

async fn create<K>(client: &Client, object: Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
}

async fn create_cluster_scoped<K>(client: &Client, object: Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    Api::<K>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
}

/// Polls `check` every 500 ms for up to `limit`; fails with the pods' states.
async fn wait_until<F, Fut>(cluster: &Cluster, what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "{what}: not within {limit:?}\n{}\nlogs in {}",
        cluster.describe_pods(NS).await,
        cluster.log_dir().display()
    );
}

/// The chart's objects for the controller and its certificate jobs (70-ingress-nginx.yaml with
/// `ns` = this test's namespace), the controller's and certgen's images given.
async fn deploy_the_chart_shape(client: &Client, controller_image: &str, certgen_image: &str) {
    let labels = json!({"app.kubernetes.io/name": "coder", "app.kubernetes.io/component": "ingress-nginx"});
    create::<ServiceAccount>(client, json!({"metadata": {"name": NAME}})).await;
    create::<ServiceAccount>(client, json!({"metadata": {"name": format!("{NAME}-admission")}})).await;
    create::<ConfigMap>(client, json!({
        "metadata": {"name": format!("{NAME}-controller")},
        "data": {"allow-snippet-annotations": "false", "proxy-read-timeout": "3600", "proxy-send-timeout": "3600"},
    }))
    .await;
    create_cluster_scoped::<ClusterRole>(client, json!({
        "metadata": {"name": CLUSTER_NAME},
        "rules": [
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
        ],
    }))
    .await;
    create_cluster_scoped::<ClusterRoleBinding>(
        client,
        json!({
            "metadata": {"name": CLUSTER_NAME},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}],
        }),
    )
    .await;
    create::<Role>(client, json!({
        "metadata": {"name": NAME},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["configmaps", "pods", "secrets", "endpoints", "services"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }))
    .await;
    create::<RoleBinding>(
        client,
        json!({
            "metadata": {"name": NAME},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}],
        }),
    )
    .await;
    create::<Role>(
        client,
        json!({
            "metadata": {"name": format!("{NAME}-admission")},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}],
        }),
    )
    .await;
    create::<RoleBinding>(client, json!({
        "metadata": {"name": format!("{NAME}-admission")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{NAME}-admission")},
        "subjects": [{"kind": "ServiceAccount", "name": format!("{NAME}-admission"), "namespace": NS}],
    }))
    .await;
    create_cluster_scoped::<ClusterRole>(client, json!({
        "metadata": {"name": format!("{CLUSTER_NAME}-admission")},
        "rules": [{
            "apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [format!("{CLUSTER_NAME}-admission")], "verbs": ["get", "update"],
        }],
    }))
    .await;
    create_cluster_scoped::<ClusterRoleBinding>(client, json!({
        "metadata": {"name": format!("{CLUSTER_NAME}-admission")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{CLUSTER_NAME}-admission")},
        "subjects": [{"kind": "ServiceAccount", "name": format!("{NAME}-admission"), "namespace": NS}],
    }))
    .await;
    create::<Service>(
        client,
        json!({
            "metadata": {"name": format!("{NAME}-controller")},
            "spec": {
                "type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": labels,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                ],
            },
        }),
    )
    .await;
    create::<Service>(client, json!({
        "metadata": {"name": format!("{NAME}-controller-admission")},
        "spec": {"type": "ClusterIP", "selector": labels, "ports": [{"name": "webhook", "port": 443, "targetPort": "webhook"}]},
    }))
    .await;
    create_cluster_scoped::<IngressClass>(
        client,
        json!({
            "metadata": {"name": CLASS},
            "spec": {"controller": format!("k8s.io/{CLUSTER_NAME}")},
        }),
    )
    .await;
    create_cluster_scoped::<ValidatingWebhookConfiguration>(client, json!({
        "metadata": {"name": format!("{CLUSTER_NAME}-admission")},
        "webhooks": [{
            "name": "validate.nginx.ingress.kubernetes.io",
            "matchPolicy": "Equivalent",
            "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
            "clientConfig": {"service": {"namespace": NS, "name": format!("{NAME}-controller-admission"), "path": "/networking/v1/ingresses"}},
        }],
    }))
    .await;
    for job in ["create", "patch"] {
        let args: Vec<String> = if job == "create" {
            vec![
                "create".to_owned(),
                format!(
                    "--host={NAME}-controller-admission,{NAME}-controller-admission.$(POD_NAMESPACE).svc"
                ),
                "--namespace=$(POD_NAMESPACE)".to_owned(),
                format!("--secret-name={NAME}-admission"),
            ]
        } else {
            vec![
                "patch".to_owned(),
                format!("--webhook-name={CLUSTER_NAME}-admission"),
                "--namespace=$(POD_NAMESPACE)".to_owned(),
                "--patch-mutating=false".to_owned(),
                format!("--secret-name={NAME}-admission"),
                "--patch-failure-policy=Ignore".to_owned(),
            ]
        };
        create::<Job>(client, json!({
            "metadata": {"name": format!("{NAME}-admission-{job}")},
            "spec": {
                "backoffLimit": 6,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "coder", "app.kubernetes.io/component": "ingress-nginx-admission"}},
                    "spec": {
                        "serviceAccountName": format!("{NAME}-admission"),
                        "restartPolicy": "OnFailure",
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": job,
                            "image": certgen_image,
                            "args": args,
                            "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        }],
                    },
                },
            },
        }))
        .await;
    }
    create::<Deployment>(client, json!({
        "metadata": {"name": format!("{NAME}-controller")},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "terminationGracePeriodSeconds": 300,
                    "containers": [{
                        "name": "controller",
                        "image": controller_image,
                        "args": [
                            "/nginx-ingress-controller",
                            format!("--publish-service=$(POD_NAMESPACE)/{NAME}-controller"),
                            format!("--election-id={NAME}-leader"),
                            format!("--controller-class=k8s.io/{CLUSTER_NAME}"),
                            format!("--ingress-class={CLASS}"),
                            format!("--configmap=$(POD_NAMESPACE)/{NAME}-controller"),
                            "--watch-namespace=$(POD_NAMESPACE)",
                            "--validating-webhook=:8443",
                            "--validating-webhook-certificate=/usr/local/certificates/cert",
                            "--validating-webhook-key=/usr/local/certificates/key",
                        ],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "LD_PRELOAD", "value": "/usr/local/lib/libmimalloc.so"},
                        ],
                        "ports": [
                            {"name": "http", "containerPort": 80, "protocol": "TCP"},
                            {"name": "https", "containerPort": 443, "protocol": "TCP"},
                            {"name": "webhook", "containerPort": 8443, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 10254}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 10254}, "periodSeconds": 10, "failureThreshold": 5},
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 101, "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        },
                        "volumeMounts": [{"name": "webhook-cert", "mountPath": "/usr/local/certificates/", "readOnly": true}],
                    }],
                    "volumes": [{"name": "webhook-cert", "secret": {"secretName": format!("{NAME}-admission")}}],
                },
            },
        },
    }))
    .await;
}

/// The app's Ingress: `paths` on [`HOST`] to the backend, TLS from `app-tls`.
fn app_ingress(paths: &[&str]) -> Ingress {
    let paths: Vec<Value> = paths
        .iter()
        .map(|path| json!({"path": path, "pathType": "Prefix", "backend": {"service": {"name": "backend", "port": {"number": 80}}}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "app", "namespace": NS},
        "spec": {
            "ingressClassName": CLASS,
            "tls": [{"secretName": "app-tls", "hosts": [HOST]}],
            "rules": [{"host": HOST, "http": {"paths": paths}}],
        },
    }))
    .expect("an Ingress")
}

/// The uids and effective capabilities (`CapEff`, hex) of the host's processes named `name`.
fn processes_named(name: &str) -> Vec<(u32, u32, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map(|value| value.trim().to_owned())
                .unwrap_or_default()
        };
        if field("Name:") != name {
            continue;
        }
        let uids: Vec<u32> = field("Uid:")
            .split_whitespace()
            .filter_map(|uid| uid.parse().ok())
            .collect();
        let parent = field("PPid:");
        let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
        found.push((
            uids.first().copied().unwrap_or(u32::MAX),
            uids.get(1).copied().unwrap_or(u32::MAX),
            field("CapEff:"),
            parent_name.trim().to_owned(),
        ));
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_shaped_controller_routes_tls_redirects_websockets_and_follows_changes() {
    let (cluster, registry) = tokio::join!(Cluster::start(), Registry::start(RegistryFlavour::Plain));
    let cluster = cluster.expect("start the cluster");
    let registry = registry.expect("start the registry");
    cluster
        .trust_plain_http_registry(&registry.host())
        .expect("trust the registry");
    let images = [
        (
            "ingress-nginx/controller:standin",
            ingress_controller_image().expect("controller image"),
        ),
        (
            "ingress-nginx/kube-webhook-certgen:standin",
            ingress_certgen_image().expect("certgen image"),
        ),
        (
            "coder/workspace:standin",
            workspace_image().expect("workspace image"),
        ),
    ];
    let mut pinned = Vec::new();
    for (reference, image) in &images {
        let digest = registry.push_image(reference, image).await.expect("push");
        let repository = reference.split(':').next().unwrap_or_default();
        pinned.push(format!("{}/{repository}@{digest}", registry.host()));
    }
    let client = cluster.api().client().await.expect("client");
    create_cluster_scoped::<Namespace>(
        &client,
        json!({
            "metadata": {"name": NS, "labels": {"kubernetes.io/metadata.name": NS}},
        }),
    )
    .await;

    // The backend (workspace stand-in: HTTP and WebSocket echo on 13337) and the TLS Secret.
    create::<Deployment>(
        &client,
        json!({
            "metadata": {"name": "backend"},
            "spec": {
                "selector": {"matchLabels": {"app": "backend"}},
                "template": {
                    "metadata": {"labels": {"app": "backend"}},
                    "spec": {"containers": [{"name": "workspace", "image": pinned[2],
                        "readinessProbe": {"tcpSocket": {"port": 13337}, "periodSeconds": 1}}]},
                },
            },
        }),
    )
    .await;
    create::<Service>(
        &client,
        json!({
            "metadata": {"name": "backend"},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 13337}]},
        }),
    )
    .await;
    let ca = TestCa::new().expect("CA");
    let dir = tempfile::tempdir().expect("dir");
    let files = ca
        .issue_server_cert_for(dir.path(), "app", &[HOST.to_owned()])
        .expect("certificate");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("read");
    create::<Secret>(
        &client,
        json!({
            "metadata": {"name": "app-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": read(&files.cert), "tls.key": read(&files.key)},
        }),
    )
    .await;

    deploy_the_chart_shape(&client, &pinned[0], &pinned[1]).await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let controller_ready = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/component=ingress-nginx"))
            .await
            .map(|list| {
                list.items.iter().any(|pod| {
                    pod.status
                        .iter()
                        .flat_map(|status| status.conditions.iter().flatten())
                        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
                })
            })
            .unwrap_or(false)
    };
    wait_until(
        &cluster,
        "the controller is Ready",
        Duration::from_secs(180),
        controller_ready,
    )
    .await;

    // The patch job wrote the create job's CA into the webhook, with failurePolicy Ignore.
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let admission = secrets
        .get(&format!("{NAME}-admission"))
        .await
        .expect("the admission Secret");
    let ca_from_job = admission
        .data
        .clone()
        .unwrap_or_default()
        .remove("ca")
        .expect("key ca")
        .0;
    assert!(String::from_utf8_lossy(&ca_from_job).contains("BEGIN CERTIFICATE"));
    wait_until(
        &cluster,
        "the webhook's caBundle is patched",
        Duration::from_secs(120),
        || async {
            webhooks
                .get(&format!("{CLUSTER_NAME}-admission"))
                .await
                .ok()
                .and_then(|configuration| configuration.webhooks)
                .and_then(|webhooks| webhooks.into_iter().next())
                .is_some_and(|webhook| {
                    webhook.client_config.ca_bundle.map(|bundle| bundle.0) == Some(ca_from_job.clone())
                        && webhook.failure_policy.as_deref() == Some("Ignore")
                })
        },
    )
    .await;

    // The webhook is reached by the API server through the patched CA, and refuses a path the
    // controller would not render (failurePolicy Ignore: an unreachable webhook would let it in).
    let mut bad = app_ingress(&["/app/"]);
    bad.metadata.name = Some("bad".to_owned());
    if let Some(rule) = bad
        .spec
        .as_mut()
        .and_then(|spec| spec.rules.as_mut())
        .and_then(|rules| rules.first_mut())
    {
        rule.host = Some("bad.ingress.test".to_owned());
        if let Some(path) = rule.http.as_mut().and_then(|http| http.paths.first_mut()) {
            path.path = Some("/bad{path".to_owned());
        }
    }
    // Until the webhook Service's endpoints reach kube-proxy, the call fails and is ignored:
    // an Ingress that slips through then is deleted and tried again.
    let refusal = std::sync::Mutex::new(String::new());
    wait_until(
        &cluster,
        "the webhook refuses an invalid path",
        Duration::from_secs(30),
        || async {
            match ingresses.create(&PostParams::default(), &bad).await {
                Ok(_) => {
                    let _ = ingresses.delete("bad", &Default::default()).await;
                    false
                }
                Err(error) => {
                    let message = error.to_string();
                    let denied =
                        message.contains("validate.nginx.ingress.kubernetes.io\" denied the request");
                    *refusal.lock().expect("lock") = message;
                    denied
                }
            }
        },
    )
    .await;
    let refusal = refusal.into_inner().expect("lock");
    assert!(refusal.contains("/bad{path"), "{refusal}");

    ingresses
        .create(&PostParams::default(), &app_ingress(&["/app/"]))
        .await
        .expect("the app Ingress");
    let controller_service: Api<Service> = Api::namespaced(client.clone(), NS);
    let service = controller_service
        .get(&format!("{NAME}-controller"))
        .await
        .expect("service");
    let cluster_ip: IpAddr = service
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("a cluster IP")
        .parse()
        .expect("an IP");
    let https = SocketAddr::new(cluster_ip, 443);
    let http = SocketAddr::new(cluster_ip, 80);
    let web = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA"))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(HOST, https)
        .resolve("unknown.ingress.test", http)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(HOST, http)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // HTTPS to the backend's page, once the controller has the Ingress.
    let page_url = format!("https://{HOST}/app/hello");
    wait_until(
        &cluster,
        "HTTPS answers the backend's page",
        Duration::from_secs(60),
        || async {
            match web.get(&page_url).send().await {
                Ok(response) if response.status() == 200 => response
                    .text()
                    .await
                    .is_ok_and(|body| body.contains("workspace stand-in") && body.contains("/app/hello")),
                _ => false,
            }
        },
    )
    .await;

    // Plain HTTP to a TLS host: 308 to HTTPS.
    let redirect = plain
        .get(format!("http://{HOST}/app/hello?x=1"))
        .send()
        .await
        .expect("HTTP");
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok()),
        Some(format!("https://{HOST}/app/hello?x=1").as_str())
    );
    // An unknown host: the default server's 404.
    let unknown = web
        .get("http://unknown.ingress.test/app/hello")
        .send()
        .await
        .expect("HTTP");
    assert_eq!(unknown.status(), 404);
    // A path the Ingress does not have: 404 too.
    let other_url = format!("https://{HOST}/other/page");
    assert_eq!(web.get(&other_url).send().await.expect("HTTPS").status(), 404);

    // A WebSocket through nginx (TLS, upgrade, HTTP/1.1 upstream) to the backend's echo.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.expect("CA certificate")).expect("add the CA");
    }
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let tcp = tokio::net::TcpStream::connect(https).await.expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
    let stream = tls.connect(server_name, tcp).await.expect("TLS");
    let (mut socket, response) = tokio_tungstenite::client_async(format!("wss://{HOST}/app/socket"), stream)
        .await
        .expect("the WebSocket handshake through nginx");
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("ping through nginx"))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(echoed.into_text().expect("text").as_str(), "ping through nginx");
    drop(socket);

    // The controller writes the load balancer's address into the Ingress's status.
    let address = cluster
        .load_balancer_address(NS, &format!("{NAME}-controller"))
        .await
        .expect("the load balancer's address");
    wait_until(
        &cluster,
        "the Ingress status has the load balancer's address",
        Duration::from_secs(30),
        || async {
            ingresses
                .get("app")
                .await
                .ok()
                .and_then(|ingress| ingress.status)
                .and_then(|status| status.load_balancer)
                .and_then(|balancer| balancer.ingress)
                .is_some_and(|entries| {
                    entries
                        .iter()
                        .any(|entry| entry.ip.as_deref() == Some(address.to_string().as_str()))
                })
        },
    )
    .await;

    // A changed Ingress takes effect without a restart.
    let controller_pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=ingress-nginx"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the controller pod");
    let pod_name = controller_pod.metadata.name.clone().expect("name");
    let mut changed = ingresses.get("app").await.expect("the Ingress");
    changed.spec = app_ingress(&["/app/", "/other/"]).spec;
    ingresses
        .replace("app", &PostParams::default(), &changed)
        .await
        .expect("update the Ingress");
    wait_until(
        &cluster,
        "the new path answers",
        Duration::from_secs(30),
        || async {
            web.get(&other_url)
                .send()
                .await
                .is_ok_and(|response| response.status() == 200)
        },
    )
    .await;
    let after = pods.get(&pod_name).await.expect("the same controller pod");
    let restarts: i32 = after
        .status
        .iter()
        .flat_map(|status| status.container_statuses.iter().flatten())
        .map(|status| status.restart_count)
        .sum();
    assert_eq!(restarts, 0, "the controller restarted");
    let logs = pods
        .logs(&pod_name, &LogParams::default())
        .await
        .expect("the controller's log");
    assert!(
        logs.contains("nginx reloaded; + app.ingress.test (tls) /other/"),
        "{logs}"
    );
    assert!(
        logs.contains("admission: refused ingress ingress-test/bad"),
        "{logs}"
    );
    eprintln!("--- the controller's log ---\n{logs}");

    // nginx binds 80 and 443 as uid 101, holding only cap_net_bind_service.
    let masters: Vec<_> = processes_named("nginx")
        .into_iter()
        .filter(|(_, _, _, parent)| parent.starts_with("nginx-ingress"))
        .collect();
    assert_eq!(
        masters.len(),
        1,
        "one nginx master under the controller: {masters:?}"
    );
    for (real, effective, capabilities, _) in &masters {
        assert_eq!((*real, *effective), (101, 101), "{masters:?}");
        assert_eq!(capabilities.as_str(), "0000000000000400", "{masters:?}");
    }
    let controllers = processes_named("nginx-ingress-c");
    assert!(
        !controllers.is_empty() && controllers.iter().all(|(uid, _, _, _)| *uid == 101),
        "{controllers:?}"
    );
}
