#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 programs the test world runs, from Debian's `kubernetes` source
# package, once per machine: kube-apiserver, and the node (kubelet, kube-proxy, kube-scheduler,
# kube-controller-manager), plus the static `pause` program the node's pod sandboxes run.
#
# They are cached in ${XDG_CACHE_HOME:-~/.cache}/coder-install/kubernetes-1.20.2/ and this script
# returns at once when all are there. Set KUBERNETES_BIN to a directory holding them to use
# existing binaries instead. Needs: golang-1.19-go, rsync, golang-github-modern-go-reflect2-dev,
# gcc (scripts/install-system-deps.sh installs them). About 7 to 15 minutes cold on 2 cores.
#
# Why the reflect2 swap: the vendored modern-go/reflect2 1.0.1 panics under Go >= 1.18 on the first
# JSON decode of a map (every server-side apply); Debian's 1.0.2 is a drop-in replacement.
set -euo pipefail

version=1.20.2
programs=(kube-apiserver kubelet kube-proxy kube-scheduler kube-controller-manager)
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/coder-install"
bin_dir="$cache_dir/kubernetes-$version"

all_present() {
  local dir=$1
  for p in "${programs[@]}" pause; do [ -x "$dir/$p" ] || return 1; done
}
if [ -n "${KUBERNETES_BIN:-}" ]; then
  all_present "$KUBERNETES_BIN" || { echo "KUBERNETES_BIN=$KUBERNETES_BIN lacks one of: ${programs[*]} pause" >&2; exit 1; }
  exit 0
fi
all_present "$bin_dir" && exit 0

mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

mirror=$(grep -hoE 'https?://[^ ]*debian/?$' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)
[ -n "$mirror" ] || mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' | grep -v security | head -1)
[ -n "$mirror" ] || { echo "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }

echo "building Kubernetes $version (${programs[*]}, pause) from Debian's kubernetes source package (7 to 15 min cold on 2 cores)" >&2
mkdir -p "$work/lists/partial"
echo "deb-src $mirror bookworm main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists")
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only kubernetes >/dev/null)
orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -1)
mkdir -p "$work/src"
tar -xzf "$orig" -C "$work/src" --strip-components=1

rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"

gohome=$(mktemp -d)
# One program at a time, so that progress shows between the long silent links.
for p in "${programs[@]}"; do
  echo "  go build cmd/$p" >&2
  (cd "$work/src" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 HOME="$gohome" GOFLAGS=-mod=vendor \
    make WHAT="cmd/$p" >&2)
done
rm -rf "$gohome"
echo "  gcc build/pause/linux/pause.c" >&2
gcc -Os -static -o "$work/src/_output/bin/pause" "$work/src/build/pause/linux/pause.c"

staging="$bin_dir.tmp"
rm -rf "$staging"
mkdir -p "$staging"
for p in "${programs[@]}" pause; do install -m 0755 "$work/src/_output/bin/$p" "$staging/$p"; done
rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
echo "cached $bin_dir" >&2
