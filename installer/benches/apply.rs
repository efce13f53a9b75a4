//! Apply benchmark: `cargo benches -p coder-install --bench apply` prints figures, asserts nothing.
//!
//! Against a real kube-apiserver (etcd, loopback), in process through the library:
//! - rendering the whole platform chart (every object, default values);
//! - render + server-side apply of the whole platform into an empty namespace (target: ≤ 2 s);
//! - the same again when nothing changed (a dry run per object, no writes).
//!
//! - backup and restore of an external database (a real PostgreSQL, `BENCH_BACKUP_MB` of
//!   incompressible rows, 256 by default) through the library, against `pg_dump -Fc -f FILE` and
//!   `pg_restore` of that file into an empty database run by hand (the limit), MB/s of the
//!   database's size;
//!
//! Connected mode with a lock of made-up digests: apply never contacts a registry in connected
//! mode, so none is needed.

use std::time::{Duration, Instant};

use coder_bundle::Inputs;
use coder_bundle_spec::{BundleSpec, ImageLock};
use coder_deploy::apply::{ApplyOptions, render_and_write, render_for};
use coder_deploy::cluster::{ClusterOptions, connect};
use coder_deploy::release::{Release, ReleaseSource};
use coder_progress::Silent;
use coder_testenv::{KubeApiServer, Postgres};

const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run());
}

fn inputs() -> Inputs {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/coder");
    let names = [
        ("coder-service", "registry.example/coderenvs/coder-service:1.0.0"),
        ("postgres", "registry.example/library/postgres:13"),
        (
            "ingress-nginx-controller",
            "registry.example/ingress-nginx/controller:v1.11.2",
        ),
        (
            "ingress-nginx-certgen",
            "registry.example/ingress-nginx/kube-webhook-certgen:v1.4.3",
        ),
        ("workspace", "registry.example/codercom/enterprise-base:ubuntu"),
    ];
    let mut spec = "name: coder\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n".to_owned();
    let mut lock =
        "version: 1\nspec:\n  name: coder\n  version: 1.0.0\nlocked_at: 2026-11-28T00:00:00Z\nimages:\n"
            .to_owned();
    for (index, (name, reference)) in names.iter().enumerate() {
        spec.push_str(&format!("  - name: {name}\n    ref: {reference}\n"));
        lock.push_str(&format!(
            "  - name: {name}\n    ref: {reference}\n    digest: sha256:{}\n    media_type: application/vnd.oci.image.manifest.v1+json\n    size: 1000\n",
            index.to_string().repeat(64)
        ));
    }
    spec.push_str(&format!("charts:\n  - name: coder\n    path: {chart}\n"));
    Inputs {
        spec: BundleSpec::from_yaml(&spec, "bench spec").expect("spec"),
        lock: ImageLock::from_yaml(&lock, "bench lock").expect("lock"),
        spec_text: spec,
        lock_text: lock,
        spec_dir: Some(std::path::PathBuf::from("/")),
    }
}

fn options(cluster: &KubeApiServer, namespace: &str) -> ApplyOptions {
    ApplyOptions {
        namespace: namespace.to_owned(),
        cluster: ClusterOptions {
            kubeconfig: Some(cluster.kubeconfig_path().to_owned()),
            context: None,
        },
        values_files: Vec::new(),
        sets: Vec::new(),
        pull_credentials: None,
        dry_run: false,
        diff: false,
        wait: None,
    }
}

fn summary(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    println!(
        "{label:<48} median {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms",
        median.as_secs_f64() * 1e3,
        sorted[0].as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3
    );
}

async fn run() {
    let server = KubeApiServer::start().await.expect("API server");
    let release = Release::load(&ReleaseSource::Connected(Box::new(inputs()))).expect("release");
    let cluster = connect(&options(&server, "probe").cluster)
        .await
        .expect("connect");
    println!(
        "kube-apiserver {} on loopback; {ROUNDS} rounds each",
        cluster.version
    );

    let mut render = Vec::new();
    let mut objects = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        objects = render_for(&release, &options(&server, "bench"), cluster.pdb_api())
            .expect("render")
            .objects
            .len();
        render.push(started.elapsed());
    }
    summary(&format!("render ({objects} objects)"), &render);

    let mut fresh = Vec::new();
    let mut again = Vec::new();
    for round in 0..ROUNDS {
        let namespace = format!("bench-{round}");
        let started = Instant::now();
        let report = render_and_write(&cluster, &release, &options(&server, &namespace), &Silent)
            .await
            .expect("apply");
        fresh.push(started.elapsed());
        assert_eq!(report.revision, 1);
        let started = Instant::now();
        let report = render_and_write(&cluster, &release, &options(&server, &namespace), &Silent)
            .await
            .expect("re-apply");
        again.push(started.elapsed());
        assert_eq!(report.changed(), 0);
    }
    summary("render + server-side apply, empty namespace", &fresh);
    summary("re-apply, nothing changed", &again);
    let median = {
        let mut sorted = fresh.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    println!(
        "target: render + apply of the whole platform <= 2 s: {} ({:.2} s)",
        if median <= Duration::from_secs(2) {
            "met"
        } else {
            "NOT met"
        },
        median.as_secs_f64()
    );
    backup_and_restore(&server, &release, &cluster).await;
}

