//! The inside hops: PostgreSQL open from the manager (its readiness is a query) and closed from
//! probe pods labelled as a stranger and as a workspace, which must reach the ingress
//! controller (as anyone may) for their "closed" to mean something.

use std::collections::BTreeMap;

use coder_topology::{Component, INGRESS_HTTPS_PORT, POSTGRES_PORT};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::hops::{Hop, Source};
use super::install::MANAGER_DEPLOYMENT;
use super::probe_pod::{self, ProbeResults, ProbeSpec};
use super::walk::{Failure, Outcome, Walk};

/// The labels of a pod that is none of the platform's.
fn stranger_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "coder-check".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "coder-install".to_owned(),
        ),
    ])
}

impl Walk<'_> {
    fn postgres_targets(&self) -> Vec<String> {
        let addresses = self.install.postgres.clone().unwrap_or_default();
        addresses
            .iter()
            .map(|address| format!("{address}:{POSTGRES_PORT}"))
            .collect()
    }

    /// The target anyone may reach: the ingress controller's Service.
    fn control_target(&self) -> Option<String> {
        let ingress = self.install.ingress.as_ref()?;
        Some(format!("{}:{INGRESS_HTTPS_PORT}", ingress.cluster_ip.as_deref()?))
    }

    /// Runs the stranger's and the workspace's probe pods at once.
    pub(super) async fn probe_pods(&mut self) -> Outcome {
        let namespace = self.install.namespace.clone();
        let postgres = self.postgres_targets();
        if postgres.is_empty() {
            return Err(Failure {
                detail: "PostgreSQL's Service has no ready address".to_owned(),
                look_at: format!(
                    "kubectl -n {namespace} get statefulset,pods -l app.kubernetes.io/component=postgres"
                ),
            });
        }
        let control = self.control_target();
        let targets: Vec<String> = postgres.iter().cloned().chain(control.clone()).collect();
        let mut workspace_labels = stranger_labels();
        workspace_labels.insert("com.coder.resource".to_owned(), "true".to_owned());
        let spec = |who: &str, labels| ProbeSpec {
            name: format!("coder-check-{}-{who}", self.run),
            labels,
            targets: targets.clone(),
        };
        let (stranger, workspace) = (
            spec("stranger", stranger_labels()),
            spec("workspace", workspace_labels),
        );
        let pods: Api<Pod> = Api::namespaced(self.cluster.client.clone(), &namespace);
        let (image, secrets) = (&self.install.platform_image, &self.install.pull_secrets);
        let (stranger, workspace) = tokio::join!(
            probe_pod::run(&pods, &stranger, &self.run, image, secrets),
            probe_pod::run(&pods, &workspace, &self.run, image, secrets)
        );
        let look_at = format!(
            "the probe pods' events: kubectl -n {namespace} get events --field-selector involvedObject.kind=Pod; the image {image}"
        );
        let failure = |detail: String| Failure {
            detail,
            look_at: look_at.clone(),
        };
        let (stranger, workspace) = (stranger.map_err(failure)?, workspace.map_err(failure)?);
        if let Some(control) = &control {
            for (who, results) in [("stranger", &stranger), ("workspace", &workspace)] {
                if !results.get(control).is_some_and(|(open, _)| *open) {
                    let why = results
                        .get(control)
                        .map(|(_, why)| why.clone())
                        .unwrap_or_default();
                    return Err(failure(format!(
                        "the {who} probe could not reach the ingress controller at {control} ({why}), so a closed PostgreSQL would prove nothing"
                    )));
                }
            }
        }
        self.probes = Some((stranger, workspace));
        Ok(match control {
            Some(control) => format!("both probe pods ran and reached the ingress controller at {control}"),
            None => "both probe pods ran (no ingress controller to reach as a control)".to_owned(),
        })
    }

    /// The manager is ready: its readiness probe (`/readyz`) is a query to PostgreSQL.
    pub(super) async fn postgres_open(&mut self) -> Outcome {
        let namespace = &self.install.namespace;
        let api: Api<Deployment> = Api::namespaced(self.cluster.client.clone(), namespace);
        let available = match api.get_opt(MANAGER_DEPLOYMENT).await {
            Ok(deployment) => deployment.and_then(|d| d.status?.available_replicas).unwrap_or(0),
            Err(error) => {
                return Err(Failure {
                    detail: format!("reading Deployment {MANAGER_DEPLOYMENT}: {error}"),
                    look_at: format!("kubectl -n {namespace} get deploy {MANAGER_DEPLOYMENT}"),
                });
            }
        };
        if available < 1 {
            return Err(Failure {
                detail: "no manager pod is ready (its readiness, /readyz, queries PostgreSQL)".to_owned(),
                look_at: format!(
                    "kubectl -n {namespace} logs deploy/{MANAGER_DEPLOYMENT}; kubectl -n {namespace} get pods -l app.kubernetes.io/component=postgres"
                ),
            });
        }
        let login = if self.admin_token.is_some() {
            ", and the admin's session was stored"
        } else {
            ""
        };
        Ok(format!(
            "{available} manager pods ready: /readyz queried PostgreSQL{login}"
        ))
    }

    /// PostgreSQL refused the probe pod standing for `hop.from`.
    pub(super) fn postgres_closed(&self, hop: &Hop) -> Outcome {
        let namespace = &self.install.namespace;
        let Some((stranger, workspace)) = &self.probes else {
            return Err(Failure {
                detail: "no probe results".to_owned(),
                look_at: "the probe-pods hop".to_owned(),
            });
        };
        let results: &ProbeResults = match hop.from {
            Source::Component(Component::Workspace) => workspace,
            _ => stranger,
        };
        let postgres = self.postgres_targets();
        let opened: Vec<&String> = postgres
            .iter()
            .filter(|target| results.get(*target).is_some_and(|(open, _)| *open))
            .collect();
        if !opened.is_empty() {
            return Err(Failure {
                detail: format!(
                    "PostgreSQL at {} accepted a probe pod labelled as a {}",
                    opened[0],
                    hop.from.name()
                ),
                look_at: format!(
                    "the NetworkPolicy coder-allow-to-postgres: kubectl -n {namespace} get networkpolicy -o yaml; does the cluster's network plugin enforce NetworkPolicies?"
                ),
            });
        }
        let why: Vec<String> = postgres
            .iter()
            .map(|target| {
                format!(
                    "{target}: {}",
                    results
                        .get(target)
                        .map(|(_, why)| why.as_str())
                        .unwrap_or("not tried")
                )
            })
            .collect();
        Ok(format!("refused ({})", why.join("; ")))
    }
}
