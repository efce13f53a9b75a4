//! Image references in rendered manifests: where each locked image is pulled from, and the
//! check that every container image in the output is one of them.

use std::collections::{BTreeMap, BTreeSet};

use coder_bundle_spec::ImageLock;
use serde_json::Value;

use coder_mirror::SiteRegistry;

use super::kinds::kind_of;

/// Where the cluster pulls the platform's images from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// Connected mode: the original registries, pinned by the lock's digests.
    Upstream,
    /// Air-gapped mode: the site registry the bundle was pushed into.
    Site(SiteRegistry),
}

/// Logical image name → the pinned reference containers use, for every image in the lock.
pub fn image_map(lock: &ImageLock, source: &ImageSource) -> crate::Result<BTreeMap<String, String>> {
    if lock.images.is_empty() {
        return Err(crate::DeployError::LockUnresolved);
    }
    let mut images = BTreeMap::new();
    for image in &lock.images {
        let reference = image.image_reference()?;
        let pinned = match source {
            ImageSource::Upstream => reference.pinned(&image.digest),
            ImageSource::Site(site) => site.pinned(&reference, &image.digest),
        };
        images.insert(image.name.clone(), pinned);
    }
    Ok(images)
}

/// The pod spec of a workload object, wherever its kind keeps it.
fn pod_spec(object: &Value) -> Option<&Value> {
    let spec = object.get("spec")?;
    match kind_of(object) {
        "Pod" => Some(spec),
        "CronJob" => spec.pointer("/jobTemplate/spec/template/spec"),
        _ => spec.pointer("/template/spec"),
    }
}

/// Checks every container, init container and ephemeral container image against the allowed
/// references; returns one line per offender.
pub fn check_images(objects: &[Value], images: &BTreeMap<String, String>) -> Result<(), Vec<String>> {
    let allowed: BTreeSet<&str> = images.values().map(String::as_str).collect();
    let mut offenders = Vec::new();
    for object in objects {
        let Some(spec) = pod_spec(object) else {
            continue;
        };
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for container in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                let image = container.get("image").and_then(Value::as_str).unwrap_or("(none)");
                if !allowed.contains(image) {
                    offenders.push(format!(
                        "{} {}: {list} {}: {image}",
                        kind_of(object),
                        object
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("?"),
                        container.get("name").and_then(Value::as_str).unwrap_or("?"),
                    ));
                }
            }
        }
    }
    if offenders.is_empty() {
        Ok(())
    } else {
        Err(offenders)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_kind_of_container_in_every_workload_kind_is_checked() {
        let images = BTreeMap::from([("app".to_owned(), "site/app@sha256:1".to_owned())]);
        let objects = vec![
            json!({"kind": "Deployment", "metadata": {"name": "ok"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "site/app@sha256:1"}]}}}}),
            json!({"kind": "Job", "metadata": {"name": "job"},
                   "spec": {"template": {"spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                                                   "containers": [{"name": "c", "image": "site/app@sha256:1"}]}}}}),
            json!({"kind": "CronJob", "metadata": {"name": "cron"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "evil:latest"}]}}}}}}),
            json!({"kind": "Pod", "metadata": {"name": "pod"},
                   "spec": {"ephemeralContainers": [{"name": "debug", "image": "debug:1"}]}}),
        ];
        let offenders = check_images(&objects, &images).expect_err("three offenders");
        assert_eq!(
            offenders,
            [
                "Job job: initContainers init: busybox",
                "CronJob cron: containers c: evil:latest",
                "Pod pod: ephemeralContainers debug: debug:1",
            ]
        );
    }
}
