//! One apply at a time per namespace: a `coordination.k8s.io/v1` Lease held for the duration of
//! the cluster writes and renewed while they run. A lease left by a crashed run expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::task::JoinHandle;

use crate::render::{MANAGED_BY_LABEL, MANAGER_NAME};

/// The Lease's name.
pub const LEASE_NAME: &str = "coder-install-lock";
/// How long a lease is valid without renewal.
const LEASE_SECONDS: i32 = 120;

/// Another run holds the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else is applying.
    #[error(
        "another coder-install ({holder}) is changing namespace {namespace} (lease {LEASE_NAME}, renewed {renewed}); \
         wait for it to finish. If that run died, its lock expires {LEASE_SECONDS} s after that time."
    )]
    Held {
        /// The namespace.
        namespace: String,
        /// Who holds it.
        holder: String,
        /// When it was last renewed.
        renewed: String,
    },
    /// The API server refused.
    #[error("lease {LEASE_NAME} in namespace {namespace}: {source}")]
    Api {
        /// The namespace.
        namespace: String,
        /// The error.
        source: kube::Error,
    },
}

/// A held lease; renewed in the background until [`HeldLease::release`].
pub struct HeldLease {
    api: Api<Lease>,
    renewal: JoinHandle<()>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{MANAGER_NAME} pid {} on {}", std::process::id(), host.trim())
}

fn lease_object(namespace: &str, holder: &str, resource_version: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGER_NAME.to_owned())].into()),
            resource_version,
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }),
    }
}

/// Takes the namespace's lease, or says who holds it.
pub async fn acquire(client: kube::Client, namespace: &str) -> Result<HeldLease, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let api_error = |source| LeaseError::Api {
        namespace: namespace.to_owned(),
        source,
    };
    let holder = holder_identity();
    match api
        .create(&PostParams::default(), &lease_object(namespace, &holder, None))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(LEASE_NAME).await.map_err(api_error)?;
            let spec = existing.spec.clone().unwrap_or_default();
            let renewed = spec.renew_time.as_ref().map(|time| time.0);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            let expired = renewed
                .is_none_or(|renewed| jiff::Timestamp::now().as_second() > renewed.as_second() + duration);
            if !expired {
                return Err(LeaseError::Held {
                    namespace: namespace.to_owned(),
                    holder: spec.holder_identity.unwrap_or_else(|| "unknown".to_owned()),
                    renewed: renewed.map(|time| time.to_string()).unwrap_or_default(),
                });
            }
            // Take over an expired lease; the resourceVersion makes two takers race safely.
            let replacement = lease_object(namespace, &holder, existing.metadata.resource_version);
            api.replace(LEASE_NAME, &PostParams::default(), &replacement)
                .await
                .map_err(|error| match error {
                    kube::Error::Api(status) if status.code == 409 => LeaseError::Held {
                        namespace: namespace.to_owned(),
                        holder: "another run that took over the expired lock".to_owned(),
                        renewed: "just now".to_owned(),
                    },
                    other => api_error(other),
                })?;
        }
        Err(error) => return Err(api_error(error)),
    }
    let renewal = tokio::spawn(renew_forever(api.clone()));
    Ok(HeldLease { api, renewal })
}

async fn renew_forever(api: Api<Lease>) {
    let period = Duration::from_secs(u64::try_from(LEASE_SECONDS / 4).unwrap_or(30));
    loop {
        tokio::time::sleep(period).await;
        let patch = serde_json::json!({ "spec": { "renewTime": now() } });
        if let Err(error) = api
            .patch(
                LEASE_NAME,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            tracing_free_warning(&error);
        }
    }
}

fn tracing_free_warning(error: &kube::Error) {
    eprintln!("warning: renewing the apply lock failed: {error}");
}

impl HeldLease {
    /// Stops renewing and deletes the lease.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(error) = self.api.delete(LEASE_NAME, &DeleteParams::default()).await {
            eprintln!(
                "warning: releasing the apply lock {LEASE_NAME} failed ({error}); it expires by itself"
            );
        }
    }
}
