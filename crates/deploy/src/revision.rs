//! What `rollback` trusts: not the objects stored with a revision (anyone who can write
//! ConfigMaps in the namespace could plant others there), but the inputs it was rendered from,
//! rendered again and checked: the lock against its recorded digest, every image against the
//! lock, every kind against the kinds this tool's chart renders, every object in the namespace,
//! and every RBAC binding to a role of the same release.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use bundle_spec::ImageLock;
use serde_json::Value;

use crate::record::RevisionInputs;
use crate::release::{CHART, Release};
use crate::render::{ImageSource, Manifests, PdbApi, RenderRequest, Values, ValuesLayer, image_map, kind_of};
use coder_bundle::charts::{ChartFiles, embedded_chart};

/// A revision's recorded inputs that do not check out.
#[derive(Debug, thiserror::Error)]
#[error(
    "revision {revision}'s recorded inputs do not check out, so rollback changed nothing:\n{}\n\
     Someone may have edited ConfigMap coder-install-rev-{revision}; apply that version's bundle (or spec and lock) instead",
    .problems.iter().map(|line| format!("  - {line}")).collect::<Vec<_>>().join("\n")
)]
pub struct RevisionRefused {
    /// The revision.
    pub revision: u64,
    /// One line per problem.
    pub problems: Vec<String>,
}

/// The inputs to record for `release` rendered with `values`.
pub fn record_inputs(release: &Release, values: &Values) -> crate::Result<RevisionInputs> {
    Ok(RevisionInputs {
        version: release.version.clone(),
        mode: release.mode.to_owned(),
        registry: release.site.as_ref().map(ToString::to_string).unwrap_or_default(),
        lock: release.lock_text.clone(),
        lock_digest: release.lock_digest.clone(),
        chart: release
            .chart
            .iter()
            .map(|(path, bytes)| {
                (
                    path.clone(),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )
            })
            .collect(),
        values: serde_json::to_value(values)?,
        images: release.images.clone(),
        bundle_signature: release.signature.clone(),
    })
}

/// Renders revision `revision` again from its `inputs` for `namespace`, and checks the result.
/// `lock_digest` is the lock digest the install record lists for that revision.
pub fn rerender(
    revision: u64,
    inputs: &RevisionInputs,
    lock_digest: &str,
    namespace: &str,
    pdb_api: PdbApi,
) -> Result<Manifests, RevisionRefused> {
    let refuse = |problems: Vec<String>| RevisionRefused { revision, problems };
    let one = |problem: String| refuse(vec![problem]);

    // The lock: the one the record names, byte for byte.
    let actual = coder_registry::sha256_digest(inputs.lock.as_bytes());
    if actual != inputs.lock_digest || actual != lock_digest {
        return Err(one(format!(
            "the recorded lock hashes to {actual}, but the install record lists {lock_digest}"
        )));
    }
    let lock = ImageLock::from_yaml(&inputs.lock, &format!("revision {revision}'s lock"))
        .map_err(|error| one(error.to_string()))?;

    // Images: exactly where the lock pins them (or one platform of a locked index).
    let source = match inputs.mode.as_str() {
        "air-gapped" => ImageSource::Site(
            inputs
                .registry
                .parse()
                .map_err(|error| one(format!("the recorded site registry: {error}")))?,
        ),
        _ => ImageSource::Upstream,
    };
    let expected = image_map(&lock, &source).map_err(|error| one(error.to_string()))?;
    let image_problems = unlocked_images(&inputs.images, &expected, &lock);
    if !image_problems.is_empty() {
        return Err(refuse(image_problems));
    }

    // Render with the recorded chart and values, validated as any values are.
    let chart: ChartFiles = inputs.chart_files().map_err(one)?;
    let defaults = crate::render::chart_defaults(&chart).map_err(|error| one(error.to_string()))?;
    let layer = ValuesLayer {
        source_name: format!("revision {revision}'s values"),
        text: inputs.values.to_string(),
    };
    let values =
        crate::render::values::resolve(&defaults, &[layer], &[]).map_err(|error| one(error.to_string()))?;
    let manifests = crate::render::render(&RenderRequest {
        chart: &chart,
        values: &values,
        namespace,
        images: &inputs.images,
        pdb_api,
        airgapped: matches!(source, ImageSource::Site(_)),
    })
    .map_err(|error| one(error.to_string()))?;

    let allowed = chart_kinds(&embedded_chart(CHART).map_err(|error| one(error.to_string()))?);
    let problems = object_problems(&manifests.objects, &allowed, namespace);
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(refuse(problems))
    }
}