/// The median of `times`.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// The external database of the backup bench: PostgreSQL with the platform's schema and `mb`
/// MiB of random rows; its URL and the database's size in bytes.
async fn filled_database(postgres: &Postgres, mb: u64) -> (String, u64) {
    let url = postgres.create_database("platform").await.expect("database");
    let pool = coder_service::db::DbConfig::from_url(&url).pool().expect("pool");
    coder_service::db::migrate(&pool).await.expect("migrations");
    sqlx::raw_sql("CREATE TABLE bench_payload (id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL)")
        .execute(&pool)
        .await
        .expect("table");
    // 1 KiB of md5 output per row, different in every row: nothing for pg_dump to compress.
    sqlx::query(
        "INSERT INTO bench_payload (data) SELECT (SELECT decode(string_agg(md5(random()::text || row::text || part::text), ''), 'hex') \
         FROM generate_series(1, 64) AS part) FROM generate_series(1, $1) AS row",
    )
    .bind(i64::try_from(mb * 1024).expect("rows"))
    .execute(&pool)
    .await
    .expect("rows");
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size('platform')")
        .fetch_one(&pool)
        .await
        .expect("size");
    pool.close().await;
    (url, u64::try_from(size).unwrap_or_default())
}

/// Runs a PostgreSQL client program against the bench's server; panics unless it succeeds.
fn postgres_program(postgres: &Postgres, program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", postgres.port()),
            "--username=postgres",
        ])
        .args(args)
        .env("PGPASSWORD", postgres.password())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run a PostgreSQL client program");
    assert!(status.success(), "{program} {args:?} failed");
}

/// Backup and restore of an external database through the library, against `pg_dump` and
/// `pg_restore` by hand.
async fn backup_and_restore(
    server: &KubeApiServer,
    release: &Release,
    cluster: &coder_deploy::cluster::Cluster,
) {
    use coder_deploy::backup::archive::VerifiedBackup;
    use coder_deploy::backup::restore::{AfterRestore, restore};
    let mb: u64 = std::env::var("BENCH_BACKUP_MB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(256);
    let postgres = Postgres::start().await.expect("PostgreSQL");
    let (_, size) = filled_database(&postgres, mb).await;
    let namespace = "backup-bench";
    let mut options = options(server, namespace);
    options.sets = vec![
        "postgres.host=127.0.0.1".to_owned(),
        format!("postgres.port={}", postgres.port()),
        "postgres.user=postgres".to_owned(),
        "postgres.database=platform".to_owned(),
        "postgres.passwordSecret=external-db".to_owned(),
    ];
    render_and_write(cluster, release, &options, &Silent)
        .await
        .expect("apply");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "external-db" },
        "stringData": { "password": postgres.password() },
    }))
    .expect("Secret");
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.client.clone(), namespace)
        .create(&Default::default(), &secret)
        .await
        .expect("the password Secret");
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw.pgdump").display().to_string();
    let (mut backups, mut dumps, mut verifies, mut restores, mut pg_restores) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dump_bytes = 0;
    for round in 0..3 {
        let path = dir.path().join(format!("{round}.coder-backup"));
        let started = Instant::now();
        let report = coder_deploy::backup::backup(cluster, namespace, &path, &Silent)
            .await
            .expect("backup");
        backups.push(started.elapsed());
        dump_bytes = report.manifest.dump_bytes;
        let started = Instant::now();
        postgres_program(
            &postgres,
            "pg_dump",
            &["--format=custom", "--dbname=platform", &format!("--file={raw}")],
        );
        dumps.push(started.elapsed());

        let started = Instant::now();
        let verified = VerifiedBackup::open(&path).await.expect("verify");
        verifies.push(started.elapsed());
        let record = coder_deploy::record::RecordStore::new(cluster.client.clone(), namespace)
            .load_installed()
            .await
            .expect("record");
        let started = Instant::now();
        restore(
            cluster,
            &record,
            namespace,
            &verified,
            AfterRestore::ScaleBack,
            &Silent,
        )
        .await
        .expect("restore");
        restores.push(started.elapsed());
        postgres_program(
            &postgres,
            "psql",
            &["--dbname=postgres", "--command=DROP DATABASE IF EXISTS baseline"],
        );
        postgres_program(
            &postgres,
            "psql",
            &["--dbname=postgres", "--command=CREATE DATABASE baseline"],
        );
        let started = Instant::now();
        postgres_program(
            &postgres,
            "pg_restore",
            &[
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                "--dbname=baseline",
                &raw,
            ],
        );
        pg_restores.push(started.elapsed());
        std::fs::remove_file(&path).expect("remove the backup");
    }
    let rate = |time: Duration| size as f64 / 1e6 / time.as_secs_f64();
    println!(
        "backup/restore: external PostgreSQL 15, database {:.0} MB ({mb} MiB of random rows), dump {:.0} MB; 3 rounds, medians",
        size as f64 / 1e6,
        dump_bytes as f64 / 1e6
    );
    for (label, tool, limit) in [
        (
            "backup (pg_dump streamed, hashed, file)",
            median(&backups),
            median(&dumps),
        ),
        (
            "restore (beside, checked, swapped)",
            median(&restores),
            median(&pg_restores),
        ),
    ] {
        println!(
            "{label:<48} {:>7.1} MB/s ({:.2} s); by hand {:>7.1} MB/s ({:.2} s): {:.2}x",
            rate(tool),
            tool.as_secs_f64(),
            rate(limit),
            limit.as_secs_f64(),
            tool.as_secs_f64() / limit.as_secs_f64()
        );
    }
    println!(
        "verify (read whole, SHA-256)                     {:>7.1} MB/s of dump ({:.2} s)",
        dump_bytes as f64 / 1e6 / median(&verifies).as_secs_f64(),
        median(&verifies).as_secs_f64()
    );
}
