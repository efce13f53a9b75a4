//! Apply benchmark: `cargo benches -p coder-install --bench apply` prints figures, asserts nothing.
//!
//! Against a real kube-apiserver (etcd, loopback), in process through the library:
//! - rendering the whole platform chart (every object, default values);
//! - render + server-side apply of the whole platform into an empty namespace (target: ≤ 2 s);
//! - the same again when nothing changed (a dry run per object, no writes).
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
use coder_testenv::KubeApiServer;

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
}
