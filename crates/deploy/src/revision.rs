//! What `rollback` trusts, and why.
//!
//! Everything a revision records lives in the namespace (ConfigMaps `coder-install` and
//! `coder-install-rev-<N>`), and anyone bound to the built-in `edit` role there may rewrite it.
//! They may read the namespace's Secrets too, so no key kept in the namespace (an HMAC over the
//! record, say) could tell the installer's writes from theirs. Nothing recorded is therefore
//! trusted to *be* anything; rollback only re-renders, and it trusts nothing but this
//! coder-install binary:
//!
//! - **The chart's bytes come from the binary.** A record keeps only the `sha256:` of the chart
//!   it was rendered from ([`chart_digest`]); rollback renders the chart built into this
//!   coder-install ([`embedded_chart`]) and only when its digest is the recorded one. A record
//!   naming another chart (another version's, or recorded chart files that do not hash to the
//!   recorded digest) is refused: nothing from the namespace is ever rendered as a template.
//! - **What the recorded values and images may reach is bounded by the trusted chart.** The
//!   lock must hash to the digest the install record lists and every image must be where it
//!   pins it; every kind must be one the chart renders and every namespaced object in the
//!   namespace. Every RBAC object (its rules, role reference and subjects) and every
//!   cluster-scoped object must equal the object of that kind and name that the built-in chart
//!   renders with its defaults for the namespace (the recorded IngressClass name aside), so no
//!   recorded value can grant a permission or change a cluster-scoped object the chart would
//!   not. What remains is what `edit` may already do in the namespace itself (run its own
//!   images as the namespace's pods).

use std::collections::{BTreeMap, BTreeSet};

use coder_bundle_spec::ImageLock;
use serde_json::Value;

use crate::record::RevisionInputs;
use crate::release::{CHART, InstallMode, Release};
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
        mode: release.mode,
        registry: release.site.as_ref().map(ToString::to_string).unwrap_or_default(),
        lock: release.lock_text.clone(),
        lock_digest: release.lock_digest.clone(),
        chart_digest: chart_digest(&release.chart),
        chart: BTreeMap::new(),
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
    let source = check_recorded_images(revision, inputs, lock_digest)?;
    let chart = trusted_chart(revision, inputs)?;

    // Render the trusted chart with the recorded values, validated as any values are.
    let defaults = crate::render::chart_defaults(&chart).map_err(|error| one(error.to_string()))?;
    let layer = ValuesLayer {
        source_name: format!("revision {revision}'s values"),
        text: inputs.values.to_string(),
    };
    let values =
        crate::render::values::resolve(&defaults, &[layer], &[]).map_err(|error| one(error.to_string()))?;
    let airgapped = matches!(source, ImageSource::Site(_));
    let request = |values| RenderRequest {
        chart: &chart,
        values,
        namespace,
        images: &inputs.images,
        pdb_api,
        airgapped,
    };
    let manifests = crate::render::render(&request(&values)).map_err(|error| one(error.to_string()))?;

    // What the trusted chart renders with its defaults: the bound on RBAC and cluster-scoped
    // objects (the ingress controller on, under the recorded IngressClass name).
    let reference_layer = ValuesLayer {
        source_name: format!("the {CHART} chart's defaults"),
        text: reference_values(&inputs.values).to_string(),
    };
    let reference_values = crate::render::values::resolve(&defaults, &[reference_layer], &[])
        .map_err(|error| one(error.to_string()))?;
    let reference =
        crate::render::render(&request(&reference_values)).map_err(|error| one(error.to_string()))?;

    let allowed = chart_kinds(&chart);
    let mut problems = object_problems(&manifests.objects, &allowed, namespace);
    problems.extend(beyond_the_chart(&manifests.objects, &reference.objects));
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(refuse(problems))
    }
}

/// Checks the recorded lock (the one the install record names, byte for byte) and the recorded
/// images (exactly where that lock pins them, or one platform of a locked index); returns where
/// the images come from.
fn check_recorded_images(
    revision: u64,
    inputs: &RevisionInputs,
    lock_digest: &str,
) -> Result<ImageSource, RevisionRefused> {
    let one = |problem: String| RevisionRefused {
        revision,
        problems: vec![problem],
    };
    let actual = coder_registry::sha256_digest(inputs.lock.as_bytes());
    if actual != inputs.lock_digest || actual != lock_digest {
        return Err(one(format!(
            "the recorded lock hashes to {actual}, but the install record lists {lock_digest}"
        )));
    }
    let lock = ImageLock::from_yaml(&inputs.lock, &format!("revision {revision}'s lock"))
        .map_err(|error| one(error.to_string()))?;
    let source = match inputs.mode {
        InstallMode::AirGapped => ImageSource::Site(
            inputs
                .registry
                .parse()
                .map_err(|error| one(format!("the recorded site registry: {error}")))?,
        ),
        InstallMode::Connected => ImageSource::Upstream,
    };
    let expected = image_map(&lock, &source).map_err(|error| one(error.to_string()))?;
    let problems = unlocked_images(&inputs.images, &expected, &lock);
    if problems.is_empty() {
        Ok(source)
    } else {
        Err(RevisionRefused { revision, problems })
    }
}

