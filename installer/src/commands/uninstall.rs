//! `coder-install uninstall`: remove the platform from a namespace.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams};
use serde::Serialize;

use crate::args::OutputFormat;
use crate::args::TargetArgs;
use coder_deploy::objects::{ObjectKey, delete_managed};
use coder_deploy::record::RecordStore;
use coder_deploy::{cluster, lease, secrets};

/// `coder-install uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep the data: the database volume and password, and workspaces' home volumes. A later
    /// apply into the same namespace picks them up again.
    #[arg(long)]
    pub keep_data: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Serialize)]
struct UninstallReport {
    namespace: String,
    deleted: Vec<String>,
    kept_data: bool,
}

/// Runs `uninstall`.
pub async fn run(args: UninstallArgs) -> anyhow::Result<()> {
    let reporter = crate::report::for_format(args.format);
    let namespace = args.target.checked_namespace()?;
    let cluster = cluster::connect(&args.target.cluster()).await?;
    let store = RecordStore::new(cluster.client.clone(), &namespace);
    let record = store.load_installed().await?;
    let deleted = lease::with_lease(cluster.client.clone(), &namespace, false, reporter, async {
        let mut deleted = Vec::new();
        let mut keys: Vec<ObjectKey> = record.objects.clone();
        keys.extend(
            record
                .pending
                .iter()
                .flat_map(|pending| pending.objects.iter().cloned()),
        );
        keys.sort();
        keys.dedup();
        reporter.step(&format!("delete {} objects", keys.len()));
        // Workloads first, so nothing restarts while its configuration goes.
        keys.sort_by_key(|key| !coder_deploy::wait::is_workload(&key.kind));
        for key in &keys {
            if delete_managed(&cluster, key, false).await? {
                deleted.push(key.to_string());
            }
        }
        reporter.step("delete workspaces");
        deleted.extend(
            delete_labelled(
                &cluster.client,
                &namespace,
                "com.coder.resource=true",
                args.keep_data,
            )
            .await?,
        );
        if !args.keep_data {
            reporter.step("delete the database volume");
            deleted.extend(
                delete_labelled(
                    &cluster.client,
                    &namespace,
                    "app.kubernetes.io/name=coder,app.kubernetes.io/component=postgres",
                    false,
                )
                .await?,
            );
        }
        for name in secrets::delete_all(&cluster.client, &namespace, args.keep_data).await? {
            deleted.push(format!("Secret {namespace}/{name}"));
        }
        store.delete_all(&record).await?;
        anyhow::Ok(deleted)
    })
    .await?;
    let report = UninstallReport {
        namespace,
        deleted,
        kept_data: args.keep_data,
    };
    if args.format == OutputFormat::Json {
        return super::print_json(&report);
    }
    for line in &report.deleted {
        println!("deleted  {line}");
    }
    println!(
        "uninstalled from namespace {}{}",
        report.namespace,
        if report.kept_data {
            " (data kept: the database volume and password, workspace home volumes)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Deletes Deployments, Services and (unless `keep_volumes`) PersistentVolumeClaims with
/// `selector`.
async fn delete_labelled(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    keep_volumes: bool,
) -> anyhow::Result<Vec<String>> {
    let params = ListParams::default().labels(selector);
    let mut deleted = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for item in deployments.list(&params).await? {
        let name = item.metadata.name.unwrap_or_default();
        deployments.delete(&name, &DeleteParams::background()).await?;
        deleted.push(format!("Deployment {namespace}/{name}"));
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for item in services.list(&params).await? {
        let name = item.metadata.name.unwrap_or_default();
        services.delete(&name, &DeleteParams::default()).await?;
        deleted.push(format!("Service {namespace}/{name}"));
    }
    if !keep_volumes {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        for item in claims.list(&params).await? {
            let name = item.metadata.name.unwrap_or_default();
            claims.delete(&name, &DeleteParams::default()).await?;
            deleted.push(format!("PersistentVolumeClaim {namespace}/{name}"));
        }
    }
    Ok(deleted)
}
