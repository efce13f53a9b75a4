//! `kube-webhook-certgen`: `create` makes the admission webhook's CA and server certificate as
//! a Secret (keys `ca`, `cert`, `key`, kube-webhook-certgen's format) unless it exists; `patch`
//! writes that CA into a webhook configuration's `caBundle` (GET then UPDATE: the chart's
//! ClusterRole allows only those on that one object). Nothing is written to disk.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{certs, log};

/// kube-webhook-certgen's arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "kube-webhook-certgen",
    about = "ingress-standin: a stand-in for kube-webhook-certgen"
)]
pub struct CertgenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertgenCommand,
}

/// The two jobs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertgenCommand {
    /// Make the CA and certificate Secret if it does not exist.
    Create(CreateArgs),
    /// Write the Secret's CA into the webhook configuration.
    Patch(PatchArgs),
}

/// `create`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// The certificate's host names, comma separated.
    #[arg(long)]
    pub host: String,
    /// The Secret's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The Secret's name.
    #[arg(long)]
    pub secret_name: String,
    /// The Secret key of the CA certificate.
    #[arg(long, default_value = "ca")]
    pub ca_name: String,
    /// The Secret key of the server certificate.
    #[arg(long, default_value = "cert")]
    pub cert_name: String,
    /// The Secret key of the server key.
    #[arg(long, default_value = "key")]
    pub key_name: String,
}

/// `patch`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PatchArgs {
    /// The webhook configuration's name.
    #[arg(long)]
    pub webhook_name: String,
    /// The Secret's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The Secret's name.
    #[arg(long)]
    pub secret_name: String,
    /// Patch the ValidatingWebhookConfiguration of that name.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub patch_validating: bool,
    /// Patch the MutatingWebhookConfiguration of that name.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub patch_mutating: bool,
    /// Set every webhook's failurePolicy (`Ignore` or `Fail`).
    #[arg(long)]
    pub patch_failure_policy: Option<String>,
    /// The Secret key of the CA certificate.
    #[arg(long, default_value = "ca")]
    pub ca_name: String,
}

/// Why a certgen job failed.
#[derive(Debug, thiserror::Error)]
pub enum CertgenError {
    /// There is no in-cluster configuration.
    #[error("loading the in-cluster Kubernetes configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// A Kubernetes call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// The certificates could not be made.
    #[error("making the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The Secret lacks the CA.
    #[error("Secret {namespace}/{name} has no key {key}: run create first")]
    NoCa {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// An argument is not usable.
    #[error("{0}")]
    Argument(String),
}

fn kube_error(context: impl Into<String>) -> impl FnOnce(kube::Error) -> CertgenError {
    let context = context.into();
    move |source| CertgenError::Kube { context, source }
}

/// Runs the job.
pub async fn run(args: CertgenArgs) -> Result<(), CertgenError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client =
        Client::try_from(kube::Config::incluster()?).map_err(kube_error("making the Kubernetes client"))?;
    match args.command {
        CertgenCommand::Create(args) => create(client, &args).await,
        CertgenCommand::Patch(args) => patch(client, &args).await,
    }
}

async fn create(client: Client, args: &CreateArgs) -> Result<(), CertgenError> {
    let secrets = Api::<Secret>::namespaced(client, &args.namespace);
    let what = format!("Secret {}/{}", args.namespace, args.secret_name);
    if secrets
        .get_opt(&args.secret_name)
        .await
        .map_err(kube_error(format!("reading {what}")))?
        .is_some()
    {
        log(format!("{what} exists: nothing to do"));
        return Ok(());
    }
    let hosts: Vec<String> = args
        .host
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(str::to_owned)
        .collect();
    if hosts.is_empty() {
        return Err(CertgenError::Argument("--host names no host".to_owned()));
    }
    let made = certs::webhook_certificates(&hosts)?;
    let data: BTreeMap<String, ByteString> = [
        (args.ca_name.clone(), made.ca),
        (args.cert_name.clone(), made.server.cert),
        (args.key_name.clone(), made.server.key),
    ]
    .into_iter()
    .map(|(key, value)| (key, ByteString(value.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(args.secret_name.clone()),
            namespace: Some(args.namespace.clone()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => log(format!(
            "{what} created with a new CA and a certificate for {}",
            hosts.join(", ")
        )),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            log(format!("{what} was created meanwhile: nothing to do"))
        }
        Err(error) => return Err(kube_error(format!("creating {what}"))(error)),
    }
    Ok(())
}

async fn patch(client: Client, args: &PatchArgs) -> Result<(), CertgenError> {
    let policy = match args.patch_failure_policy.as_deref() {
        None | Some("") => None,
        Some(policy @ ("Ignore" | "Fail")) => Some(policy.to_owned()),
        Some(other) => {
            return Err(CertgenError::Argument(format!(
                "--patch-failure-policy must be Ignore or Fail, not {other:?}"
            )));
        }
    };
    let what = format!("Secret {}/{}", args.namespace, args.secret_name);
    let secret = Api::<Secret>::namespaced(client.clone(), &args.namespace)
        .get(&args.secret_name)
        .await
        .map_err(kube_error(format!("reading {what}")))?;
    let ca = secret
        .data
        .and_then(|mut data| data.remove(&args.ca_name))
        .filter(|ca| !ca.0.is_empty())
        .ok_or_else(|| CertgenError::NoCa {
            namespace: args.namespace.clone(),
            name: args.secret_name.clone(),
            key: args.ca_name.clone(),
        })?;
    if args.patch_validating {
        let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
        patch_webhooks(&api, &args.webhook_name, &what, &policy, |configuration| {
            for webhook in configuration.webhooks.iter_mut().flatten() {
                webhook.client_config.ca_bundle = Some(ca.clone());
                webhook.failure_policy = policy.clone().or(webhook.failure_policy.take());
            }
        })
        .await?;
    }
    if args.patch_mutating {
        let api = Api::<MutatingWebhookConfiguration>::all(client);
        patch_webhooks(&api, &args.webhook_name, &what, &policy, |configuration| {
            for webhook in configuration.webhooks.iter_mut().flatten() {
                webhook.client_config.ca_bundle = Some(ca.clone());
                webhook.failure_policy = policy.clone().or(webhook.failure_policy.take());
            }
        })
        .await?;
    }
    Ok(())
}

/// Reads webhook configuration `name`, lets `set_ca` write the CA (from `what`) into its
/// webhooks, and writes it back (GET then UPDATE, as the chart's ClusterRole allows).
async fn patch_webhooks<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    policy: &Option<String>,
    set_ca: impl FnOnce(&mut K),
) -> Result<(), CertgenError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let context = format!("{} {name}", K::kind(&()));
    let mut configuration = api
        .get(name)
        .await
        .map_err(kube_error(format!("reading {context}")))?;
    set_ca(&mut configuration);
    api.replace(name, &PostParams::default(), &configuration)
        .await
        .map_err(kube_error(format!("updating {context}")))?;
    log(format!(
        "{context}: caBundle set from {what}{}",
        policy_note(policy)
    ));
    Ok(())
}

fn policy_note(policy: &Option<String>) -> String {
    policy
        .as_ref()
        .map(|policy| format!(", failurePolicy {policy}"))
        .unwrap_or_default()
}
