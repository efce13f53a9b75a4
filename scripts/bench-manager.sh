#!/usr/bin/env bash
# Load benchmark of the manager at a site's size (1,000 members, 10,000 workspaces in a real
# PostgreSQL started by coder-testenv): the list endpoints open loop at 200 requests/s and
# logins, printing p50/p90/p99/max against the goals (see platform/benches/manager.rs). Not part
# of the test suite.
#   BENCH_RATE=200 BENCH_SECONDS=10 BENCH_LOGIN_RATE=10 BENCH_LOGIN_BURST=20 scripts/bench-manager.sh
# Extra arguments go to cargo, e.g. `--profile dev` to skip the optimised build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo benches -p coder-service --bench manager "$@"
