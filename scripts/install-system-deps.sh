#!/usr/bin/env bash
# Installs the Debian packages the test environment needs (idempotent: a no-op when all are present).
#   docker-registry  CNCF distribution registry (OCI registry used by the tests)
#   etcd-server      etcd for the Kubernetes API server
#   golang-1.19-go, rsync, golang-github-modern-go-reflect2-dev   build kube-apiserver from source
#   apache2-utils    htpasswd for the authenticated registry flavour
#   busybox-static   a real static executable for fixture images
#   skopeo           an independent OCI client to check what the tool writes
#   postgresql-15    PostgreSQL server binaries
#   chromium, chromium-driver   headless browser and its WebDriver server for the dashboard test
#   libnss3-tools    certutil: the browser tests' Chromium trusts the site's private CA (NSS database)
#   containerd, runc, containernetworking-plugins, iptables, conntrack, iproute2
#                    the real node's container runtime, pod network and kube-proxy
#   dnsmasq-base     the node's service DNS (stands in for CoreDNS)
#   gcc, libc6-dev   the pod sandbox's pause program, built from the Kubernetes source
#   nginx, libmimalloc2.0   the ingress-nginx controller stand-in's proxy, and the allocator its
#                    chart preloads
set -euo pipefail
packages=(docker-registry etcd-server golang-1.19-go rsync golang-github-modern-go-reflect2-dev
  apache2-utils busybox-static skopeo postgresql-15 ca-certificates chromium chromium-driver libnss3-tools
  containerd runc containernetworking-plugins iptables conntrack iproute2 dnsmasq-base gcc libc6-dev
  nginx libmimalloc2.0)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
