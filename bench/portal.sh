#!/usr/bin/env bash
# The portal's server time on loopback: the entity page of a user with 10,000
# authentication events over 180 days, a sessions list page (first and a deep keyset
# page) over many stored sessions, and CSV export throughput. Loopback only.
#
#   bench/portal.sh [sessions] [page-requests]
#
# Sessions come from `portcullis bench --mode acct-start`; the timeline from a replayed
# JSON-lines file. Times are curl's time_total (request sent to last byte) in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-1000000}
requests=${2:-200}
work=$(mktemp -d /tmp/portcullis-portal.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p portcullis
bin=$(pwd)/target/release/portcullis
acct=28313 auth=28312 http=28380
cat >"$work/p.toml" <<CONF
[radius]
acct_listen = ["127.0.0.1:$acct"]
auth_listen = ["127.0.0.1:$auth"]
[storage]
data_dir = "$work/data"
[log]
level = "warn"
[[client]]
name = "local"
address = "127.0.0.1"
secret = "bench-secret-0123456789"
[http]
listen = ["127.0.0.1:$http"]
# Plain HTTP on loopback: every curl below opens a connection, and a TLS handshake
# each time would be measured with the page.
tls = false
[portal]
enabled = true
CONF
python3 - "$work/history.jsonl" <<'PY'
import json, sys, time
now = int(time.time() * 1000)
span = 180 * 86_400_000
with open(sys.argv[1], "w") as f:
    for i in range(10_000):
        city = i % 50
        e = {"time_ms": now - span + span // 10_000 * i, "user": "heavy", "user_raw": "heavy",
             "nas": "vpn-%d" % (i % 4), "client": "local", "calling_station_id": "198.51.100.%d" % (i % 250),
             "method": "pap", "decision": "accept" if i % 7 else "reject", "reason_code": 0 if i % 7 else 16,
             "event_id": 6272 if i % 7 else 6273, "policy": "vpn", "message": "",
             "location": {"country": "C%d" % (city % 20), "city": "city-%d" % city, "asn": 64500 + city,
                          "latitude": -60 + city * 2.4, "longitude": -170 + city * 6.8}}
        f.write(json.dumps(e) + "\n")
PY
"$bin" replay "$work/history.jsonl" --config "$work/p.toml" >/dev/null 2>&1
echo "bench-portal-password" | "$bin" admin add bench --role viewer --password-stdin --config "$work/p.toml" >/dev/null
"$bin" serve --config "$work/p.toml" 2>"$work/serve.log" &
sleep 2
"$bin" bench --mode acct-start --target "127.0.0.1:$acct" --secret bench-secret-0123456789 \
  --requests "$sessions" >"$work/load.json"
until "$bin" stats --config "$work/p.toml" --format json 2>/dev/null | grep -q '"journal_pending_bytes": 0'; do sleep 1; done
base="http://127.0.0.1:$http"
curl -s -o /dev/null -c "$work/jar" --data "name=bench&password=bench-portal-password" "$base/login"
auth=(-b "$work/jar")

# p50/p99 in ms of `requests` GETs of $1.
measure() {
  for _ in $(seq "$requests"); do
    curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" "$base$1"
  done | sort -n | awk '{ t[NR] = $1 * 1000 } END {
    printf "p50 %.1f ms  p99 %.1f ms  (%d requests)\n", t[int(NR * 0.5)], t[int(NR * 0.99)], NR }'
}
echo "entity page /users/heavy (10,000 events, 30 days observed): $(measure /users/heavy)"
echo "entity page /users/heavy?observed=180: $(measure "/users/heavy?observed=180")"
echo "timeline page (100 rows): $(measure /api/v1/users/heavy/timeline)"
cursor=$(curl -s "${auth[@]}" "$base/api/v1/sessions?limit=1000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
echo "sessions, first page of 100 over $sessions sessions: $(measure /api/v1/sessions)"
echo "sessions, a keyset page after 1,000 rows: $(measure "/api/v1/sessions?cursor=$cursor")"
start=$(date +%s.%N)
rows=$(curl -s "${auth[@]}" "$base/api/v1/sessions?format=csv" | wc -l)
end=$(date +%s.%N)
echo "CSV export of sessions: $((rows - 1)) rows, $(echo "($rows - 1) / ($end - $start)" | bc) rows/s"
echo "server resident memory after the export: $(awk '/VmHWM/ {print $2, $3}' /proc/$(pgrep -f "serve --config $work/p.toml" | head -1)/status) peak"
