#!/usr/bin/env bash
# Sets up and runs a single-node skiff cluster; writes a kubeconfig for kubectl.
#   sudo ./scripts/up.sh            # data in /var/lib/skiff, kubeconfig in ~/.kube/config
# Extra arguments go to `skiff up` (e.g. --https-port 7443).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -p skiff
mkdir -p "$HOME/.kube"
exec ./target/release/skiff up --write-kubeconfig "$HOME/.kube/config" "$@"
