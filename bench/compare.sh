#!/usr/bin/env bash
# Accounting throughput and latency: Portcullis against FreeRADIUS 3.2 (Debian) writing
# its detail file, same load generator, same machine, same run. Loopback only.
#
#   bench/compare.sh [requests-per-run] [runs]
#
# Prints one JSON line per run and a summary with medians, server CPU per request
# (from /proc/<pid>/stat), the throughput ratio, and p99 latency at half of each
# server's measured maximum rate.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
runs=${2:-3}
window=64
work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q -p portcullis
bin=target/release/portcullis
fr_acct=28130 fr_auth=28120 pc_acct=28131
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PID PORT [extra generator args] -> prints the generator JSON with server CPU
run() {
  local name=$1 pid=$2 port=$3; shift 3
  local before after out
  before=$(cpu_ticks "$pid")
  out=$("$bin" bench --mode acct --target "127.0.0.1:$port" --requests "$requests" --window "$window" "$@")
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$out" "$before" "$after" "$ticks" <<'PY'
import json, sys
name, out, before, after, ticks = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:6])
out["server"] = name
out["server_cpu_us_per_request"] = round((after - before) / ticks * 1e6 / max(out["completed"], 1), 1)
print(json.dumps(out))
PY
}

start_freeradius() {
  bench/freeradius-setup.sh "$work/fr" "$fr_acct" "$fr_auth" detail
  freeradius -d "$work/fr/raddb" -f >"$work/fr.log" 2>&1 &
  fr_pid=$!
  for _ in $(seq 50); do
    "$bin" bench --mode acct --target "127.0.0.1:$fr_acct" --requests 10 --window 1 --max-seconds 1 --timeout 0.1 \
      | grep -q '"completed":10' && return 0
    sleep 0.1
  done
  echo "FreeRADIUS did not start; see $work/fr.log" >&2; exit 1
}

start_portcullis() { # $1 = sync mode
  mkdir -p "$work/pc-$1"
  cat >"$work/pc-$1/portcullis.toml" <<TOML
[radius]
acct_listen = ["127.0.0.1:$pc_acct"]
auth_listen = []
[storage]
data_dir = "data"
sync = "$1"
[log]
level = "warn"
[[client]]
name = "bench"
address = "127.0.0.1"
secret = "testing123"
TOML
  "$bin" serve --config "$work/pc-$1/portcullis.toml" 2>"$work/pc-$1.log" &
  pc_pid=$!
  for _ in $(seq 50); do
    "$bin" bench --mode status --target "127.0.0.1:$pc_acct" --requests 1 --window 1 --max-seconds 1 --timeout 0.1 \
      | grep -q '"completed":1' && return 0
    sleep 0.1
  done
  echo "Portcullis did not start; see $work/pc-$1.log" >&2; exit 1
}

results=$work/results.jsonl
start_freeradius
start_portcullis normal
for i in $(seq "$runs"); do
  run freeradius-detail "$fr_pid" "$fr_acct" | tee -a "$results"
  run portcullis-normal "$pc_pid" "$pc_acct" | tee -a "$results"
done
kill "$pc_pid"; wait "$pc_pid" 2>/dev/null || true
start_portcullis fsync
for i in $(seq "$runs"); do
  run portcullis-fsync "$pc_pid" "$pc_acct" | tee -a "$results"
done

# Latency at half of each server's median maximum rate.
half() { python3 -c "import json,statistics,sys; r=[json.loads(l)['rps'] for l in open('$results') if json.loads(l)['server']=='$1' and json.loads(l)['rate_target']==0]; print(int(statistics.median(r)/2))"; }
run portcullis-fsync "$pc_pid" "$pc_acct" --rate "$(half portcullis-fsync)" | tee -a "$results"
kill "$pc_pid"; wait "$pc_pid" 2>/dev/null || true
start_portcullis normal
run portcullis-normal "$pc_pid" "$pc_acct" --rate "$(half portcullis-normal)" | tee -a "$results"
run freeradius-detail "$fr_pid" "$fr_acct" --rate "$(half freeradius-detail)" | tee -a "$results"

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(server, key, paced=False):
    v = [r[key] for r in rows if r["server"] == server and (r["rate_target"] > 0) == paced]
    return statistics.median(v) if v else float("nan")
fr = med("freeradius-detail", "rps")
print()
print(f"{'server':<20} {'rps (median)':>12} {'srv us/req':>10} {'p99 ms full':>11} {'p99 ms @half':>12} {'lost':>5}")
for s in ["freeradius-detail", "portcullis-normal", "portcullis-fsync"]:
    lost = sum(r["lost"] for r in rows if r["server"] == s)
    print(f"{s:<20} {med(s,'rps'):>12.0f} {med(s,'server_cpu_us_per_request'):>10.1f} "
          f"{statistics.median([r['latency_ms']['p99'] for r in rows if r['server']==s and r['rate_target']==0]):>11.2f} "
          f"{statistics.median([r['latency_ms']['p99'] for r in rows if r['server']==s and r['rate_target']>0] or [float('nan')]):>12.2f} {lost:>5}")
print()
print(f"ratio portcullis-normal / freeradius-detail: {med('portcullis-normal','rps')/fr:.2f}")
print(f"ratio portcullis-fsync  / freeradius-detail: {med('portcullis-fsync','rps')/fr:.2f}")
PY
