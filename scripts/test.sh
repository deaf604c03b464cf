#!/usr/bin/env bash
# Runs every test: unit, RFC conformance, property tests, storage conformance, the
# integration tests against radclient and pyrad, a short run of every fuzz target, and
# the Debian package installed with dpkg -i and serving accounting.
# Ends with one summary line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}" || status=$?
scripts/test-deb.sh || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
