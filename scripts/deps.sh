#!/usr/bin/env bash
# Installs what building and testing skiff needs on a fresh Debian machine.
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v kubectl >/dev/null || need+=(kubectl)
if ((${#need[@]})); then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "deps: cargo (rustup) is required and was not found" >&2
  exit 1
fi
