#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit tests, and the end-to-end suites
# that drive the real kubectl against a real skiff server. Fails on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot run gains nothing from incremental state but its disk space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
bash scripts/deps.sh --tests
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
mkdir -p target
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' target/test-output.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.log | awk '{s+=$1} END {print s+0}')
echo "$passed passed, $failed failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "TESTS FAILED" >&2
  exit 1
fi
echo "== skiff bench soak (1 minute: memory and descriptors flat under a mixed workload)"
cargo run -q -p skiff -- bench soak --minutes 1 --nodes 20
