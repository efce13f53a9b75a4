#!/usr/bin/env bash
# Runs every test of the workspace against real servers, on a fresh Debian machine or a warm one:
#   1. installs the missing system packages (registry, etcd, PostgreSQL 15, skopeo, Go 1.19, ...);
#   2. builds Kubernetes (the API server and the node's programs) from Debian's source package
#      once and caches it (seconds when cached);
#   3. builds the static coder-service the platform-image tests pack (cached after the first time;
#      a cold build is longer than nextest lets one test run), and the workspace stand-in program that
#      the dependency images pack;
#   4. checks that no crate's modules import each other in a circle (scripts/module-cycles.py)
#      and that no function of the sources (tests aside) is over 80 lines (scripts/long-functions.py), runs the doc
#      tests, then every unit and integration test with cargo-nextest
#      (cargo test when nextest is not installed). Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

scripts/install-system-deps.sh
scripts/build-kubernetes.sh
scripts/build-platform-image.sh --profile dev --test-keys --print-binary >/dev/null
scripts/build-platform-image.sh --profile dev --test-keys --test-schema-2 --print-binary >/dev/null
cargo build --quiet -p coder-testenv --bin workspace-standin
cargo build --quiet -p ingress-standin

# The layout rule that no two modules of a crate import each other (but a type and its error).
scripts/module-cycles.py crates/*/src installer/src platform/src tests/testenv/src tests/ingress-standin/src tools/*/src
# The rule that a reader can hold every function (at most 80 lines; tests excepted).
scripts/long-functions.py crates/*/src installer/src platform/src tools/*/src tests/testenv/src tests/ingress-standin/src
cargo test --workspace --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
