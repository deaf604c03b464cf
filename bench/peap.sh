#!/usr/bin/env bash
# PEAP (TLS 1.2, inner EAP-MSCHAPv2) logins: Portcullis against FreeRADIUS 3.2 (Debian)
# on the same machine, same certificate, same client (wpa_supplicant's eapol_test, each
# process re-authenticating in a loop), same run. Loopback only.
#
#   bench/peap.sh [logins-per-client] [clients]
#
# Prints logins per second and server CPU per login (from /proc/<pid>/stat). With two
# cores the eapol_test clients share the CPU with the server, so the throughput is a
# floor; the server CPU per login is the figure to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
per_client=${1:-100}
clients=${2:-4}
command -v eapol_test >/dev/null || { echo "eapol_test is not installed (apt-get install eapoltest)" >&2; exit 1; }
work=$(mktemp -d /tmp/portcullis-peap.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p portcullis
bin=$(pwd)/target/release/portcullis
fr_auth=28220 pc_auth=28221
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

"$bin" cert init --dir "$work/tls" >/dev/null
cat >"$work/peap.conf" <<CONF
network={
	key_mgmt=IEEE8021X
	eap=PEAP
	identity="load"
	anonymous_identity="anonymous"
	password="loadpass"
	phase1="peapver=0"
	phase2="auth=MSCHAPV2"
	ca_cert="$work/tls/ca.pem"
}
CONF

# logins NAME PID PORT -> one JSON line
logins() {
  local name=$1 pid=$2 port=$3 before after start end ok
  before=$(cpu_ticks "$pid")
  start=$(date +%s.%N)
  for c in $(seq "$clients"); do
    eapol_test -c "$work/peap.conf" -a 127.0.0.1 -p "$port" -s testing123 -t 30 -r $((per_client - 1)) \
      >"$work/$name-$c.log" 2>&1 &
  done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
  end=$(date +%s.%N)
  after=$(cpu_ticks "$pid")
  ok=$(cat "$work/$name"-*.log | grep -c "EAP authentication completed successfully" || true)
  python3 -c "
import json
ok, secs, cpu = $ok, $end - $start, ($after - $before) / $ticks
print(json.dumps({'server': '$name', 'logins': ok, 'attempted': $per_client * $clients,
  'seconds': round(secs, 2), 'logins_per_second': round(ok / secs, 1),
  'server_cpu_ms_per_login': round(cpu * 1000 / max(ok, 1), 2)}))"
}

bench/freeradius-setup.sh "$work/fr" 28230 "$fr_auth" null
raddb=$work/fr/raddb
sed -i -E \
  -e "s|^(\s*default_eap_type\s*=)\s*md5|\1 peap|" \
  -e "s|^(\s*private_key_file\s*=).*|\1 $work/tls/server.key|" \
  -e "s|^(\s*certificate_file\s*=).*|\1 $work/tls/server.pem|" \
  -e "s|^(\s*ca_file\s*=).*|\1 $work/tls/ca.pem|" \
  "$raddb/mods-available/eap"
ln -s ../mods-available/eap "$raddb/mods-enabled/eap"
sed -e '/^listen {/,/^}/d' "$raddb/sites-available/inner-tunnel" >"$raddb/sites-enabled/inner-tunnel"
sed -i -e 's|^\t\tfiles$|\t\teap\n\t\tfiles\n\t\tmschap|' \
  -e 's|^\t\tAuth-Type CHAP {|\t\teap\n\t\tAuth-Type CHAP {|' "$raddb/sites-enabled/bench"
printf 'load\tCleartext-Password := "loadpass"\n' | cat - "$raddb/mods-config/files/authorize" >"$work/users"
mv "$work/users" "$raddb/mods-config/files/authorize"
freeradius -d "$raddb" -C >/dev/null
freeradius -d "$raddb" -f >"$work/fr.log" 2>&1 &
fr_pid=$!
sleep 1
logins freeradius "$fr_pid" "$fr_auth" | tee "$work/results.jsonl"
kill "$fr_pid"; wait "$fr_pid" 2>/dev/null || true

mkdir -p "$work/pc"
cat >"$work/pc/portcullis.toml" <<TOML
[radius]
acct_listen = ["127.0.0.1:28231"]
auth_listen = ["127.0.0.1:$pc_auth"]
[storage]
data_dir = "data"
[log]
level = "warn"
[eap]
certificate = "$work/tls/server.pem"
private_key = "$work/tls/server.key"
tls_max_version = "1.2"
[[client]]
name = "bench"
address = "127.0.0.1"
secret = "testing123"
[[network_policy]]
name = "everyone"
TOML
echo loadpass | "$bin" user add load --password-stdin --config "$work/pc/portcullis.toml" >/dev/null
"$bin" serve --config "$work/pc/portcullis.toml" 2>"$work/pc.log" &
pc_pid=$!
sleep 1
logins portcullis "$pc_pid" "$pc_auth" | tee -a "$work/results.jsonl"
kill "$pc_pid"; wait "$pc_pid" 2>/dev/null || true

python3 - "$work/results.jsonl" <<'PY'
import json, sys
r = {j["server"]: j for j in map(json.loads, open(sys.argv[1]))}
f, p = r["freeradius"], r["portcullis"]
print(f"logins/s ratio portcullis / freeradius: {p['logins_per_second'] / max(f['logins_per_second'], 0.1):.2f}")
print(f"server CPU per login: portcullis {p['server_cpu_ms_per_login']} ms, freeradius {f['server_cpu_ms_per_login']} ms")
PY