/// Images of `recorded` that are not where `expected` (from the lock) pins them.
fn unlocked_images(
    recorded: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
    lock: &ImageLock,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, reference) in recorded {
        let (Some(pinned), Some(locked)) = (
            expected.get(name),
            lock.images.iter().find(|image| image.name == *name),
        ) else {
            problems.push(format!("image {name} ({reference}) is not in the lock"));
            continue;
        };
        let repository = |text: &str| text.split_once('@').map(|(repository, _)| repository.to_owned());
        let digest = reference.split_once('@').map(|(_, digest)| digest);
        let locked_digests: BTreeSet<&str> = std::iter::once(locked.digest.as_str())
            .chain(locked.platforms.iter().map(|platform| platform.digest.as_str()))
            .collect();
        let same_repository = repository(reference).is_some() && repository(reference) == repository(pinned);
        if !same_repository || !digest.is_some_and(|digest| locked_digests.contains(digest)) {
            problems.push(format!(
                "image {name} is {reference}, but the lock pins it as {pinned}"
            ));
        }
    }
    problems
}

/// The kinds the chart's templates declare (`kind:` at the start of a line).
pub fn chart_kinds(chart: &ChartFiles) -> BTreeSet<String> {
    chart
        .iter()
        .filter(|(path, _)| path.starts_with("templates/"))
        .filter_map(|(_, bytes)| std::str::from_utf8(bytes).ok())
        .flat_map(|text| text.lines())
        .filter_map(|line| line.strip_prefix("kind:"))
        .map(|kind| kind.trim().to_owned())
        .filter(|kind| !kind.is_empty() && !kind.contains("{{"))
        .collect()
}

/// Objects whose kind the chart does not render, that live in another namespace, or that bind
/// a role the release does not define.
fn object_problems(objects: &[Value], allowed: &BTreeSet<String>, namespace: &str) -> Vec<String> {
    let name = |object: &Value| {
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let roles: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|object| matches!(kind_of(object), "Role" | "ClusterRole"))
        .map(|object| (kind_of(object).to_owned(), name(object)))
        .collect();
    let mut problems = Vec::new();
    for object in objects {
        let kind = kind_of(object);
        if !allowed.contains(kind) {
            problems.push(format!(
                "{kind} {} is not a kind the {CHART} chart renders",
                name(object)
            ));
        }
        if let Some(other) = object.pointer("/metadata/namespace").and_then(Value::as_str)
            && other != namespace
        {
            problems.push(format!(
                "{kind} {} is in namespace {other}, not {namespace}",
                name(object)
            ));
        }
        if matches!(kind, "RoleBinding" | "ClusterRoleBinding") {
            let role_kind = object
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let role_name = object
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            if !roles.contains(&(role_kind.to_owned(), role_name.to_owned())) {
                problems.push(format!(
                    "{kind} {} binds {role_kind} {role_name}, which the release does not define",
                    name(object)
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_charts_kinds_are_read_from_its_templates() {
        let kinds = chart_kinds(&embedded_chart(CHART).expect("chart"));
        for kind in [
            "Deployment",
            "StatefulSet",
            "Service",
            "RoleBinding",
            "IngressClass",
        ] {
            assert!(kinds.contains(kind), "{kind}: {kinds:?}");
        }
        assert!(
            !kinds.contains("Pod") && !kinds.contains("DaemonSet"),
            "{kinds:?}"
        );
    }

    #[test]
    fn foreign_kinds_namespaces_and_role_bindings_are_named() {
        let allowed: BTreeSet<String> = ["Role", "RoleBinding", "ClusterRoleBinding", "Deployment"]
            .map(str::to_owned)
            .into();
        let objects = vec![
            json!({"kind": "Role", "metadata": {"name": "manager", "namespace": "coder"}}),
            json!({"kind": "RoleBinding", "metadata": {"name": "ok", "namespace": "coder"},
                   "roleRef": {"kind": "Role", "name": "manager"}}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "escalate"},
                   "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}),
            json!({"kind": "Deployment", "metadata": {"name": "elsewhere", "namespace": "kube-system"}}),
            json!({"kind": "DaemonSet", "metadata": {"name": "miner", "namespace": "coder"}}),
        ];
        let problems = object_problems(&objects, &allowed, "coder");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("cluster-admin"), "{problems:?}");
        assert!(problems[1].contains("kube-system"), "{problems:?}");
        assert!(problems[2].contains("DaemonSet"), "{problems:?}");
    }
}
