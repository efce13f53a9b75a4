#!/usr/bin/env bash
# The quick start: a whole air-gapped install on this machine, with nothing but loopback.
#
#   scripts/quickstart.sh [--exit] [--work-dir DIR] [--image-profile dev|release]
#
# Installs the system packages and the cached kube-apiserver the local world needs (as the test
# command does), builds coder-install trusting the test license key (a debug build only: release
# builds never trust it), and runs tools/quickstart: a registry standing in for the public
# upstream and a site registry, a Kubernetes API server, PostgreSQL; the platform image built and
# pushed upstream; then lock → bundle → verify → apply --bundle → status.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

scripts/install-system-deps.sh
scripts/build-kubernetes.sh
cargo build --quiet -p installer --features coder-license/test-keys
cargo build --quiet -p quickstart
exec target/debug/quickstart "$@"
