//! Backups around an upgrade on the real node: 1.0 installed with a member and a workspace; the
//! upgrade to 2.0 (whose TEST-ONLY migration adds a column and a table) takes a backup of 1.0's
//! database; data is added under 2.0; damaged and mismatched backups are refused with nothing
//! changed; `rollback --restore-data` brings back 1.0's manager on 1.0's schema with 1.0's data.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{
    ACCESS_HOST, INGRESS_SERVICE, NAMESPACE, RealWorld, eventually, login, manager_image,
    platform_image_path, post, settle_front_door, try_login,
};
use crate::apply::push_schema_2_platform_image;
use crate::world::{coder_install, failure};

#[tokio::test(flavor = "multi_thread")]
async fn on_a_real_node_rollback_with_the_data_puts_back_the_older_schema_and_its_data() {
    let world = RealWorld::start().await;
    let license = world.airgap_license();
    let client = world.cluster.api().client().await.expect("client");
    world
        .tls
        .create_secrets(&client, NAMESPACE)
        .await
        .expect("the site's TLS Secrets");
    let installed = world.apply(&world.bundle("1.0.0"), &license, &[]).await;
    print_timings("install of 1.0 (its pods start on the node)", &installed);
    let load_balancer = world
        .cluster
        .load_balancer_address(NAMESPACE, INGRESS_SERVICE)
        .await
        .expect("the ingress controller's load-balancer address");
    let http = world
        .tls
        .http_client(std::net::IpAddr::V4(load_balancer), &[])
        .expect("a client that trusts the site's CA");
    let platform = format!("https://{ACCESS_HOST}");

    // Under 1.0: a member and a workspace of theirs.
    let seeded = world.member_with_workspace(&http, &platform).await;
    let (admin_password, member, id) = (seeded.admin_password, seeded.member, seeded.workspace);

    // The upgrade to the schema-changing 2.0.
    let first_image = manager_image(&client, NAMESPACE).await;
    push_schema_2_platform_image(
        &world.upstream,
        &platform_image_path("2.0.0"),
        &["--version", "2.0.0"],
    );
    let upgraded = world.apply(&world.bundle("2.0.0"), &license, &[]).await;
    print_timings("upgrade to 2.0 (a backup, a new manager image)", &upgraded);
    assert_ne!(manager_image(&client, NAMESPACE).await, first_image);
    settle_front_door(&http, &platform, &member).await;

    rollback_with_the_data(
        &world,
        &client,
        &upgraded,
        &first_image,
        Signed {
            http: &http,
            platform: &platform,
            admin_password: &admin_password,
            member: &member,
            workspace: &id,
        },
    )
    .await;
}

/// What the upgrade's checks hand over: the front door and who is signed in.
struct Signed<'a> {
    /// A client of the front door.
    pub http: &'a reqwest::Client,
    /// `https://ACCESS_HOST`.
    pub platform: &'a str,
    /// The admin's password.
    pub admin_password: &'a str,
    /// The member's session token, from before the upgrade.
    pub member: &'a str,
    /// The member's workspace, made before the upgrade.
    pub workspace: &'a str,
}

/// Runs `sql` with psql in the database's pod (the test's own look, not the tool's); its
/// unaligned output.
async fn psql(client: &kube::Client, database: &str, sql: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let params = AttachParams::default().container("postgres").stderr(false);
    let mut process = pods
        .exec(
            "coder-postgres-0",
            ["psql", "-XAt", "-U", "coder", "-d", database, "-c", sql],
            &params,
        )
        .await
        .expect("exec psql in the database's pod");
    let mut output = String::new();
    process
        .stdout()
        .expect("stdout")
        .read_to_string(&mut output)
        .await
        .expect("psql's output");
    process.join().await.expect("psql ends");
    output.trim().to_owned()
}

