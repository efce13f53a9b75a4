//! One apply at a time per namespace: a `coordination.k8s.io/v1` Lease held for the duration of
//! the cluster writes and renewed while they run. A lease left by a crashed run expires.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coder_progress::Progress;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};
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
    /// The lease was taken by someone else (or expired unrenewed) while this run held it: this
    /// run stopped writing.
    #[error(
        "lost the apply lock (lease {LEASE_NAME} in namespace {namespace}) while applying: {reason}; \
         this run stopped writing. Check `kubectl -n {namespace} get lease {LEASE_NAME}`, let the other \
         run finish, then re-run (applies converge)"
    )]
    Lost {
        /// The namespace.
        namespace: String,
        /// What happened (who holds it now).
        reason: String,
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

/// How often a held lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(30);

/// Runs `work` under the namespace's lease: takes it (or fails with who holds it), runs `work`
/// while it is held (see [`HeldLease::run_while_held`]) and releases it, whatever `work`
/// returned. A dry run writes nothing, so it takes no lease and just runs `work`. Apply,
/// rollback and uninstall all change the namespace through this.
pub async fn with_lease<T, E>(
    client: kube::Client,
    namespace: &str,
    dry_run: bool,
    progress: &dyn Progress,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    E: From<LeaseError>,
{
    if dry_run {
        return work.await;
    }
    let mut held = acquire(client, namespace).await?;
    let outcome = held.run_while_held(work, progress).await;
    held.release(progress).await;
    outcome
}

/// Takes the namespace's lease, or says who holds it; renewed every [`RENEW_EVERY`].
pub async fn acquire(client: kube::Client, namespace: &str) -> Result<HeldLease, LeaseError> {
    acquire_renewing_every(client, namespace, RENEW_EVERY).await
}

/// [`acquire`], renewing every `period` (shorter than the lease's 120 s).
pub async fn acquire_renewing_every(
    client: kube::Client,
    namespace: &str,
    period: Duration,
) -> Result<HeldLease, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let api_error = |source| LeaseError::Api {
        namespace: namespace.to_owned(),
        source,
    };
    let holder = holder_identity();
    let written = match api
        .create(&PostParams::default(), &lease_object(namespace, &holder, None))
        .await
    {
        Ok(written) => written,
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
                })?
        }
        Err(error) => return Err(api_error(error)),
    };
    let held = Arc::new(Mutex::new(written));
    let (lost_sender, lost) = watch::channel(None);
    let (warning_sender, warnings) = mpsc::unbounded_channel();
    let renewal = tokio::spawn(renew_until_lost(
        api.clone(),
        held.clone(),
        holder.clone(),
        period,
        lost_sender,
        warning_sender,
    ));
    Ok(HeldLease {
        api,
        namespace: namespace.to_owned(),
        holder,
        held,
        lost,
        warnings,
        renewal,
    })
}

/// A held lease, renewed in the background until [`HeldLease::release`]. Every renewal is a
/// replace with the resourceVersion of this run's last write (a fenced write): if anyone else
/// wrote the lease meanwhile, the renewal fails with a conflict, renewing stops, and
/// [`HeldLease::lost`] resolves.
pub struct HeldLease {
    api: Api<Lease>,
    namespace: String,
    holder: String,
    /// The lease as this run last wrote it.
    held: Arc<Mutex<Lease>>,
    /// `Some(reason)` once the lease is lost.
    lost: watch::Receiver<Option<String>>,
    /// Warnings of the renewal task (a failed renewal), shown while the work runs.
    warnings: mpsc::UnboundedReceiver<String>,
    renewal: JoinHandle<()>,
}

