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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo nextest run -p coder-install --test it --no-capture \
  -E 'test(/rollback_with_the_data_puts_back/)' >"$log" 2>&1; then
  cat "$log" >&2
  echo "the test failed (its output is above): no timings" >&2
  exit 1
fi
grep '^apply timings on the node' "$log"
