#!/usr/bin/env bash
# Builds every fuzz target and runs each for a few seconds (default 10).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-10}
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  # Committed seed inputs (fuzz/seeds/TARGET) join the scratch corpus.
  corpus=()
  [ -d "seeds/$target" ] && corpus=("corpus/$target" "seeds/$target") && mkdir -p "corpus/$target"
  cargo fuzz run -O "$target" "${corpus[@]}" -- -max_total_time="$seconds" 2>&1 | grep -E '^(Done|==|SUMMARY)|panicked' || true
  # cargo fuzz exits non-zero on a crash; re-check so the grep above cannot hide it.
  if ls artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target found a crash: $(ls artifacts/"$target"/crash-*)" >&2
    exit 1
  fi
done
