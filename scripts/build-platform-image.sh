#!/usr/bin/env bash
# Builds the platform image: coder-service as a static binary, then `platform-image build`.
#
#   scripts/build-platform-image.sh [--profile release|dev] [platform-image build options]
#   scripts/build-platform-image.sh [--profile release|dev] --print-binary
#
# e.g. (the quick start: a dev build pushed to a loopback registry over plain HTTP)
#   scripts/build-platform-image.sh --profile dev \
#     --push 127.0.0.1:5000/coderenvs/coder-service:1.0.0 --insecure-registry 127.0.0.1:5000
#
# --profile  release (default, what ships; about 10+ minutes cold on 2 cores) or dev (faster,
#            unoptimised, no debug info).
# --print-binary  only build the static binary and print its path.
# --test-keys  trust the TEST-ONLY license key (dev profile only): what the tests and the quick
#            start deploy, so that the manager accepts the test licenses they install.
# --test-schema-2  TEST ONLY: embed the tests' extra migration (platform/tests/schema-2/), for a
#            test release "2.0" whose schema differs from 1.0's.
# Every other option goes to `platform-image build` (see `platform-image build --help`): at least
# one of --oci-layout DIR / --push REF; --binary is set here.
#
# The binary is linked statically (`-C target-feature=+crt-static`, glibc) so that it runs in an
# image that holds nothing else. Those flags change every crate's build, so it is built in a
# target directory of its own (target/static): the usual builds in target/ stay valid.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

profile=release
print_binary=false
features=()
variant=""
forward=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs release or dev}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --print-binary) print_binary=true; shift ;;
    --test-keys) features+=(--features coder-license/test-keys); variant+="-test-keys"; shift ;;
    --test-schema-2) features+=(--features coder-service/test-schema-2); variant+="-test-schema-2"; shift ;;
    *) forward+=("$1"); shift ;;
  esac
done
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "build-platform-image.sh: --profile must be release or dev, not '$profile'" >&2; exit 2 ;;
esac

target=x86_64-unknown-linux-gnu
target_root="${CARGO_TARGET_DIR:-target}"
static_dir="$target_root/static"
# Builds of other features write the same output path: the build and a copy named after the
# features (what is used) are made under one lock, so that parallel callers never pack each
# other's binary.
mkdir -p "$static_dir"
exec {lock}>"$static_dir/.coder-service.lock"
flock "$lock"
# Dev builds drop debug info: it would make the layer several times larger.
CARGO_PROFILE_DEV_DEBUG=0 RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --profile "$profile" -p coder-service --bin coder-service "${features[@]}" \
  --target "$target" --target-dir "$static_dir" >&2
built="$static_dir/$target/$profile_dir/coder-service"
binary="$built$variant"
if [ "$binary" != "$built" ]; then
  cp -f "$built" "$binary.tmp" && mv -f "$binary.tmp" "$binary"
fi
flock -u "$lock"

if $print_binary; then
  echo "$binary"
  exit 0
fi
cargo build -p platform-image --bin platform-image >&2
exec "$target_root/debug/platform-image" build --binary "$binary" "${forward[@]}"