/// The chart built into this coder-install, only when it is the one the revision records.
fn trusted_chart(revision: u64, inputs: &RevisionInputs) -> Result<ChartFiles, RevisionRefused> {
    let one = |problem: String| RevisionRefused {
        revision,
        problems: vec![problem],
    };
    let chart = embedded_chart(CHART).map_err(|error| one(error.to_string()))?;
    let trusted = chart_digest(&chart);
    let recorded = recorded_chart_digest(inputs).map_err(one)?;
    if recorded != trusted {
        return Err(one(format!(
            "it was rendered from chart {recorded}, but the {CHART} chart built into this coder-install \
             is {trusted}; rollback renders only the built-in chart (run the coder-install that applied \
             revision {revision}, version {})",
            inputs.version
        )));
    }
    Ok(chart)
}

/// `sha256:` of a chart's files: each path and content, length-prefixed, in path order.
pub fn chart_digest(chart: &ChartFiles) -> String {
    let mut files: Vec<&(String, Vec<u8>)> = chart.iter().collect();
    files.sort();
    let mut bytes = Vec::new();
    for (path, content) in files {
        for part in [path.as_bytes(), content.as_slice()] {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    coder_registry::sha256_digest(&bytes)
}

/// The chart digest a revision's inputs claim: [`RevisionInputs::chart_digest`], or for a
/// record of an older coder-install the digest of the chart files it carries. Recorded files
/// that do not hash to the recorded digest were edited.
pub fn recorded_chart_digest(inputs: &RevisionInputs) -> Result<String, String> {
    if inputs.chart.is_empty() {
        if inputs.chart_digest.is_empty() {
            return Err("it names no chart digest".to_owned());
        }
        return Ok(inputs.chart_digest.clone());
    }
    let files = inputs.chart_files()?;
    let digest = chart_digest(&files);
    if !inputs.chart_digest.is_empty() && digest != inputs.chart_digest {
        return Err(format!(
            "its chart files were changed: they hash to {digest}, but it records chart {}",
            inputs.chart_digest
        ));
    }
    Ok(digest)
}

/// The values of the reference render: the chart's defaults, with the ingress controller on
/// and the recorded IngressClass name when it is a plain DNS name.
fn reference_values(recorded: &Value) -> Value {
    let class_name = recorded
        .pointer("/ingress/className")
        .and_then(Value::as_str)
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 253
                && name.bytes().all(|byte| {
                    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
                })
        });
    let mut ingress = serde_json::json!({"enable": true});
    if let Some(name) = class_name {
        ingress["className"] = Value::from(name);
    }
    serde_json::json!({ "ingress": ingress })
}

/// RBAC objects and cluster-scoped objects of `objects` that are not exactly what the trusted
/// chart renders (`reference`): a role's rules, a binding's role and subjects, or any other
/// cluster-scoped object's content (labels and annotations aside).
fn beyond_the_chart(objects: &[Value], reference: &[Value]) -> Vec<String> {
    let key = |object: &Value| {
        (
            kind_of(object).to_owned(),
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        )
    };
    let reference: BTreeMap<_, _> = reference.iter().map(|object| (key(object), object)).collect();
    let mut problems = Vec::new();
    for object in objects {
        let kind = kind_of(object);
        let rbac = matches!(
            kind,
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        );
        let cluster_scoped = object.pointer("/metadata/namespace").is_none();
        if !rbac && !cluster_scoped {
            continue;
        }
        let (_, _, name) = key(object);
        let scope = if cluster_scoped { "cluster-scoped " } else { "" };
        match reference.get(&key(object)) {
            None => problems.push(format!(
                "{scope}{kind} {name} is not an object the {CHART} chart built into coder-install renders"
            )),
            Some(expected) if guarded(object) != guarded(expected) => problems.push(format!(
                "{scope}{kind} {name} differs from what the {CHART} chart built into coder-install renders \
                 ({})",
                if rbac {
                    "its rules, role or subjects"
                } else {
                    "its content"
                }
            )),
            Some(_) => {}
        }
    }
    problems
}

