#!/usr/bin/env bash
# Installs Debian packages (the arguments) with their services kept from starting:
# package scripts would start daemons on all addresses (slapd) or on the RADIUS ports
# (freeradius); the tests and benchmarks start their own instances on 127.0.0.1.
set -euo pipefail
[ $# -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  guard=1
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
[ -z "$guard" ] || $sudo rm -f /usr/sbin/policy-rc.d
