#!/usr/bin/env bash
# Installs what building and testing skiff needs on a fresh Debian machine.
# With --tests, also what only the tests need (the Python client's venv).
set -euo pipefail
tests=false
[ "${1:-}" = "--tests" ] && tests=true
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v kubectl >/dev/null || need+=(kubectl)
# The node agent: containerd (CRI), runc and crun, CNI plugins, busybox-static for the
# sandbox and test images, iproute2 for routes.
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
# The service proxy and the pod network: nft for rules, conntrack for stale UDP flows.
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nsenter >/dev/null || need+=(util-linux)
# Test images carry Debian's openssl: pods reach the API over TLS with it.
[ -x /usr/bin/openssl ] || need+=(openssl)
command -v file >/dev/null || need+=(file)
# Image pulls are tested against a local registry with htpasswd auth.
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
# The official Python client's end-to-end test runs in a venv of its own; the overload
# test's stalled watchers are curl reading 1 KB/s.
if $tests; then
  command -v curl >/dev/null || need+=(curl)
  # The storage-fault test makes a small ext4 filesystem on a loop device.
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
  python3 -m venv --help >/dev/null 2>&1 || need+=(python3 python3-venv)
  # The etcd datastore is tested against real etcd members (and etcdctl).
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v etcdctl >/dev/null || need+=(etcd-client)
fi
if ((${#need[@]})); then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
# From PyPI (pinned): the Python client as its users install it.
pyclient=target/pyclient
if $tests && ! "$pyclient/bin/python" -c 'import kubernetes' 2>/dev/null; then
  echo "deps: the kubernetes Python client into $pyclient"
  python3 -m venv "$pyclient"
  "$pyclient/bin/pip" install -q 'kubernetes==37.0.2'
fi
if ! command -v cargo >/dev/null; then
  echo "deps: cargo (rustup) is required and was not found" >&2
  exit 1
fi
