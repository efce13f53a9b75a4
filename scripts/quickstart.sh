#!/usr/bin/env bash
# The quick start: a whole air-gapped install on this machine, with nothing but loopback, and the
# platform running on a real single-node Kubernetes cluster.
#
#   sudo scripts/quickstart.sh [--exit] [--work-dir DIR]
#
# Needs root (the node makes a network bridge, iptables rules, mounts and containers). Installs
# the system packages the local world needs and builds and caches the Kubernetes programs (as
# the test command does), builds coder-install trusting the test license key (a debug build
# only: release builds never trust it) and the workspace-standin program (the workspace image's
# stand-in, looked up next to target/debug/quickstart), and runs tools/quickstart: a registry
# standing in for the public upstream and a site registry, a single-node cluster (API server,
# containerd, kubelet, kube-proxy, scheduler, controller-manager; service DNS and volumes are
# the test harness's stand-ins); the platform image (built trusting the test key: several
# minutes on a cold machine), PostgreSQL and workspace images built from Debian's packages,
# pushed upstream; then lock → bundle → verify → apply --bundle --wait (ingress disabled: no
# ingress controller image here) → status, and a login as the first admin through the manager's
# Service. It prints the dashboard's URL and the admin's credentials and keeps the world up
# until Ctrl-C (--exit: stop at once).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

scripts/install-system-deps.sh
scripts/build-kubernetes.sh
cargo build --quiet -p installer --features coder-license/test-keys
cargo build --quiet -p coder-testenv --bin workspace-standin
cargo build --quiet -p ingress-standin
cargo build --quiet -p quickstart
exec target/debug/quickstart "$@"
