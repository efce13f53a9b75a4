//! `coder-install check`: a self-test of an installed platform, walking the port table as a
//! user's traffic does.
//!
//! From outside the cluster, through the access URL (its host sent to the ingress controller's
//! load-balancer address): the load balancer, TLS at the ingress, the dashboard, the manager
//! (the admin signs in with the password of the install's Secret and makes a throwaway member),
//! a throwaway workspace of the member's, the envproxy, and through it the workspace's editor,
//! a terminal round trip and the SSH proxy. From inside, short-lived probe pods made from the
//! platform image: PostgreSQL refuses a pod labelled as a stranger and one labelled as a
//! workspace, and the manager reaches it (it is ready, and its readiness is a query). The hops
//! come from the port table ([`hops::plan`]); each is reported pass, fail (with what to look at)
//! or skipped (a hop it needs failed). The last hop deletes what the check made, whatever
//! happened before, and fails if anything is left.
//!
//! Modules: [`hops`] (the hops, from the port table), [`report`] (results and their text),
//! `install` (what is read of the install), `front_door` (the access URL: TCP, TLS, HTTP,
//! WebSocket), `api` (the platform's API calls), `sessions` (terminal and SSH bytes),
//! `probe_pod` (the probe pods), `diagnose` (what to look at), `walk` (the outside hops),
//! `inside` (the probe and PostgreSQL hops), `cleanup` (the last hop).

mod api;
mod cleanup;
mod diagnose;
mod error;
mod front_door;
pub mod hops;
mod inside;
mod install;
mod probe_pod;
pub mod report;
mod sessions;
mod walk;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use coder_progress::Progress;

pub use error::CheckError;
pub use hops::{Hop, HopKind, Layout, Source};
pub use report::{CheckReport, HopResult, Verdict};

use crate::cluster::Cluster;
use install::Install;
use walk::Walk;

/// What to check, and how to reach it.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The install's namespace.
    pub namespace: String,
    /// Send the access URL's host to this address (`--resolve HOST:ADDR`) instead of the load
    /// balancer's.
    pub resolve: Option<(String, IpAddr)>,
    /// Extra CA certificates (PEM) to trust for the access URL, beside the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The admin's password, instead of the one in the install's Secret.
    pub admin_password: Option<String>,
    /// How long the throwaway workspace may take to run.
    pub workspace_timeout: Duration,
}

/// Where the access URL's host is sent: `--resolve`, else the load balancer's IP address, else
/// DNS (`None`).
fn address(install: &Install, options: &CheckOptions) -> Result<Option<IpAddr>, CheckError> {
    if let Some((host, address)) = &options.resolve {
        if !host.eq_ignore_ascii_case(&install.host()) {
            return Err(CheckError::Resolve {
                host: host.clone(),
                access_host: install.host(),
            });
        }
        return Ok(Some(*address));
    }
    Ok(install.load_balancer_ip())
}

/// Walks every hop of the install in `options.namespace`; hop failures are in the report, an
/// error means the walk could not start (nothing installed, a bad flag).
pub async fn check(
    cluster: &Cluster,
    options: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport, CheckError> {
    let install = Install::read(cluster, &options.namespace).await?;
    let address = address(&install, options)?;
    let door = front_door::FrontDoor::new(&install, address, options.ca_pem.as_deref())?;
    let layout = Layout {
        https: install.access_url.scheme() == "https",
        port: install.access_url.port(),
        in_cluster_postgres: install.postgres.is_some(),
    };
    let (access_url, target) = (install.base(), door.target());
    let mut walk = Walk {
        cluster,
        install,
        door,
        options,
        run: walk::run_id(),
        admin_token: None,
        member: None,
        workspace: None,
        probes: None,
    };
    let mut results: Vec<HopResult> = Vec::new();
    // Ctrl-C stops the walk, not the cleanup: the hop under way fails, the rest are skipped,
    // and the last hop still deletes what the check made.
    let interrupt = tokio::signal::ctrl_c();
    let mut interrupt = std::pin::pin!(interrupt);
    let mut interrupted = false;
    for hop in hops::plan(&layout) {
        let missing = hop.needs.iter().find(|need| {
            !results
                .iter()
                .any(|result| &result.hop.name == *need && result.verdict == Verdict::Pass)
        });
        let started = Instant::now();
        let (verdict, detail, look_at) = match missing {
            _ if interrupted && hop.kind != HopKind::Cleanup => {
                (Verdict::Skip, "interrupted".to_owned(), None)
            }
            Some(need) => (Verdict::Skip, format!("needs {need}"), None),
            None => {
                progress.step(&format!("{}: {}", hop.name, hop.checks));
                let outcome = match hop.kind {
                    HopKind::Cleanup => Some(walk.hop(&hop).await),
                    _ => tokio::select! {
                        outcome = walk.hop(&hop) => Some(outcome),
                        _ = &mut interrupt => None,
                    },
                };
                match outcome {
                    Some(Ok(seen)) => (Verdict::Pass, seen, None),
                    Some(Err(failure)) => (Verdict::Fail, failure.detail, Some(failure.look_at)),
                    None => {
                        interrupted = true;
                        progress.warning("interrupted: deleting what the check made");
                        let look_at = "run coder-install check again".to_owned();
                        (Verdict::Fail, "interrupted (Ctrl-C)".to_owned(), Some(look_at))
                    }
                }
            }
        };
        results.push(HopResult {
            hop,
            verdict,
            detail,
            look_at,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    Ok(CheckReport::new(
        options.namespace.clone(),
        access_url,
        target,
        results,
    ))
}
