#!/usr/bin/env bash
# Installs closeorderd on a Debian host from source: the release binary, the systemd unit,
# an example configuration, the closeorderd user and group, and the state directory.
#
#   sudo scripts/install.sh                       # build release and install under /usr/local
#   DESTDIR=/tmp/stage scripts/install.sh         # stage into a scratch folder (no users created)
#   PREFIX=/usr BINARY=path/to/closeorderd scripts/install.sh   # another prefix, a prebuilt binary
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINARY=${BINARY:-}

if [ -z "$BINARY" ]; then
    scripts/ensure-deps
    swift build -c release --product closeorderd --static-swift-stdlib
    BINARY=.build/release/closeorderd
fi

unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s#/usr/local/bin/closeorderd#$PREFIX/bin/closeorderd#g; s#/usr/local/share/doc#$PREFIX/share/doc#g" \
    systemd/closeorderd.service >"$unit"

install -D -m 0755 "$BINARY" "$DESTDIR$PREFIX/bin/closeorderd"
install -D -m 0644 "$unit" "$DESTDIR/etc/systemd/system/closeorderd.service"
install -D -m 0644 systemd/closeorderd.sysusers "$DESTDIR/usr/lib/sysusers.d/closeorderd.conf"
install -D -m 0644 systemd/closeorderd.tmpfiles "$DESTDIR/usr/lib/tmpfiles.d/closeorderd.conf"
install -D -m 0644 README.md "$DESTDIR$PREFIX/share/doc/closeorderd/README.md"
install -D -m 0644 systemd/config.example.yaml "$DESTDIR$PREFIX/share/doc/closeorderd/config.example.yaml"
install -d -m 0750 "$DESTDIR/etc/closeorderd" "$DESTDIR/etc/closeorderd/keys"
if [ ! -e "$DESTDIR/etc/closeorderd/config.yaml" ]; then
    install -m 0640 systemd/config.example.yaml "$DESTDIR/etc/closeorderd/config.yaml"
fi

if [ -n "$DESTDIR" ]; then
    echo "staged into $DESTDIR (users, groups and folders are created when installed for real)"
    exit 0
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/closeorderd.conf
else
    getent group closeorderd >/dev/null || groupadd --system closeorderd
    getent passwd closeorderd >/dev/null ||
        useradd --system --gid closeorderd --home-dir /var/lib/closeorderd --shell /usr/sbin/nologin closeorderd
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/closeorderd.conf
else
    install -d -o closeorderd -g closeorderd -m 2770 /var/lib/closeorderd
    install -d -o root -g closeorderd -m 0750 /etc/closeorderd/keys
fi
# An empty database file, group-writable, as the package makes it (see README, "Sharing the database").
[ -e /var/lib/closeorderd/orders.sqlite ] ||
    install -o closeorderd -g closeorderd -m 0660 /dev/null /var/lib/closeorderd/orders.sqlite
chown root:closeorderd /etc/closeorderd /etc/closeorderd/config.yaml
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
cat <<EOT
installed closeorderd $PREFIX/bin/closeorderd
next:
  1. put each merchant key in /etc/closeorderd/keys/MCH_ID (chmod 600, owner root) and add
     LoadCredential=mch-MCH_ID:/etc/closeorderd/keys/MCH_ID to the unit (systemctl edit closeorderd)
  2. edit /etc/closeorderd/config.yaml, then: closeorderd check-config --config /etc/closeorderd/config.yaml
  3. add the app's user to the closeorderd group: usermod -aG closeorderd APP_USER
  4. systemctl enable --now closeorderd; journalctl -u closeorderd -f
EOT
