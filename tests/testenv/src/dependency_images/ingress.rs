//! The ingress-nginx controller and kube-webhook-certgen images, as stand-ins: the
//! `ingress-standin` program (the `ingress-standin` crate's binary) with Debian's nginx.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{
    DESCRIPTION_LABEL, User, cached, stand_in_description, with_busybox, with_shared_libraries, with_users,
    workspace_program,
};
use crate::fixture::{Capability, Image, ImageBuilder, LayerBuilder};
use crate::{Error, Result, binaries};

/// The stand-in program's name, as cargo builds it.
const PROGRAM: &str = "ingress-standin";

/// Where the controller image has the program (the chart's first argument).
const CONTROLLER: &str = "/nginx-ingress-controller";

/// Where the certgen image has the program (its entrypoint).
const CERTGEN: &str = "/kube-webhook-certgen";

/// Debian's nginx, at the same path in the image.
const NGINX: &str = "/usr/sbin/nginx";

/// Debian's mimalloc (package `libmimalloc2.0`).
const HOST_MIMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";

/// Where the chart's `LD_PRELOAD` expects mimalloc (as in the ingress-nginx image).
const MIMALLOC: &str = "/usr/local/lib/libmimalloc.so";

/// The controller's user (`www-data` in the ingress-nginx image; the chart's `runAsUser`).
const WWW_DATA_ID: u32 = 101;

/// The certgen jobs' user (the chart's `runAsUser`; `nonroot` in distroless images).
const NONROOT_ID: u32 = 65532;

/// A stand-in for `registry.k8s.io/ingress-nginx/controller`: runs in the chart's controller
/// Deployment as it is (same args, ServiceAccount, RBAC and securityContext).
///
/// - `/nginx-ingress-controller` is the `ingress-standin` program (see its crate), Debian's
///   nginx is `/usr/sbin/nginx`; both carry the file capability `cap_net_bind_service=+ep`, so
///   that as uid 101 with `allowPrivilegeEscalation: false` and only `NET_BIND_SERVICE` added,
///   nginx binds ports 80 and 443 (as in the real image).
/// - No entrypoint: the chart's first argument is the program, as with the real image (`Cmd` is
///   `/nginx-ingress-controller`).
/// - User `www-data` (101:101); `/etc/nginx` (its config, certificates and temporary files)
///   belongs to it, `/tmp` is 1777; busybox is the shell.
/// - The chart's `LD_PRELOAD=/usr/local/lib/libmimalloc.so` finds Debian's mimalloc there. (The
///   two programs with file capabilities run in secure-execution mode, where the loader skips
///   an `LD_PRELOAD` path with a slash, silently: they run on glibc's allocator.)
///
/// The program is looked up beside the running test executable, then in
/// `$CARGO_TARGET_DIR/debug`, else [`Error::MissingBinary`] (`cargo build -p ingress-standin`
/// builds it; `scripts/test.sh` does). Built once per process, then cloned.
pub fn ingress_controller_image() -> Result<Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    cached(&IMAGE, build_controller)
}

/// A stand-in for `registry.k8s.io/ingress-nginx/kube-webhook-certgen`: the `ingress-standin`
/// program as `/kube-webhook-certgen` (the entrypoint), running as 65532; it writes no file, so
/// the chart's `readOnlyRootFilesystem` suits it. Found and cached as
/// [`ingress_controller_image`].
pub fn ingress_certgen_image() -> Result<Image> {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    cached(&IMAGE, build_certgen)
}

fn build_controller() -> Result<Image> {
    let program = workspace_program(
        PROGRAM,
        "run cargo build -p ingress-standin (scripts/test.sh does)",
    )?;
    let nginx = binaries::first_executable(
        "nginx",
        vec![PathBuf::from(NGINX)],
        "install Debian's nginx (scripts/install-system-deps.sh does)",
    )?;
    let mimalloc = Path::new(HOST_MIMALLOC);
    if !mimalloc.exists() {
        return Err(Error::MissingBinary {
            what: "libmimalloc",
            looked_in: HOST_MIMALLOC.to_owned(),
            hint: "install Debian's libmimalloc2.0 (scripts/install-system-deps.sh does)",
        });
    }
    let www_data = u64::from(WWW_DATA_ID);
    let layer = LayerBuilder::new()
        .host_executable(CONTROLLER.trim_start_matches('/'), &program)?
        .file_capabilities(CONTROLLER.trim_start_matches('/'), &[Capability::NetBindService])
        .host_executable(NGINX.trim_start_matches('/'), &nginx)?
        .file_capabilities(NGINX.trim_start_matches('/'), &[Capability::NetBindService])
        .host_file(MIMALLOC.trim_start_matches('/'), mimalloc)?
        .directory_owned_by("etc/nginx", 0o755, www_data, www_data)
        .directory_owned_by("var/log/nginx", 0o755, www_data, www_data)
        .directory_owned_by("var/lib/nginx", 0o755, www_data, www_data);
    let layer = with_users(
        layer,
        &[User {
            name: "www-data",
            id: WWW_DATA_ID,
            home: "/etc/nginx",
        }],
    );
    let layer = with_shared_libraries(layer, &[program, nginx, mimalloc.to_owned()])?;
    let layer = with_busybox(layer)?;
    ImageBuilder::new()
        .layer(layer)
        .label(
            DESCRIPTION_LABEL,
            &stand_in_description("registry.k8s.io/ingress-nginx/controller (ingress-standin driving nginx)"),
        )
        .user(&format!("{WWW_DATA_ID}:{WWW_DATA_ID}"))
        .working_dir("/etc/nginx")
        .cmd([CONTROLLER])
        .expose_tcp(80)
        .expose_tcp(443)
        .expose_tcp(8443)
        .expose_tcp(10254)
        .build()
}

fn build_certgen() -> Result<Image> {
    let program = workspace_program(
        PROGRAM,
        "run cargo build -p ingress-standin (scripts/test.sh does)",
    )?;
    let layer = LayerBuilder::new().host_executable(CERTGEN.trim_start_matches('/'), &program)?;
    let layer = with_users(
        layer,
        &[User {
            name: "nonroot",
            id: NONROOT_ID,
            home: "/home/nonroot",
        }],
    );
    let layer = with_shared_libraries(layer, &[program])?;
    ImageBuilder::new()
        .layer(layer)
        .label(
            DESCRIPTION_LABEL,
            &stand_in_description("registry.k8s.io/ingress-nginx/kube-webhook-certgen (ingress-standin)"),
        )
        .user(&format!("{NONROOT_ID}:{NONROOT_ID}"))
        .entrypoint([CERTGEN])
        .build()
}
