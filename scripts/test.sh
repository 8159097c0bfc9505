#!/usr/bin/env bash
# The test command from the README: every unit, service and end-to-end test in the workspace.
# End-to-end tests build and start the real exchange-hub and exchange-node binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo build --workspace --bins --locked
  exec cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  exec cargo test --workspace --locked --no-fail-fast "$@"
fi