/// What must not differ: an object without its labels and annotations.
fn guarded(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("labels");
        metadata.remove("annotations");
    }
    object
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

    /// The built-in chart rendered in namespace `coder` with `values`.
    fn render_with(values: &Values) -> Vec<Value> {
        let chart = embedded_chart(CHART).expect("chart");
        let images = crate::render::fixture_images();
        crate::render::render(&RenderRequest {
            chart: &chart,
            values,
            namespace: "coder",
            images: &images,
            pdb_api: PdbApi::V1,
            airgapped: false,
        })
        .expect("render")
        .objects
    }

    fn values_with(sets: &[&str]) -> Values {
        let chart = embedded_chart(CHART).expect("chart");
        let defaults = crate::render::chart_defaults(&chart).expect("defaults");
        let sets: Vec<String> = sets.iter().map(|set| set.to_string()).collect();
        crate::render::values::resolve(&defaults, &[], &sets).expect("values")
    }

    fn reference_for(values: &Values) -> Vec<Value> {
        let recorded = serde_json::to_value(values).expect("values JSON");
        let chart = embedded_chart(CHART).expect("chart");
        let defaults = crate::render::chart_defaults(&chart).expect("defaults");
        let layer = ValuesLayer {
            source_name: "reference".to_owned(),
            text: reference_values(&recorded).to_string(),
        };
        render_with(&crate::render::values::resolve(&defaults, &[layer], &[]).expect("values"))
    }

    #[test]
    fn legitimate_values_stay_within_what_the_chart_renders() {
        for sets in [
            &[][..],
            &["manager.replicas=3"],
            &["ingress.enable=false"],
            &["ingress.className=site-nginx"],
            &["postgres.host=db.site.test"],
        ] {
            let values = values_with(sets);
            let problems = beyond_the_chart(&render_with(&values), &reference_for(&values));
            assert!(problems.is_empty(), "{sets:?}: {problems:?}");
        }
    }

    #[test]
    fn rbac_and_cluster_scoped_objects_beyond_the_chart_are_named() {
        let values = values_with(&[]);
        let reference = reference_for(&values);
        let mut objects = render_with(&values);
        let cluster_role = objects
            .iter_mut()
            .find(|object| kind_of(object) == "ClusterRole")
            .expect("a ClusterRole");
        cluster_role["rules"]
            .as_array_mut()
            .expect("rules")
            .push(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        let binding = objects
            .iter_mut()
            .find(|object| kind_of(object) == "RoleBinding")
            .expect("a RoleBinding");
        binding["subjects"]
            .as_array_mut()
            .expect("subjects")
            .push(json!({"kind": "User", "name": "intruder"}));
        objects.push(
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "intruder"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}),
        );
        let problems = beyond_the_chart(&objects, &reference);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("cluster-scoped ClusterRole") && problems[0].contains("rules"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("RoleBinding"), "{problems:?}");
        assert!(
            problems[2].contains("ClusterRoleBinding intruder is not an object"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_recorded_chart_is_named_by_its_digest() {
        use base64::Engine as _;
        let chart = embedded_chart(CHART).expect("chart");
        let digest = chart_digest(&chart);
        let mut inputs = RevisionInputs {
            version: "1.0.0".to_owned(),
            mode: InstallMode::Connected,
            registry: String::new(),
            lock: String::new(),
            lock_digest: String::new(),
            chart_digest: digest.clone(),
            chart: BTreeMap::new(),
            values: json!({}),
            images: BTreeMap::new(),
            bundle_signature: String::new(),
        };
        assert_eq!(recorded_chart_digest(&inputs).expect("digest"), digest);
        // An older record carries the files: their digest is the claim.
        inputs.chart = chart
            .iter()
            .map(|(path, bytes)| {
                (
                    path.clone(),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )
            })
            .collect();
        inputs.chart_digest.clear();
        assert_eq!(recorded_chart_digest(&inputs).expect("digest"), digest);
        // Files that do not hash to the recorded digest were changed.
        inputs.chart_digest = digest;
        inputs.chart.insert("templates/99.yaml".to_owned(), String::new());
        let error = recorded_chart_digest(&inputs).expect_err("changed");
        assert!(error.contains("chart files were changed"), "{error}");
        inputs.chart.clear();
        inputs.chart_digest.clear();
        assert!(recorded_chart_digest(&inputs).is_err());
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
