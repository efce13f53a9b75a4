#!/usr/bin/env bash
# Where an apply's time goes on a real node: runs the real-node data-rollback test (a bundle
# installed with `apply --wait --output json`, then an upgrade) with its output shown, and prints
# the `timings` lines it writes: each step's wall time (verify, license, preflight, push, backup,
# render, server-side apply, wait) and the share of the tool's own steps (all but the wait for
# the pods) of the whole apply. Run it three times for three figures. Needs what the test suite
# needs (scripts/test.sh installs it); takes about two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
scripts/build-platform-image.sh --profile dev --test-keys --print-binary >/dev/null
scripts/build-platform-image.sh --profile dev --test-keys --test-schema-2 --print-binary >/dev/null
cargo build --quiet -p coder-testenv --bin workspace-standin
cargo build --quiet -p ingress-standin
cargo nextest run -p coder-install --test it --no-capture \
  -E 'test(/rollback_with_the_data_puts_back/)' 2>&1 | tee /dev/stderr | grep '^apply timings on the node' || {
  echo "no timings printed: the test failed (its output is above)" >&2
  exit 1
}
