#!/usr/bin/env bash
# Builds a private FreeRADIUS 3.2 configuration in $1 (a copy of Debian's, listening
# on 127.0.0.1 only) for side-by-side runs. Prints nothing on success.
#   $1  work directory (created)
#   $2  accounting port   $3  authentication port
#   $4  accounting mode: "detail" (writes its detail file) or "null" (no disk)
set -euo pipefail
work=$1 acct_port=$2 auth_port=$3 mode=${4:-detail}
src=/etc/freeradius/3.0
# Debian's package; its service is kept from starting (it would hold 1812 and 1813).
[ -d "$src" ] && command -v freeradius >/dev/null || "$(dirname "$0")/../scripts/apt-install.sh" freeradius
[ -d "$src" ] || { echo "FreeRADIUS is not installed (apt-get install freeradius)" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work/log" "$work/run"
cp -a "$src" "$work/raddb"
conf=$work/raddb/radiusd.conf
sed -i -E \
  -e "s|^(\s*logdir\s*=).*|\1 $work/log|" \
  -e "s|^(\s*raddbdir\s*=).*|\1 $work/raddb|" \
  -e "s|^(\s*run_dir\s*=).*|\1 $work/run|" \
  -e 's|^(\s*)(user\s*=)|\1#\2|' -e 's|^(\s*)(group\s*=)|\1#\2|' \
  "$conf"
rm -f "$work/raddb/sites-enabled/"* "$work/raddb/mods-enabled/eap"
accounting="detail"
[ "$mode" = null ] && accounting="ok"
cat > "$work/raddb/sites-enabled/bench" <<SITE
server bench {
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = $acct_port
		recv_buff = 4194304
	}
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $auth_port
		recv_buff = 4194304
	}
	authorize {
		preprocess
		files
		pap
		chap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
		Auth-Type CHAP {
			chap
		}
	}
	preacct {
		preprocess
		acct_unique
	}
	accounting {
		$accounting
	}
}
SITE
freeradius -d "$work/raddb" -C >/dev/null