fn last_written(held: &Mutex<Lease>) -> Lease {
    match held.lock() {
        Ok(lease) => lease.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Renews `held` every `period` until a renewal conflicts (someone else wrote the lease) or the
/// lease goes unrenewed for its whole duration; then says why through `lost` and stops.
async fn renew_until_lost(
    api: Api<Lease>,
    held: Arc<Mutex<Lease>>,
    holder: String,
    period: Duration,
    lost: watch::Sender<Option<String>>,
    warnings: mpsc::UnboundedSender<String>,
) {
    let mut renewed_at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let mut renewal = last_written(&held);
        if let Some(spec) = renewal.spec.as_mut() {
            spec.renew_time = Some(now());
        }
        match api.replace(LEASE_NAME, &PostParams::default(), &renewal).await {
            Ok(written) => {
                renewed_at = tokio::time::Instant::now();
                match held.lock() {
                    Ok(mut lease) => *lease = written,
                    Err(poisoned) => *poisoned.into_inner() = written,
                }
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                let now_held_by = match api.get_opt(LEASE_NAME).await {
                    Ok(Some(lease)) => lease
                        .spec
                        .and_then(|spec| spec.holder_identity)
                        .filter(|identity| *identity != holder)
                        .map_or_else(
                            || "the lease was changed by another writer".to_owned(),
                            |identity| format!("it is now held by {identity}"),
                        ),
                    Ok(None) => "the lease was deleted by another writer".to_owned(),
                    Err(error) => format!("the lease was changed by another writer ({error})"),
                };
                let _ = lost.send(Some(now_held_by));
                return;
            }
            Err(error) => {
                let _ = warnings.send(format!("warning: renewing the apply lock failed: {error}"));
                let unrenewed = renewed_at.elapsed();
                if unrenewed >= Duration::from_secs(u64::try_from(LEASE_SECONDS).unwrap_or(120)) {
                    let _ = lost.send(Some(format!(
                        "it could not be renewed for {} s and has expired ({error})",
                        unrenewed.as_secs()
                    )));
                    return;
                }
            }
        }
    }
}

impl HeldLease {
    fn lost_error(&self, reason: String) -> LeaseError {
        LeaseError::Lost {
            namespace: self.namespace.clone(),
            reason,
        }
    }

    /// Resolves when the lease is lost, with the error that says so; never while it is held.
    pub async fn lost(&self) -> LeaseError {
        self.lost_error(Self::lost_reason(self.lost.clone()).await)
    }

    /// Why the lease was lost, once it is.
    async fn lost_reason(mut lost: watch::Receiver<Option<String>>) -> String {
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The renewal task ended without a verdict (it was stopped): nothing is renewing.
            Err(_) => "its renewal stopped".to_owned(),
        }
    }

    /// Runs `work` while the lease is held: if the lease is lost first, `work` is dropped (it
    /// stops at its next await, before its next write) and the loss is the error. The renewal's
    /// warnings go to `progress` meanwhile.
    pub async fn run_while_held<T, E>(
        &mut self,
        work: impl Future<Output = Result<T, E>>,
        progress: &dyn Progress,
    ) -> Result<T, E>
    where
        E: From<LeaseError>,
    {
        let lost = self.lost.clone();
        let lost = Self::lost_reason(lost);
        tokio::pin!(work, lost);
        loop {
            tokio::select! {
                biased;
                reason = &mut lost => return Err(self.lost_error(reason).into()),
                Some(warning) = self.warnings.recv() => progress.warning(&warning),
                outcome = &mut work => return outcome,
            }
        }
    }

    /// Stops renewing and deletes the lease, only while this run still holds it: the delete is
    /// fenced by the resourceVersion of this run's last write, so a lease someone else took
    /// over is left alone.
    pub async fn release(self, progress: &dyn Progress) {
        self.renewal.abort();
        let mut lost = self.lost.clone();
        if lost.borrow_and_update().is_some() {
            progress.warning(&format!(
                "warning: the apply lock {LEASE_NAME} was lost while applying; leaving it to its holder"
            ));
            return;
        }
        let written = last_written(&self.held);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: written.metadata.resource_version.clone(),
                uid: written.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        let result = match self.api.delete(LEASE_NAME, &params).await {
            // A renewal stopped mid-flight may have moved the resourceVersion: delete the lease
            // as it is now only if this run is still its holder.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.release_if_still_holder(progress).await
            }
            other => other.map(|_| ()),
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => progress.warning(
                &format!("warning: the apply lock {LEASE_NAME} changed hands before it was released; leaving it to its holder"),
            ),
            Err(error) => progress.warning(&format!(
                "warning: releasing the apply lock {LEASE_NAME} failed ({error}); it expires by itself"
            )),
        }
    }

    /// Deletes the lease as it is now, fenced by its current resourceVersion, if this run is
    /// still its holder.
    async fn release_if_still_holder(&self, progress: &dyn Progress) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(LEASE_NAME).await? else {
            return Ok(());
        };
        let holder = current
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.as_deref());
        if holder != Some(self.holder.as_str()) {
            progress.warning(&format!(
                "warning: the apply lock {LEASE_NAME} is now held by {}; leaving it to its holder",
                holder.unwrap_or("nobody")
            ));
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: current.metadata.resource_version,
                uid: current.metadata.uid,
            }),
            ..DeleteParams::default()
        };
        self.api.delete(LEASE_NAME, &params).await.map(|_| ())
    }
}
