//! Leader election with a coordination.k8s.io Lease (`--election-id`), as ingress-nginx does:
//! every replica serves traffic, only the Lease's holder writes Ingress statuses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::log;
use crate::shared::Shared;

/// How long a Lease holds without renewal.
const LEASE_SECONDS: i32 = 30;
/// How often the holder renews (and others try to take over).
const RETRY: Duration = Duration::from_secs(5);

/// Tries to take or renew the Lease `namespace/name` as `identity` every few seconds, forever;
/// `shared.leading` says whether it holds it.
pub async fn run(client: Client, namespace: String, name: String, identity: String, shared: Arc<Shared>) {
    let api = Api::<Lease>::namespaced(client, &namespace);
    let mut last_error = None;
    loop {
        let leading = match acquire_or_renew(&api, &name, &identity).await {
            Ok(leading) => {
                last_error = None;
                leading
            }
            Err(error) => {
                let message = format!("leader election on lease {namespace}/{name}: {error}");
                if last_error.as_ref() != Some(&message) {
                    log(&message);
                    last_error = Some(message);
                }
                false
            }
        };
        if shared.leading.swap(leading, Ordering::Relaxed) != leading {
            log(if leading {
                format!("{identity} is now the leader (lease {namespace}/{name})")
            } else {
                format!("{identity} is no longer the leader (lease {namespace}/{name})")
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether `identity` holds the Lease after this attempt.
async fn acquire_or_renew(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return conflict_is_lost(api.create(&PostParams::default(), &lease).await);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|holder| !holder.is_empty());
    let expired = match &spec.renew_time {
        Some(renewed) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            renewed.0.as_second() + duration < now.as_second()
        }
        None => true,
    };
    if holder.as_deref() == Some(identity) {
        spec.renew_time = Some(MicroTime(now));
    } else if holder.is_none() || expired {
        spec.holder_identity = Some(identity.to_owned());
        spec.lease_duration_seconds = Some(LEASE_SECONDS);
        spec.acquire_time = Some(MicroTime(now));
        spec.renew_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    } else {
        return Ok(false);
    }
    conflict_is_lost(api.replace(name, &PostParams::default(), &lease).await)
}

/// A write that lost a race (409) means another replica holds the Lease.
fn conflict_is_lost(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
