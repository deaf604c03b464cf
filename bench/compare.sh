#!/usr/bin/env bash
# Throughput and latency: Portcullis against FreeRADIUS 3.2 (Debian) on the same
# machine, same load generator, same run. Loopback only.
#
#   bench/compare.sh acct [requests-per-run] [runs]   accounting; FreeRADIUS writes its detail file
#   bench/compare.sh pap  [requests-per-run] [runs]   PAP; FreeRADIUS from its users file,
#                                                     Portcullis with and without its credential cache
#
# Prints one JSON line per run and a summary with medians, server CPU per request
# (from /proc/<pid>/stat), the throughput ratio, and p99 latency at half of each
# configuration's measured maximum rate.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-acct}
requests=${2:-200000}
runs=${3:-3}
window=64
case "$mode" in acct | pap) ;; *) echo "mode is acct or pap" >&2; exit 2 ;; esac
work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q -p portcullis
bin=target/release/portcullis
fr_acct=28130 fr_auth=28120 pc_acct=28131 pc_auth=28121
ticks=$(getconf CLK_TCK)
if [ "$mode" = acct ]; then fr_port=$fr_acct pc_port=$pc_acct; else fr_port=$fr_auth pc_port=$pc_auth; fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PID PORT [extra generator args] -> prints the generator JSON with server CPU
run() {
  local name=$1 pid=$2 port=$3; shift 3
  local before after out
  before=$(cpu_ticks "$pid")
  out=$("$bin" bench --mode "$mode" --target "127.0.0.1:$port" --requests "$requests" --window "$window" "$@")
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$out" "$before" "$after" "$ticks" <<'PY'
import json, sys
name, out, before, after, ticks = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:6])
out["server"] = name
out["server_cpu_us_per_request"] = round((after - before) / ticks * 1e6 / max(out["completed"], 1), 1)
print(json.dumps(out))
PY
}

wait_up() { # PORT LOG
  for _ in $(seq 50); do
    "$bin" bench --mode "$mode" --target "127.0.0.1:$1" --requests 4 --window 1 --max-seconds 1 --timeout 0.2 \
      | grep -q '"completed":4' && return 0
    sleep 0.1
  done
  echo "server on port $1 did not answer; see $2" >&2; exit 1
}

start_freeradius() {
  bench/freeradius-setup.sh "$work/fr" "$fr_acct" "$fr_auth" detail
  printf 'load\tCleartext-Password := "loadpass"\n' | cat - "$work/fr/raddb/mods-config/files/authorize" >"$work/users"
  mv "$work/users" "$work/fr/raddb/mods-config/files/authorize"
  freeradius -d "$work/fr/raddb" -f >"$work/fr.log" 2>&1 &
  fr_pid=$!
  wait_up "$fr_port" "$work/fr.log"
}

start_portcullis() { # NAME SYNC CACHE_SECONDS
  local dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/portcullis.toml" <<TOML
[radius]
acct_listen = ["127.0.0.1:$pc_acct"]
auth_listen = ["127.0.0.1:$pc_auth"]
[storage]
data_dir = "data"
sync = "$2"
[auth]
credential_cache_seconds = $3
[log]
level = "warn"
[[client]]
name = "bench"
address = "127.0.0.1"
secret = "testing123"
[[network_policy]]
name = "everyone"
TOML
  echo loadpass | "$bin" user add load --password-stdin --config "$dir/portcullis.toml" >/dev/null
  "$bin" serve --config "$dir/portcullis.toml" 2>"$dir.log" &
  pc_pid=$!
  wait_up "$pc_port" "$dir.log"
}

stop_portcullis() { kill "$pc_pid"; wait "$pc_pid" 2>/dev/null || true; }

results=$work/results.jsonl
half() { python3 -c "import json,statistics; r=[json.loads(l)['rps'] for l in open('$results') if json.loads(l)['server']=='$1' and json.loads(l)['rate_target']==0]; print(int(statistics.median(r)/2))"; }

if [ "$mode" = acct ]; then
  configs=("portcullis-normal normal 300" "portcullis-fsync fsync 300")
  fr_name=freeradius-detail
else
  # Cold runs are bound by Argon2 (by design): they stop after 15 s each and wait
  # longer before a retransmit, since 64 queued verifications take seconds.
  configs=("portcullis-cached normal 300" "portcullis-cold normal 0")
  fr_name=freeradius-users
fi

start_freeradius
for i in $(seq "$runs"); do run "$fr_name" "$fr_pid" "$fr_port" | tee -a "$results"; done
run "$fr_name" "$fr_pid" "$fr_port" --rate "$(half "$fr_name")" | tee -a "$results"
for c in "${configs[@]}"; do
  read -r name sync cache <<<"$c"
  start_portcullis "$name" "$sync" "$cache"
  cap=()
  [ "$cache" != 0 ] || cap=(--max-seconds 15 --timeout 30)
  for i in $(seq "$runs"); do run "$name" "$pc_pid" "$pc_port" "${cap[@]}" | tee -a "$results"; done
  run "$name" "$pc_pid" "$pc_port" --rate "$(half "$name")" "${cap[@]}" | tee -a "$results"
  stop_portcullis
done

python3 - "$results" "$fr_name" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
fr_name = sys.argv[2]
servers = list(dict.fromkeys(r["server"] for r in rows))
def med(server, key, paced=False):
    v = [r[key] for r in rows if r["server"] == server and (r["rate_target"] > 0) == paced]
    return statistics.median(v) if v else float("nan")
def p99(server, paced):
    v = [r["latency_ms"]["p99"] for r in rows if r["server"] == server and (r["rate_target"] > 0) == paced]
    return statistics.median(v) if v else float("nan")
print()
print(f"{'server':<20} {'rps (median)':>12} {'srv us/req':>10} {'p99 ms full':>11} {'p99 ms @half':>12} {'lost':>5} {'rejected':>8}")
for s in servers:
    lost = sum(r["lost"] for r in rows if r["server"] == s)
    rejected = sum(r.get("rejected", 0) for r in rows if r["server"] == s)
    print(f"{s:<20} {med(s,'rps'):>12.0f} {med(s,'server_cpu_us_per_request'):>10.1f} {p99(s, False):>11.2f} {p99(s, True):>12.2f} {lost:>5} {rejected:>8}")
print()
for s in servers:
    if s != fr_name:
        print(f"ratio {s} / {fr_name}: {med(s,'rps')/med(fr_name,'rps'):.2f}")
PY
