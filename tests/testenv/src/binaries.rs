//! Where the server binaries are, and how to install the ones that are missing.

use std::env;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The Kubernetes version that `scripts/build-kubernetes.sh` builds and caches.
const KUBERNETES_VERSION: &str = "1.20.2";
/// How to get the Kubernetes programs.
const KUBERNETES_HINT: &str = "run scripts/build-kubernetes.sh (builds them once from Debian's kubernetes source package and caches them), or set KUBERNETES_BIN to a directory holding them";

/// The first existing executable among `candidates`, or [`Error::MissingBinary`].
pub(crate) fn first_executable(
    what: &'static str,
    candidates: Vec<PathBuf>,
    hint: &'static str,
) -> Result<PathBuf> {
    candidates
        .iter()
        .find(|path| is_executable(path))
        .cloned()
        .ok_or_else(|| Error::MissingBinary {
            what,
            looked_in: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint,
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `name` in each directory of `PATH`.
fn on_path(name: &str) -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).map(|dir| dir.join(name)).collect())
        .unwrap_or_default()
}

/// `$KUBEBUILDER_ASSETS/name`, when that variable is set.
fn in_kubebuilder_assets(name: &str) -> Option<PathBuf> {
    env::var_os("KUBEBUILDER_ASSETS").map(|dir| PathBuf::from(dir).join(name))
}

/// The directory where built test binaries are cached: `${XDG_CACHE_HOME:-~/.cache}/coder-install`.
pub(crate) fn cache_dir() -> PathBuf {
    env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("coder-install")
}

/// kube-apiserver: `$KUBE_APISERVER`, `$KUBEBUILDER_ASSETS/kube-apiserver`, or the cached build.
pub(crate) fn kube_apiserver() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("KUBE_APISERVER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(in_kubebuilder_assets("kube-apiserver"));
    candidates.extend(kubernetes_candidates("kube-apiserver"));
    first_executable("kube-apiserver", candidates, KUBERNETES_HINT)
}

/// A program of the node (`kubelet`, `kube-proxy`, `kube-scheduler`,
/// `kube-controller-manager`, `pause`): `$KUBERNETES_BIN/NAME` or the cached build.
pub(crate) fn kubernetes_program(name: &'static str) -> Result<PathBuf> {
    first_executable(name, kubernetes_candidates(name), KUBERNETES_HINT)
}

fn kubernetes_candidates(name: &str) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("KUBERNETES_BIN")
        .map(|dir| PathBuf::from(dir).join(name))
        .into_iter()
        .collect();
    candidates.push(
        cache_dir()
            .join(format!("kubernetes-{KUBERNETES_VERSION}"))
            .join(name),
    );
    candidates
}

/// A program from a Debian package the node needs (containerd, runc, dnsmasq, iptables, ...),
/// on `PATH` or in `/usr/sbin`.
pub(crate) fn node_package_program(name: &'static str, package: &'static str) -> Result<PathBuf> {
    let mut candidates = on_path(name);
    candidates.push(PathBuf::from("/usr/sbin").join(name));
    candidates.push(PathBuf::from("/sbin").join(name));
    first_executable(name, candidates, package)
}

/// etcd: `$ETCD`, `$KUBEBUILDER_ASSETS/etcd`, or `etcd` on `PATH`.
pub(crate) fn etcd() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("ETCD").map(PathBuf::from).into_iter().collect();
    candidates.extend(in_kubebuilder_assets("etcd"));
    candidates.extend(on_path("etcd"));
    first_executable(
        "etcd",
        candidates,
        "install it with `apt-get install etcd-server`, or set ETCD to an existing binary",
    )
}

/// The CNCF distribution registry: `$DOCKER_REGISTRY` or `docker-registry` on `PATH`.
pub(crate) fn docker_registry() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("DOCKER_REGISTRY")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(on_path("docker-registry"));
    first_executable(
        "docker-registry (CNCF distribution)",
        candidates,
        "install it with `apt-get install docker-registry`, or set DOCKER_REGISTRY to an existing binary",
    )
}

/// A PostgreSQL server program (`initdb`, `postgres`): `$PG_BIN/name` or Debian's version 15 path.
pub(crate) fn postgres_program(name: &'static str) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("PG_BIN")
        .map(|dir| PathBuf::from(dir).join(name))
        .into_iter()
        .collect();
    candidates.push(PathBuf::from("/usr/lib/postgresql/15/bin").join(name));
    first_executable(
        name,
        candidates,
        "install PostgreSQL 15 with `apt-get install postgresql-15`, or set PG_BIN to its bin directory",
    )
}

/// A static busybox executable for fixture images: `$BUSYBOX_STATIC` or Debian's `/bin/busybox`.
pub(crate) fn busybox_static() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("BUSYBOX_STATIC")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(PathBuf::from("/bin/busybox"));
    first_executable(
        "busybox (static)",
        candidates,
        "install it with `apt-get install busybox-static`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_where_it_looked_and_how_to_install_it() {
        let error = first_executable(
            "etcd",
            vec![PathBuf::from("/nonexistent/etcd")],
            "apt-get install etcd-server",
        )
        .expect_err("nothing exists there");
        let message = error.to_string();
        assert!(message.contains("/nonexistent/etcd"), "{message}");
        assert!(message.contains("apt-get install etcd-server"), "{message}");
    }
}
