//! `--wait`: until every Deployment and StatefulSet is available and every Job complete, or the
//! timeout passes; then it names what is not ready and why (its conditions and recent events).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::objects::{ObjectKey, api_for};

/// The readiness of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Which object.
    pub key: ObjectKey,
    /// Ready?
    pub ready: bool,
    /// Why not, in a line (`1/2 replicas available`, a condition's message).
    pub detail: String,
}

/// Whether `kind` is something `wait` and `status` watch.
pub fn is_workload(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "Job" | "DaemonSet")
}

/// The readiness of a live workload object.
pub fn readiness(key: &ObjectKey, live: &Value) -> Readiness {
    let number = |pointer: &str| live.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let wanted_in_spec = |pointer: &str| live.pointer(pointer).and_then(Value::as_i64).unwrap_or(1);
    let current = number("/status/observedGeneration") >= number("/metadata/generation");
    let (ready, detail) = match key.kind.as_str() {
        "Deployment" | "StatefulSet" => {
            let wanted = wanted_in_spec("/spec/replicas");
            let field = if key.kind == "Deployment" {
                "/status/availableReplicas"
            } else {
                "/status/readyReplicas"
            };
            let available = number(field);
            let updated = number("/status/updatedReplicas");
            (
                current && available >= wanted && updated >= wanted,
                format!(
                    "{available}/{wanted} replicas available, {updated} updated{}",
                    failing_condition(live)
                ),
            )
        }
        "DaemonSet" => {
            let wanted = number("/status/desiredNumberScheduled");
            let available = number("/status/numberAvailable");
            (
                current && available >= wanted,
                format!("{available}/{wanted} pods available"),
            )
        }
        "Job" => {
            let succeeded = number("/status/succeeded");
            let wanted = wanted_in_spec("/spec/completions");
            (
                succeeded >= wanted,
                format!(
                    "{succeeded}/{wanted} completions, {} failed{}",
                    number("/status/failed"),
                    failing_condition(live)
                ),
            )
        }
        _ => (true, String::new()),
    };
    Readiness {
        key: key.clone(),
        ready,
        detail,
    }
}

/// The first condition of `live` that says something is wrong (`False`, but a replica failure;
/// or `Failed`), as `; reason: message`; empty when none does.
fn failing_condition(live: &Value) -> String {
    live.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|condition| {
            let status = condition.get("status").and_then(Value::as_str);
            let kind = condition.get("type").and_then(Value::as_str).unwrap_or_default();
            (status == Some("False") && kind != "ReplicaFailure")
                || (kind == "Failed" && status == Some("True"))
        })
        .map(|condition| {
            let field = |name: &str| condition.get(name).and_then(Value::as_str);
            format!(
                "; {}: {}",
                field("reason").unwrap_or("condition"),
                field("message").unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// The readiness of each workload in `keys`, read from the cluster now.
pub async fn check(cluster: &Cluster, keys: &[ObjectKey]) -> crate::Result<Vec<Readiness>> {
    let mut states = Vec::new();
    for key in keys.iter().filter(|key| is_workload(&key.kind)) {
        let (api, _) = api_for(cluster, key)?;
        let state = match api.get_opt(&key.name).await? {
            Some(live) => readiness(key, &serde_json::to_value(live)?),
            None => Readiness {
                key: key.clone(),
                ready: false,
                detail: "missing".to_owned(),
            },
        };
        states.push(state);
    }
    Ok(states)
}

/// Polls until everything is ready; on timeout, an error naming each unready object with its
/// latest events.
pub async fn wait_ready(
    cluster: &Cluster,
    keys: &[ObjectKey],
    timeout: Duration,
    on_progress: &dyn Fn(&[Readiness]),
) -> crate::Result<()> {
    let started = Instant::now();
    loop {
        let states = check(cluster, keys).await?;
        if states.iter().all(|state| state.ready) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            let mut waiting = Vec::new();
            for state in states.iter().filter(|state| !state.ready) {
                let mut detail = format!("{}: {}", state.key, state.detail);
                for event in recent_events(cluster, &state.key).await {
                    detail.push_str(&format!("\n      event: {event}"));
                }
                waiting.push(detail);
            }
            return Err(crate::DeployError::NotReady {
                seconds: timeout.as_secs(),
                waiting,
            });
        }
        on_progress(&states);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The last few events about an object, as lines.
async fn recent_events(cluster: &Cluster, key: &ObjectKey) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &key.namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={}", key.name));
    let Ok(list) = api.list(&params).await else {
        return Vec::new();
    };
    let mut events: Vec<Event> = list.items;
    events.sort_by_key(|event| event.last_timestamp.as_ref().map(|time| time.0));
    events
        .iter()
        .rev()
        .take(5)
        .map(|event| {
            format!(
                "{} {}: {}",
                event.type_.as_deref().unwrap_or(""),
                event.reason.as_deref().unwrap_or(""),
                event.message.as_deref().unwrap_or("")
            )
        })
        .collect()
}
