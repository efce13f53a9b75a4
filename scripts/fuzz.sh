#!/usr/bin/env bash
# Fuzzes one parser of outside input for a budget of CPU seconds (not wall-clock: libFuzzer's
# -max_total_time counts wall time, which on a shared machine says little), then prints the
# figures: CPU seconds, executions, corpus size, crashes.
#
#   scripts/fuzz.sh TARGET [CPU_SECONDS] [-- LIBFUZZER_ARGS...]
#
# TARGET is one of:
#   verify_token, parse_claims   license files and their claims (crates/license/fuzz)
#   allowlist                    a site's allowlist file, every form, and the audit on it
#   bundle                       a bundle file: tar index, manifest, OCI index/manifests, lock, chart
#   journal                      the resume journal of an interrupted `bundle` run
# (the last three in installer/fuzz). CPU_SECONDS defaults to 600.
#
# Needs a nightly toolchain and `cargo install cargo-fuzz`. Environment:
#   FUZZ_SANITIZER  address (cargo fuzz's default) or none (default here: none; quicker to
#                   build and run, and the code under test is safe Rust)
#   FUZZ_DIR        where the corpus, crashes and log go (default /tmp/coder-fuzz/TARGET);
#                   the committed seeds are read, never written
#   FUZZ_NICE       niceness of the fuzzer (default 10)
# A crash is written to FUZZ_DIR/artifacts/ and the run stops; reproduce it with
#   cargo +nightly fuzz run --sanitizer none TARGET FUZZ_DIR/artifacts/crash-...
# from the crate folder (crates/license/ or installer/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

target=${1:?usage: scripts/fuzz.sh TARGET [CPU_SECONDS] [-- LIBFUZZER_ARGS...]}
shift
budget=600
if [[ $# -gt 0 && $1 != -- ]]; then
    budget=$1
    shift
fi
[[ ${1:-} == -- ]] && shift

case $target in
    verify_token) crate=license; dict= ;;
    parse_claims) crate=license; dict=fuzz/claims.dict ;;
    allowlist) crate=installer; dict=fuzz/allowlist.dict ;;
    bundle) crate=installer; dict=fuzz/bundle.dict ;;
    journal) crate=installer; dict= ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
esac
sanitizer=${FUZZ_SANITIZER:-none}
dir=${FUZZ_DIR:-/tmp/coder-fuzz/$target}
mkdir -p "$dir/corpus" "$dir/artifacts"

cd "$root/$crate"
cargo +nightly fuzz build --sanitizer "$sanitizer" "$target"
binary=$(find fuzz/target -path "*/release/$target" -type f -perm -u+x | head -n 1)
[[ -n $binary ]] || { echo "no $target binary under $crate/fuzz/target" >&2; exit 1; }

args=(-print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "-artifact_prefix=$dir/artifacts/")
[[ -n $dict ]] && args+=("-dict=$dict")
nice -n "${FUZZ_NICE:-10}" "$binary" "${args[@]}" "$@" "$dir/corpus" "fuzz/seeds/$target" \
    >"$dir/log" 2>&1 &
pid=$!
echo "fuzzing $target (pid $pid, sanitizer $sanitizer) for $budget CPU seconds; log $dir/log"

# utime + stime of the whole process (every thread), in seconds.
cpu_seconds() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -ra fields <<<"${stat##*) }"
    echo $(((fields[11] + fields[12]) / $(getconf CLK_TCK)))
}

used=0
while kill -0 "$pid" 2>/dev/null; do
    used=$(cpu_seconds "$pid") || break
    if ((used >= budget)); then
        kill -INT "$pid"
        break
    fi
    sleep 5
done
status=0
wait "$pid" || status=$?

executions=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | tail -n 1 | grep -o '[0-9]*$' || true)
crashes=$(find "$dir/artifacts" -type f | wc -l)
echo "target:      $target (sanitizer $sanitizer)"
echo "CPU seconds: $used"
echo "executions:  ${executions:-unknown}"
echo "corpus:      $(find "$dir/corpus" -type f | wc -l) inputs, $(du -sk "$dir/corpus" | cut -f1) KiB"
echo "crashes:     $crashes (in $dir/artifacts)"
echo "exit status: $status"
((crashes == 0))
