//! `backup`, `restore`, the backup before a version change and `rollback --restore-data` against
//! an external database: a real PostgreSQL (this machine's `pg_dump` and `pg_restore` run
//! against it) and a real API server. The in-cluster database (the programs run in its pod
//! through `exec`) is tested on the real node (`real_node::data_rollback`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::Value;
use sqlx::PgPool;

use coder_testenv::Postgres;

use crate::apply::{Platform, stdout_json};
use crate::world::{failure, success};

/// The database the platform uses at the external server.
const DATABASE: &str = "platform";

/// The emails of the platform's users, in order.
async fn users(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT email FROM users ORDER BY email")
        .fetch_all(pool)
        .await
        .expect("users")
}

async fn add_user(pool: &PgPool, email: &str) {
    sqlx::query(
        "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $1, 'n', 'member', '$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA')",
    )
    .bind(email)
    .execute(pool)
    .await
    .expect("insert a user");
}

/// The namespace `coder` with the external database's password Secret.
async fn external_database_secret(client: &kube::Client, password: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("coder".to_owned()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .expect("namespace");
    Api::<Secret>::namespaced(client.clone(), "coder")
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("external-db".to_owned()),
                    ..ObjectMeta::default()
                },
                string_data: Some(BTreeMap::from([("password".to_owned(), password.to_owned())])),
                ..Secret::default()
            },
        )
        .await
        .expect("the external database's password Secret");
}

/// Runs `command` while the namespace's Deployments are marked available every half second:
/// simulated, as a kubelet would report the pods `restore` scales back up (the test API server
/// runs none), so that its wait ends.
async fn with_simulated_readiness<T>(client: &kube::Client, command: impl FnOnce() -> T) -> T {
    let marker = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                crate::apply::simulate_readiness(&client, "coder").await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    };
    let output = tokio::task::block_in_place(command);
    marker.abort();
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_database_is_backed_up_restored_and_rolled_back_with_its_data() {
    let (platform, postgres) = tokio::join!(Platform::start(), Postgres::start());
    let postgres = postgres.expect("PostgreSQL");
    let url = postgres.create_database(DATABASE).await.expect("database");
    let pool = coder_service::db::DbConfig::from_url(&url).pool().expect("pool");
    coder_service::db::migrate(&pool)
        .await
        .expect("the platform's migrations");
    let client = platform.client().await;
    external_database_secret(&client, postgres.password()).await;
    let port = format!("postgres.port={}", postgres.port());
    let database = format!("postgres.database={DATABASE}");
    let external = [
        "--set",
        "postgres.host=127.0.0.1",
        "--set",
        &port,
        "--set",
        "postgres.user=postgres",
        "--set",
        &database,
        "--set",
        "postgres.passwordSecret=external-db",
        "--output",
        "json",
    ];
    let kubeconfig = platform.text(platform.cluster.kubeconfig_path());
    let target = ["--namespace", "coder", "--kubeconfig", &kubeconfig];
    let run = |args: &[&str]| platform.run(args.iter().chain(target.iter()));

    let installed = stdout_json(platform.run(platform.connected("apply", "coder", &external)));
    assert!(
        installed.get("backup").is_none(),
        "a first install backs nothing up: {installed}"
    );
    add_user(&pool, "alice@example.com").await;
    add_user(&pool, "bob@example.com").await;

    // A backup: the file, its manifest, nothing partial.
    let file = platform.path("one.coder-backup");
    let file_text = platform.text(&file);
    let report: Value =
        serde_json::from_str(&success(run(&["backup", "-o", &file_text, "--output", "json"])))
            .expect("backup's JSON");
    assert_eq!(report["manifest"]["location"], "external", "{report}");
    assert_eq!(report["manifest"]["version"], "1.0.0", "{report}");
    assert_eq!(
        report["manifest"]["migrations"],
        serde_json::json!([1, 2, 3]),
        "{report}"
    );
    assert!(file.exists() && !Path::new(&format!("{file_text}.partial")).exists());

    // Restored over changed data: the backup's users; the replaced database kept; the
    // Deployments scaled back to their replicas.
    sqlx::query("DELETE FROM users WHERE email = 'bob@example.com'")
        .execute(&pool)
        .await
        .expect("delete");
    add_user(&pool, "carol@example.com").await;
    pool.close().await;
    let restored: Value = serde_json::from_str(&success(
        with_simulated_readiness(&client, || run(&["restore", &file_text, "--output", "json"])).await,
    ))
    .expect("restore's JSON");
    assert_eq!(restored["kept_as"], "platform_before_restore", "{restored}");
    let pool = coder_service::db::DbConfig::from_url(&url).pool().expect("pool");
    assert_eq!(users(&pool).await, ["alice@example.com", "bob@example.com"]);
    let kept = coder_service::db::DbConfig::from_url(url.replace(DATABASE, "platform_before_restore"))
        .pool()
        .expect("pool");
    assert_eq!(users(&kept).await, ["alice@example.com", "carol@example.com"]);
    kept.close().await;
    let manager = Api::<Deployment>::namespaced(client.clone(), "coder")
        .get("coder-manager")
        .await
        .expect("the manager");
    assert_eq!(manager.spec.and_then(|spec| spec.replicas), Some(1));

    // A version change backs up first, into --backup-dir, and says so.
    std::fs::write(platform.spec(), platform.spec_text("2.0.0")).expect("spec 2.0");
    platform.lock_spec();
    let backups = platform.path("backups");
    let mut upgrade = platform.connected("apply", "coder", &external);
    upgrade.extend(["--backup-dir".to_owned(), platform.text(&backups)]);
    let upgraded = stdout_json(platform.run(upgrade));
    let taken = upgraded["backup"]["path"]
        .as_str()
        .expect("the backup taken")
        .to_owned();
    assert!(taken.starts_with(&platform.text(&backups)), "{taken}");
    assert_eq!(upgraded["backup"]["version"], "1.0.0", "{upgraded}");
    add_user(&pool, "dave@example.com").await;

    // 1.0's backup is refused under 2.0, and nothing changes.
    let error = failure(run(&["restore", &file_text]));
    assert!(error.contains("taken from version 1.0.0"), "{error}");
    assert_eq!(users(&pool).await.len(), 3);
    pool.close().await;

    // Rolled back with the data: the users as they were before the upgrade.
    let rolled = stdout_json(run(&["rollback", "--restore-data", "--output", "json"]));
    assert_eq!(rolled["version"], "1.0.0", "{rolled}");
    let pool = coder_service::db::DbConfig::from_url(&url).pool().expect("pool");
    assert_eq!(users(&pool).await, ["alice@example.com", "bob@example.com"]);
    pool.close().await;

    // A backup that cannot reach the database leaves no file.
    drop(postgres);
    let unreachable = platform.text(&platform.path("unreachable.coder-backup"));
    let error = failure(run(&["backup", "-o", &unreachable]));
    assert!(
        error.contains("psql failed") || error.contains("pg_dump failed"),
        "{error}"
    );
    assert!(!Path::new(&unreachable).exists() && !Path::new(&format!("{unreachable}.partial")).exists());
}