/// The applied migrations and whether `users.locale` (2.0's column) exists.
async fn schema(client: &kube::Client) -> (String, String) {
    let migrations = psql(
        client,
        "coder",
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations",
    )
    .await;
    let locale = psql(
        client,
        "coder",
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'locale'",
    )
    .await;
    (migrations, locale)
}

/// The manager Deployment's replicas.
async fn manager_replicas(client: &kube::Client) -> i32 {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get("coder-manager")
        .await
        .expect("the manager's Deployment")
        .spec
        .and_then(|spec| spec.replicas)
        .unwrap_or_default()
}

/// See the module's doc. `upgraded` is the 2.0 apply's JSON report; `first_image` 1.0's
/// manager image.
async fn rollback_with_the_data(
    world: &RealWorld,
    client: &kube::Client,
    upgraded: &Value,
    first_image: &str,
    signed: Signed<'_>,
) {
    let Signed {
        http,
        platform,
        admin_password,
        member,
        workspace,
    } = signed;
    let kubeconfig = world.cluster.api().kubeconfig_path().display().to_string();
    let target = ["--namespace", NAMESPACE, "--kubeconfig", &kubeconfig];

    // The upgrade took a backup of 1.0's database first, and the record names it.
    let taken = upgraded["backup"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("the upgrade names no backup: {upgraded}"))
        .to_owned();
    assert_eq!(upgraded["backup"]["version"], "1.0.0", "{upgraded}");
    assert!(
        taken.starts_with(&world.path("backups")),
        "not in --backup-dir: {taken}"
    );
    assert_eq!(schema(client).await, ("1,2,3,9001".to_owned(), "1".to_owned()));

    // Under 2.0, the admin adds a user.
    let admin = login(http, platform, "admin@coder.local", admin_password).await;
    post(
        http,
        &format!("{platform}/api/v0/users"),
        &admin,
        json!({ "email": "after@example.com", "name": "After", "password": "a long later password", "role": "member" }),
    )
    .await;
    login(http, platform, "after@example.com", "a long later password").await;

    // A backup of 2.0's database, by hand; it says which migrations it holds.
    let second = world.path("by-hand-2.0.coder-backup");
    let output = coder_install(
        ["backup", "-o", &second, "--output", "json"]
            .into_iter()
            .chain(target),
        &[],
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("backup failed:\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["manifest"]["version"], "2.0.0", "{report}");
    assert_eq!(
        report["manifest"]["migrations"],
        json!([1, 2, 3, 9001]),
        "{report}"
    );

    refusals(world, client, &taken, &second, &target).await;
    assert!(
        try_login(http, platform, "after@example.com", "a long later password")
            .await
            .is_ok(),
        "a refused restore changed the data"
    );

    // Rolled back with the data: 1.0's manager on 1.0's schema, with 1.0's data.
    let output = coder_install(
        [
            "rollback",
            "--restore-data",
            "--wait",
            "--timeout",
            "6m",
            "--output",
            "json",
        ]
        .into_iter()
        .chain(target),
        &[],
    );
    assert!(
        output.status.success(),
        "rollback --restore-data failed:\n{}\npods:\n{}",
        String::from_utf8_lossy(&output.stderr),
        world.cluster.describe_pods(NAMESPACE).await
    );
    let rolled: Value = serde_json::from_slice(&output.stdout).expect("rollback's JSON report");
    assert_eq!(rolled["version"], "1.0.0", "{rolled}");
    assert_eq!(manager_image(client, NAMESPACE).await, first_image);
    assert_eq!(schema(client).await, ("1,2,3".to_owned(), "0".to_owned()));
    assert_eq!(
        psql(
            client,
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'coder%' ORDER BY datname"
        )
        .await,
        "coder\ncoder_before_restore",
        "the replaced database is kept beside the restored one"
    );
    settle_front_door(http, platform, member).await;
    let workspace_answer = http
        .get(format!("{platform}/api/v0/workspaces/{workspace}"))
        .bearer_auth(member)
        .send()
        .await
        .expect("the workspace after the rollback");
    assert_eq!(
        workspace_answer.status().as_u16(),
        200,
        "the member's session and workspace from 1.0 are back"
    );
    eventually(
        "the member signs in after the rollback",
        std::time::Duration::from_secs(60),
        || try_login(http, platform, "dev@example.com", "a long member password"),
    )
    .await;
    let refused = try_login(http, platform, "after@example.com", "a long later password").await;
    assert!(
        refused.as_ref().is_err_and(|reason| reason.starts_with("401")),
        "the user added under 2.0 is not in 1.0's data: {refused:?}"
    );
}

/// Damaged and mismatched backups are refused, each with its reason, and change nothing: the
/// manager keeps its replicas and the database its schema.
async fn refusals(world: &RealWorld, client: &kube::Client, taken: &str, second: &str, target: &[&str]) {
    let replicas = manager_replicas(client).await;
    let mut bytes = std::fs::read(taken).expect("the upgrade's backup");
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x40;
    let damaged = world.path("damaged.coder-backup");
    std::fs::write(&damaged, &bytes).expect("a damaged copy");
    let run = |args: &[&str]| {
        failure(coder_install(
            args.iter().copied().chain(target.iter().copied()),
            &[],
        ))
    };

    let error = run(&["restore", &damaged]);
    assert!(
        error.contains("is not a usable backup") && error.contains("nothing was changed"),
        "{error}"
    );
    let error = run(&["rollback", "--restore-data", "--backup", &damaged]);
    assert!(error.contains("is not a usable backup"), "{error}");
    // 1.0's backup under 2.0, and 2.0's as the one rollback restores.
    let error = run(&["restore", taken]);
    assert!(
        error.contains("taken from version 1.0.0") && error.contains("rollback --restore-data"),
        "{error}"
    );
    let error = run(&["rollback", "--restore-data", "--backup", second]);
    assert!(
        error.contains("does not match") && error.contains("taken from version 2.0.0"),
        "{error}"
    );
    assert!(!Path::new(&format!("{second}.partial")).exists());
    assert_eq!(
        manager_replicas(client).await,
        replicas,
        "a refusal scaled the platform"
    );
    assert_eq!(schema(client).await, ("1,2,3,9001".to_owned(), "1".to_owned()));
}

/// Checks the `timings` of an `apply --wait --output json` report (every step of a bundle's
/// apply, in order, their sum within the total) and prints them, with the share of the tool's
/// own steps: `scripts/bench-apply-on-node.sh` collects these lines (a figure, not a goal the
/// test asserts).
fn print_timings(what: &str, report: &Value) {
    let timings = &report["timings"];
    let steps: Vec<(&str, f64)> = timings["steps"]
        .as_array()
        .expect("the report's timings")
        .iter()
        .map(|step| {
            let seconds = step["seconds"].as_f64().expect("seconds");
            assert!(seconds >= 0.0, "{timings}");
            (step["step"].as_str().expect("a step's name"), seconds)
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(name, _)| *name).collect();
    let expected = ["verify", "license", "preflight", "push"];
    assert_eq!(names[..expected.len()], expected, "{timings}");
    assert_eq!(
        names[names.len() - 3..],
        ["render", "server-side apply", "wait"],
        "{timings}"
    );
    let total = timings["total_seconds"].as_f64().expect("the total");
    let sum: f64 = steps.iter().map(|(_, seconds)| seconds).sum();
    assert!(
        sum <= total + 0.01,
        "the steps take longer than the whole: {timings}"
    );
    let own = sum - steps.last().map_or(0.0, |(_, wait)| *wait);
    let listed: Vec<String> = steps
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.2} s"))
        .collect();
    println!(
        "apply timings on the node, {what}: {}; total {total:.2} s; the tool's own steps {own:.2} s = {:.1}% of the apply (goal <= 10%)",
        listed.join(", "),
        100.0 * own / total
    );
}
