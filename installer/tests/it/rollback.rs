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
        text.contains("do not check out") && text.contains("chart files were changed"),
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

/// The chart template an intruder plants: a ClusterRole allowed everything, bound to themself.
const ESCALATION: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: intruder-everything
rules:
  - {apiGroups: ['*'], resources: ['*'], verbs: ['*']}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: intruder-everything
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: intruder-everything}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: restricted}
";

/// Fills the built-in `view` and `edit` ClusterRoles' rules from the roles their aggregation
/// rules select (`edit` takes in `view`), as the controller-manager (which this API server runs
/// without) does.
async fn aggregate_edit_role(client: &kube::Client) {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use kube::api::{ListParams, Patch, PatchParams};
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for name in ["view", "edit"] {
        let role = roles.get(name).await.expect("a built-in ClusterRole");
        let mut rules = Vec::new();
        for selector in role
            .aggregation_rule
            .and_then(|rule| rule.cluster_role_selectors)
            .unwrap_or_default()
        {
            let labels = selector
                .match_labels
                .unwrap_or_default()
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            for role in roles
                .list(&ListParams::default().labels(&labels))
                .await
                .expect("list")
                .items
            {
                rules.extend(role.rules.unwrap_or_default());
            }
        }
        assert!(!rules.is_empty(), "the {name} role aggregates no rules");
        roles
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"rules": rules})),
            )
            .await
            .expect("aggregate");
    }
}

/// A client as user `restricted`, bound to the built-in `edit` ClusterRole in `namespace`.
async fn editor(platform: &Platform, namespace: &str) -> kube::Client {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let admin = platform.client().await;
    aggregate_edit_role(&admin).await;
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "restricted-edit", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "restricted"}],
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin, namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind edit");
    let kubeconfig = kube::config::Kubeconfig::read_from(platform.cluster.restricted_kubeconfig_path())
        .expect("restricted kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .expect("restricted config");
    kube::Client::try_from(config).expect("restricted client")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_account_cannot_plant_cluster_rbac_through_a_recorded_chart() {
    use base64::Engine as _;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let platform = Platform::start().await;
    success(platform.run(platform.connected("apply", "coder", &[])));
    success(platform.run(platform.connected("apply", "coder", &["--set", "manager.replicas=2"])));
    let admin = platform.client().await;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let planted = || async {
        (
            roles.get_opt("intruder-everything").await.expect("get").is_some(),
            bindings
                .get_opt("intruder-everything")
                .await
                .expect("get")
                .is_some(),
        )
    };

    // The intruder may edit ConfigMaps in the namespace, and nothing cluster-wide.
    let intruder = editor(&platform, "coder").await;
    let own_roles: Api<ClusterRole> = Api::all(intruder.clone());
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "intruder-everything"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }))
    .expect("role");
    assert!(
        own_roles.create(&PostParams::default(), &role).await.is_err(),
        "edit may not create ClusterRoles itself"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(intruder, "coder");
    let original = inputs(&configmaps, 1).await;

    // It adds the escalation to the chart recorded for the revision rollback renders.
    let planted_template = Value::from(base64::engine::general_purpose::STANDARD.encode(ESCALATION));
    let mut with_template = original.clone();
    with_template["chart"]["templates/99-planted.yaml"] = planted_template.clone();
    tamper(
        &configmaps,
        1,
        "inputs.json.gz",
        gzip(with_template.to_string().as_bytes()),
    )
    .await;
    let text = failure(platform.run(platform.target("rollback", "coder")));
    assert!(
        text.contains("rollback changed nothing") && text.contains("chart files were changed"),
        "{text}"
    );
    assert_eq!(
        planted().await,
        (false, false),
        "rollback planted cluster RBAC:\n{text}"
    );

    // It records the whole chart with its planted template and that chart's digest: not the
    // chart built into coder-install, so it is not rendered.
    let mut whole_chart = original.clone();
    let mut chart: serde_json::Map<String, Value> = coder_bundle::charts::embedded_chart("coder")
        .expect("chart")
        .into_iter()
        .map(|(path, bytes)| {
            (
                path,
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        })
        .collect();
    chart.insert("templates/99-planted.yaml".to_owned(), planted_template);
    whole_chart["chart"] = Value::Object(chart);
    if let Some(inputs) = whole_chart.as_object_mut() {
        inputs.remove("chart_digest");
    }
    tamper(
        &configmaps,
        1,
        "inputs.json.gz",
        gzip(whole_chart.to_string().as_bytes()),
    )
    .await;
    let text = failure(platform.run(platform.target("rollback", "coder")));
    assert!(
        text.contains("rollback changed nothing")
            && text.contains("built into this coder-install")
            && text.contains("coder-install-rev-1"),
        "{text}"
    );
    assert_eq!(
        planted().await,
        (false, false),
        "rollback planted cluster RBAC:\n{text}"
    );

    // It names another controller's IngressClass in the recorded values: the chart renders it
    // exactly, but it is not this install's, and rollback does not take it over.
    use k8s_openapi::api::networking::v1::IngressClass;
    let classes: Api<IngressClass> = Api::all(admin.clone());
    let theirs: IngressClass = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "site-nginx"},
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }))
    .expect("class");
    classes
        .create(&PostParams::default(), &theirs)
        .await
        .expect("the site's IngressClass");
    let mut other_class = original.clone();
    other_class["values"]["ingress"]["enable"] = Value::from(true);
    other_class["values"]["ingress"]["className"] = Value::from("site-nginx");
    tamper(
        &configmaps,
        1,
        "inputs.json.gz",
        gzip(other_class.to_string().as_bytes()),
    )
    .await;
    let text = failure(platform.run(platform.target("rollback", "coder")));
    assert!(
        text.contains("rollback changed nothing")
            && text.contains("IngressClass site-nginx exists and is not this install's"),
        "{text}"
    );
    let controller = classes
        .get("site-nginx")
        .await
        .expect("class")
        .spec
        .and_then(|spec| spec.controller);
    assert_eq!(
        controller.as_deref(),
        Some("k8s.io/ingress-nginx"),
        "the site's IngressClass was taken over"
    );

    // The untouched record rolls back.
    tamper(
        &configmaps,
        1,
        "inputs.json.gz",
        gzip(original.to_string().as_bytes()),
    )
    .await;
    let rollback = stdout_json(platform.run(&{
        let mut args = platform.target("rollback", "coder");
        args.extend(["--output".to_owned(), "json".to_owned()]);
        args
    }));
    assert_eq!(rollback["revision"], 3);
    let restored = managed_objects(&admin, "coder").await;
    assert_eq!(restored["Deployment/coder-manager"]["spec"]["replicas"], 1);
    assert_eq!(planted().await, (false, false));
}
