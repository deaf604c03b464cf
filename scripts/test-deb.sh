#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg -i, starts the installed binary
# with the installed configuration as the portcullis user (without systemd), sends it
# accounting with radclient using the secret the package generated, reads the session
# back, and purges the package. Needs root (dpkg); prints one line "package: ...".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "package: skipped (dpkg -i needs root)"
  exit 0
fi
fail() { echo "package: FAILED: $*"; exit 1; }
deb=$(scripts/build-deb.sh target/debian)
size=$(stat -c %s "$deb")
dpkg --purge portcullis >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
pid=""
cleanup() {
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
  dpkg --purge portcullis >/dev/null 2>&1 || true
}
trap cleanup EXIT
getent passwd portcullis >/dev/null || fail "no portcullis user"
[ "$(stat -c '%a %U' /var/lib/portcullis)" = "750 portcullis" ] || fail "/var/lib/portcullis is $(stat -c '%a %U' /var/lib/portcullis)"
[ "$(stat -c '%a %G' /etc/portcullis/localhost.secret)" = "640 portcullis" ] || fail "secret mode"
/usr/bin/portcullis check-config --config /etc/portcullis/portcullis.toml >/dev/null || fail "check-config"
log=$(mktemp)
setpriv --reuid=portcullis --regid=portcullis --init-groups /usr/bin/portcullis serve --config /etc/portcullis/portcullis.toml 2>"$log" &
pid=$!
secret=$(cat /etc/portcullis/localhost.secret)
ok=""
for _ in $(seq 100); do
  if printf 'Acct-Status-Type = Start\nUser-Name = "pkg-user"\nAcct-Session-Id = "pkg-1"\nNAS-Identifier = "pkg-nas"\nCalling-Station-Id = "192.0.2.44"\n' \
    | radclient -q -r 1 -t 1 127.0.0.1:1813 acct "$secret" >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 0.1
done
[ -n "$ok" ] || { cat "$log"; fail "no Accounting-Response from the installed server"; }
found=""
for _ in $(seq 50); do
  if runuser -u portcullis -- /usr/bin/portcullis sessions --config /etc/portcullis/portcullis.toml --format json \
    | grep -q '"pkg-user"'; then
    found=1
    break
  fi
  sleep 0.1
done
[ -n "$found" ] || fail "the session is not stored"
kill -TERM "$pid"
wait "$pid" || { cat "$log"; fail "the server did not stop cleanly on SIGTERM"; }
pid=""
owner=$(find /var/lib/portcullis -not -user portcullis | head -1)
[ -z "$owner" ] || fail "$owner is not owned by portcullis"
echo "package: $(basename "$deb") ($((size / 1024)) KiB) installed, served accounting, purged"
