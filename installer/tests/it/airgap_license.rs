//! The air-gap license gate outside `apply --bundle`: `push` and `template --bundle` check the
//! license offline exactly as `apply --bundle` does, before anything is pushed or printed, and the
//! manifests of a bundle tell the manager it is air-gapped (`CODER_AIRGAPPED`), so it enforces the
//! license itself. Connected renders need no license. Real registries on loopback; stand-in images
//! with the real chart.

use std::path::PathBuf;
use std::process::Output;

use coder_license::Tier;
use coder_testenv::cli::{bundle_args, lock_args};
use coder_testenv::{Registry, RegistryFlavour};
use serde_json::Value;

use crate::apply::{platform_spec_text, push_stand_in_images};
use crate::world::{catalog, coder_install, failure, success};

/// An upstream registry with the platform's stand-in images, their spec and lock, a bundle of
/// them, and an empty site registry.
struct AirGap {
    upstream: Registry,
    site: Registry,
    dir: tempfile::TempDir,
}

impl AirGap {
    async fn new() -> Self {
        let (upstream, site) = tokio::join!(
            Registry::start(RegistryFlavour::Plain),
            Registry::start(RegistryFlavour::Plain)
        );
        let upstream = upstream.expect("upstream registry");
        push_stand_in_images(&upstream).await;
        let world = Self {
            upstream,
            site: site.expect("site registry"),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::write(
            world.path("coder.yaml"),
            platform_spec_text(&world.upstream.host(), "1.0.0"),
        )
        .expect("spec");
        let insecure = world.upstream.host();
        success(world.run(lock_args(
            &world.path("coder.yaml"),
            &world.path("images.lock"),
            &insecure,
        )));
        success(world.run(bundle_args(
            &world.path("coder.yaml"),
            &world.path("images.lock"),
            &world.path("cache"),
            &world.path("coder.bundle"),
            &insecure,
        )));
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Runs coder-install with an empty Docker config and `extra` appended.
    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Output {
        let docker = self.path("docker");
        std::fs::create_dir_all(&docker).expect("docker dir");
        std::fs::write(docker.join("config.json"), "{}").expect("docker config");
        coder_install(args, &[("DOCKER_CONFIG", &docker)])
    }

    /// A license file of `tier`, air-gap feature as `airgap`.
    fn license(&self, tier: Tier, airgap: bool) -> String {
        let name = format!("{tier:?}-{airgap}.license");
        std::fs::write(
            self.path(&name),
            crate::license::signed(&crate::license::claims(tier, airgap)),
        )
        .expect("license");
        self.text(&name)
    }

    fn site_registry(&self) -> String {
        format!("{}/mirror", self.site.host())
    }

    /// `push` of the bundle into the site registry, with `license` if given.
    fn push(&self, license: Option<&str>) -> Output {
        let (bundle, site, host) = (self.text("coder.bundle"), self.site_registry(), self.site.host());
        let mut args = vec![
            "push",
            "--allow-unsigned",
            "--bundle",
            &bundle,
            "--registry",
            &site,
            "--insecure-registry",
            &host,
        ];
        if let Some(license) = license {
            args.extend(["--license", license]);
        }
        self.run(&args)
    }

    /// `template` of the bundle for the site registry, with `license` if given.
    fn template(&self, license: Option<&str>) -> Output {
        let (bundle, site) = (self.text("coder.bundle"), self.site_registry());
        let mut args = vec![
            "template",
            "--allow-unsigned",
            "--bundle",
            &bundle,
            "--registry",
            &site,
        ];
        if let Some(license) = license {
            args.extend(["--license", license]);
        }
        self.run(&args)
    }
}

/// The manager container in `template` output.
fn manager_container(template: &str) -> Value {
    let objects = coder_deploy::render::Manifests::from_yaml(template)
        .expect("template output parses")
        .objects;
    let manager = objects
        .iter()
        .find(|object| object["kind"] == "Deployment" && object["metadata"]["name"] == "coder-manager")
        .expect("the manager Deployment");
    manager["spec"]["template"]["spec"]["containers"][0].clone()
}

/// The manager container's `CODER_AIRGAPPED` in `template` output.
fn manager_airgapped_env(template: &str) -> String {
    let container = manager_container(template);
    let env = container["env"].as_array().expect("env");
    env.iter()
        .find(|variable| variable["name"] == "CODER_AIRGAPPED")
        .and_then(|variable| variable["value"].as_str())
        .expect("CODER_AIRGAPPED is set, as a string")
        .to_owned()
}

fn assert_refused(output: Output, code: i32, fragments: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.is_empty(),
        "nothing may be printed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let error = failure(output);
    for fragment in fragments {
        assert!(error.contains(fragment), "{fragment:?} missing from: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_template_of_a_bundle_refuse_what_apply_bundle_refuses_before_doing_anything() {
    let world = AirGap::new().await;
    // The refusals `apply --bundle` makes, with the same exit codes and messages.
    for (license, code, fragments) in [
        (
            Some(world.license(Tier::Free, false)),
            21,
            ["this is a free license", "need an enterprise license"],
        ),
        (
            Some(world.license(Tier::Trial, true)),
            21,
            ["this is a trial license", "need an enterprise license"],
        ),
        (
            Some(world.license(Tier::Enterprise, false)),
            22,
            ["does not include air-gapped installs", "enterprise"],
        ),
        (
            None,
            21,
            [
                "no --license given, so this is the free tier",
                "need an enterprise license",
            ],
        ),
    ] {
        let license = license.as_deref();
        let mut pushed = fragments.to_vec();
        if license.is_none() {
            pushed.push("nothing was pushed");
        }
        assert_refused(world.push(license), code, &pushed);
        let mut rendered = fragments.to_vec();
        if license.is_none() {
            rendered.push("nothing was rendered");
        }
        assert_refused(world.template(license), code, &rendered);
    }
    assert!(
        catalog(&world.site).await.is_empty(),
        "nothing may be pushed for a refused license"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_air_gap_license_push_and_template_work_and_the_manager_is_told_it_is_air_gapped() {
    let world = AirGap::new().await;
    let enterprise = world.license(Tier::Enterprise, true);
    success(world.push(Some(&enterprise)));
    assert!(
        !catalog(&world.site).await.is_empty(),
        "the bundle is in the site registry"
    );

    let template = success(world.template(Some(&enterprise)));
    assert!(
        template.contains("signature NOT checked (--allow-unsigned)")
            && template.contains("(manifest sha256:"),
        "the header says how the bundle was checked"
    );
    assert_eq!(manager_airgapped_env(&template), "true");
    let image = manager_container(&template)["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        image.starts_with(&format!("{}/", world.site_registry())),
        "{image}"
    );

    // Connected, free tier: no license needed, and the manager is told it is connected.
    let connected = success(world.run([
        "template",
        "--spec",
        &world.text("coder.yaml"),
        "--lock",
        &world.text("images.lock"),
    ]));
    assert_eq!(manager_airgapped_env(&connected), "false");
}
