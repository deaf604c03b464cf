#!/usr/bin/env bash
# Installs the third-party peers the tests drive: radclient/radtest (Debian
# freeradius-utils), eapol_test (Debian eapoltest) and pyrad (PyPI). Safe to run repeatedly; installs only what is missing.
set -euo pipefail
need_apt=()
command -v radclient >/dev/null || need_apt+=(freeradius-utils)
command -v eapol_test >/dev/null || need_apt+=(eapoltest)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# pyrad is the independent RADIUS client; pycryptodome gives the MS-CHAPv2 test client
# MD4 and DES, which Python's standard library lacks.
if ! python3 -c 'import pyrad, Crypto.Hash.MD4' 2>/dev/null; then
  python3 -m pip install --quiet pyrad==2.6.0 pycryptodome==3.23.0 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pyrad==2.6.0 pycryptodome==3.23.0
fi
