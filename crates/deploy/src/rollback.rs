//! `rollback`: the previous revision rendered again from its recorded inputs, checked, and
//! deployed under the namespace's Lease like an apply.

use std::time::Instant;

use coder_report::Reporter;

use crate::apply::{ApplyOptions, ApplyReport, DeployTarget, deploy_locked};
use crate::cluster::{Cluster, ClusterOptions};
use crate::record::RecordStore;
use crate::revision::rerender;

/// How to roll back.
pub struct RollbackOptions {
    /// The namespace.
    pub namespace: String,
    /// The cluster.
    pub cluster: ClusterOptions,
    /// Change nothing; say what would change.
    pub dry_run: bool,
    /// Show a diff of every object that would change.
    pub diff: bool,
}

/// Rolls the namespace back to the revision before the installed one. The stored objects are not
/// trusted: the release is rendered again from the chart built into coder-install (only when it
/// is the chart the revision records by digest) with its recorded values and images, and checked
/// (lock, images, kinds, namespace, role bindings, and RBAC and cluster-scoped objects against
/// what the built-in chart renders); see [`crate::revision`].
pub async fn run(
    cluster: &Cluster,
    options: &RollbackOptions,
    reporter: &'static dyn Reporter,
) -> crate::Result<ApplyReport> {
    let namespace = options.namespace.as_str();
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let record = store.load_installed().await?;
    let previous = record
        .history
        .first()
        .ok_or_else(|| crate::DeployError::NothingToRollBackTo {
            namespace: namespace.to_owned(),
            revision: record.revision,
        })?;
    let inputs = store
        .load_inputs(previous.revision)
        .await?
        .ok_or(crate::DeployError::InputsNotKept {
            revision: previous.revision,
        })?;
    reporter.step(&format!(
        "roll back namespace {namespace} from revision {} ({}) to revision {} ({}), rendered again from its recorded inputs",
        record.revision, record.version, previous.revision, previous.version
    ));
    let manifests = rerender(
        previous.revision,
        &inputs,
        &previous.lock_digest,
        namespace,
        cluster.pdb_api(),
    )?;
    reporter.line(
        "    note: database migrations are forward-only; the older version runs on the newer schema \
         (migrations only add, and the manager skips the ones it does not know; a manager built \
         before migration 0002 refuses them and does not start: restore its database with it)",
    );
    // Recorded again for the new revision as new records are: the chart by its digest alone
    // (checked above to be the built-in chart's).
    let mut inputs = inputs;
    inputs.chart_digest =
        crate::revision::chart_digest(&coder_bundle::charts::embedded_chart(crate::release::CHART)?);
    inputs.chart.clear();
    let in_cluster_database = manifests.objects.iter().any(|object| {
        object.get("kind").and_then(|kind| kind.as_str()) == Some("StatefulSet")
            && object.pointer("/metadata/name").and_then(|name| name.as_str()) == Some("coder-postgres")
    });
    let target = DeployTarget {
        version: previous.version.clone(),
        lock_digest: previous.lock_digest.clone(),
        mode: inputs.mode.clone(),
        site: inputs.registry.parse().ok(),
        in_cluster_database,
        inputs: Some(inputs),
    };
    let apply_options = ApplyOptions {
        namespace: namespace.to_owned(),
        cluster: options.cluster.clone(),
        values_files: Vec::new(),
        sets: Vec::new(),
        license: None,
        pull_credentials: None,
        dry_run: options.dry_run,
        diff: options.diff,
        wait: None,
    };
    crate::lease::with_lease(
        cluster.client.clone(),
        namespace,
        options.dry_run,
        reporter,
        deploy_locked(cluster, &target, &apply_options, &manifests, Instant::now()),
    )
    .await
}
