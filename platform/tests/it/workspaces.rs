//! Workspaces against a real kube-apiserver: objects, ports and labels, the state watch driven
//! by simulated readiness, stop/start/rebuild/delete, isolation between members, bad input.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::Api;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Env, Options, assert_error, eventually};

const IMAGE: &str = "codercom/enterprise-base:ubuntu";
const WAIT: Duration = Duration::from_secs(20);

async fn wait_for_state(env: &Env, token: &str, id: &str, expected: &str) -> Value {
    eventually(&format!("workspace {id} to be {expected}"), WAIT, || async {
        let (status, workspace) = env.get(&format!("/api/v0/workspaces/{id}"), token).await;
        (status == StatusCode::OK && workspace["state"] == expected).then_some(workspace)
    })
    .await
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments
        .get(name)
        .await
        .expect("get deployment")
        .spec
        .and_then(|spec| spec.replicas)
}

#[tokio::test]
async fn a_workspace_lives_as_deployment_service_and_volume_through_its_lifecycle() {
    let env = Env::with_kubernetes().await;
    let (owner_id, member) = env.create_member("dev@example.com").await;
    let (status, workspace) = env
        .post(
            "/api/v0/workspaces",
            &member,
            json!({ "name": "dev", "image": IMAGE, "cpu_cores": 2, "memory_gb": 4, "disk_gb": 20 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workspace}");
    assert_eq!(workspace["state"], "CREATING");
    let id = workspace["id"].as_str().expect("id").to_owned();
    let name = format!("ws-{id}");

    let client = env.kube_client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");

    let deployment = deployments.get(&name).await.expect("deployment exists");
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("com.coder.resource").map(String::as_str), Some("true"));
    assert_eq!(labels.get("com.coder.workspace.owner"), Some(&owner_id));
    assert_eq!(labels.get("com.coder.workspace.id"), Some(&id));
    let managers: Vec<_> = deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, ["coder-manager"]);
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some(IMAGE));
    let mut container_ports: Vec<i32> = pod.containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    container_ports.sort_unstable();
    assert_eq!(container_ports, [12212, 13337, 26337]);
    // The owner's code gets no Kubernetes credentials and no privileges, as stored by the
    // API server.
    assert_eq!(pod.automount_service_account_token, Some(false));
    let pod_security = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security.seccomp_profile.map(|profile| profile.type_),
        Some("RuntimeDefault".to_owned())
    );
    let container_security = pod.containers[0]
        .security_context
        .clone()
        .expect("securityContext");
    assert_eq!(container_security.allow_privilege_escalation, Some(false));
    assert_eq!(container_security.privileged, Some(false));
    assert_eq!(
        container_security.capabilities.and_then(|caps| caps.drop),
        Some(vec!["ALL".to_owned()])
    );
    // Its scratch space on the node is bounded (the kubelet evicts it beyond the limit), and
    // what the scheduler reserves for it is small.
    let resources = pod.containers[0].resources.clone().expect("resources");
    let quantity =
        |map: Option<
            std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| { map.and_then(|map| map.get("ephemeral-storage").map(|quantity| quantity.0.clone())) };
    assert_eq!(quantity(resources.limits), Some("10Gi".to_owned()));
    assert_eq!(quantity(resources.requests), Some("256Mi".to_owned()));

    let service = services.get(&name).await.expect("service exists");
    let mut ports: Vec<i32> = service
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [12212, 13337, 26337]);
    let volume = volumes.get(&format!("{name}-home")).await.expect("volume exists");
    let storage = volume
        .spec
        .and_then(|s| s.resources)
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(storage.map(|q| q.0), Some("20Gi".to_owned()));

    // No kubelet runs: simulate readiness, and the watch records ON.
    coder_testenv::mark_deployment_available(&client, "default", &name)
        .await
        .expect("simulate readiness");
    wait_for_state(&env, &member, &id, "ON").await;
    // Starting a running workspace changes nothing and says so at once.
    let (status, again) = env
        .post(&format!("/api/v0/workspaces/{id}/start"), &member, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["state"], "ON");

    let (status, stopped) = env
        .post(&format!("/api/v0/workspaces/{id}/stop"), &member, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(replicas(&deployments, &name).await, Some(0));
    wait_for_state(&env, &member, &id, "OFF").await;
    let (status, again) = env
        .post(&format!("/api/v0/workspaces/{id}/stop"), &member, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        again["state"], "OFF",
        "stopping a stopped workspace settles at once"
    );

    let (status, _) = env
        .post(&format!("/api/v0/workspaces/{id}/start"), &member, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replicas(&deployments, &name).await, Some(1));
    let (_, starting) = env.get(&format!("/api/v0/workspaces/{id}"), &member).await;
    assert_eq!(
        starting["state"], "STARTING",
        "not ON before the new generation is available"
    );
    coder_testenv::mark_deployment_available(&client, "default", &name)
        .await
        .expect("simulate readiness");
    wait_for_state(&env, &member, &id, "ON").await;

    let (status, rebuilt) = env
        .post(&format!("/api/v0/workspaces/{id}/rebuild"), &member, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rebuilt}");
    assert_eq!(rebuilt["state"], "CREATING");
    coder_testenv::mark_deployment_available(&client, "default", &name)
        .await
        .expect("simulate readiness");
    wait_for_state(&env, &member, &id, "ON").await;

    let (status, _) = env.delete(&format!("/api/v0/workspaces/{id}"), &member).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(deployments.get_opt(&name).await.expect("get").is_none());
    assert!(services.get_opt(&name).await.expect("get").is_none());
    // The claim keeps its `pvc-protection` finalizer until a controller-manager (absent here)
    // removes it: deleted means gone or marked for deletion.
    let volume = volumes.get_opt(&format!("{name}-home")).await.expect("get");
    assert!(volume.is_none_or(|volume| volume.metadata.deletion_timestamp.is_some()));
    let (status, body) = env.get(&format!("/api/v0/workspaces/{id}"), &member).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn members_cannot_see_or_touch_each_others_workspaces() {
    let env = Env::with_kubernetes().await;
    let (_, alice) = env.create_member("alice@example.com").await;
    let (_, bob) = env.create_member("bob@example.com").await;
    let (status, workspace) = env
        .post(
            "/api/v0/workspaces",
            &alice,
            json!({ "name": "secret", "image": IMAGE }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workspace}");
    let id = workspace["id"].as_str().expect("id");

    // Bob gets exactly what he would get for a workspace that does not exist.
    let (_, missing) = env.get("/api/v0/workspaces/ffffffffffffffffffffffff", &bob).await;
    for (status, body) in [
        env.get(&format!("/api/v0/workspaces/{id}"), &bob).await,
        env.post(&format!("/api/v0/workspaces/{id}/stop"), &bob, json!({}))
            .await,
        env.post(&format!("/api/v0/workspaces/{id}/rebuild"), &bob, json!({}))
            .await,
        env.delete(&format!("/api/v0/workspaces/{id}"), &bob).await,
    ] {
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(body, missing);
    }
    let (_, listed) = env.get("/api/v0/workspaces", &bob).await;
    assert_eq!(listed, json!([]));
    // The same name is Bob's to use: names are unique per owner.
    let (status, _) = env
        .post(
            "/api/v0/workspaces",
            &bob,
            json!({ "name": "secret", "image": IMAGE }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Admins see and act on all.
    let (_, all) = env.get("/api/v0/workspaces", &env.admin_token).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let (status, _) = env
        .post(
            &format!("/api/v0/workspaces/{id}/stop"),
            &env.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_state(&env, &alice, id, "OFF").await;
}

#[tokio::test]
async fn bad_workspace_input_is_refused() {
    let env = Env::start_with(Options {
        kubernetes: true,
        tweak: |args| args.allowed_images = vec![IMAGE.to_owned(), "registry.local/ws/*".to_owned()],
    })
    .await;
    let (_, member) = env.create_member("ws@example.com").await;
    let create = |body: Value| env.post("/api/v0/workspaces", &member, body);

    for name in [
        "",
        "Dev",
        "-dev",
        "dev-",
        "dev_1",
        "dev.1",
        &"a".repeat(64),
        "x'; DROP TABLE workspaces;--",
    ] {
        let (status, body) = create(json!({ "name": name, "image": IMAGE })).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    }
    let (status, body) = create(json!({ "name": "dev", "image": "evil.example/miner:latest" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "image_not_allowed");
    let (status, body) = create(json!({ "name": "dev", "image": "a b" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_image");
    let (status, body) = create(json!({ "name": "dev", "image": IMAGE, "cpu_cores": 0 })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_resources");
    let (status, body) = create(json!({ "name": "dev", "image": IMAGE, "privileged": true })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");

    let (status, _) = create(json!({ "name": "dev", "image": "registry.local/ws/go:1.22" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = create(json!({ "name": "dev", "image": IMAGE })).await;
    assert_error(status, &body, StatusCode::CONFLICT, "workspace_name_taken");
}

#[tokio::test]
async fn one_user_cannot_take_more_than_the_per_user_quota() {
    let env = Env::start_with(Options {
        kubernetes: true,
        tweak: |args| {
            args.workspace_quota.workspaces = 2;
            args.workspace_quota.cpu_cores = 3.0;
        },
    })
    .await;
    let (_, member) = env.create_member("greedy@example.com").await;
    let (_, other) = env.create_member("modest@example.com").await;
    let create = |token: String, name: &'static str, cpu: u32| {
        let env = &env;
        async move {
            env.post(
                "/api/v0/workspaces",
                &token,
                json!({ "name": name, "image": IMAGE, "cpu_cores": cpu, "memory_gb": 1, "disk_gb": 1 }),
            )
            .await
        }
    };

    let (status, body) = create(member.clone(), "first", 2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 2 + 2 cores is over the 3 allowed: refused, and nothing is made for it.
    let (status, body) = create(member.clone(), "second", 2).await;
    assert_error(status, &body, StatusCode::CONFLICT, "workspace_quota");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("CPU")),
        "{body}"
    );
    let (status, body) = create(member.clone(), "second", 1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Two workspaces is the most.
    let (status, body) = create(member.clone(), "third", 1).await;
    assert_error(status, &body, StatusCode::CONFLICT, "workspace_quota");
    let (_, listed) = env.get("/api/v0/workspaces", &member).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let deployments: Api<Deployment> = Api::namespaced(env.kube_client().await, "default");
    let names: Vec<String> = deployments
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|deployment| deployment.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The quota is per user: another member is not affected.
    let (status, body) = create(other, "first", 3).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
