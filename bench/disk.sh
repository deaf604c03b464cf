#!/usr/bin/env bash
# Disk use per stored item: drives PAP logins and accounting Start/Stop pairs through a
# fresh Portcullis with `portcullis bench` (loopback only), stops it cleanly, and prints
# the bytes each kind of item takes: a stored authentication event (table and indexes,
# from SQLite's dbstat), an auth.log line, an NPS log record pair (IAS format), a closed
# session, and a journal record. Those figures are what docs/operations.md multiplies
# by a rate to give the disk a day of traffic takes.
#
#   bench/disk.sh [pap-requests] [accounting-requests]
set -euo pipefail
cd "$(dirname "$0")/.."
pap=${1:-200000}
acct=${2:-200000}
work=$(mktemp -d /tmp/portcullis-disk.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed (apt-get install sqlite3)" >&2; exit 2; }

cargo build --release -q -p portcullis
bin=target/release/portcullis
acct_port=28133 auth_port=28123
cat >"$work/portcullis.toml" <<TOML
[radius]
acct_listen = ["127.0.0.1:$acct_port"]
auth_listen = ["127.0.0.1:$auth_port"]
[storage]
data_dir = "data"
[log]
level = "warn"
[nps_log]
format = "ias"
period = "never"
[[client]]
name = "bench"
address = "127.0.0.1"
secret = "testing123"
[[network_policy]]
name = "everyone"
TOML
echo loadpass | "$bin" user add load --password-stdin --config "$work/portcullis.toml" >/dev/null
"$bin" serve --config "$work/portcullis.toml" 2>"$work/server.log" &
pid=$!
for _ in $(seq 50); do
  "$bin" bench --mode status --target "127.0.0.1:$acct_port" --requests 1 --window 1 --max-seconds 1 --timeout 0.2 \
    | grep -q '"completed":1' && break
  sleep 0.1
done

pap_out=$("$bin" bench --mode pap --target "127.0.0.1:$auth_port" --requests "$pap" --window 64)
acct_out=$("$bin" bench --mode acct --target "127.0.0.1:$acct_port" --requests "$acct" --window 64)
# A clean stop writes every queued audit line and applies the whole journal.
kill "$pid"
wait "$pid" 2>/dev/null || true

data=$work/data
tables() { # NAME... -> bytes of those tables and indexes
  local list
  list=$(printf "'%s'," "$@")
  sqlite3 "$data/portcullis.db" "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN (${list%,})"
}
python3 - "$pap_out" "$acct_out" <<PY
import json, sys
pap, acct = json.loads(sys.argv[1]), json.loads(sys.argv[2])
events = int("$(sqlite3 "$data/portcullis.db" 'SELECT COUNT(*) FROM auth_events')")
sessions = int("$(sqlite3 "$data/portcullis.db" 'SELECT COUNT(*) FROM sessions')")
auth_bytes = int("$(tables auth_events auth_events_time auth_events_user)")
session_bytes = int("$(tables sessions sessions_user sessions_open_by_nas sessions_started sqlite_autoindex_sessions_1)")
journal = int("$(cat "$data"/journal/*.log | wc -c)")
auth_log = int("$(wc -c <"$data/auth.log")")
auth_lines = int("$(wc -l <"$data/auth.log")")
nps = int("$(wc -c <"$data/nps/iaslog.log")")
nps_lines = int("$(wc -l <"$data/nps/iaslog.log")")
per = lambda total, n: round(total / max(n, 1), 1)
print(json.dumps({
    "pap_completed": pap["completed"], "pap_rps": pap["rps"],
    "acct_completed": acct["completed"], "acct_rps": acct["rps"],
    "auth_events": events, "sessions": sessions,
    "database_bytes_per_auth_event": per(auth_bytes, events),
    "auth_log_lines": auth_lines,
    "auth_log_bytes_per_event": per(auth_log, auth_lines),
    "nps_log_bytes_per_decision": per(nps, nps_lines / 2),
    "database_bytes_per_session": per(session_bytes, sessions),
    "journal_bytes_per_record": per(journal, acct["completed"]),
    "database_file_bytes": int("$(wc -c <"$data/portcullis.db")"),
}, indent=2))
PY
