#!/usr/bin/env bash
# Runs every test: unit, RFC conformance, property tests, storage conformance, the
# integration tests against radclient and pyrad, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --release --workspace
scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"
