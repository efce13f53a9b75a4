//! What `check` reads of the install before it walks: the record (something is installed), the
//! access URL and the workspace image (the platform's ConfigMap), the platform image and the
//! admin's email (the manager's Deployment), the admin's password (its Secret), and the
//! addresses the probes and the outside hops use (the ingress controller's load balancer,
//! PostgreSQL's endpoints).

use std::net::IpAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, LocalObjectReference, Secret, Service};
use kube::Api;

use super::CheckError;
use crate::cluster::Cluster;
use crate::record::RecordStore;
use crate::render::secret_names;

/// The platform's ConfigMap.
pub const CONFIG_MAP: &str = "coder-config";
/// The ingress controller's Service (type LoadBalancer).
pub const INGRESS_SERVICE: &str = "coder-ingress-nginx-controller";
/// PostgreSQL's Service (headless, for its StatefulSet).
pub const POSTGRES_SERVICE: &str = "coder-postgres";
/// The manager's Deployment.
pub const MANAGER_DEPLOYMENT: &str = "coder-manager";
/// The admin's email when the manager's Deployment does not say (the chart's default).
const DEFAULT_ADMIN_EMAIL: &str = "admin@coder.local";

/// The install as the check needs it.
#[derive(Debug, Clone)]
pub struct Install {
    /// Its namespace.
    pub namespace: String,
    /// The access URL.
    pub access_url: url::Url,
    /// The image workspaces may run (the first allowed one: the bundle's).
    pub workspace_image: String,
    /// The platform image (the manager's), which the probe pods run.
    pub platform_image: String,
    /// The manager pods' image pull Secrets, which the probe pods use too.
    pub pull_secrets: Vec<LocalObjectReference>,
    /// The first admin's email.
    pub admin_email: String,
    /// The first admin's password from its Secret, if it is there.
    pub admin_password: Option<String>,
    /// The ingress controller's load-balancer address and cluster IP, when the chart installed
    /// the controller.
    pub ingress: Option<IngressAddresses>,
    /// PostgreSQL's pod addresses, when it runs in the namespace.
    pub postgres: Option<Vec<String>>,
}

/// Where the ingress controller is.
#[derive(Debug, Clone)]
pub struct IngressAddresses {
    /// `status.loadBalancer.ingress[0]`: an IP address or a host name; none until the cluster's
    /// load balancer gives one.
    pub load_balancer: Option<String>,
    /// Its cluster IP, which probe pods try.
    pub cluster_ip: Option<String>,
}

fn config_error(namespace: &str, what: String) -> CheckError {
    CheckError::Install {
        namespace: namespace.to_owned(),
        what,
    }
}

impl Install {
    /// Reads the install in `namespace`; [`CheckError::Record`] when nothing is installed.
    pub async fn read(cluster: &Cluster, namespace: &str) -> Result<Self, CheckError> {
        let record = RecordStore::new(cluster.client.clone(), namespace)
            .load_installed()
            .await?;
        let listed = |kind: &str, name: &str| {
            record
                .objects
                .iter()
                .any(|key| key.kind == kind && key.name == name)
        };
        let client = &cluster.client;
        let config = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(CONFIG_MAP)
            .await?
            .and_then(|map| map.data)
            .ok_or_else(|| config_error(namespace, format!("ConfigMap {CONFIG_MAP} is missing or empty")))?;
        let access = config
            .get("CODER_ACCESS_URL")
            .map(String::as_str)
            .unwrap_or_default();
        let access_url = url::Url::parse(access).map_err(|error| {
            config_error(
                namespace,
                format!("the access URL {access:?} ({error}); set the chart value accessURL"),
            )
        })?;
        let workspace_image = config
            .get("CODER_ALLOWED_IMAGES")
            .and_then(|images| {
                images
                    .split(',')
                    .map(str::trim)
                    .find(|image| !image.is_empty() && !image.ends_with('*'))
            })
            .ok_or_else(|| config_error(namespace, "no workspace image in CODER_ALLOWED_IMAGES".to_owned()))?
            .to_owned();
        let manager = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(MANAGER_DEPLOYMENT)
            .await?
            .and_then(|deployment| deployment.spec?.template.spec)
            .ok_or_else(|| config_error(namespace, format!("Deployment {MANAGER_DEPLOYMENT} is missing")))?;
        let container = manager.containers.first();
        let platform_image = container
            .and_then(|container| container.image.clone())
            .ok_or_else(|| {
                config_error(
                    namespace,
                    format!("Deployment {MANAGER_DEPLOYMENT} names no image"),
                )
            })?;
        let admin_email = container
            .and_then(|container| container.env.as_ref())
            .and_then(|env| env.iter().find(|var| var.name == "CODER_ADMIN_EMAIL"))
            .and_then(|var| var.value.clone())
            .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
        let ingress = match listed("Service", INGRESS_SERVICE) {
            true => Some(ingress_addresses(client, namespace).await?),
            false => None,
        };
        let postgres = match listed("Service", POSTGRES_SERVICE) {
            true => Some(postgres_addresses(client, namespace).await?),
            false => None,
        };
        Ok(Self {
            namespace: namespace.to_owned(),
            access_url,
            workspace_image,
            platform_image,
            pull_secrets: manager.image_pull_secrets.unwrap_or_default(),
            admin_email,
            admin_password: admin_password(client, namespace).await?,
            ingress,
            postgres,
        })
    }

    /// The access URL's host name.
    pub fn host(&self) -> String {
        self.access_url.host_str().unwrap_or_default().to_owned()
    }

    /// The access URL's port (its own, or its scheme's).
    pub fn port(&self) -> u16 {
        self.access_url
            .port_or_known_default()
            .unwrap_or(coder_topology::INGRESS_HTTPS_PORT)
    }

    /// The access URL without a trailing slash, for appending paths.
    pub fn base(&self) -> String {
        self.access_url.as_str().trim_end_matches('/').to_owned()
    }

    /// The load balancer's address, when it is an IP address.
    pub fn load_balancer_ip(&self) -> Option<IpAddr> {
        self.ingress
            .as_ref()
            .and_then(|ingress| ingress.load_balancer.as_deref())
            .and_then(|address| address.parse().ok())
    }
}

async fn ingress_addresses(client: &kube::Client, namespace: &str) -> Result<IngressAddresses, CheckError> {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(INGRESS_SERVICE)
        .await?;
    let load_balancer = service
        .as_ref()
        .and_then(|service| {
            service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()
                .cloned()
        })
        .and_then(|ingress| ingress.ip.or(ingress.hostname));
    let cluster_ip = service
        .and_then(|service| service.spec?.cluster_ip)
        .filter(|ip| ip != "None");
    Ok(IngressAddresses {
        load_balancer,
        cluster_ip,
    })
}

/// PostgreSQL's ready pod addresses (its Service is headless).
async fn postgres_addresses(client: &kube::Client, namespace: &str) -> Result<Vec<String>, CheckError> {
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .get_opt(POSTGRES_SERVICE)
        .await?;
    Ok(endpoints
        .into_iter()
        .flat_map(|endpoints| endpoints.subsets.unwrap_or_default())
        .flat_map(|subset| subset.addresses.unwrap_or_default())
        .map(|address| address.ip)
        .collect())
}

async fn admin_password(client: &kube::Client, namespace: &str) -> Result<Option<String>, CheckError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(secret_names::ADMIN_PASSWORD)
        .await?;
    Ok(secret
        .and_then(|secret| secret.data)
        .and_then(|data| data.get("password").cloned())
        .and_then(|value| String::from_utf8(value.0).ok())
        .map(|password| password.trim_end_matches('\n').to_owned()))
}
