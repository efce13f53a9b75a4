//! Short-lived probe pods: the platform image running `coder-service probe HOST:PORT...`, with
//! the labels of whoever the check stands for (a stranger, a workspace), no credentials, no
//! privileges. The check reads what opened from the pod's log and deletes the pod, whatever
//! happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{Value, json};

/// The label every probe pod carries, its value the check's run id.
pub const RUN_LABEL: &str = "coder-install/check-run";

/// How long a probe pod may take to start, run and finish (image pull included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(150);
/// How long each connection may take inside the pod.
const CONNECT_SECS: u64 = 3;

/// One probe pod to run.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Its name.
    pub name: String,
    /// Its labels (the run label is added).
    pub labels: BTreeMap<String, String>,
    /// `HOST:PORT` each.
    pub targets: Vec<String>,
}

/// What a probe found: by target, open or not and why not.
pub type ProbeResults = BTreeMap<String, (bool, String)>;

/// The pod's manifest.
pub fn manifest(spec: &ProbeSpec, run: &str, image: &str, pull_secrets: &[LocalObjectReference]) -> Value {
    let mut labels = spec.labels.clone();
    labels.insert(RUN_LABEL.to_owned(), run.to_owned());
    let mut args = vec![
        "probe".to_owned(),
        "--timeout-secs".to_owned(),
        CONNECT_SECS.to_string(),
    ];
    args.extend(spec.targets.iter().cloned());
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": spec.name, "labels": labels },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 0,
            "imagePullSecrets": pull_secrets,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "probe",
                "image": image,
                "args": args,
                "resources": {
                    "requests": { "cpu": "10m", "memory": "16Mi" },
                    "limits": { "cpu": "100m", "memory": "64Mi" },
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
            }],
        },
    })
}

/// Reads `coder-service probe`'s lines out of a log; `None` when it did not finish.
pub fn parse_log(log: &str) -> Option<ProbeResults> {
    let mut results = ProbeResults::new();
    let mut done = false;
    for line in log.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(target), Some(open)) = (value["probe"].as_str(), value["open"].as_bool()) {
            let detail = value["detail"].as_str().unwrap_or_default().to_owned();
            results.insert(target.to_owned(), (open, detail));
        }
        done |= value.get("probe_done").is_some();
    }
    done.then_some(results)
}

/// Runs the probe pod of `spec` and returns what it found; the pod is deleted in every case.
pub async fn run(
    pods: &Api<Pod>,
    spec: &ProbeSpec,
    run: &str,
    image: &str,
    pull_secrets: &[LocalObjectReference],
) -> Result<ProbeResults, String> {
    let pod: Pod = serde_json::from_value(manifest(spec, run, image, pull_secrets))
        .map_err(|error| format!("the probe pod's manifest: {error}"))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|error| format!("creating the probe pod {}: {error}", spec.name))?;
    let outcome = wait_for_log(pods, &spec.name).await;
    let _ = pods.delete(&spec.name, &DeleteParams::default()).await;
    outcome
}

/// The pod's results once it has finished.
async fn wait_for_log(pods: &Api<Pod>, name: &str) -> Result<ProbeResults, String> {
    let started = Instant::now();
    let mut state = String::from("not started");
    while started.elapsed() < PROBE_TIMEOUT {
        if let Ok(Some(pod)) = pods.get_opt(name).await {
            let status = pod.status.unwrap_or_default();
            let phase = status.phase.unwrap_or_default();
            state = waiting_reason(&status.container_statuses.unwrap_or_default())
                .unwrap_or_else(|| phase.clone());
            if phase == "Succeeded" || phase == "Failed" {
                let log = pods
                    .logs(name, &LogParams::default())
                    .await
                    .map_err(|error| format!("the probe's log: {error}"))?;
                return parse_log(&log).ok_or_else(|| {
                    format!("the probe pod {name} ended {phase} without results (does the platform image have `coder-service probe`?): {}", log.trim())
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "the probe pod {name} did not finish in {} s ({state})",
        PROBE_TIMEOUT.as_secs()
    ))
}

fn waiting_reason(statuses: &[k8s_openapi::api::core::v1::ContainerStatus]) -> Option<String> {
    statuses.iter().find_map(|status| {
        let waiting = status.state.as_ref()?.waiting.as_ref()?;
        Some(format!(
            "{}: {}",
            waiting.reason.clone().unwrap_or_default(),
            waiting.message.clone().unwrap_or_default()
        ))
    })
}

/// The names of this run's probe pods that still exist.
pub async fn left_behind(pods: &Api<Pod>, run: &str) -> Result<Vec<String>, String> {
    let listed = pods
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await
        .map_err(|error| format!("listing probe pods: {error}"))?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_log_gives_each_target_and_an_unfinished_one_nothing() {
        let log = "{\"probe\":\"198.18.1.2:5432\",\"open\":false,\"detail\":\"no answer within 3 s\"}\n\
                   not json\n{\"probe\":\"198.18.1.3:443\",\"open\":true,\"detail\":\"\"}\n";
        assert_eq!(parse_log(log), None);
        let results = parse_log(&format!("{log}{{\"probe_done\":2}}\n")).expect("finished");
        assert_eq!(
            results["198.18.1.2:5432"],
            (false, "no answer within 3 s".to_owned())
        );
        assert!(results["198.18.1.3:443"].0);
    }

    #[test]
    fn the_pod_has_no_credentials_and_carries_the_run_label() {
        let spec = ProbeSpec {
            name: "coder-check-ab12-stranger".to_owned(),
            labels: BTreeMap::from([("app.kubernetes.io/name".to_owned(), "coder-check".to_owned())]),
            targets: vec!["198.18.1.2:5432".to_owned()],
        };
        let pod = manifest(&spec, "ab12", "registry.site/coder/coder-service@sha256:00", &[]);
        assert_eq!(pod["metadata"]["labels"][RUN_LABEL], "ab12");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            pod["spec"]["containers"][0]["args"],
            json!(["probe", "--timeout-secs", "3", "198.18.1.2:5432"])
        );
    }
}
