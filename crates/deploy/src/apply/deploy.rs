//! Steps 5 and 6 of the pipeline: render the chart for the cluster, and write it under the
//! namespace's Lease (kept Secrets, server-side apply of every object, prune, install record).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use coder_progress::Progress;

use crate::cluster::Cluster;
use crate::objects::{Applied, Change, ObjectKey};
use crate::record::{InstallRecord, PendingApply, RecordStore, RevisionSummary};
use crate::release::Release;

use super::{ApplyOptions, ApplyReport, StepTime, Timings};
use crate::render::{Manifests, Values, render, secret_names};

/// The values `release` is rendered with: the chart's defaults, `--values` files and `--set`s,
/// and the registry pull Secret when `options` has pull credentials.
pub fn resolved_values(release: &Release, options: &ApplyOptions) -> crate::Result<Values> {
    let pull_secret = options
        .pull_credentials
        .as_ref()
        .map(|_| secret_names::REGISTRY_PULL);
    release.values(&options.values_files, &options.sets, pull_secret)
}

/// Renders `release` for the cluster (its PDB API) and resolves values.
pub fn render_for(
    release: &Release,
    options: &ApplyOptions,
    pdb_api: crate::render::PdbApi,
) -> crate::Result<Manifests> {
    let values = resolved_values(release, options)?;
    Ok(render(&release.request(&values, &options.namespace, pdb_api))?)
}

/// The StorageClass preflight should check, from the values: the in-cluster database's, if one
/// is set.
pub fn configured_storage_class(values: &Values) -> Option<String> {
    let class = &values.postgres.storage.storage_class;
    (values.postgres.host.is_empty() && !class.is_empty()).then(|| class.clone())
}

