#!/usr/bin/env bash
# Builds the Debian package from the release binary:
#   scripts/build-deb.sh [OUT_DIR]   (default target/debian)
# Installs /usr/bin/portcullis, the systemd unit, /etc/portcullis/portcullis.toml (a
# conffile), logrotate rules and the documentation; the maintainer scripts create the
# portcullis system user, /var/lib/portcullis (0750) and the localhost client's secret.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
bin=target/release/portcullis
[ -x "$bin" ] || cargo build --release --bin portcullis
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/portcullis" \
  "$root/etc/logrotate.d" "$root/usr/share/doc/portcullis"
# Debug information stays out of the package (it is most of the binary's size).
objcopy --strip-debug "$bin" "$root/usr/bin/portcullis"
chmod 0755 "$root/usr/bin/portcullis"
install -m 0644 packaging/debian/portcullis.service "$root/lib/systemd/system/portcullis.service"
install -m 0640 packaging/debian/portcullis.toml "$root/etc/portcullis/portcullis.toml"
install -m 0644 packaging/debian/portcullis.logrotate "$root/etc/logrotate.d/portcullis"
install -m 0644 README.md ARCHITECTURE.md portcullis.example.toml docs/*.md "$root/usr/share/doc/portcullis/"
cat > "$root/usr/share/doc/portcullis/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: portcullis

Files: *
Copyright: Portcullis maintainers
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
printf '/etc/portcullis/portcullis.toml\n/etc/logrotate.d/portcullis\n' > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: portcullis
Version: $version
Architecture: $arch
Maintainer: Portcullis maintainers <maintainers@portcullis.invalid>
Installed-Size: $size
Depends: libc6, libgcc-s1, adduser
Recommends: freeradius-utils
Section: net
Priority: optional
Description: RADIUS server, accounting sensor and VPN sign-in detections
 One self-hosted service that guards a company's VPN: RADIUS accounting and
 authentication (PAP, CHAP, MS-CHAPv2, EAP-MSCHAPv2, PEAP) with local users or
 LDAP/Active Directory, NPS-style network policies, a second factor before
 Access-Accept, offline geolocation, per-user profiles and detections such as
 impossible travel and suspicious VPN connections.
CONTROL
mkdir -p "$out"
deb="$out/portcullis_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
