//! coder-allowlist: allowlist mode, for sites that are restricted rather than cut off.
//!
//! - [`endpoints`]: what the install needs to reach, from the spec (and the port table for the
//!   in-cluster flows): `allowlist generate`.
//! - [`entry`]: the site's allowlist file, each entry's meaning and what is wrong with it.
//! - [`coverage`]: which entries let the install reach which endpoint.
//! - [`probe`]: whether this host can actually reach them (DNS, TCP, TLS, `/v2/`), and where
//!   registries redirect blob downloads.
//! - [`report`] and [`render`]: the audit report, as JSON, text, Markdown or HTML.
//!
//! [`audit`] ties them together.

pub mod coverage;
pub mod endpoints;
pub mod entry;
mod error;
pub mod probe;
pub mod render;
pub mod report;

use coder_bundle_spec::{BundleSpec, ImageLock};

pub use endpoints::{RequiredEndpoint, Requirements};
pub use entry::Allowlist;
pub use error::{AllowlistError, Result};
pub use probe::format_duration;
pub use report::AuditReport;

use endpoints::{EndpointRole, EndpointSet};
use probe::{ProbeOptions, ProbeResult, Prober};
use report::{AuditInputs, InputDigest};

/// Requirements with what probing learnt: blob storage that registries redirect to and the
/// token services their challenges name, each probed in turn.
pub struct ProbedRequirements {
    /// The requirements, learnt endpoints included.
    pub requirements: Requirements,
    /// Each endpoint's probe result, in the requirements' order.
    pub probes: Vec<ProbeResult>,
}

/// Learns the endpoints the spec's registries send clients to (without probing them).
pub async fn learn(
    mut requirements: Requirements,
    spec: &BundleSpec,
    lock: &ImageLock,
    options: ProbeOptions,
) -> crate::Result<Requirements> {
    let prober = Prober::new(options)?;
    let (learnt, notes) = prober.learn_redirects(&requirements.endpoints, spec, lock).await;
    let mut set = EndpointSet::from(std::mem::take(&mut requirements.endpoints));
    for endpoint in learnt {
        set.add(endpoint);
    }
    requirements.endpoints = set.into_sorted();
    requirements.notes.extend(prober.warnings);
    requirements.notes.extend(notes);
    Ok(requirements)
}

/// Probes every endpoint under one deadline, learning blob storage and token services on the
/// way and probing those too.
pub async fn probe(
    mut requirements: Requirements,
    spec: &BundleSpec,
    lock: &ImageLock,
    options: ProbeOptions,
) -> crate::Result<ProbedRequirements> {
    let deadline = tokio::time::Instant::now() + options.deadline;
    let prober = Prober::new(options)?;
    let endpoints = std::mem::take(&mut requirements.endpoints);
    let (first_round, (learnt, notes)) = tokio::join!(prober.probe_all(&endpoints, deadline), async {
        tokio::time::timeout_at(deadline, prober.learn_redirects(&endpoints, spec, lock))
            .await
            .unwrap_or_else(|_| {
                (
                    Vec::new(),
                    vec!["learning blob redirects did not finish before the probe deadline".to_owned()],
                )
            })
    });
    let mut set = EndpointSet::from(endpoints.clone());
    for endpoint in learnt {
        set.add(endpoint);
    }
    for (endpoint, result) in endpoints.iter().zip(&first_round) {
        if endpoint.role == EndpointRole::RegistryApi
            && let Some(learnt) = result
                .token_service
                .as_deref()
                .and_then(|realm| probe::token_service_endpoint(realm, endpoint))
        {
            set.add(learnt);
        }
    }
    let all = set.into_sorted();
    let fresh: Vec<RequiredEndpoint> = all
        .iter()
        .filter(|endpoint| !endpoints.iter().any(|known| same_endpoint(known, endpoint)))
        .cloned()
        .collect();
    let second_round = prober.probe_all(&fresh, deadline).await;
    // Each endpoint of `all` is in exactly one of the two rounds.
    let probed: Vec<(&RequiredEndpoint, ProbeResult)> = endpoints
        .iter()
        .zip(first_round)
        .chain(fresh.iter().zip(second_round))
        .collect();
    let probes = all
        .iter()
        .filter_map(|endpoint| {
            probed
                .iter()
                .find(|(known, _)| same_endpoint(known, endpoint))
                .map(|(_, result)| result.clone())
        })
        .collect();
    requirements.endpoints = all;
    requirements.notes.extend(prober.warnings);
    requirements.notes.extend(notes);
    Ok(ProbedRequirements { requirements, probes })
}

fn same_endpoint(a: &RequiredEndpoint, b: &RequiredEndpoint) -> bool {
    (a.scheme, &a.host, a.port) == (b.scheme, &b.host, b.port)
}

/// What an audit checks.
pub struct AuditRequest<'a> {
    /// The site's allowlist, parsed.
    pub allowlist: &'a Allowlist,
    /// The requirements (from [`endpoints::required`]).
    pub requirements: Requirements,
    /// The inputs' digests, for the report.
    pub inputs: Vec<InputDigest>,
    /// Probe from this host (and learn redirects) with these options.
    pub probe: Option<ProbeOptions>,
    /// The spec and lock, for learning where registries redirect blobs.
    pub spec: &'a BundleSpec,
    /// The lock.
    pub lock: &'a ImageLock,
}

/// Audits an allowlist: coverage of every required endpoint, entry findings, and with probing,
/// reachability.
pub async fn audit(request: AuditRequest<'_>) -> crate::Result<AuditReport> {
    let probed = request.probe.is_some();
    let (requirements, probes): (Requirements, Vec<Option<ProbeResult>>) = match request.probe {
        Some(options) => {
            let probed = probe(request.requirements, request.spec, request.lock, options).await?;
            (probed.requirements, probed.probes.into_iter().map(Some).collect())
        }
        None => {
            let count = request.requirements.endpoints.len();
            (request.requirements, vec![None; count])
        }
    };
    Ok(AuditReport::build(AuditInputs {
        release: requirements.release,
        inputs: request.inputs,
        allowlist: request.allowlist,
        endpoints: requirements.endpoints.into_iter().zip(probes).collect(),
        in_cluster: requirements.in_cluster,
        notes: requirements.notes,
        probed,
    }))
}
