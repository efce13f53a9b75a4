//! `rollback` against a real API server does not trust what a revision's ConfigMap holds: it
//! renders the previous release again from its recorded inputs and checks them.

use std::io::{Read, Write};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::apply::{Platform, managed_objects, stdout_json};
use crate::world::{failure, success};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// Replaces `key` of revision `revision`'s ConfigMap with `bytes`, as someone with write access
/// to ConfigMaps in the namespace could.
async fn tamper(configmaps: &Api<ConfigMap>, revision: u64, key: &str, bytes: Vec<u8>) {
    let name = format!("coder-install-rev-{revision}");
    let mut map = configmaps.get(&name).await.expect("revision ConfigMap");
    map.binary_data
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), ByteString(bytes));
    configmaps
        .replace(&name, &PostParams::default(), &map)
        .await
        .expect("tamper");
}

async fn inputs(configmaps: &Api<ConfigMap>, revision: u64) -> Value {
    let map = configmaps
        .get(&format!("coder-install-rev-{revision}"))
        .await
        .expect("revision ConfigMap");
    let compressed = &map.binary_data.expect("binary data")["inputs.json.gz"].0;
    serde_json::from_slice(&gunzip(compressed)).expect("inputs JSON")
}

const PLANTED: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: planted-escalation
  labels: {app.kubernetes.io/managed-by: coder-install}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: ServiceAccount, name: default, namespace: coder}
";

#[tokio::test(flavor = "multi_thread")]
async fn rollback_renders_the_recorded_inputs_again_and_refuses_tampered_ones() {
    let platform = Platform::start().await;
    success(platform.run(platform.connected("apply", "coder", &[])));
    success(platform.run(platform.connected("apply", "coder", &["--set", "manager.replicas=2"])));
    let client = platform.client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "coder");
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());

    // Revision 1's stored objects are replaced by a cluster-admin binding: rollback renders
    // revision 1 from its inputs instead, so the planted object never reaches the cluster.
    tamper(&configmaps, 1, "manifests.yaml.gz", gzip(PLANTED.as_bytes())).await;
    let rollback = stdout_json(platform.run(&{
        let mut args = platform.target("rollback", "coder");
        args.extend(["--output".to_owned(), "json".to_owned()]);
        args
    }));
    assert_eq!(rollback["revision"], 3);
    assert!(
        bindings
            .get_opt("planted-escalation")
            .await
            .expect("get")
            .is_none(),
        "rollback applied a planted object"
    );
    let restored = managed_objects(&client, "coder").await;
    assert_eq!(restored["Deployment/coder-manager"]["spec"]["replicas"], 1);

    // Now the previous revision is 2. Tampered inputs are refused, naming what is wrong, and
    // nothing changes.
    let original = inputs(&configmaps, 2).await;
    let rollback_fails = |platform: &Platform| failure(platform.run(platform.target("rollback", "coder")));

    let mut evil_image = original.clone();
    evil_image["images"]["coder-service"] = Value::from(format!("evil.test/miner@sha256:{}", "e".repeat(64)));
    tamper(
        &configmaps,
        2,
        "inputs.json.gz",
        gzip(evil_image.to_string().as_bytes()),
    )
    .await;
    let text = rollback_fails(&platform);
    assert!(
        text.contains("do not check out") && text.contains("evil.test/miner"),
        "{text}"
    );

    let mut evil_chart = original.clone();
    let template = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: miner\n  namespace: {{ ns }}\nspec: {}\n---\n"
        .to_owned()
        + PLANTED;
    use base64::Engine as _;
    evil_chart["chart"]["templates/99-planted.yaml"] =
        Value::from(base64::engine::general_purpose::STANDARD.encode(template));
    tamper(
        &configmaps,
        2,
        "inputs.json.gz",
        gzip(evil_chart.to_string().as_bytes()),
    )
    .await;
    let text = rollback_fails(&platform);
    assert!(
        text.contains("DaemonSet miner is not a kind") && text.contains("binds ClusterRole cluster-admin"),
        "{text}"
    );

    let mut other_lock = original.clone();
    other_lock["lock"] = Value::from(format!(
        "{}\n# edited\n",
        original["lock"].as_str().unwrap_or_default()
    ));
    tamper(
        &configmaps,
        2,
        "inputs.json.gz",
        gzip(other_lock.to_string().as_bytes()),
    )
    .await;
    let text = rollback_fails(&platform);
    assert!(text.contains("the recorded lock hashes to"), "{text}");

    // A gzip bomb (64 MiB of spaces in about 64 KiB) is refused without being inflated.
    tamper(&configmaps, 2, "inputs.json.gz", gzip(&vec![b' '; 64 << 20])).await;
    let text = rollback_fails(&platform);
    assert!(text.contains("more than 8 MiB"), "{text}");

    let unchanged = managed_objects(&client, "coder").await;
    assert_eq!(
        unchanged["Deployment/coder-manager"]["metadata"]["resourceVersion"],
        restored["Deployment/coder-manager"]["metadata"]["resourceVersion"],
        "a refused rollback changes nothing"
    );
    assert!(
        bindings
            .get_opt("planted-escalation")
            .await
            .expect("get")
            .is_none()
    );

    // The untouched inputs roll back as before.
    tamper(
        &configmaps,
        2,
        "inputs.json.gz",
        gzip(original.to_string().as_bytes()),
    )
    .await;
    let again = stdout_json(platform.run(&{
        let mut args = platform.target("rollback", "coder");
        args.extend(["--output".to_owned(), "json".to_owned()]);
        args
    }));
    assert_eq!(again["revision"], 4);
    let back = managed_objects(&client, "coder").await;
    assert_eq!(back["Deployment/coder-manager"]["spec"]["replicas"], 2);
}
