#!/usr/bin/env bash
# The quick start: a whole air-gapped install on this machine, with nothing but loopback, and the
# platform running on a real single-node Kubernetes cluster.
#
#   sudo scripts/quickstart.sh [--exit] [--work-dir DIR]
#
# Needs root (the node makes a network bridge, iptables rules, mounts and containers). Installs
# the system packages the local world needs and builds and caches the Kubernetes programs (as
# the test command does), builds coder-install trusting the test license key (a debug build
# only: release builds never trust it), the workspace-standin and ingress-standin programs (the
# workspace and ingress controller images' stand-ins), and runs tools/quickstart: a registry
# standing in for the public upstream and a site registry, a single-node cluster (API server,
# containerd, kubelet, kube-proxy, scheduler, controller-manager; service DNS, volumes, the load
# balancer and NetworkPolicy enforcement are the test harness's stand-ins); the platform image
# (several minutes on a cold machine), PostgreSQL, workspace and ingress controller images built
# from Debian's packages, pushed upstream; a private CA with the platform's certificates; then
# lock → bundle → verify → apply --bundle --wait (ingress on, TLS) → status, and a walk in
# headless Chromium from the login to a workspace's terminal at https://coder.localhost:PORT/
# (relayed from loopback to the load balancer). It prints that URL, the CA to trust and the
# admin's credentials, and keeps the world up until Ctrl-C (--exit: stop at once).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

scripts/install-system-deps.sh
scripts/build-kubernetes.sh
# Cargo prints a line per crate it compiles: a cold build takes several minutes, never silently.
echo "quickstart: building coder-install (trusting the test license key) and the quick start's programs" >&2
cargo build -p coder-install --features coder-license/test-keys
cargo build -p coder-testenv --bin workspace-standin
cargo build -p ingress-standin
cargo build -p quickstart
exec target/debug/quickstart "$@"
