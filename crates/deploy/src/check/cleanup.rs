//! The last hop, run whatever happened before: the throwaway workspace and member deleted
//! through the API, the sessions ended, and the check waits until none of the workspace's
//! objects and none of the run's probe pods is left; what is left is named with a command.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::api;
use super::probe_pod;
use super::walk::{Failure, Outcome, Walk};

/// How long deleted objects may take to go.
const GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// The names of the objects of `kind` in `namespace` with `selector`.
async fn names<K>(client: &kube::Client, namespace: &str, selector: &str) -> Vec<String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default().labels(selector)).await {
        Ok(listed) => listed
            .items
            .into_iter()
            .filter_map(|object| object.meta().name.clone())
            .map(|name| format!("{}/{name}", K::kind(&K::DynamicType::default()).to_lowercase()))
            .collect(),
        Err(error) => vec![format!("(listing {selector}: {error})")],
    }
}

impl Walk<'_> {
    /// Deletes the workspace and the member, ends the sessions.
    async fn delete_throwaways(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let admin = self.admin_token.clone();
        let member_token = self.member.as_ref().and_then(|member| member.token.clone());
        if let Some(id) = &self.workspace
            && let Some(token) = member_token.as_ref().or(admin.as_ref())
            && let Err(reason) = api::delete(&self.door, token, &format!("/api/v0/workspaces/{id}")).await
        {
            problems.push(reason);
        }
        if let Some(token) = &member_token {
            let _ = api::logout(&self.door, token).await;
        }
        if let Some(member) = &self.member {
            let deleted = match &admin {
                Some(token) => api::delete(&self.door, token, &format!("/api/v0/users/{}", member.id)).await,
                None => Err("no admin session".to_owned()),
            };
            if let Err(reason) = deleted {
                problems.push(format!(
                    "user {} ({}) is left: {reason}; delete it in the dashboard's Users page",
                    member.email, member.id
                ));
            }
        }
        if let Some(token) = &admin
            && let Err(reason) = api::logout(&self.door, token).await
        {
            problems.push(format!("the admin's session: {reason}"));
        }
        problems
    }

    /// What of the workspace and the probe pods still exists.
    async fn left_over(&self) -> Vec<String> {
        let (client, namespace) = (&self.cluster.client, self.install.namespace.as_str());
        let mut left = Vec::new();
        if let Some(id) = &self.workspace {
            let selector = format!("com.coder.workspace.id={id}");
            left.extend(names::<Deployment>(client, namespace, &selector).await);
            left.extend(names::<Service>(client, namespace, &selector).await);
            left.extend(names::<PersistentVolumeClaim>(client, namespace, &selector).await);
            left.extend(names::<Pod>(client, namespace, &selector).await);
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        match probe_pod::left_behind(&pods, &self.run).await {
            Ok(probes) => {
                for name in probes {
                    let _ = pods.delete(&name, &DeleteParams::default()).await;
                    left.push(format!("pod/{name}"));
                }
            }
            Err(reason) => left.push(reason),
        }
        left
    }

    /// The cleanup hop.
    pub(super) async fn clean_up(&mut self) -> Outcome {
        let mut problems = self.delete_throwaways().await;
        let started = Instant::now();
        let mut left = self.left_over().await;
        while !left.is_empty() && started.elapsed() < GONE_TIMEOUT {
            tokio::time::sleep(Duration::from_secs(2)).await;
            left = self.left_over().await;
        }
        let namespace = &self.install.namespace;
        if !left.is_empty() {
            problems.push(format!(
                "still there after {} s: {}",
                GONE_TIMEOUT.as_secs(),
                left.join(", ")
            ));
        }
        if problems.is_empty() {
            let what = match (&self.member, &self.workspace) {
                (None, _) => "nothing was made".to_owned(),
                (Some(member), None) => format!("{} deleted", member.email),
                (Some(member), Some(id)) => {
                    format!("workspace {id} and {} deleted, their objects gone", member.email)
                }
            };
            return Ok(format!("{what}; no probe pod left"));
        }
        let mut look_at = format!(
            "kubectl -n {namespace} delete pods -l {}={}",
            probe_pod::RUN_LABEL,
            self.run
        );
        if let Some(id) = &self.workspace {
            look_at.push_str(&format!(
                "; kubectl -n {namespace} delete deploy,svc,pvc,pods -l com.coder.workspace.id={id}"
            ));
        }
        Err(Failure {
            detail: problems.join("; "),
            look_at,
        })
    }
}
