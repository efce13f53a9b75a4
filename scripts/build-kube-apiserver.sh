#!/usr/bin/env bash
# Builds kube-apiserver 1.20.2 from Debian's `kubernetes` source package, once per machine.
#
# The binary is cached at ${XDG_CACHE_HOME:-~/.cache}/coder-install/kube-apiserver-1.20.2 and
# this script returns at once when it is there. Set KUBE_APISERVER (or KUBEBUILDER_ASSETS) to
# use an existing binary instead. Needs: golang-1.19-go, rsync, golang-github-modern-go-reflect2-dev
# (scripts/install-system-deps.sh installs them).
#
# Why the reflect2 swap: the vendored modern-go/reflect2 1.0.1 panics under Go >= 1.18 on the first
# JSON decode of a map (every server-side apply); Debian's 1.0.2 is a drop-in replacement.
set -euo pipefail

version=1.20.2
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/coder-install"
binary="$cache_dir/kube-apiserver-$version"

if [ -n "${KUBE_APISERVER:-}" ]; then
  [ -x "$KUBE_APISERVER" ] || { echo "KUBE_APISERVER=$KUBE_APISERVER is not an executable" >&2; exit 1; }
  exit 0
fi
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  exit 0
fi
if [ -x "$binary" ]; then
  exit 0
fi

mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

mirror=$(grep -hoE 'https?://[^ ]*debian/?$' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)
[ -n "$mirror" ] || mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' | grep -v security | head -1)
[ -n "$mirror" ] || { echo "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }

echo "building kube-apiserver $version from Debian's kubernetes source package (about 13 min cold)" >&2
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
(cd "$work/src" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 HOME="$gohome" GOFLAGS=-mod=vendor \
  make WHAT=cmd/kube-apiserver >&2)
rm -rf "$gohome"
install -m 0755 "$work/src/_output/bin/kube-apiserver" "$binary.tmp"
mv "$binary.tmp" "$binary"
echo "cached $binary" >&2