/// Deploys rendered manifests: steps 5–7 of the pipeline. The caller has verified, checked the
/// license and pushed.
pub async fn render_and_write(
    cluster: &Cluster,
    release: &Release,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> crate::Result<ApplyReport> {
    let started = Instant::now();
    let namespace = options.namespace.as_str();
    progress.step(&format!(
        "render chart {} for namespace {namespace}",
        crate::release::CHART
    ));
    let values = resolved_values(release, options)?;
    let manifests = render(&release.request(&values, namespace, cluster.pdb_api()))?;
    let rendered = started.elapsed();
    // Rendering, then everything written (under the lease): the two steps of this call.
    let timed = |mut report: ApplyReport| {
        let total = started.elapsed();
        report.timings = Timings {
            steps: vec![
                StepTime::new("render", rendered),
                StepTime::new("server-side apply", total - rendered),
            ],
            total_seconds: total.as_secs_f64(),
        };
        report
    };

    progress.step("deploy");
    let namespace_created =
        crate::secrets::ensure_namespace(&cluster.client, namespace, options.dry_run).await?;
    if options.dry_run && namespace_created {
        // Nothing in a missing namespace can be dry-run applied; report what would be created.
        let objects = manifests
            .objects
            .iter()
            .map(|object| Applied {
                key: ObjectKey::of(object),
                change: Change::Created,
                diff: options
                    .diff
                    .then(|| crate::objects::diff(&ObjectKey::of(object), None, object)),
            })
            .collect();
        return Ok(timed(ApplyReport {
            namespace: namespace.to_owned(),
            mode: release.mode,
            version: release.version.clone(),
            revision: 0,
            dry_run: true,
            objects,
            pruned: Vec::new(),
            secrets: crate::secrets::GeneratedSecrets::default(),
            deploy_seconds: started.elapsed().as_secs_f64(),
            backup: None,
            timings: Timings::default(),
        }));
    }
    let target = ReleaseRecord {
        version: release.version.clone(),
        lock_digest: release.lock_digest.clone(),
        mode: release.mode,
        site: release.site.clone(),
        in_cluster_database: values.postgres.host.is_empty(),
        inputs: Some(crate::revision::record_inputs(release, &values)?),
        license: release.license.clone(),
        backup: release.backup.clone(),
    };
    crate::lease::with_lease(
        cluster.client.clone(),
        namespace,
        options.dry_run,
        progress,
        write_release(cluster, &target, options, &manifests, started),
    )
    .await
    .map(timed)
}

/// What a deploy records: the release's identity beside its manifests.
pub struct ReleaseRecord {
    /// The version.
    pub version: String,
    /// The lock's digest.
    pub lock_digest: String,
    /// Connected or air-gapped.
    pub mode: crate::release::InstallMode,
    /// The site registry (air-gapped).
    pub site: Option<coder_mirror::SiteRegistry>,
    /// Whether PostgreSQL runs in the cluster (its password Secret is generated).
    pub in_cluster_database: bool,
    /// What the manifests were rendered from, recorded for `rollback`.
    pub inputs: Option<crate::record::RevisionInputs>,
    /// The license to write to the manager's Secret; `None` leaves the Secret as it is.
    pub license: Option<Vec<u8>>,
    /// The backup taken before this release replaced another version.
    pub backup: Option<crate::backup::BackupRef>,
}

impl ReleaseRecord {
    fn bundle_signature(&self) -> String {
        self.inputs
            .as_ref()
            .map(|inputs| inputs.bundle_signature.clone())
            .unwrap_or_default()
    }
}

/// Writes `manifests` under the namespace's lease (taken by the caller unless dry run): the
/// Secrets, every object dry-run first (so unchanged ones are never written), then, when
/// something changed, the revision recorded as pending, the changed objects written, what the
/// release no longer renders pruned, and the install record.
pub async fn write_release(
    cluster: &Cluster,
    release: &ReleaseRecord,
    options: &ApplyOptions,
    manifests: &Manifests,
    started: Instant,
) -> crate::Result<ApplyReport> {
    let namespace = options.namespace.as_str();
    let store = RecordStore::new(cluster.client.clone(), namespace);
    let mut record = store.load().await?.unwrap_or_default();
    let keys: Vec<ObjectKey> = manifests.objects.iter().map(ObjectKey::of).collect();
    let secrets = write_secrets(cluster, release, options).await?;
    let mut applied = dry_run_every_object(cluster, manifests, options.diff).await?;
    let stale = stale_objects(&record, &keys);
    let changes = applied
        .iter()
        .filter(|applied| applied.change != Change::Unchanged)
        .count();
    let same_release = record.version == release.version && record.lock_digest == release.lock_digest;
    let nothing_to_do = changes == 0 && stale.is_empty() && record.pending.is_none() && same_release;
    let report = |revision, objects, pruned, secrets| ApplyReport {
        namespace: namespace.to_owned(),
        mode: release.mode,
        version: release.version.clone(),
        revision,
        dry_run: options.dry_run,
        objects,
        pruned,
        secrets,
        deploy_seconds: started.elapsed().as_secs_f64(),
        backup: release.backup.clone(),
        timings: Timings::default(),
    };
    if options.dry_run || nothing_to_do {
        let pruned = prune(cluster, &stale, true).await?;
        return Ok(report(record.revision, applied, pruned, secrets));
    }

    // Record what is about to be written before writing it.
    let revision = record.revision + 1;
    let now = jiff::Timestamp::now().to_string();
    record.pending = Some(PendingApply {
        revision,
        version: release.version.clone(),
        started_at: now.clone(),
        objects: keys.clone(),
    });
    store.save(&record).await?;
    store
        .save_manifests(revision, &manifests.to_yaml()?, release.inputs.as_ref())
        .await?;
    write_changed_objects(cluster, manifests, &mut applied).await?;
    let pruned = prune(cluster, &stale, false).await?;
    store
        .save(&installed(record, release, revision, now, keys))
        .await?;
    store.prune_revisions(revision).await?;
    Ok(report(revision, applied, pruned, secrets))
}

/// The Secrets the release needs: the generated ones (kept across upgrades), the license when
/// the license step passed one, and the registry pull Secret when there are pull credentials.
async fn write_secrets(
    cluster: &Cluster,
    release: &ReleaseRecord,
    options: &ApplyOptions,
) -> crate::Result<crate::secrets::GeneratedSecrets> {
    let namespace = options.namespace.as_str();
    let secrets = crate::secrets::ensure_generated(
        &cluster.client,
        namespace,
        release.in_cluster_database,
        options.dry_run,
    )
    .await?;
    if let Some(license) = &release.license {
        crate::secrets::apply_owned_secret(
            &cluster.client,
            namespace,
            secret_names::LICENSE,
            "Opaque",
            BTreeMap::from([("license".to_owned(), license.clone())]),
            options.dry_run,
        )
        .await?;
    }
    if let (Some(credentials), Some(site)) = (&options.pull_credentials, &release.site) {
        crate::secrets::apply_owned_secret(
            &cluster.client,
            namespace,
            secret_names::REGISTRY_PULL,
            "kubernetes.io/dockerconfigjson",
            BTreeMap::from([(
                ".dockerconfigjson".to_owned(),
                crate::secrets::docker_config_json(&site.host, &credentials.username, &credentials.password),
            )]),
            options.dry_run,
        )
        .await?;
    }
    Ok(secrets)
}

/// Every object applied as a server-side dry run: what would change (with its diff when asked).
async fn dry_run_every_object(
    cluster: &Cluster,
    manifests: &Manifests,
    diff: bool,
) -> crate::Result<Vec<Applied>> {
    use futures_util::{StreamExt, TryStreamExt};
    // A dry run writes nothing and depends on no other object's: several at once, the
    // outcomes in the manifests' order (the writes that follow go one after another, in order).
    futures_util::stream::iter(&manifests.objects)
        .map(|object| crate::objects::apply_object(cluster, object, true, diff))
        .buffered(DRY_RUNS_AT_ONCE)
        .try_collect::<Vec<Applied>>()
        .await
        .map_err(Into::into)
}

/// How many objects are dry-run at once.
const DRY_RUNS_AT_ONCE: usize = 8;

/// What earlier revisions (or an interrupted apply) wrote that `keys` no longer holds.
fn stale_objects(record: &InstallRecord, keys: &[ObjectKey]) -> Vec<ObjectKey> {
    let previous: BTreeSet<&ObjectKey> = record
        .objects
        .iter()
        .chain(record.pending.iter().flat_map(|pending| pending.objects.iter()))
        .collect();
    let current: BTreeSet<&ObjectKey> = keys.iter().collect();
    previous.difference(&current).map(|key| (*key).clone()).collect()
}

/// Writes the objects whose dry run changed something, keeping the dry run's diffs.
async fn write_changed_objects(
    cluster: &Cluster,
    manifests: &Manifests,
    applied: &mut [Applied],
) -> crate::Result<()> {
    for (object, outcome) in manifests.objects.iter().zip(applied.iter_mut()) {
        if outcome.change != Change::Unchanged {
            let diff = outcome.diff.take();
            *outcome = crate::objects::apply_object(cluster, object, false, false).await?;
            outcome.diff = diff;
        }
    }
    Ok(())
}

/// Deletes the `stale` objects this tool manages, in reverse apply order (dependents first), or
/// with `dry_run` says which it would; returns those deleted (or to be).
async fn prune(cluster: &Cluster, stale: &[ObjectKey], dry_run: bool) -> crate::Result<Vec<ObjectKey>> {
    let mut pruned = Vec::new();
    let order: Box<dyn Iterator<Item = &ObjectKey>> = if dry_run {
        Box::new(stale.iter())
    } else {
        Box::new(stale.iter().rev())
    };
    for key in order {
        if crate::objects::delete_managed(cluster, key, dry_run).await? {
            pruned.push(key.clone());
        }
    }
    Ok(pruned)
}

/// The install record once `revision` of `release` is applied: the previous revision moved into
/// the history (the newest kept), nothing pending.
fn installed(
    mut record: InstallRecord,
    release: &ReleaseRecord,
    revision: u64,
    applied_at: String,
    objects: Vec<ObjectKey>,
) -> InstallRecord {
    if record.revision > 0 {
        record.history.insert(
            0,
            RevisionSummary {
                revision: record.revision,
                version: record.version.clone(),
                lock_digest: record.lock_digest.clone(),
                applied_at: record.applied_at.clone(),
                backup: record.backup.clone(),
            },
        );
        record
            .history
            .truncate(usize::try_from(crate::record::KEPT_REVISIONS).unwrap_or(5));
    }
    InstallRecord {
        revision,
        version: release.version.clone(),
        mode: release.mode,
        registry: release.site.as_ref().map(ToString::to_string).unwrap_or_default(),
        lock_digest: release.lock_digest.clone(),
        bundle_signature: release.bundle_signature(),
        tool: concat!("coder-install ", env!("CARGO_PKG_VERSION")).to_owned(),
        applied_at,
        objects,
        pending: None,
        history: record.history,
        backup: release.backup.clone(),
    }
}
