#!/usr/bin/env bash
# Load benchmark of the manager: 1,000 authenticated API requests against a real PostgreSQL
# (started by coder-testenv), printing p50/p99 latency. Not part of the test suite.
#   BENCH_REQUESTS=1000 BENCH_CONCURRENCY=8 scripts/bench-manager.sh
# Extra arguments go to cargo, e.g. `--profile dev` to skip the optimised build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo benches -p coder-service --bench manager "$@"
